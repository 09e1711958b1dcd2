"""Status of both resources from one reconcile round: pure, so every branch is tested without I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Mapping

from ..api import HarperClusterStatus, HarperNodeStatus
from ..api.cluster import MemberStatus
from ..api.node import Certificate, PeerStatus, SocketStatus
from ..reconcile.conditions import conditions as make_conditions
from ..reconcile.conditions import hibernated
from ..reconcile.problems import Problem
from .members import Member, Membership
from .observe import Sight

# Harper's error texts can be megabytes; a status or condition message is what a person reads.
MESSAGE_LIMIT = 1000


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _clipped(problem: Problem | None) -> Problem | None:
    return None if problem is None else replace(problem, message=clip(problem.message))


def _full(model) -> dict[str, Any]:
    """Every top-level field, absent ones as null: a merge patch then removes values that no longer hold
    (a node that stops answering must not keep showing its old nodeName and shard)."""
    dumped = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {**{f.alias or name: None for name, f in type(model).model_fields.items()}, **dumped}


def unchanged(status: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    """True when writing `status` (a _full() dict: absent fields as null) would leave `previous` as it is.

    A round that finds nothing new writes nothing: every status write is an event for every watcher (Argo CD, Flux,
    kubectl get -w), and at 1,000 nodes one per node per interval. Conditions keep their lastTransitionTime when
    nothing moved, so a steady cluster computes exactly the status it has."""
    if previous is None:
        return False
    return all(previous.get(k) == v for k, v in status.items())


@dataclass(frozen=True)
class Round:
    """Everything one reconcile learned; the input of every status."""

    membership: Membership
    sights: Mapping[str, Sight]
    pending: int = 0  # operations planned but not (yet) carried out
    failure: Problem | None = None  # a write that failed this round
    paused: bool = False
    pending_restart: tuple[str, ...] = ()
    cluster_problem: Problem | None = None
    diagnosed: Mapping[str, Problem] = field(default_factory=dict)  # the planner's reasons to leave a node alone
    pod_not_ready: frozenset[str] = frozenset()  # provisioned members whose pod Kubernetes does not call Ready


def _peers(sight: Sight) -> list[PeerStatus]:
    if sight.status is None:
        return []
    return [PeerStatus(name=c.name or "?", url=c.url, shard=c.shard, connected=c.connected,
                       sockets=[SocketStatus(database=s.database or "?", connected=bool(s.connected))
                                for s in c.database_sockets])
            for c in sorted(sight.status.connections, key=lambda c: c.name or "")]


def stuck(membership: Membership, sights: Mapping[str, Sight]) -> frozenset[str]:
    """Members that wait for a person (a permanent problem of their own): no peer is expected to reach them."""
    managed = {m.hostname for m in membership.members if m.managed}  # a later duplicate does not stop its owner
    held = {m.hostname for m in membership.members if m.problem is not None and m.problem.permanent} - managed
    return frozenset(held | {n for n, s in sights.items() if s.problem is not None and s.problem.permanent})


def expected_peers(member: Member, membership: Membership, stuck: frozenset[str] = frozenset()) -> list[str]:
    return sorted({m.hostname for m in membership.members
                   if m.hostname != member.hostname and not m.deleting and m.spec is not None} - stuck)


def member_problem(member: Member, rnd: Round) -> Problem | None:
    sight = rnd.sights.get(member.hostname)
    return _clipped(member.problem or (sight.problem if sight else None) or rnd.diagnosed.get(member.hostname))


def missing_peers(member: Member, sight: Sight | None, membership: Membership,
                  stuck: frozenset[str] = frozenset()) -> list[str]:
    connected = set()
    if sight and sight.status:
        connected = {c.name for c in sight.status.connections if c.connected}
    return [p for p in expected_peers(member, membership, stuck) if p not in connected]


def _standing(member: Member, rnd: Round) -> tuple[Sight | None, Problem | None, list[str], list[str]]:
    """What both statuses say of a member: its sight, its problem, the peers it should and does not have."""
    sight = rnd.sights.get(member.hostname)
    others = stuck(rnd.membership, rnd.sights)
    return (sight, member_problem(member, rnd) or _own_shard_behind(member, sight),
            expected_peers(member, rnd.membership, others), missing_peers(member, sight, rnd.membership, others))


def _own_shard_behind(member: Member, sight: Sight | None) -> Problem | None:
    """A shard set by update_node reaches the node's own record by gossip, after its peers' records of it (seen in CI
    under load: Ready at the new generation while the node itself still showed no shard). The node applies its own
    record's shard, so it is not Ready before that shows the spec's."""
    wanted = member.spec.shard if member.spec is not None else None
    own = sight.status.shard if sight and sight.status else None
    if wanted is None or sight is None or sight.status is None or own == wanted or (wanted == 0 and own is None):
        return None  # Harper leaves a node's own shard 0 out of cluster_status (it reports only a truthy one)
    return Problem("ShardPending", f"its own record shows {f'shard {own}' if own is not None else 'no shard'}, the "
                                   f"spec shard {wanted}: waiting for Harper to bring the record its peers hold to it",
                   permanent=False)


def node_status(member: Member, rnd: Round, previous: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    sight, problem, expected, missing = _standing(member, rnd)
    if problem is None and missing:
        problem = Problem("PeersNotConnected", f"not connected to {', '.join(missing)} yet", permanent=False)
    if problem is None and member.hostname in rnd.pod_not_ready:
        problem = Problem("PodNotReady", "its pod is not Ready in Kubernetes (starting, restarting, or failing its "
                                         "readiness probe): see kubectl describe pod", permanent=False)
    cert = None
    if sight and sight.probe and sight.probe.reachable:
        cert = Certificate(subject=sight.probe.subject, sans=list(sight.probe.sans),
                           not_after=sight.probe.not_after.isoformat() if sight.probe.not_after else None)
    generation = member.body["metadata"].get("generation")
    status = HarperNodeStatus(
        observed_generation=generation,
        conditions=make_conditions(
            problem=problem, busy=problem is not None and not problem.permanent, paused=rnd.paused,
            ready_reason="Connected", ready_message=f"connected to {len(expected)} peer(s) on every database",
            generation=generation, previous=(previous or {}).get("conditions", []), now=now),
        node_name=sight.status.node_name if sight and sight.status else None,
        shard=sight.status.shard if sight and sight.status else None,
        connected_peers=f"{len(expected) - len(missing)}/{len(expected)}",
        peers=_peers(sight) if sight else [],
        certificate=cert)
    return _full(status)


def _member_row(member: Member, rnd: Round) -> MemberStatus:
    sight, problem, expected, missing = _standing(member, rnd)
    message = problem.message if problem else (f"not connected to {', '.join(missing)}" if missing else "")
    pod_down = member.hostname in rnd.pod_not_ready
    if pod_down and not message:
        message = "its pod is not Ready"
    if member.deleting:
        message = "being deleted"
    return MemberStatus(
        name=member.resource, hostname=member.hostname,
        ready=problem is None and not missing and not member.deleting and not pod_down,
        connected_peers=len(expected) - len(missing), expected_peers=len(expected),
        shard=sight.status.shard if sight and sight.status else None,
        message=clip(message))


def cluster_problem(rnd: Round, rows: list[MemberStatus]) -> Problem | None:
    """The one problem the cluster's conditions report: permanent ones first, they need a person.

    A member's own cause (credentials, certificates, a name mismatch) comes before a cluster-wide consequence
    of it (no member answers), so the conditions name what to fix."""
    return _clipped(_cluster_problem(rnd, rows))


def _cluster_problem(rnd: Round, rows: list[MemberStatus]) -> Problem | None:
    if rnd.cluster_problem and rnd.cluster_problem.permanent:
        return rnd.cluster_problem
    problems = [(m, member_problem(m, rnd)) for m in rnd.membership.members]
    problems = [(m, p) for m, p in problems if p is not None]
    permanent = [(m, p) for m, p in problems if p.permanent]
    if permanent:
        m, p = permanent[0]
        more = f" (and {len(permanent) - 1} more)" if len(permanent) > 1 else ""
        return Problem(p.reason, f"HarperNode {m.resource}: {p.message}{more}")
    if rnd.failure and rnd.failure.permanent:
        return rnd.failure
    if rnd.cluster_problem:
        return rnd.cluster_problem
    if rnd.failure:
        return rnd.failure
    if problems:
        m, p = problems[0]
        return Problem(p.reason, f"HarperNode {m.resource}: {p.message}", permanent=False)
    waiting = [r for r in rows if not r.ready]
    if waiting:
        return Problem("NodesNotReady", "waiting for " + ", ".join(f"{r.name} ({r.message})" for r in waiting),
                       permanent=False)
    if rnd.pending_restart:
        # Harper has what the spec says on disk or in its records but does not apply it before a restart: not
        # Ready yet (seen: Ready while the restart that clears a shard was still to come, then the member down).
        return Problem("RestartPending", "waiting for a restart of " + ", ".join(rnd.pending_restart)
                       + ": the operator makes it when restartPolicy is Restart, one member at a time; otherwise "
                         "restart it yourself", permanent=False)
    if rnd.pending:
        return Problem("OperationsPending", f"{rnd.pending} operation(s) still to do", permanent=False)
    return None


def cluster_status(rnd: Round, generation: int | None, previous: Mapping[str, Any] | None,
                   now: datetime) -> dict[str, Any]:
    rows = [_member_row(m, rnd) for m in rnd.membership.members]
    problem = cluster_problem(rnd, rows)
    ready = sum(r.ready for r in rows)
    status = HarperClusterStatus(
        observed_generation=generation,
        conditions=make_conditions(
            problem=problem, busy=rnd.pending > 0 or (problem is not None and not problem.permanent),
            paused=rnd.paused, ready_reason="Converged",
            ready_message=f"{ready} node(s) replicate as declared", generation=generation,
            previous=(previous or {}).get("conditions", []), now=now),
        ready_nodes=f"{ready}/{len(rows)}",
        members=rows,
        pending_restart=list(rnd.pending_restart))
    return _full(status)


def hibernated_node_status(member: Member, previous: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """A member of a hibernated cluster: its pod is stopped on purpose, its volume and records kept."""
    generation = member.body["metadata"].get("generation")
    return _full(HarperNodeStatus(observed_generation=generation, conditions=hibernated(
        ready=False, message="its cluster is hibernated (spec.instances.replicas is 0): its pod is stopped, its volume "
                             "and Harper's records are kept", generation=generation,
        previous=(previous or {}).get("conditions", []), now=now)))


def hibernated_cluster_status(m: Membership, generation: int | None, previous: Mapping[str, Any] | None,
                              now: datetime, waiting: Problem | None = None) -> dict[str, Any]:
    """replicas 0: Ready as declared once every pod stopped (`waiting`: the pods still going)."""
    rows = [MemberStatus(name=x.resource, hostname=x.hostname, message="hibernated") for x in m.members]
    earlier = (previous or {}).get("conditions", [])
    if waiting is not None:
        found = make_conditions(problem=_clipped(waiting), busy=True, generation=generation, previous=earlier, now=now)
    else:
        found = hibernated(ready=True, message=f"hibernated (spec.instances.replicas is 0): no pod runs; the "
                                               f"{len(rows)} member(s)' volumes and Harper's records are kept; set "
                                               "replicas above 0 to bring the same data back",
                           generation=generation, previous=earlier, now=now)
    return _full(HarperClusterStatus(observed_generation=generation, conditions=found,
                                     ready_nodes=f"0/{len(rows)}", members=rows))
