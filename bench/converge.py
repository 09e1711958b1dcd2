"""Time from `kubectl apply` to Ready for 3, 4 and 5 nodes, next to a plain script making the same add_node calls.

Runs on the real test bed (kube-apiserver + etcd + real Harper nodes); prints a table and writes
bench/results/converge.json. Numbers, not a pass/fail: the machine is shared and noisy.

    .venv/bin/python bench/converge.py [--repeat 3] [--fresh]

Two Harper nodes that meet for the first time are slow: the first add_node between them signs a certificate (seen:
1.06 s of calls and a 3.2 s mesh, against 0.15 s and 0.7 s afterwards). Both sides of a comparison must meet the
same case, so there are two modes:
- by default the nodes have met: each size first runs the plain script once, unmeasured (whichever ran first used
  to pay the first meeting alone). This is a cluster applied again over the same Harper nodes.
- `--fresh` reinstalls the nodes before each measured run, the plain script's and the operator's (about 13 s each
  time): nodes that never met, which is what a user's first `kubectl apply` of a new cluster meets, and what the
  issue's own floor (3.8 s for 4 nodes) was measured on.
Ready is taken from a watch started before the apply, not from polling `kubectl get` (a process start and a round
trip late).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e.operator_process import OperatorProcess  # noqa: E402
from e2e.scenarios import kit  # noqa: E402
from e2e.testbed.sandbox import start_testbed  # noqa: E402

WRITES = "harper_operator_harper_writes_total"


def kubectl(bed, *args, input=None):
    return subprocess.run([bed.tools.kubectl, "--kubeconfig", bed.control_plane.kubeconfig, *args], input=input,
                          check=True, capture_output=True, text=True).stdout


def meshed(nodes) -> bool:
    return kit.mesh_is(nodes, kit.full_mesh(nodes))()


def plain_script(nodes) -> dict:
    """What a Helm hook does: n-1 add_node calls on the first node, then poll cluster_status."""
    seed, started = nodes[0], time.monotonic()
    for peer in nodes[1:]:
        kit.ok(seed, {"operation": "add_node", "hostname": peer.name, "url": peer.replication_url,
                      "verify_tls": False, "authorization": {"username": peer.username, "password": peer.password}})
    calls = time.monotonic() - started
    kit.wait_until("plain mesh", lambda: meshed(nodes), timeout=120, interval=0.1)
    return {"calls_s": calls, "mesh_s": time.monotonic() - started, "writes": len(nodes) - 1}


def ready_for_a_run(bed, nodes, fresh: bool) -> None:
    """No replication peers and no test data; with `fresh`, brand-new nodes that never met (see above)."""
    if fresh:
        bed.fleet.reinstall(nodes)
    else:
        bed.fleet.reset()


def _writes_between(log: Path, start: float, end: float) -> list[tuple[float, float]]:
    """(sent, answered) wall-clock times of the operator's `Harper write: op (outcome, 0.123s)` log lines answered
    within [start, end]: the line is logged at the answer, with the call's own duration."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if "Harper write:" not in line:
            continue
        try:
            at = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            took = float(line.rsplit(", ", 1)[1].rstrip(")s"))
        except (ValueError, IndexError):
            continue
        if start <= at <= end:
            out.append((at - took, at))
    return out


class ReadyWatch:
    """`kubectl get -w` on the bench's HarperCluster, started before the apply: the moment a watch event first shows
    Ready with every node ready, as Argo CD or `kubectl wait` would learn it."""

    def __init__(self, bed, namespace: str, size: int):
        jsonpath = '{.status.readyNodes} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}'
        self.process = subprocess.Popen(
            [bed.tools.kubectl, "--kubeconfig", bed.control_plane.kubeconfig, "-n", namespace, "get", "hc", "-w",
             "--field-selector", "metadata.name=bench", "-o", f"jsonpath={jsonpath}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.wanted, self.at = f"{size}/{size} True", None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.strip() == self.wanted:
                self.at = time.monotonic()
                return

    def wait(self, timeout: float) -> float:
        self.reader.join(timeout)
        self.process.kill()
        self.process.wait()
        if self.at is None:
            raise TimeoutError(f"the HarperCluster was not Ready with {self.wanted!r} within {timeout} s")
        return self.at


def operator_run(bed, operator, nodes, namespace) -> dict:
    first = nodes[0]
    objs = [kit.secret("harper-admin", first.username, first.password), kit.cluster("bench"),
            *(kit.node(f"bench-{i}", "bench", n) for i, n in enumerate(nodes))]
    writes = operator.metric(WRITES)
    watch = ReadyWatch(bed, namespace, len(nodes))
    time.sleep(0.5)  # the watch's own start (a kubectl process) is not part of the measure
    wall = time.time()
    started = time.monotonic()
    kubectl(bed, "-n", namespace, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                         "items": objs}))
    applied = time.monotonic()
    # Harper is not read while the operator works: Harper 4.7.29 leaves all but one of the cluster_status requests
    # a node gets at once unanswered (docs/harper-semantics.md section 10), and a bench that polled the nodes beside
    # the operator saw joins stall for 30 to 60 s that no run without its polling showed.
    took = watch.wait(timeout=300) - started
    assert meshed(nodes), "Ready but not meshed"
    result = {"apply_to_ready_s": took, "kubectl_apply_s": applied - started,
              "writes": operator.metric(WRITES) - writes, "minimum_writes": len(nodes) - 1}
    stamps = _writes_between(operator.log_path, wall, wall + took)
    if stamps:  # where the time goes: until the first write is sent, the writes, after the last one's answer
        result.update(before_first_write_s=round(stamps[0][0] - wall, 2),
                      writing_s=round(stamps[-1][1] - stamps[0][0], 2),
                      after_last_write_s=round(wall + took - stamps[-1][1], 2))
    kubectl(bed, "-n", namespace, "delete", "hc,hn", "--all", "--wait=true", "--timeout=120s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sizes", default="3,4,5")
    parser.add_argument("--log-level", default="INFO", help="the operator's (DEBUG logs every Harper call)")
    parser.add_argument("--fresh", action="store_true",
                        help="reinstall the nodes before each measured run: nodes that never met (see above)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    out = ROOT / "bench" / "results" / ("converge-fresh.json" if args.fresh else "converge.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The operator's log is kept beside the figures: the breakdown of a slow run is read from it.
    log = out.with_name(out.stem + "-operator.log")
    log.unlink(missing_ok=True)
    with start_testbed(nodes=max(sizes)) as bed:
        kubectl(bed, "apply", "-f", str(ROOT / "crds"))
        kubectl(bed, "wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")
        operator = OperatorProcess(bed.control_plane.kubeconfig, log,
                                   extra=("--log-level", args.log_level)).start()
        try:
            for size in sizes:
                nodes = bed.fleet.nodes[:size]
                if not args.fresh:
                    bed.fleet.reset()
                    plain_script(nodes)  # the first meeting of these nodes: not measured (see above)
                for i in range(args.repeat):
                    ready_for_a_run(bed, nodes, args.fresh)
                    plain = plain_script(nodes)
                    ready_for_a_run(bed, nodes, args.fresh)
                    ns = f"bench-{size}-{i}"
                    kubectl(bed, "create", "namespace", ns)
                    ours = operator_run(bed, operator, nodes, ns)
                    results.append({"nodes": size, "run": i, "fresh": args.fresh, "plain": plain, "operator": ours})
                    print(f"{size} nodes run {i}: operator {ours['apply_to_ready_s']:.2f}s (kubectl apply "
                          f"{ours['kubectl_apply_s']:.2f}s; {ours['writes']:.0f} "
                          f"writes; before the first {ours.get('before_first_write_s')}s, after the last "
                          f"{ours.get('after_last_write_s')}s), plain calls {plain['calls_s']:.2f}s, plain mesh "
                          f"{plain['mesh_s']:.2f}s, ratio {ours['apply_to_ready_s'] / plain['mesh_s']:.2f}x",
                          flush=True)
        finally:
            operator.stop()
    print("\nnodes  apply->Ready (median)  of it kubectl apply  plain add_node calls  plain calls->mesh  writes (min)"
          "  ratio")
    for size in sizes:
        rows = [r for r in results if r["nodes"] == size]
        med = lambda f: statistics.median(f(r) for r in rows)  # noqa: E731
        print(f"{size:>5}  {med(lambda r: r['operator']['apply_to_ready_s']):>20.2f}s"
              f"  {med(lambda r: r['operator']['kubectl_apply_s']):>18.2f}s"
              f"  {med(lambda r: r['plain']['calls_s']):>19.2f}s  {med(lambda r: r['plain']['mesh_s']):>16.2f}s"
              f"  {med(lambda r: r['operator']['writes']):>6.0f} ({size - 1})"
              f"  {med(lambda r: r['operator']['apply_to_ready_s'] / r['plain']['mesh_s']):>5.2f}x")
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
