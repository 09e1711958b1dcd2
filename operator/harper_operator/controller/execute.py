"""Carry out planned operations through the Harper client, one at a time, reporting each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from ..harper.errors import HarperError, UnknownNodeError
from ..harper.models import Authorization, NodeRequest
from ..reconcile.plan import (AddNode, ConfigureCluster, DeleteRoutes, Operation, RemoveNode, Restart, SetRoutes,
                              UpdateNode)
from ..reconcile.topology import DesiredNode
from .clients import ClientPool
from .members import Membership

Report = Callable[[Operation, HarperError | None], Awaitable[None]]


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    error: HarperError | None = None


def _request(target: DesiredNode, membership: Membership) -> NodeRequest:
    member = next(m for m in membership.members if m.hostname == target.name)
    access = member.access
    return NodeRequest(
        hostname=target.name, url=target.url, verify_tls=access.verify_tls,
        # The target signs our certificate on the first join; it wants its own super_user for that.
        authorization=Authorization(username=access.username, password=access.password),
        retain_authorization=target.retain_authorization or None,
        revoked_certificates=list(target.revoked_certificates) or None,
        shard=target.shard, start_time=target.start_time,
        subscriptions=None if target.subscriptions is None else [
            {"database": s.database, "table": s.table, "subscribe": s.subscribe, "publish": s.publish}
            for s in target.subscriptions])


async def _one(op: Operation, membership: Membership, pool: ClientPool) -> None:
    on = next(m for m in membership.members if m.hostname == op.on)
    client = pool.client(on.access)
    if isinstance(op, AddNode):
        await client.add_node(_request(op.target, membership))
    elif isinstance(op, UpdateNode):
        await client.update_node(_request(op.target, membership))
    elif isinstance(op, RemoveNode):
        try:
            await client.remove_node(op.hostname)
        except UnknownNodeError:
            pass  # gossip already spread an earlier removal: the goal holds
    elif isinstance(op, ConfigureCluster):
        await client.configure_cluster([_request(t, membership) for t in op.targets])
    elif isinstance(op, SetRoutes):
        await client.cluster_set_routes([r.to_harper() for r in op.routes])
    elif isinstance(op, DeleteRoutes):
        await client.cluster_delete_routes([r.to_harper() for r in op.routes])
    elif isinstance(op, Restart):
        await client.restart()
    else:  # pragma: no cover - a new Operation type must be wired here
        raise TypeError(f"no executor for {op!r}")


async def execute(plan: list[Operation], membership: Membership, pool: ClientPool, report: Report) -> list[Outcome]:
    """Run the plan in order; stop at the first failure, since later steps assume earlier ones held."""
    outcomes = []
    for op in plan:
        try:
            await _one(op, membership, pool)
        except HarperError as e:
            await report(op, e)
            outcomes.append(Outcome(op, e))
            break
        await report(op, None)
        outcomes.append(Outcome(op))
    return outcomes
