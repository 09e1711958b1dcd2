"""How far one operator process goes: N HarperClusters x M HarperNodes against the Harper SIMULATOR.

Runs the real kube-apiserver and etcd of the test bed and the operator as a process (`harper-operator run`); the
Harper side is e2e/simulator (one process answering the clustering operations for every node from the project's
model of Harper: a simulator, never a stand-in for Harper in the e2e scenarios). For each size, on a fresh
control plane:

* apply -> all Ready: from the first object sent to every HarperCluster Ready with M/M nodes;
* RSS of the operator (peak while converging, and at the end of the idle window);
* at steady state, over an idle window of whole reconcile intervals: the operator's CPU seconds per minute, the
  Harper calls per minute (the operator's own counter and the simulator's), and the Kubernetes API writes per
  minute as the kube-apiserver counts them (apiserver_request_total, every mutating verb, every client; the
  control plane's own lease renewals, which happen with or without the operator, are the baseline and are
  reported apart).

Each size runs once per `--rounds-at-once` value (the operator's --max-concurrent-rounds): the default 32 and, as
the baseline in the same run, 0 (no limit). Numbers, not a pass/fail: the goals (issue 12) are printed next to them.

    .venv/bin/python bench/scale.py [--sizes 10x4,50x4,250x4] [--interval 60] [--idle 120] [--rounds-at-once 32,0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e.operator_process import OperatorProcess  # noqa: E402
from e2e.scenarios import kit  # noqa: E402
from e2e.simulator.process import SimulatorProcess  # noqa: E402
from e2e.testbed.sandbox import start_testbed  # noqa: E402

NAMESPACE = "scale"
PASSWORD = "simulated-admin-password"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}
CALLS = "harper_operator_harper_calls_total"


def kubectl(bed, *args, input=None, check=True) -> str:
    return subprocess.run([bed.tools.kubectl, "--kubeconfig", bed.control_plane.kubeconfig, *args], input=input,
                          check=check, capture_output=True, text=True, timeout=600).stdout


def api_writes(bed) -> dict[str, float]:
    """Mutating requests the kube-apiserver has served so far, by resource (its own counter)."""
    out: dict[str, float] = {}
    for line in kubectl(bed, "get", "--raw", "/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        head, value = line.rsplit(" ", 1)
        labels = dict(part.split("=", 1) for part in head[head.index("{") + 1:-1].split(",") if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") in WRITE_VERBS:
            key = f"{labels.get('resource', '?')}/{labels.get('subresource', '')}".rstrip("/")
            out[key] = out.get(key, 0.0) + float(value)
    return out


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


class ProcessWatch:
    """RSS (peak and now) and CPU seconds of one process, sampled from /proc every 0.5 s."""

    def __init__(self, pid: int):
        self.pid, self.peak_rss, self._stop = pid, 0, threading.Event()
        self.started, self.peak_at = time.monotonic(), 0.0  # when the peak was seen, from the start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                rss = self.rss()
                if rss > self.peak_rss:
                    self.peak_rss, self.peak_at = rss, time.monotonic() - self.started
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()


def manifests(groups: list[list[dict]], interval: int) -> list[dict]:
    objs: list[dict] = [kit.secret("harper-admin", "admin", PASSWORD)]
    for i, group in enumerate(groups):
        name = f"c{i:04d}"
        objs.append(kit.cluster(name, interval=interval))
        for j, n in enumerate(group):
            objs.append({"apiVersion": kit.GROUP_VERSION, "kind": "HarperNode", "metadata": {"name": f"{name}-{j}"},
                         "spec": {"clusterRef": {"name": name}, "hostname": n["hostname"], "url": n["url"],
                                  "operationsUrl": n["operationsUrl"]}})
    return objs


def ready_count(bed, size: int) -> int:
    items = json.loads(kubectl(bed, "-n", NAMESPACE, "get", "hc", "-o", "json"))["items"]
    return sum(1 for hc in items if kit.condition(hc, "Ready").get("status") == "True"
               and (hc.get("status") or {}).get("readyNodes") == f"{size}/{size}")


def run_size(clusters: int, nodes: int, interval: int, idle: float, log: Path, rounds_at_once: int) -> dict:
    with start_testbed(nodes=0) as bed, SimulatorProcess(clusters, nodes, password=PASSWORD) as sim:
        kubectl(bed, "apply", "-f", str(ROOT / "crds"))
        kubectl(bed, "wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(bed, "create", "namespace", NAMESPACE)
        operator = OperatorProcess(bed.control_plane.kubeconfig, log, namespaces=(NAMESPACE,),
                                   extra=("--max-concurrent-rounds", str(rounds_at_once))).start()
        watch = ProcessWatch(operator.proc.pid)
        try:
            rss_start = watch.rss()
            started = time.monotonic()
            objs = manifests(sim.info["groups"], interval)
            for i in range(0, len(objs), 200):  # kubectl create sends one request per object
                kubectl(bed, "-n", NAMESPACE, "create", "-f", "-",
                        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs[i:i + 200]}))
            applied = time.monotonic() - started
            deadline, ready = started + 900, 0
            while time.monotonic() < deadline:
                ready = ready_count(bed, nodes)
                if ready == clusters:
                    break
                time.sleep(1)
            to_ready = time.monotonic() - started if ready == clusters else None
            peak_converging, rss_ready = watch.peak_rss, watch.rss()
            # Let the last rounds end, then an idle window of whole intervals.
            time.sleep(interval + 5)
            cpu0, calls0, sim0, writes0 = (watch.cpu_seconds(), operator.metric(CALLS), sim.stats()["calls"],
                                           api_writes(bed))
            t0 = time.monotonic()
            time.sleep(idle)
            minutes = (time.monotonic() - t0) / 60
            cpu1, calls1, sim1, writes1 = (watch.cpu_seconds(), operator.metric(CALLS), sim.stats()["calls"],
                                           api_writes(bed))
            idle_writes = diff(writes1, writes0)
            # kube-apiserver renews its own identity lease every 10 s whoever else runs: that is the baseline.
            baseline = {k: v for k, v in idle_writes.items() if k == "leases"}
            others = {k: v for k, v in idle_writes.items() if k != "leases"}
            sim_calls = {k: v - sim0.get(k, 0) for k, v in sim1.items() if v - sim0.get(k, 0)}
            return {
                "clusters": clusters, "nodes_per_cluster": nodes, "harper_nodes": clusters * nodes,
                "rounds_at_once": rounds_at_once,
                "interval_s": interval, "idle_window_s": round(minutes * 60, 1),
                "apply_s": round(applied, 1), "apply_to_all_ready_s": round(to_ready, 1) if to_ready else None,
                "ready_clusters": ready,
                "rss_start_mb": round(rss_start / 2**20, 1), "rss_peak_mb": round(max(peak_converging,
                                                                                      watch.peak_rss) / 2**20, 1),
                "rss_steady_mb": round(watch.rss() / 2**20, 1),
                # When the peak came (seconds from applying; the apply itself took apply_s), and RSS at all Ready.
                "rss_peak_at_s": round(watch.peak_at - (started - watch.started), 1),
                "rss_all_ready_mb": round(rss_ready / 2**20, 1),
                "idle_cpu_s_per_min": round((cpu1 - cpu0) / minutes, 2),
                "idle_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / (minutes * 60), 2),
                "harper_calls_per_min": round((calls1 - calls0) / minutes, 1),
                "harper_calls_per_node_per_interval": round((calls1 - calls0) / minutes / (clusters * nodes)
                                                            * interval / 60, 2),
                "simulator_calls_per_min": {k: round(v / minutes, 1) for k, v in sorted(sim_calls.items())},
                "api_writes_per_min": round(sum(others.values()) / minutes, 2),
                "api_writes_by_resource": others,
                "control_plane_lease_writes_per_min": round(sum(baseline.values()) / minutes, 2),
            }
        finally:
            watch.stop()
            operator.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10x4,50x4,250x4", help="clusters x nodes, comma separated")
    parser.add_argument("--interval", type=int, default=60, help="reconcileIntervalSeconds of every cluster")
    parser.add_argument("--idle", type=float, default=120, help="seconds of steady state measured")
    parser.add_argument("--rounds-at-once", default="32,0",
                        help="the operator's --max-concurrent-rounds, each size run once per value (0: no limit, "
                             "the baseline)")
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    limits = [int(x) for x in args.rounds_at_once.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clusters, nodes in sizes:
            for limit in limits:
                row = run_size(clusters, nodes, args.interval, args.idle,
                               Path(tmp) / f"operator-{clusters}x{nodes}-{limit}.log", limit)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'size':>7}  {'rounds':>6}  {'apply->Ready':>12}  {'RSS peak':>8}  {'RSS idle':>8}  {'idle CPU':>8}  "
          f"{'Harper calls/node/interval':>26}  {'API writes/min':>14}")
    for r in rows:
        ready = f"{r['apply_to_all_ready_s']}s" if r["apply_to_all_ready_s"] else f"{r['ready_clusters']} Ready"
        rounds = r["rounds_at_once"] or "any"
        print(f"{r['clusters']:>4}x{r['nodes_per_cluster']:<2}  {rounds:>6}  {ready:>12}  {r['rss_peak_mb']:>6}MB  "
              f"{r['rss_steady_mb']:>6}MB  {r['idle_cpu_percent_of_core']:>7}%  "
              f"{r['harper_calls_per_node_per_interval']:>26}  {r['api_writes_per_min']:>14}")
    print("goals at 250x4: RSS <= 150 MB, all Ready within 60 s, idle CPU <= 5% of a core, 0 API writes when idle, "
          "<= 1 Harper read per node per interval")
    out = ROOT / "bench" / "results" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
                               f"{len(os.sched_getaffinity(0))} cores", "rows": rows}, indent=2))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
