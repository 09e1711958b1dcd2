"""The faults. Each injects itself through the world's primitives and returns what it did, for the row.

A fault returns once it is over (the process back, the rule gone, the Secret right again); recovery is
the operator's and Harper's, and the matrix measures it from that moment.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import Protocol

from ..scenarios.kit import wait_until
from ..testbed.harper import REPLICATION_PORT
from . import truth


class World(Protocol):
    """What a fault needs from a test bed (see lifecycle.LoopbackWorld and the node layer's world)."""

    interval: int

    def member_names(self) -> list[str]: ...


class Fault(Protocol):
    name: str

    def inject(self, world, rng: random.Random) -> str: ...


class NoFault:
    """The baseline: the same step with nothing injected, for the writes a step needs at the least."""
    name = "none"

    def inject(self, world, rng):
        return "nothing"


class OperatorKill:
    name = "operator-kill"

    def inject(self, world, rng):
        down = rng.uniform(0, 5)
        world.operator.kill()
        time.sleep(down)
        world.operator.start()
        return f"SIGKILL, restarted after {down:.1f}s"


class HarperKill:
    name = "harper-kill"

    def inject(self, world, rng):
        node = world.harper(rng.choice(world.member_names()))
        down = rng.uniform(5, 20)
        node.kill()
        time.sleep(down)
        node.start()
        return f"SIGKILL {node.name}, down {down:.1f}s"


class HarperRestartOp:
    """Harper's own restart operation, as someone with the admin's credentials would call it."""
    name = "harper-restart-op"

    def inject(self, world, rng):
        node = world.harper(rng.choice(world.member_names()))
        before = node.restarts
        node.ok({"operation": "restart"})
        # Over when Harper has really gone and come back (it answers the call first, then exits).
        started = time.monotonic()
        wait_until(f"{node.name} restarted", lambda: node.restarts > before and node.healthy(), timeout=120)
        return f"restart operation on {node.name}, back after {time.monotonic() - started:.1f}s"


class ControlPlaneRestart:
    """kube-apiserver or etcd stopped for a while and started again on the same ports (etcd keeps its data)."""

    def __init__(self, piece: str):
        self.piece, self.name = piece, f"{piece}-restart"

    def inject(self, world, rng):
        down = rng.uniform(2, 10)
        getattr(world.control_plane, f"restart_{self.piece}")(down)
        return f"{self.piece} stopped for {down:.1f}s"


class SecretRotate:
    """A password rotation done right: Harper's user first, then the Secret."""
    name = "secret-rotate"

    def inject(self, world, rng):
        gap = rng.uniform(0, 3)
        world.fleet.change_password(secrets.token_urlsafe(16))
        time.sleep(gap)
        world.write_secret(world.fleet.password)
        return f"Harper's password changed, Secret {gap:.1f}s later"


class SecretWrong:
    """A wrong password in the Secret, then the right one back. While it is wrong the cluster must say so
    (WrongCredentials) and write nothing; `world.during` records what the status said."""
    name = "secret-wrong"

    def inject(self, world, rng):
        world.write_secret("wrong-" + secrets.token_urlsafe(8))
        said = world.wait_for_reason("WrongCredentials", timeout=3 * world.interval + 20)
        time.sleep(rng.uniform(0, world.interval))
        world.write_secret(world.fleet.password)
        cluster = world.get("harpercluster", world.cluster)  # a cluster being deleted says nothing more
        gone = cluster is None or bool(cluster["metadata"].get("deletionTimestamp"))
        world.during.append(None if said or gone else
                            "the cluster never said WrongCredentials while the Secret was wrong")
        return f"wrong password until the status said so ({'seen' if said else 'NOT seen'}), then back"


class ReplicationCut:
    """A member's replication port unreachable while its operations API answers: every packet to or from that
    port is dropped (peers cannot reach it; its own connections out to the peers' ports still can)."""
    name = "replication-cut"

    def inject(self, world, rng):
        from ..testbed import netcut  # iptables: imported only by the fault that needs it
        node = world.harper(rng.choice(world.member_names()))
        down = rng.uniform(10, 25)
        noticed = False
        with netcut.Cut(node.ip, REPLICATION_PORT):
            deadline = time.monotonic() + down
            while time.monotonic() < deadline:
                cluster, _ = world.statuses()
                noticed = noticed or truth.condition(cluster, "Ready").get("status") == "False"
                time.sleep(1)
        return f"{node.name}:{REPLICATION_PORT} cut for {down:.1f}s (status {'noticed' if noticed else 'still Ready'})"


class HarperPodDelete:
    name = "harper-pod-delete"

    def inject(self, world, rng):
        return world.delete_harper_pod(rng)


class KubeletRestart:
    name = "kubelet-restart"

    def inject(self, world, rng):
        return world.restart_kubelet(rng)


class OperatorPodDelete:
    name = "operator-pod-delete"

    def inject(self, world, rng):
        return world.delete_operator_pod()


LOOPBACK = (OperatorKill(), HarperKill(), HarperRestartOp(), ControlPlaneRestart("apiserver"),
            ControlPlaneRestart("etcd"), SecretRotate(),
            SecretWrong(), ReplicationCut())
NODE = (HarperPodDelete(), KubeletRestart(), OperatorPodDelete())
BY_NAME = {f.name: f for f in (NoFault(), *LOOPBACK, *NODE)}
