"""Cut a Harper pod's replication from inside the pod's own network namespace: a network fault for tests.

The test bed's node runs the pod; its network namespace is one the test bed made. Four DROP rules there (TCP to and
from port 9933, both directions) stop every replication byte while the operations API (9925) still answers, as when
a member is cut off from its peers but not from the operator. The rules go with `heal()`, or with the pod: a new pod
gets a new namespace. Only the test's own pods are touched: the process is found by its POD_NAME and POD_NAMESPACE,
which the operator gives every Harper container.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPLICATION_PORT = "9933"
RULES = [("INPUT", "--dport"), ("INPUT", "--sport"), ("OUTPUT", "--dport"), ("OUTPUT", "--sport")]


def pod_pid(namespace: str, pod: str) -> int:
    """A process of the pod's Harper container (any shares the pod's network namespace)."""
    wanted = {f"POD_NAME={pod}".encode(), f"POD_NAMESPACE={namespace}".encode()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= environ:
            return int(proc.name)
    raise LookupError(f"no process of pod {namespace}/{pod} on this node")


def _iptables(pid: int, action: str, chain: str, match: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", action, chain, "-p", "tcp", match,
                           REPLICATION_PORT, "-j", "DROP"], capture_output=True, text=True, timeout=30)


class ReplicationCut:
    """with ReplicationCut(namespace, pod): ... the pod exchanges no replication traffic with anyone."""

    def __init__(self, namespace: str, pod: str):
        self.namespace, self.pod = namespace, pod
        self.pid: int | None = None

    def cut(self) -> None:
        self.pid = pod_pid(self.namespace, self.pod)
        for chain, match in RULES:
            done = _iptables(self.pid, "-I", chain, match)
            if done.returncode:
                raise RuntimeError(f"iptables in {self.pod}'s namespace: {done.stderr.strip()}")

    def heal(self) -> None:
        if self.pid is None:
            return
        for chain, match in RULES:
            _iptables(self.pid, "-D", chain, match)  # gone already when the pod is: nothing to undo
        self.pid = None

    def __enter__(self) -> "ReplicationCut":
        self.cut()
        return self

    def __exit__(self, *exc) -> None:
        self.heal()
