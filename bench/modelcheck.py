"""The model checker on a larger bound than `make test` runs: 3 and 4 members, more quirks.

Explores the MODEL of Harper (e2e/simulator/harper_model.py, a fake built from experiments; not Harper) driven by
the operator's pure core, exactly as tests/modelcheck does (explore.py; docs/modelcheck.md says what is explored and
judged). For each declared topology it prints the states explored, the bounds (quirks on a path, rounds per chain,
seconds between rounds), the time taken, how the states end, and every failure with the way to it; the figures go
to bench/results/modelcheck.json. Exits 1 when a failure other than a known limit turns up.

    .venv/bin/python bench/modelcheck.py                  # the default bound (a few minutes, about 1.5 GB)
    .venv/bin/python bench/modelcheck.py --steps 5,10,30  # the same with rounds 5, 10 and 30 s apart
    .venv/bin/python bench/modelcheck.py --deep           # and 4 members with 3 quirks (about 5 min, 6 GB)
    .venv/bin/python bench/modelcheck.py --quirks 1 --only full3,full4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "modelcheck"))

from explore import KNOWN_LIMITS, Bounds, Operator, explore, full_mesh, sharded, with_explicit  # noqa: E402
from harper_operator.reconcile import Route  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "modelcheck.json"

# name -> (topology, quirks on a path). Three members go one quirk deeper than four: the state space grows about
# thirty-fold per quirk, and 4 members with 3 quirks (1.9 million states) needs about 6 GB (--deep).
PLAN = {
    "full3": (full_mesh(3), 3),
    "full2+explicit1": (with_explicit(1), 3),
    "full3+routes": (full_mesh(3, routes=(Route("r1", 9933),)), 2),
    "full4": (full_mesh(4), 2),
    "full2+explicit2": (with_explicit(2), 2),
    "full4+shards": (sharded(4), 2),
}
DEEP = {"full4": 3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="10", help="seconds between rounds, comma-separated (default 10)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds within which every chain must end (default: 300 s worth of rounds)")
    parser.add_argument("--quirks", type=int, default=None, help="quirks on a path, for every topology")
    parser.add_argument("--only", default="", help="topologies, comma-separated: " + ", ".join(PLAN))
    parser.add_argument("--deep", action="store_true", help="4 members with 3 quirks as well (about 6 GB)")
    parser.add_argument("--max-states", type=int, default=3_000_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    names = [n for n in args.only.split(",") if n] or list(PLAN)
    unknown = sorted(set(names) - set(PLAN))
    if unknown:
        parser.error(f"unknown topologies {unknown}; known: {', '.join(PLAN)}")
    runs, unexpected = [], 0
    began = time.monotonic()
    for step in (float(s) for s in args.steps.split(",")):
        rounds = args.rounds or int(300 // step)
        for name in names:
            topology, quirks = PLAN[name]
            quirks = args.quirks if args.quirks is not None else (DEEP.get(name, quirks) if args.deep else quirks)
            bounds = Bounds(quirks=quirks, rounds=rounds, max_states=args.max_states)
            report = explore(topology, bounds, operator=Operator(step=step))
            print(report.line(), flush=True)
            for failure in report.unexpected:
                print(f"  FAILURE {failure.describe()}\n")
            known: dict[str, dict[str, int]] = {}
            for f in report.failures:
                if f.kind in KNOWN_LIMITS:
                    row = known.setdefault(f.kind, {"ends": 0, "states": 0})
                    row["ends"] += 1
                    row["states"] += f.states
            for kind, row in sorted(known.items()):
                print(f"  known limit {kind}: {row['states']} state(s) leading to {row['ends']} distinct end(s)")
            for reason, states in sorted(report.transient_stalled.items()):
                print(f"  Stalled {reason} that passed (the chain still ends well): {states} state(s)")
            unexpected += len(report.unexpected) + report.truncated
            data = report.as_dict()
            data["failures"] = [f for f in data["failures"] if f["kind"] not in KNOWN_LIMITS]
            data["known_limits"] = known
            if report.longest is not None:
                data["longest"] = {"rounds": report.max_rounds, "trace": report.longest.trace,
                                   "chain": report.longest.chain}
            runs.append(data)
    seconds = time.monotonic() - began
    total = sum(r["states"] for r in runs)
    print(f"\n{total} states in {seconds:.0f}s; {unexpected} unexpected failure(s)"
          f"{'' if unexpected else ' (known limits: ' + ', '.join(sorted(KNOWN_LIMITS)) + ')'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "what": "the MODEL of Harper (e2e/simulator/harper_model.py, cas=True), explored; not Harper",
        "known_limits": KNOWN_LIMITS, "states": total, "seconds": round(seconds, 1),
        "unexpected_failures": unexpected, "runs": runs,
    }, indent=2) + "\n")
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
