"""Carry out planned operations through the Harper client, reporting each: the one core -> wire translation.

A failure stops only what depends on it: later operations that involve the node the failed one was about
(its target, the node it removes, the node it restarts) are skipped this round, and every other operation goes
on, so one node a seed rejects does not keep the rest of the cluster from converging. A restart is skipped only
after a failed call on that node itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from ..harper import models as wire
from ..harper.errors import HarperError, TransientHarperError, UnknownNodeError
from ..reconcile.plan import AddNode, DeleteRoutes, Operation, RemoveNode, Restart, SetRoutes, UpdateNode
from ..reconcile.topology import DesiredNode, Route, Subscription
from .clients import ClientPool
from .members import Membership

Report = Callable[[Operation, HarperError | None], Awaitable[None]]


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    error: HarperError | None = None
    skipped: bool = False  # not tried: an earlier failure made it moot this round


def subscription_to_wire(s: Subscription) -> wire.Subscription:
    return wire.Subscription(database=s.database, table=s.table, subscribe=s.subscribe, publish=s.publish)


def route_to_wire(r: Route) -> wire.Route:
    return wire.Route(hostname=r.hostname, port=r.port)


def node_request(target: DesiredNode, membership: Membership) -> wire.NodeRequest:
    access = membership.managed_member(target.name).access
    return wire.NodeRequest(
        hostname=target.name, url=target.url, verify_tls=access.verify_tls,
        # The target signs our certificate on the first join; it wants its own super_user for that. Both ends
        # are managed members, so both passed the cluster's allowedHosts.
        authorization=wire.Authorization(username=access.username, password=access.password),
        retain_authorization=target.retain_authorization or None,
        revoked_certificates=list(target.revoked_certificates) or None,
        shard=target.shard, start_time=target.start_time,
        subscriptions=None if target.subscriptions is None else [subscription_to_wire(s) for s in target.subscriptions])


def subject(op: Operation) -> str:
    """The node an operation is about: what a failure of it puts in doubt."""
    if isinstance(op, (AddNode, UpdateNode)):
        return op.target.name
    if isinstance(op, RemoveNode):
        return op.hostname
    return op.on


async def _one(op: Operation, membership: Membership, pool: ClientPool) -> None:
    client = pool.client(membership.managed_member(op.on).access)
    if isinstance(op, AddNode):
        await client.add_node(node_request(op.target, membership))
    elif isinstance(op, UpdateNode):
        await client.update_node(node_request(op.target, membership))
    elif isinstance(op, RemoveNode):
        try:
            await client.remove_node(op.hostname)
        except UnknownNodeError:
            pass  # gossip already spread an earlier removal: the goal holds
    elif isinstance(op, SetRoutes):
        await client.cluster_set_routes([route_to_wire(r) for r in op.routes])
    elif isinstance(op, DeleteRoutes):
        await client.cluster_delete_routes([route_to_wire(r) for r in op.routes])
    elif isinstance(op, Restart):
        await client.restart()
    else:  # pragma: no cover - a new Operation type must be wired here
        raise TypeError(f"no executor for {op!r}")


def _involved(op: Operation) -> set[str]:
    return {op.on, subject(op)}


async def execute(plan: list[Operation], membership: Membership, pool: ClientPool, report: Report,
                  stopped: Callable[[], bool] = lambda: False) -> list[Outcome]:
    """Run the plan in order; after a failure skip only what involves the node it was about."""
    outcomes: list[Outcome] = []
    doubtful: set[str] = set()
    failed_on: set[str] = set()  # nodes a failed call went to (or that did not answer)
    for op in plan:
        if stopped():
            break  # the operator is stopping or the cluster is being deleted: start nothing new
        # A restart is moot after a failed write on that node (a route it did not take), not after another
        # node's add_node failed against it: that restart may be the cure (a wiped peer's old CA, section 9).
        if (op.on in failed_on) if isinstance(op, Restart) else bool(_involved(op) & doubtful):
            outcomes.append(Outcome(op, skipped=True))
            continue
        try:
            try:
                await _one(op, membership, pool)
            except HarperError:
                raise
            except Exception as e:  # noqa: BLE001 - a bug or odd value for one node must not end the round
                raise HarperError(type(op).__name__, None, f"{type(e).__name__}: {str(e)[:300]}") from None
        except HarperError as e:
            await report(op, e)
            outcomes.append(Outcome(op, e))
            doubtful.add(subject(op))
            if subject(op) == op.on:
                failed_on.add(op.on)
            if isinstance(e, TransientHarperError) and getattr(e, "peer", None) is None:
                doubtful.add(op.on)  # the node we called did not answer: nothing else goes to it this round
                failed_on.add(op.on)
            continue
        await report(op, None)
        outcomes.append(Outcome(op))
    return outcomes
