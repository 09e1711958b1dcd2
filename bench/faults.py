"""The fault matrix: a cluster's whole lifecycle on the real test bed, a fault at a seeded random moment of each step.

Real kube-apiserver and etcd, five real Harper nodes, the operator as a process. Each fault runs `--rounds` times
(5 by default), after one lifecycle without faults (the baseline for "writes beyond the minimum"). The seed is
printed first; `--seed N` replays a run (the moments and choices, not the machine's timing).

    .venv/bin/python bench/faults.py [--rounds 5] [--seed N] [--faults operator-kill,harper-kill,...]

Writes bench/results/faults.json (every row, with the operator's log for a row that was not clean) and
bench/results/faults.md (the table). The node layer's faults (pod deletion, kubelet restart) run in
e2e/pods/test_faults_on_node.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e.faults import matrix  # noqa: E402
from e2e.faults.faults import LOOPBACK  # noqa: E402
from e2e.faults.lifecycle import STEPS, LoopbackWorld  # noqa: E402
from e2e.operator_process import OperatorProcess  # noqa: E402
from e2e.scenarios.kit import Kube  # noqa: E402
from e2e.testbed.sandbox import start_testbed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--faults", default=",".join(f.name for f in LOOPBACK))
    parser.add_argument("--steps", default=",".join(s.name for s in STEPS),
                        help="the lifecycle's steps to run, in order (create must stay first)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--bed", choices=("loopback", "node"), default="loopback",
                        help="node: the node layer's faults (pod deletion, kubelet restart, operator pod deletion) "
                             "on the real one-node Kubernetes (root), through e2e/pods/test_faults_on_node.py")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    if args.bed == "node":
        return on_node(args.rounds, seed)
    print(f"seed {seed} (replay: bench/faults.py --seed {seed} --rounds {args.rounds} --faults {args.faults} "
          f"--steps {args.steps})", flush=True)
    rng = random.Random(seed)
    steps = [s for s in STEPS if s.name in args.steps.split(",")]
    plan = matrix.schedule(args.faults.split(","), args.rounds, len(steps), rng, baseline=not args.no_baseline)
    started = time.monotonic()
    rows = []
    with start_testbed(nodes=5) as bed, tempfile.TemporaryDirectory() as tmp:
        kubectl = [str(bed.tools.kubectl), "--kubeconfig", bed.control_plane.kubeconfig]
        subprocess.run([*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s"],
                       check=True, capture_output=True)
        ns = f"faults-{uuid.uuid4().hex[:6]}"
        subprocess.run([*kubectl, "create", "namespace", ns], check=True, capture_output=True)
        operator = OperatorProcess(bed.control_plane.kubeconfig, Path(tmp) / "operator.log").start()
        world = LoopbackWorld(Kube(str(bed.tools.kubectl), bed.control_plane.kubeconfig, ns), operator, bed.fleet,
                              bed.control_plane)

        def report(row: matrix.Row) -> None:
            rows.append(row)
            flag = "ok " if row.clean else "BAD"
            print(f"{flag} lifecycle {row.lifecycle} {row.step:<8} {row.fault:<18} {row.did[:60]:<60} "
                  f"ready {row.to_ready_s}s, {len(row.writes)} writes"
                  + ("" if row.clean else f"; {row.ghosts or ''} {row.missing or ''} {row.lost or ''} "
                                          f"{row.wrong_statuses or ''} {[n for n in row.notes if len(n) < 300]}"),
                  flush=True)
        try:
            matrix.run(world, plan, steps, rng, report)
        finally:
            operator.stop()
    summary = matrix.summarise(rows)
    took = time.monotonic() - started
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores"
    text = (f"# Fault matrix, {stamp}\n\nseed {seed}, {args.rounds} rounds per fault, {len(rows)} steps, "
            f"{took / 60:.1f} min, {machine}\n\n{matrix.table(summary)}")
    print("\n" + text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps({"seed": seed, "rounds": args.rounds, "when": stamp,
                                                 "machine": machine, "summary": summary,
                                                 "rows": [matrix.as_dict(r) for r in rows]}, indent=2))
    (out / "faults.md").write_text(text)
    print(f"written to {out / 'faults.json'} and {out / 'faults.md'}")
    return 0 if all(r.clean for r in rows) else 1


def on_node(rounds: int, seed: int) -> int:
    """The node layer needs the pods fixtures (registry, images, node, chart): the e2e module runs the matrix with
    more rounds and writes its rows here."""
    out = ROOT / "bench" / "results" / "faults-node.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FAULTS_ROUNDS": str(rounds), "FAULTS_SEED": str(seed), "FAULTS_RESULTS": str(out)}
    done = subprocess.run([sys.executable, "-m", "pytest", "e2e/pods/test_faults_on_node.py", "-q", "-s",
                           "-p", "no:cacheprovider"], cwd=ROOT, env=env)
    if out.exists():
        text = matrix.table(json.loads(out.read_text())["summary"])
        (out.with_suffix(".md")).write_text(f"# Node-layer fault matrix, seed {seed}, {rounds} rounds\n\n{text}")
        print(f"\n{text}\nwritten to {out}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
