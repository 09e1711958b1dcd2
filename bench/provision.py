"""Time from `kubectl apply` of a provisioned HarperCluster (spec.instances) to Ready, for 3 and 5 nodes, on the
real one-node Kubernetes (root), split into pod start (kubelet, image, Harper's first start) and join (the
operator), next to the floor on the same kind of pods: a plain StatefulSet joined by hand (n-1 add_node from
pod 0, until every pod shows every peer connected; a floor run that is not meshed after 120 s counts as "never
meshed", since the plain script never restarts anything).

Numbers, not pass/fail. The measurement itself is e2e/pods/provision_bench.py (it needs the node, the registry,
the images and the chart, which the e2e fixtures provide); this prints the table and writes
bench/results/provision.json and provision.md.

    .venv/bin/python bench/provision.py [--repeat 3] [--sizes 3,5]
    .venv/bin/python bench/provision.py --scale-down [--repeat 3]   # what the data-safety wait costs 5 -> 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table(rows: list[dict]) -> str:
    lines = ["| nodes | runs | floor: pods start | floor: join | floor: total | operator: pods start | "
             "operator: join | operator: apply -> Ready | join / floor join | total / floor total |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in sorted({r["nodes"] for r in rows}):
        mine = [r for r in rows if r["nodes"] == n]

        def med(side: str, key: str) -> float | None:
            values = [r[side][key] for r in mine if r[side][key] is not None]
            return round(statistics.median(values), 1) if values else None

        def text(value: float | None) -> str:
            return "-" if value is None else f"{value} s"

        def ratio(a: float | None, b: float | None) -> str:
            return "-" if a is None or b is None else f"{a / max(b, 0.1):.2f}x"

        stuck = sum(1 for r in mine if r["floor"]["join_s"] is None)
        note = f" ({stuck} never meshed)" if stuck else ""
        lines.append(f"| {n} | {len(mine)} | {text(med('floor', 'pods_s'))} | {text(med('floor', 'join_s'))}{note} | "
                     f"{text(med('floor', 'total_s'))} | {text(med('operator', 'pods_s'))} | "
                     f"{text(med('operator', 'join_s'))} | {text(med('operator', 'total_s'))} | "
                     f"{ratio(med('operator', 'join_s'), med('floor', 'join_s'))} | "
                     f"{ratio(med('operator', 'total_s'), med('floor', 'total_s'))} |")
    return "\n".join(lines)


def scale_down_table(rows: list[dict]) -> str:
    def med(side: str, key: str) -> float | None:
        values = [r[side][key] for r in rows if r[side].get(key) is not None]
        return round(statistics.median(values), 1) if values else None
    floor, mine = med("floor", "scale_down_s"), med("operator", "scale_down_s")
    ratio = "-" if floor is None or mine is None else f"{mine / max(floor, 0.1):.2f}x"
    return ("| scale-down 5 -> 3, writer 0.2 s | runs | by hand (floor) | operator: both proven and removed | "
            "operator: Ready 3/3, pods gone | operator / floor | records missing (floor, operator) |\n"
            "|---|---|---|---|---|---|---|\n"
            f"| | {len(rows)} | {floor} s | {med('operator', 'until_removed_s')} s | {mine} s | {ratio} | "
            f"{sum(r['floor']['missing'] for r in rows)}, {sum(r['operator']['missing'] for r in rows)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (default 1)")
    parser.add_argument("--sizes", default="3,5", help="cluster sizes (default 3,5)")
    parser.add_argument("--scale-down", action="store_true",
                        help="measure 5 -> 3 with a writer against the same by hand (the data-safety wait)")
    args = parser.parse_args()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    raw = out / ("provision-scale-down.json" if args.scale_down else "provision.json")
    env = {**os.environ, "PROVISION_SIZES": args.sizes, "PROVISION_REPEAT": str(args.repeat),
           "PROVISION_RESULTS": str(raw), **({"PROVISION_SCALE_DOWN": "1"} if args.scale_down else {})}
    done = subprocess.run([sys.executable, "-m", "pytest", "e2e/pods/provision_bench.py", "-q", "-s",
                           "-p", "no:cacheprovider"], cwd=ROOT, env=env)
    if done.returncode or not raw.exists():
        return done.returncode or 1
    rows = json.loads(raw.read_text())["rows"]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    if args.scale_down:
        text = (f"# Provisioned cluster: scale-down 5 -> 3 with a writer, {stamp}\n\n{machine}; medians of "
                f"{args.repeat} run(s)\n\n" + scale_down_table(rows))
        raw.write_text(json.dumps({"when": stamp, "machine": machine, "rows": rows}, indent=2))
        (out / "provision-scale-down.md").write_text(text + "\n")
        print("\n" + text + f"\n\nwritten to {raw} and {out / 'provision-scale-down.md'}")
        return 0
    text = (f"# Provisioned cluster: apply -> Ready, {stamp}\n\n{machine}; medians of {args.repeat} run(s) per size; "
            "floor = plain StatefulSet + hand-driven add_node\n\n" + table(rows))
    raw.write_text(json.dumps({"when": stamp, "machine": machine, "rows": rows}, indent=2))
    (out / "provision.md").write_text(text + "\n")
    print("\n" + text + f"\n\nwritten to {raw} and {out / 'provision.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
