"""`harper-operator plan` and `status`: what the operator would do, and what the mesh looks like, read-only."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from . import kube
from .api import HarperClusterSpec
from .controller.clients import ClientPool
from .controller.loop import intent, read_membership
from .controller.members import Membership
from .controller.observe import Sight, look_all


async def _read(cluster: str, namespace: str) -> tuple[dict, HarperClusterSpec, Membership, dict[str, Sight]]:
    body = await kube.get_object("harperclusters", namespace, cluster)
    if body is None:
        raise SystemExit(f"HarperCluster {namespace}/{cluster} not found")
    spec = HarperClusterSpec.model_validate(body.get("spec") or {})
    nodes = [n for n in await kube.list_objects("harpernodes", namespace)
             if (n.get("spec", {}).get("clusterRef") or {}).get("name") == cluster]
    membership = await read_membership(body, spec, nodes)
    pool = ClientPool()
    try:
        sights = await look_all(membership, pool)
    finally:
        await pool.close()
    return body, spec, membership, sights


def _held(membership: Membership, sights: dict[str, Sight], out: TextIO) -> None:
    for m in membership.members:
        problem = m.problem or (sights[m.hostname].problem if m.hostname in sights else None)
        if problem:
            out.write(f"# {m.resource} ({m.hostname}) is left alone: {problem.reason}: {problem.message}\n")


def print_plan(cluster: str, *, namespace: str, kubeconfig: str | None, out: TextIO = sys.stdout) -> int:
    """A dry run of one reconcile: the operations, one per line, or 'nothing to do'. Writes nothing."""
    kube.configure(kubeconfig)
    body, spec, membership, sights = asyncio.run(_read(cluster, namespace))
    now = intent(membership, sights, body, spec)
    _held(membership, sights, out)
    for name, problem in sorted(now.diagnosed.items()):
        out.write(f"# {name} is left alone: {problem.reason}: {problem.message}\n")
    for op in now.operations:
        out.write(op.describe() + "\n")
    for name, why in sorted(now.pending_restart.items()):
        out.write(f"# {name}: waits for a restart ({why})\n")
    if not now.operations:
        out.write("nothing to do\n")
    return 0


def _fmt(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def print_status(cluster: str, *, namespace: str, kubeconfig: str | None, out: TextIO = sys.stdout) -> int:
    """The mesh as a table: which node replicates with which, per database, with latency and lag."""
    kube.configure(kubeconfig)
    _, _, membership, sights = asyncio.run(_read(cluster, namespace))
    rows = [("NODE", "PEER", "DATABASE", "CONNECTED", "LATENCY", "LAG", "BACKPRESSURE")]
    for m in membership.members:
        sight = sights.get(m.hostname)
        if sight is None or sight.status is None:
            problem = m.problem or (sight.problem if sight else None)
            rows.append((m.hostname, "-", "-", "unknown", "-", "-", problem.reason if problem else "-"))
            continue
        if not sight.status.connections:
            rows.append((m.hostname, "-", "-", "no peers", "-", "-", "-"))
        for c in sorted(sight.status.connections, key=lambda c: c.name or ""):
            for s in c.database_sockets or [None]:
                rows.append((m.hostname, c.name or "?", s.database if s else "-",
                             "yes" if s and s.connected else "no", _fmt(s.latency if s else None, "ms"),
                             _fmt(s.lag_ms if s else None, "ms"), _fmt(s.back_pressure_percent if s else None, "%")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return 0
