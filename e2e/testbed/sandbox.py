"""The whole test bed in one place, for pytest fixtures, `make demo` and people.

    python -m e2e.testbed.sandbox [--nodes 3]
    python -m e2e.testbed.sandbox --node        # as root: a real one-node cluster instead

starts the control plane and N Harper nodes, prints how to reach them, and runs until Ctrl-C or
SIGTERM, then stops every process and removes every temp dir. With --node it starts the one-node
Kubernetes layer (e2e/testbed/node.py: control plane, kubelet, containerd, CoreDNS, a local
registry) and undoes every change it made to the host when it stops.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import signal
import sys
import time
from typing import Iterator

from . import proc
from .harper import HarperFleet
from .kube import ControlPlane
from .tools import Tools, ensure_tools


class Testbed:
    """The tools, a control plane and a Harper fleet, each started on demand (start() is a no-op
    for what is already up), concurrently when both are asked for at once."""

    def __init__(self, tools: Tools, nodes: int):
        self.tools, self.nodes = tools, nodes
        self.control_plane: ControlPlane | None = None
        self.fleet: HarperFleet | None = None
        self.start_seconds: dict[str, float] = {}

    def start(self, control_plane: bool = True, fleet: bool = True) -> "Testbed":
        jobs = {}
        if control_plane and self.control_plane is None:
            self.control_plane = ControlPlane(self.tools)
            jobs["control plane"] = self.control_plane.start
        if fleet and self.fleet is None and self.nodes:
            self.fleet = HarperFleet(self.tools.harperdb, self.nodes)
            jobs[f"{self.nodes} Harper nodes"] = self.fleet.start
        # The apiserver takes ~4 s and the Harper nodes ~15-30 s; starting them side by side
        # makes the wait the longer of the two instead of the sum.
        with concurrent.futures.ThreadPoolExecutor(max(len(jobs), 1)) as pool:
            futures = {what: pool.submit(self._timed, what, job) for what, job in jobs.items()}
        for future in futures.values():
            future.result()  # raises the first start-up error
        return self

    def _timed(self, what: str, job) -> None:
        started = time.monotonic()
        job()
        self.start_seconds[what] = time.monotonic() - started

    def stop(self) -> None:
        for part in (self.fleet, self.control_plane):
            if part is not None:
                part.stop()

    def log_tails(self, lines: int = 80) -> list[tuple[str, str]]:
        """(title, text) of the end of every log, for failure reports."""
        out = []
        if self.control_plane is not None and self.control_plane.dir:
            out.append(("kube-apiserver log (tail)", self.control_plane.log_tail(lines)))
        for node in self.fleet.nodes if self.fleet else []:
            out.append((f"Harper {node.name} log (tail)", node.log_tail(lines)))
        return out


@contextlib.contextmanager
def start_testbed(nodes: int = 3) -> Iterator[Testbed]:
    """Build the tools (first time only), start everything, yield the Testbed, stop everything."""
    bed = Testbed(ensure_tools(), nodes)
    try:
        yield bed.start()
    finally:
        bed.stop()


def describe(bed: Testbed) -> str:
    cp = bed.control_plane
    lines = [f"kube-apiserver {cp.version} at {cp.server}", f"kubeconfig: {cp.kubeconfig}",
             f"export KUBECONFIG={cp.kubeconfig}", ""]
    rows = [("NAME", "OPERATIONS URL", "REPLICATION URL", "USERNAME", "PASSWORD FILE")]
    rows += [(n.name, n.operations_url, n.replication_url, n.username, str(n.password_file))
             for n in (bed.fleet.nodes if bed.fleet else [])]  # --nodes 0: the control plane alone
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def describe_node(node) -> str:
    cp = node.control_plane
    return "\n".join([
        f"one-node Kubernetes {cp.version} at {cp.server}: node {node.name}, InternalIP {node.ip}",
        f"kubeconfig: {node.kubeconfig}", f"export KUBECONFIG={node.kubeconfig}", "",
        f"registry: {node.registry.address} (plain HTTP; pods pull {node.registry.address}/NAME:TAG)",
        f"cluster DNS: {node.dns_ip} ({node.cluster_domain}); pods {node.pod_cidr}; Services {node.service_cidr}",
        *(f"image {name}: {ref}" for name, ref in node.images.items()),
        f"logs: {node.dir}/*.log (apiserver: {cp.log_path})",
    ])


def run_node() -> int:
    from .node import start_node  # only this mode needs root and the node's tools

    try:
        with start_node() as node:
            print(describe_node(node), flush=True)
            print(f"\nstarted in {max(node.start_seconds.values()):.1f}s ({node.start_seconds}); "
                  "Ctrl-C stops everything and cleans the host", flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("stopped; everything cleaned up", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="how many Harper nodes (default 3)")
    parser.add_argument("--node", action="store_true",
                        help="a real one-node Kubernetes (kubelet, containerd, CoreDNS, registry) instead of the "
                             "API-only control plane and the Harper processes; needs root")
    args = parser.parse_args(argv)
    proc.interruptible()
    if args.node:
        return run_node()
    try:  # e2e.testbed.proc turns SIGTERM into KeyboardInterrupt, so both unwind the `with`
        with start_testbed(args.nodes) as bed:
            print(describe(bed), flush=True)
            print(f"\nstarted in {max(bed.start_seconds.values()):.1f}s; Ctrl-C stops everything", flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("stopped; everything cleaned up", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
