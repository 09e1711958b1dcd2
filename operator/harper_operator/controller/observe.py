"""Read every member at once: cluster_status, the replication endpoint probe and the routes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from ..harper.errors import (AuthenticationError, AuthorizationError, HarperError, PermanentHarperError)
from ..harper.models import ClusterStatus
from ..harper.probe import ProbeResult, probe_replication
from ..reconcile.topology import ObservedCluster, ObservedNode, PeerRecord, Route, Subscription
from .clients import ClientPool
from .members import Member, Membership, Problem


@dataclass(frozen=True)
class Sight:
    """What one member showed us this round."""

    member: Member
    status: ClusterStatus | None = None
    probe: ProbeResult | None = None
    routes: tuple[Route, ...] = ()
    routes_on_disk: tuple[Route, ...] | None = None
    problem: Problem | None = None


def _problem(error: HarperError, member: Member) -> Problem:
    url = member.spec.operations_url
    if isinstance(error, AuthenticationError):
        return Problem("WrongCredentials", f"Harper at {url} refused the credentials: fix the username/password "
                                           "in the Secret (the operator rereads it on the next reconcile)")
    if isinstance(error, AuthorizationError):
        return Problem("NotSuperUser", f"the user in the Secret is not a super_user on {url}: clustering "
                                       "operations need one")
    if isinstance(error, PermanentHarperError):
        return Problem("HarperRejected", f"{url} answered {error.operation}: {error}")
    return Problem("Unreachable", f"cannot reach the operations API at {url}: {error}", permanent=False)


def _routes(raw) -> tuple[Route, ...]:
    return tuple(sorted(Route.from_harper(r.url) for r in raw))


async def look(member: Member, pool: ClientPool) -> Sight:
    client = pool.client(member.access)
    try:
        status, probe = await asyncio.gather(
            client.cluster_status(),
            probe_replication(member.spec.url, verify_tls=member.access.verify_tls, ca_pem=member.access.ca_pem))
    except HarperError as e:
        return Sight(member, problem=_problem(e, member))
    sight = Sight(member, status=status, probe=probe)
    if status.node_name and status.node_name != member.hostname:
        return replace(sight, problem=Problem(
            "HostnameMismatch", f"Harper at {member.spec.operations_url} calls itself {status.node_name!r}, "
                                f"not {member.hostname!r}: set spec.hostname to its replication.hostname, or fix "
                                "operationsUrl"))
    if not probe.reachable:
        return replace(sight, problem=Problem(
            "ReplicationUnreachable", f"nothing answers replication at {member.spec.url} ({probe.error}): fix "
                                      "spec.url or the node's replication port", permanent=False))
    try:
        # 4.7 connects the routes it loaded at start-up; the file (what the next start uses) may differ.
        loaded, on_disk = await asyncio.gather(client.loaded_routes(), client.cluster_get_routes())
    except HarperError as e:
        return replace(sight, problem=_problem(e, member))
    return replace(sight, routes=_routes(loaded), routes_on_disk=_routes(on_disk))


async def look_all(membership: Membership, pool: ClientPool) -> dict[str, Sight]:
    """hostname -> Sight for every member that has access; held members are not asked."""
    members = [m for m in membership.members if m.managed]
    sights = await asyncio.gather(*(look(m, pool) for m in members))
    return {s.member.hostname: s for s in sights}


def _peer(connection) -> PeerRecord:
    replicates = connection.replicates is True or isinstance(connection.replicates, dict)
    subs = None if replicates else connection.subscriptions  # Harper ignores the list when replicating fully
    return PeerRecord(
        name=connection.name, url=connection.url, shard=connection.shard,
        subscriptions=None if not subs else tuple(
            Subscription(s.database, s.table, bool(s.subscribe), bool(s.publish)) for s in subs),
        replicates=replicates, connected=connection.connected,
        revoked_certificates=tuple(connection.revoked_certificates or ()))


def observed(sights: dict[str, Sight]) -> ObservedCluster:
    nodes = {}
    for name, sight in sights.items():
        if sight.status is None or sight.problem is not None:
            nodes[name] = ObservedNode(name=name, reachable=False, peers={}, shard=None)
            continue
        nodes[name] = ObservedNode(
            name=name, reachable=True, peers={c.name: _peer(c) for c in sight.status.connections if c.name},
            shard=sight.status.shard, routes=sight.routes, routes_on_disk=sight.routes_on_disk)
    return ObservedCluster(nodes=nodes)
