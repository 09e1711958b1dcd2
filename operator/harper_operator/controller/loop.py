"""One reconcile of one HarperCluster: read, plan, write, verify, report. The only imperative core path.

Whatever one member does (a bad Secret, a bad URL, an odd answer, a refused write) becomes that member's Problem
in `members`, `observe` and `execute`; the round always ends with every status written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Collection, Iterable, Mapping

from pydantic import ValidationError

from .. import kube
from ..api import PAUSE_ANNOTATION, RETAINED_ANNOTATION, HarperClusterSpec, OwedRestart, RestartRecord, hosts
from ..harper.errors import FalseSuccessError, HarperError, PermanentHarperError
from ..reconcile.drain import Drain, drain, received, survivors_of, unlisted
from ..reconcile.plan import (AddNode, Operation, RemoveNode, Restart, diagnose, mends, pending_restart, plan,
                              waiting_for_restarts)
from ..reconcile.ghosts import hold_ghost_removals, hold_mends
from ..reconcile.problems import Problem
from ..reconcile.restarts import (RestartLedger, admit, next_admission, restarts_for_pending,
                                  restarts_for_refused_joins, restarts_for_unserved_certificates,
                                  restarts_for_untrusted_authority, settle_restarts)
from ..reconcile.topology import DesiredCluster, url_key
from .clients import ClientPool
from .execute import execute
from .leaving import proof_look
from .members import Membership, SecretData, membership, secret_names
from .observe import Sight, links, listed_authorities, look, look_all, observed, presented_serials
from .provision import Confirmed, PodView
from .status import (Round, cluster_status, hibernated_cluster_status, hibernated_node_status, member_problem,
                     missing_peers, node_status, stuck, unchanged)

log = logging.getLogger(__name__)

# Seconds after the operator's start, the cluster's creation or its newest member's during which a ghost record
# waits out the ghost grace (see ClusterReconciler._hold_ghosts).
GHOST_YOUTH = 60.0
# For MESHING seconds after a round's writes Harper is taken to be meshing: 0.5 to 0.7 s after the last add_node on
# loopback between nodes that have met, 2 to 2.4 s between nodes that meet for the first time (bench/converge.py
# --fresh). Meanwhile the verify loop looks again every VERIFY_POLL_FAST seconds, and a link seen up at one end only
# is a link coming up, not a member that needs a restart. (At 2 s, fresh meshes were seen every 0.5 s only, and a
# verify that ended on such a link left the round RestartPending and Ready an interval late.) A restart that is
# really needed waits its grace (10 s) from the round's end anyway. Then the loop looks every VERIFY_POLL_MAX. The
# process's verify loops together read at most about VERIFY_READS_PER_SECOND cluster_status a second: with many
# clusters converging at once each looks less often, never less than every VERIFY_POLL_MAX.
MESHING = 5.0
VERIFY_POLL_FAST = 0.1
VERIFY_POLL_MAX = 0.5
VERIFY_READS_PER_SECOND = 200.0
_verifying = {"members": 0}  # members whose cluster's round is verifying now, over the whole process


def verify_delay(elapsed: float, verifying_members: int) -> float:
    """Seconds until the verify loop's next look, `elapsed` seconds after its writes."""
    wanted = VERIFY_POLL_FAST if elapsed < MESHING else VERIFY_POLL_MAX
    return min(max(wanted, verifying_members / VERIFY_READS_PER_SECOND), VERIFY_POLL_MAX)

# Seconds a record gossip has not brought must stay missing before the add_node that mends it (plan._mends): a join
# shows the same picture for a second or two.
MEND_GRACE = 10.0

LEGACY_RETAINED_PREFIX = "retained.harperoperator.dev/"  # written by 0.1.0; still honoured

# (body, type, reason, message) -> posts a Kubernetes Event; wired to kopf.event by the handlers.
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


def retained(cluster_body: Mapping[str, Any]) -> frozenset[str]:
    """Hostnames of nodes deleted with deletionPolicy Retain: left in Harper, never removed by us."""
    annotations = cluster_body.get("metadata", {}).get("annotations") or {}
    names = {k[len(LEGACY_RETAINED_PREFIX):] for k in annotations if k.startswith(LEGACY_RETAINED_PREFIX)}
    try:
        listed = json.loads(annotations.get(RETAINED_ANNOTATION) or "[]")
    except ValueError:
        listed = []
    names |= {n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set()
    return frozenset(names)


def touches(op: Operation, names: frozenset[str]) -> bool:
    involved = {op.on, getattr(op, "hostname", None), getattr(getattr(op, "target", None), "name", None)}
    return bool(involved & names)


def is_paused(body: Mapping[str, Any]) -> bool:
    value = (body.get("metadata", {}).get("annotations") or {}).get(PAUSE_ANNOTATION, "")
    return value.lower() in ("true", "yes", "1")


@dataclass
class Result:
    """What a round did, for the caller's back-off, metrics and tests."""

    writes: int = 0
    converged: bool = False
    meshed: bool = False  # Harper alone: every member connected to every peer, nothing left to write (a roll's gate)
    again: bool = False  # new work appeared while this round verified its writes: run the next round at once
    permanent: bool = False
    ready_nodes: int = 0
    max_lag_ms: float | None = None
    restart_due: float | None = None  # seconds until a restart held back by its grace or cooldown may be made
    drained: dict[str, frozenset[str]] = field(default_factory=dict)  # leaving member proven -> the survivors covered
    drain_waits: dict[str, str] = field(default_factory=dict)  # leaving member -> what its proof waits for
    hibernated: bool = False  # replicas 0: Harper was left alone


async def _secret(namespace: str, name: str) -> SecretData | None:
    try:
        found = await kube.read_secret(namespace, name)
    except Exception as e:  # noqa: BLE001 - a Secret we cannot read holds the members that need it, no more
        return SecretData(readable=False, error=f"{type(e).__name__}: {str(e)[:200]}")
    return None if found is None else SecretData(*found)


async def read_membership(body: Mapping[str, Any], spec: HarperClusterSpec, nodes: list[Mapping[str, Any]],
                          cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN) -> Membership:
    namespace = body["metadata"]["namespace"]
    spec = spec.with_credentials(body["metadata"]["name"])
    names = sorted(secret_names(spec, nodes))
    found = await asyncio.gather(*(_secret(namespace, n) for n in names))
    return membership(spec, nodes, dict(zip(names, found)), namespace=namespace, cluster_domain=cluster_domain)


@dataclass(frozen=True)
class Declared:
    """Hostnames and replication URLs (by url_key) that the namespace's HarperNodes declare, whichever cluster they
    name: records of them are never removed as ghosts (two clusters may share a Harper). The handlers keep one
    entry per HarperNode in a Kopf index, so a round does not walk every HarperNode's body (at 1,000 of them that
    walk was a fifth of the operator's idle CPU; bench/scale.py)."""

    names: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()

    @classmethod
    def of(cls, entries: Iterable[tuple[str | None, str | None]]) -> "Declared":
        names, urls = set(), set()
        for name, url in entries:
            if name:
                names.add(name)
            if url:
                urls.add(url)
        return cls(frozenset(names), frozenset(urls))


def declared_entry(spec: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(hostname, url_key of the replication URL) of one HarperNode's spec: its entry in Declared."""
    hostname, url = spec.get("hostname"), spec.get("url")
    return (hostname if isinstance(hostname, str) else None, url_key(url) if isinstance(url, str) else None)


@dataclass(frozen=True)
class Intent:
    """The plan of one moment, with why some of the spec cannot be carried out."""

    operations: list[Operation]
    pending_restart: dict[str, str]  # node -> what waits for its restart
    diagnosed: dict[str, Problem]  # node -> the planner's reason to leave it alone
    cluster_problem: Problem | None = None


def protected(m: Membership, sights: Mapping[str, Sight], cluster_body: Mapping[str, Any],
              declared: Declared = Declared(), remembered: Iterable[str] = ()) -> DesiredCluster:
    """The desired topology with every record the planner must never remove as a ghost: names and URLs any
    HarperNode declares (the members' own too, should the index lag behind them), names members report for
    themselves now or reported in an earlier round (`remembered`), held and retained names."""
    own = Declared.of(declared_entry(x.body.get("spec") or {}) for x in m.members)
    reported = {s.reported_name for s in sights.values() if s.reported_name} | set(remembered)
    return replace(m.desired, keep=declared.names | own.names | reported | m.held | retained(cluster_body),
                   keep_urls=declared.urls | own.urls)


def intent(m: Membership, sights: Mapping[str, Sight], cluster_body: Mapping[str, Any], spec: HarperClusterSpec,
           declared: Declared = Declared(), remembered: Iterable[str] = (),
           ledger: RestartLedger | None = None) -> Intent:
    """`ledger`: the restart budget's memory as the caller knows it best (the loop's own last write of it); None
    reads the status's. The joins of a wiped node wait for the restarts it still owes, so a status that lags behind
    (the watch, an API server that was down when the ledger was booked) must not decide that they were made."""
    seen = observed(dict(sights))
    desired = protected(m, sights, cluster_body, declared, remembered)
    restart = spec.restart_policy == "Restart"
    ledger = ledger if ledger is not None else ledger_from_status(cluster_body.get("status"), {})
    owed = [reason for reasons in ledger.owed.values() for reason in reasons]
    ops = plan(desired, seen, restart_for_routes=restart, restart_for_subscriptions=restart,
               hold=waiting_for_restarts(owed))
    ops += mends(desired, seen, hold=waiting_for_restarts(owed))  # held for a grace by the shell (hold_mends)
    # Retained nodes are left alone until a HarperNode declares the hostname again.
    blocked = m.held | (retained(cluster_body) - {x.hostname for x in m.members})
    # A member with a problem of its own (a name mismatch, a foreign endpoint) is never written to or about.
    blocked |= {n for n, s in sights.items() if s.problem is not None and s.problem.permanent}
    ops = [op for op in ops if not touches(op, blocked)]
    diagnosed, whole = {}, None
    for p in diagnose(desired, seen):
        if p.node is None:
            whole = whole or p
        else:
            diagnosed.setdefault(p.node, p)
    return Intent(ops, pending_restart(desired, seen), diagnosed, whole)


def _why_unread(m: Membership, host: str) -> str:
    """Why the operator holds no answer of this member this round, in a person's words."""
    declared = next((x for x in m.members if x.hostname == host), None)
    if declared is None:
        return "it is not declared"
    if declared.problem is not None:
        return declared.problem.message
    return "it is not managed" if not declared.managed else "it does not answer"


def ledger_from_status(status: Mapping[str, Any] | None, wanted_since: Mapping[str, float]) -> RestartLedger:
    """The restart budget's memory: last restarts and owed ones from status (they outlive the process), the
    time each restart has been wanted from this process (a fresh process waits out the grace once more)."""
    done, owed = {}, {}
    for row in (status or {}).get("lastRestarts") or []:
        try:
            record = RestartRecord.model_validate(row)
        except ValidationError:
            continue
        done[record.node] = (record.reason, record.at)
    for row in (status or {}).get("owedRestarts") or []:
        try:
            o = OwedRestart.model_validate(row)
        except ValidationError:
            continue
        owed[o.node] = tuple(sorted({*owed.get(o.node, ()), o.reason}))
    return RestartLedger(done=done, wanted_since=dict(wanted_since), owed=owed)


def ledger_to_status(ledger: RestartLedger) -> dict[str, Any]:
    return {"owedRestarts": [OwedRestart(node=n, reason=r).model_dump(mode="json")
                             for n, reasons in sorted(ledger.owed.items()) for r in reasons],
            "lastRestarts": [RestartRecord(node=n, reason=r, at=t).model_dump(mode="json")
                             for n, (r, t) in sorted(ledger.done.items())]}


@dataclass
class Restarts:
    """This round's restart decisions: what to run now, what loops, and the budget's memory."""

    admitted: list[Restart] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    before: RestartLedger = field(default_factory=RestartLedger)
    ledger: RestartLedger = field(default_factory=RestartLedger)
    due: float | None = None  # seconds until a restart held back now may be made (next_admission)


class ClusterReconciler:
    """Owns one cluster's Harper clients; `reconcile()` is called by the cluster's daemon."""

    def __init__(self, namespace: str, name: str, *, events: EventSink, verify_timeout: float = 30.0,
                 observer: Callable[[str, str, float], None] | None = None, clock: Callable[[], float] = time.time,
                 restart_grace: float = 10.0, restart_cooldown: float = 120.0, ghost_grace: float = 20.0,
                 cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN):
        self.namespace, self.name = namespace, name
        self.cluster_domain = cluster_domain
        self.pool = ClientPool(observer=observer)
        self.events = events
        self.verify_timeout = verify_timeout
        self.clock = clock
        # A restart for something merely observed (a member that does not reconnect) waits `restart_grace`. Seen
        # on pods: after a peer's pod is replaced (new IP, same name) the survivors sometimes reconnect on their
        # own within a minute and sometimes only after a restart; a 60 s grace made the route scenario miss its
        # deadline once, so the grace stays 10 s until the fault matrix (issue 9) measures it.
        self.restart_grace, self.restart_cooldown = restart_grace, restart_cooldown
        self.ghost_grace = ghost_grace
        self._ghost_since: dict[str, float] = {}  # ghost record -> since when (memory: a new process waits again)
        self._mend_since: dict[str, float] = {}  # a mend (plan._mends) -> since when it has been wanted
        self.mend_grace = MEND_GRACE
        self._born = clock()  # a new process (or a new cluster's daemon) waits out the ghost grace again
        self._grace_now = ghost_grace
        self._last_reasons: dict[str, str] = {}
        self._wanted_since: dict[str, float] = {}  # node -> when a restart first looked needed (kept in memory)
        self._sights: dict[str, Sight] = {}  # the last look at each member, for what need not be read again
        self._warned_unverified = False
        self._written: dict[tuple[str, str], dict[str, Any]] = {}  # the last status this process wrote, per object
        # leaving member -> (when its passing looks began, the members that stay they covered) (reconcile/drain)
        self._passed: dict[str, tuple[float, frozenset[str]]] = {}
        self._pod_uids: dict[str, str] = {}  # member -> the uid of its pod at the last round
        self._replaced: dict[str, float] = {}  # member -> when it came back (a new pod) and no restart of ours did it
        self._silent: set[str] = set()  # external members that gave no answer at the last round
        self._consumed: dict[str, float] = {}  # external member -> the time of the restart of ours its return was taken for
        self._presented: dict[str, int] = {}  # member -> the renewed certificate's serial it was seen to present
        self._trusts: dict[str, int] = {}  # member -> a rollover's new authority (its serial) it was seen to list
        self._refused_joins: dict[tuple[str, str], float] = {}  # (member, peer) -> since when the peer cuts its join
        self._joined_at: float | None = None  # when this process last added a member (restarts.JOIN_GRACE)
        self._names: dict[str, str] = {}  # HarperNode -> the name its Harper last reported (docs/safety.md, S4)
        self._drain_waits: dict[str, str] = {}  # leaving member -> what its proof waited for at the last round
        self._ledger: RestartLedger | None = None  # the restart ledger as this process last booked it

    async def close(self) -> None:
        await self.pool.close()

    async def _hold_ghosts(self, ops: list[Operation], m: Membership, body: Mapping[str, Any],
                           nodes: list[Mapping[str, Any]]) -> list[Operation]:
        """Ghost removals that may run now. While the picture may be incomplete (this process, the cluster or its
        newest member younger than GHOST_YOUTH: an apply or a GitOps sync still arriving, an index still filling)
        a ghost waits out `ghost_grace`. Afterwards it goes in the round that finds it, once the API server's own
        list (not the index, which may lag a HarperNode created a moment ago) confirms nobody declares it."""
        now = self.clock()
        ops = self._unless_names_unknown(ops, m, say=True)
        born = max([self._born, _created(body), *(_created(n) for n in nodes)])
        self._grace_now = self.ghost_grace if now - born < GHOST_YOUTH else 0.0
        declared = m.desired.by_name()
        ops, self._ghost_since = hold_ghost_removals(ops, declared, self._ghost_since, now, self._grace_now)
        ops, self._mend_since = hold_mends(ops, self._mend_since, now, self.mend_grace)
        ghosts = {op.hostname for op in ops if isinstance(op, RemoveNode) and op.hostname not in declared}
        if ghosts and not self._grace_now:
            listed = {(n.get("spec") or {}).get("hostname") for n in await kube.list_objects("harpernodes",
                                                                                            self.namespace)}
            ops = [op for op in ops if not (isinstance(op, RemoveNode) and op.hostname in ghosts & listed)]
        return ops

    def _others_replaced(self, pods: PodView | None, sights: Mapping[str, Sight], ours: RestartLedger,
                         now: float) -> dict[str, float]:
        """member -> when a member (another, or itself) last came back, no restart of ours having taken it down (a
        roll, a crash, a pod deleted by hand): perhaps at a new address (and for itself a new configuration), so a
        need after it is a new need, not a loop (restarts.admit). The first return after a restart of ours is that
        restart's own: counting those let two members' restarts reset each other's cooldown for ever, and a
        member's own restart reset its own (seen: 8 deletions in 105 s). Only the first: taking every return
        within the cooldown for the restart's made a roll of the member (a pod template change) look like it, and
        the need the roll brought back was called RestartLoop after no restart at all (seen on the node)."""
        if pods is not None:
            # Every restart of ours is Harper's own restart operation, which keeps the pod: a new pod is always a
            # roll's, a crash's or a deletion by hand (seen on the node: a pod rolled 37 s after its reconnect
            # restart was taken for that restart's, and a survivor's next need was called RestartLoop).
            returned, ours_return = self._returned_pods(pods), False
        else:
            returned, ours_return = self._returned_members(sights), True
        for host in returned:
            done = ours.done.get(host)
            if ours_return and done is not None and now - done[1] < self.restart_cooldown \
                    and self._consumed.get(host) != done[1]:
                self._consumed[host] = done[1]  # this return is that restart's
            else:
                self._replaced[host] = now
        latest = max(self._replaced.values(), default=0.0)
        return {h: latest for h in (pods.pods if pods is not None else sights)}

    def _returned_pods(self, pods: PodView) -> list[str]:
        """Provisioned members whose pod is a new one (a new uid) since the last round. A pod absent for a round
        (deleted, not yet made again) keeps its last uid, so its replacement is still seen."""
        returned = [h for h, uid in pods.pods.items() if self._pod_uids.get(h) not in (None, uid)]
        known = set(pods.not_ready) | set(pods.pods)
        self._pod_uids = {h: u for h, u in {**self._pod_uids, **pods.pods}.items() if h in known}
        return returned

    def _returned_members(self, sights: Mapping[str, Sight]) -> list[str]:
        """External members (no pods to watch) that answer again after a round without an answer: a restart, a
        crash, a pod deleted by hand (seen on the node: a survivor restarted 25 s before a peer's pod was deleted
        by hand was called RestartLoop for its next reconnect, and the cluster stayed Stalled)."""
        returned = [h for h, s in sights.items() if s.status is not None and h in self._silent]
        self._silent = {h for h, s in sights.items() if s.status is None} | (self._silent - set(sights))
        return returned

    def _unless_names_unknown(self, ops: list[Operation], m: Membership, say: bool = False) -> list[Operation]:
        """A record of a declared member is never removed (docs/safety.md, S4): while a member's Harper name is not
        known (it has not answered in this process: down, held, restarting), any ghost record may be its own."""
        unknown = sorted(x.resource for x in m.members if x.resource not in self._names)
        if not unknown:
            return ops
        ghosts = [op for op in ops if isinstance(op, RemoveNode) and op.hostname not in m.desired.by_name()]
        if ghosts and say:
            log.info("%s/%s: ghost record(s) %s kept: HarperNode(s) %s have not reported their Harper name yet",
                     self.namespace, self.name, sorted({op.hostname for op in ghosts}), unknown)
        return [op for op in ops if op not in ghosts]

    async def _look_all(self, m: Membership) -> dict[str, Sight]:
        """Every member's sight; what a look cannot change is reused from the last one (see observe)."""
        sights = await look_all(m, self.pool, self._sights)
        self._sights = {name: sight.remembered() for name, sight in sights.items()}
        current = {x.resource for x in m.members}
        self._names = {r: n for r, n in self._names.items() if r in current}
        self._names.update((s.member.resource, s.reported_name) for s in sights.values() if s.reported_name)
        return sights

    def _warn_once(self, body: Mapping[str, Any], key: str, problem: Problem | None) -> None:
        """An Event per new problem, not per round: a stuck node must not flood the namespace."""
        reason = problem.reason if problem else ""
        if self._last_reasons.get(key) != reason and problem is not None:
            self.events(body, "Warning", problem.reason, problem.message)
        self._last_reasons[key] = reason

    def _kept_ledger(self, body: Mapping[str, Any], wanted_since: Mapping[str, float] | None = None) -> RestartLedger:
        """The restart budget's memory: this process's own last write of it, else the status's. The body comes from
        the watch and may lag behind that write; nothing else writes the ledger, so ours is never older. A restart of
        ours missing from it would make its new pod look like someone else's (a new need) and run the restart again."""
        since = self._wanted_since if wanted_since is None else wanted_since
        if self._ledger is not None:
            return replace(self._ledger, wanted_since=dict(since))
        return ledger_from_status(body.get("status"), since)

    async def _unserved(self, m: Membership, pods: PodView | None) -> set[str]:
        """Provisioned members whose Harper presents another certificate than the one issued to it after it started
        (PodView.renewed). Each is asked until it is seen presenting it once."""
        if pods is None:
            return set()
        self._presented = {h: s for h, s in self._presented.items() if pods.renewed.get(h) == s}
        ask = {h: s for h, s in pods.renewed.items() if h not in self._presented}
        if not ask:
            return set()
        presented = await presented_serials(m, ask)
        self._presented.update((h, s) for h, s in presented.items() if ask[h] == s)
        return {h for h, s in presented.items() if ask[h] != s}

    @property
    def confirmed(self) -> Confirmed:
        """What this process saw the members' Harper trust and present, for the provisioner's next round."""
        return Confirmed(trusts=dict(self._trusts), presents=dict(self._presented))

    async def _untrusting(self, m: Membership, pods: PodView | None) -> set[str]:
        """During a rollover (PodView.authority), the running members whose Harper does not list the new authority.
        Each is asked until it is seen listing it once."""
        if pods is None or pods.authority is None:
            return set()
        self._trusts = {h: s for h, s in self._trusts.items() if s == pods.authority and h in pods.pods}
        ask = [h for h in pods.pods if h not in self._trusts]
        if not ask:
            return set()
        listed = await listed_authorities(m, self.pool, ask)
        self._trusts.update((h, pods.authority) for h, serials in listed.items() if pods.authority in serials)
        return {h for h, serials in listed.items() if pods.authority not in serials}

    def _restarts(self, body: Mapping[str, Any], spec: HarperClusterSpec, m: Membership, sights: Mapping[str, Sight],
                  now_intent: Intent, paused: bool, pods: PodView | None = None,
                  unserved: Collection[str] = (), untrusting: Collection[str] = ()) -> Restarts:
        """Every restart goes through one budget: one member at a time, a cooldown, RestartLoop when it repeats."""
        # Every declared member keeps its entries, managed this round or not: a Secret that could not be read once
        # (an API error) must not forget an owed restart or a cooldown (docs/safety.md, S6).
        here = {x.hostname for x in m.members}
        before = self._kept_ledger(body).only(here)
        if spec.restart_policy != "Restart" or paused:
            return Restarts(before=before, ledger=before)
        wanted = [op for op in now_intent.operations if isinstance(op, Restart)]
        wanted += restarts_for_pending(now_intent.pending_restart)
        self._refused_joins = {p: t for p, t in self._refused_joins.items() if set(p) <= here}
        wanted += restarts_for_refused_joins(self._refused_joins, self.clock())
        wanted += restarts_for_unserved_certificates(unserved)
        wanted += restarts_for_untrusted_authority(untrusting)
        # Down: no answer, or a pod Kubernetes does not call Ready (a roll, a crash, a restart of ours coming back).
        down = {n for n, s in sights.items() if s.status is None or s.problem is not None}
        down |= set(pods.not_ready) & here if pods else set()
        # A member not read this round (its Secret could not be read: the API server was down, say) may be down too,
        # and none is restarted while one may be; nor is it restarted itself while it has no client.
        managed = {x.hostname for x in m.members if x.managed}
        down |= {x.hostname for x in m.members if x.problem is not None and not x.problem.permanent} - managed
        # One instant for the round: a pod first seen now, replaced by someone else, is older than a restart admitted
        # now, never newer (seen on the node: a roll's pod first seen in the round that restarted it, stamped a few
        # microseconds after that restart, made the restart's own next need look new, and it ran a second time).
        now = self.clock()
        admitted, problems, ledger = admit(before, wanted, now, unreachable=down, unmanaged=here - managed,
                                           grace=self.restart_grace, cooldown=self.restart_cooldown,
                                           changed_at=self._others_replaced(pods, sights, before, now),
                                           joined_at=self._joined_at)
        self._wanted_since = dict(ledger.wanted_since)
        return Restarts(admitted, problems, before, ledger,
                        due=next_admission(ledger, wanted, now, grace=self.restart_grace,
                                           cooldown=self.restart_cooldown, joined_at=self._joined_at))

    def _warn_unverified(self, body, spec: HarperClusterSpec) -> None:
        """spec.tls.verify false: a Warning once per cluster and process, naming what it leaves open."""
        if spec.tls.verify or self._warned_unverified:
            return
        self._warned_unverified = True
        self.events(body, "Warning", "TLSNotVerified", (
            "spec.tls.verify is false: the operator does not check who answers at the members' URLs, so a host that "
            "takes a member's name receives the super_user credentials and the cluster's replication. Give the "
            "operator the members' CA (spec.tls.caSecretRef) and remove verify: false; a provisioned cluster needs "
            "neither (its pods have certificates of the operator's own CA)"))

    async def reconcile(self, body: Mapping[str, Any], nodes: list[Mapping[str, Any]], *,
                        declared: Declared = Declared(),
                        stopped: Callable[[], bool] = lambda: False,
                        members_changed: Callable[[], bool] = lambda: False, pods: PodView | None = None) -> Result:
        """One round. `declared`: what the namespace's HarperNodes declare; `stopped`: start no new write once true;
        `members_changed`: HarperNodes came or went since the round began, so the next round has work the verify
        loop need not wait for; `pods`: the Kubernetes side of a provisioned cluster (spec.instances), None
        otherwise."""
        generation = body["metadata"].get("generation")
        try:
            spec = HarperClusterSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            first = e.errors()[0]
            problem = Problem("InvalidSpec", f"spec.{'.'.join(map(str, first['loc']))}: {first['msg']}")
            rnd = Round(Membership((), DesiredCluster(nodes=())), {}, cluster_problem=problem)
            kept = self._kept_ledger(body, wanted_since={})
            await self._write_cluster(body, rnd, generation, _now(), Restarts(before=kept, ledger=kept), pods)
            return Result(permanent=True)
        if pods is not None and pods.hibernating:
            return await self._hibernate(body, spec, nodes, pods)

        m = await read_membership(body, spec, nodes, self.cluster_domain)
        self._warn_unverified(body, spec)
        paused = is_paused(body)
        sights = await self._look_all(m)
        now_intent = intent(m, sights, body, spec, declared, self._names.values(), self._kept_ledger(body))
        restarts = self._restarts(body, spec, m, sights, now_intent, paused, pods, await self._unserved(m, pods),
                                  await self._untrusting(m, pods))
        result = Result()
        failure = None
        ops = await self._hold_ghosts([op for op in now_intent.operations if not isinstance(op, Restart)], m,
                                      body, nodes)
        ops += restarts.admitted
        if ops and not paused and not stopped():
            result.writes, failure = await self._carry_out(body, m, ops, restarts, stopped)
            if not stopped():
                # A write that failed will not be done by waiting: one look, then the next round (after its
                # back-off) retries, instead of a whole verify timeout (seen: 27 s rounds while a wiped node's
                # peers restarted one by one).
                owed = [r for reasons in restarts.ledger.owed.values() for r in reasons]
                owed += [r.reason for r in restarts.admitted]
                # New members end the verify too: a `kubectl apply` creates HarperNodes one by one, and a round
                # that saw only the first ones waited out their mesh (0.4 to 0.8 s) before the next round joined
                # the rest (bench/converge.py). Any poke would not do: Kopf's create handlers lag its index, and a
                # poke for a member the round already has ended the verify with nothing new to do.
                sights, now_intent = await self._verify(body, spec, m, declared,
                                                        lambda: stopped() or members_changed(),
                                                        patient=failure is None, waiting=waiting_for_restarts(owed),
                                                        done=ops)
                # Work that appeared meanwhile (a pod that began to answer) is done by the next round, at once.
                result.again = _fresh(now_intent.operations, ops) or members_changed()
        else:
            restarts.ledger = settle_restarts(restarts.before, restarts.ledger, restarts.admitted, ran=set())
        diagnosed = dict(now_intent.diagnosed)
        for p in restarts.problems:
            diagnosed.setdefault(p.node, p)
        cluster_problem = now_intent.cluster_problem or (pods.problem if pods else None) or _leaving(
            {h: w for h, w in self._drain_waits.items() if h in m.deleting}) or (None if m.members else Problem(
            "NoMembers", f"no HarperNode names this cluster: create HarperNodes with spec.clusterRef.name={self.name}",
            permanent=False))
        rnd = Round(m, sights, pending=len(now_intent.operations), failure=failure, paused=paused,
                    pending_restart=tuple(f"{k} ({v})" for k, v in sorted(now_intent.pending_restart.items())),
                    cluster_problem=cluster_problem, diagnosed=diagnosed,
                    pod_not_ready=pods.not_ready if pods else frozenset())
        stamp = _now()
        # Forget what was written for HarperNodes that left: at 1,000 members churn would otherwise only grow it.
        current = {("harpernodes", x.resource) for x in m.members} | {("harperclusters", self.name)}
        self._written = {k: v for k, v in self._written.items() if k in current}
        async def write_member(member) -> None:
            try:
                await self._write_status("harpernodes", member.resource, member.body.get("status"),
                                         node_status(member, rnd, member.body.get("status"), stamp))
            except Exception:  # noqa: BLE001 - one status that cannot be written must not keep the others
                log.warning("status of HarperNode %s/%s not written", self.namespace, member.resource, exc_info=True)

        for member in m.members:
            self._warn_once(member.body, member.resource, member_problem(member, rnd))
        # At once, not one after the other: Ready comes one API round trip after the mesh, whatever the size.
        await asyncio.gather(*(write_member(member) for member in m.members))
        written = await self._write_cluster(body, rnd, generation, stamp, restarts, pods)
        result.ready_nodes = sum(1 for r in written.get("members", []) if r.get("ready"))
        result.meshed = (bool(m.members) and result.ready_nodes == len(m.members) and not now_intent.operations
                         and failure is None and not now_intent.pending_restart)
        lags = [s.status.max_lag_ms for s in sights.values() if s.status and s.status.max_lag_ms is not None]
        result.max_lag_ms = max(lags) if lags else None
        drains = await self._drains(m, sights, pods)
        result.drained = {h: d.survivors for h, d in drains.items() if d.proven}
        result.drain_waits = {h: d.waits_for for h, d in drains.items() if not d.proven}
        self._drain_waits = dict(result.drain_waits)
        result.restart_due = _soonest(restarts.due, *(d.due for d in drains.values()))
        # A member that left, or whose credentials or URL changed, leaves a client nobody will call again.
        await self.pool.retire([x.access for x in m.members if x.access is not None])
        ready = next((c for c in written.get("conditions", []) if c["type"] == "Ready"), {})
        stalled = next((c for c in written.get("conditions", []) if c["type"] == "Stalled"), {})
        result.converged = ready.get("status") == "True"
        result.permanent = stalled.get("status") == "True"
        return result

    async def _drains(self, m: Membership, sights: Mapping[str, Sight], pods: PodView | None) -> dict[str, Drain]:
        """Where each leaving member's proof stands (docs/safety.md, S1): a provisioned one is looked at only once it
        is out of the client Service (an external member's clients are not the operator's to turn away); when its
        passing looks began is kept in this process (a new process starts again). Leaving: a scale-down's members,
        and every member whose HarperNode is being deleted (its finalizer waits for this proof)."""
        unserved = pods.leaving if pods else frozenset()
        leaving = unserved | m.deleting
        # Members whose HarperNode is being deleted are no longer looked at by the round: look here, for the proof.
        going = [x for x in m.members if x.deleting and x.hostname in leaving and x.hostname not in sights
                 and x.problem is None and x.access is not None]
        if going:
            seen = await asyncio.gather(*(look(x, self.pool, None, routes_declared=False, alone=False) for x in going))
            sights = {**sights, **{s.member.hostname: s for s in seen}}
        answered = {n for n, s in sights.items() if s.status is not None and s.problem is None}
        found = links(sights) if leaving else {}
        # Every other member, managed or not (one that cannot be read cannot confirm anything, and says so), leaving
        # or not (a reverted scale-down keeps it, and Harper never relays what only the leaving member had).
        others = [x.hostname for x in m.members if not x.deleting]
        out: dict[str, Drain] = {}
        for host in sorted(leaving):
            member, survivors = m.readable_member(host), []
            staying = [x for x in others if x != host]
            # A member refused for its own spec is never asked; every other one must answer (a Secret gone: wait).
            askable = [x for x in staying if x not in m.refused]
            why = {x: _why_unread(m, x) for x in [*askable, host] if x not in answered}
            if member is not None:
                why[host] = "it does not answer"
            verdict = None if host in unserved else unlisted(host, staying, askable, found, answered, why)
            if verdict is True:
                out[host] = Drain(True, survivors=frozenset(staying))
                continue
            if isinstance(verdict, str):
                waits = verdict
            elif member is None:
                waits = f"{host} cannot be read ({_why_unread(m, host)})"
            elif host in unserved and host not in pods.out_of_service:
                waits = f"taking {host} out of the client Service first"
            else:
                survivors = survivors_of(host, staying, found, member.spec.subscriptions is not None)
                versions = received(host, survivors, found, answered)
                waits = versions if isinstance(versions, str) else await proof_look(
                    member, [m.managed_member(s) for s in survivors], self.pool, versions)
            covered = frozenset(survivors)
            began, before = self._passed.get(host, (None, frozenset()))
            # Looks that passed over more members than stay now passed over these too (a second member's HarperNode
            # deleted meanwhile): the quiet period goes on.
            out[host] = replace(drain(host, waits, began if covered <= before else None, self.clock()),
                                survivors=covered)
        self._passed = {h: (d.passed_at, d.survivors) for h, d in out.items() if d.passed_at is not None}
        return out

    async def _hibernate(self, body, spec: HarperClusterSpec, nodes: list[Mapping[str, Any]], pods: PodView) -> Result:
        """replicas 0: no Harper read or write; every status says the cluster sleeps, its volumes and records kept
        (docs/safety.md, S2). What the restart budget owes stays in the status for the wake-up."""
        m = await read_membership(body, spec, nodes, self.cluster_domain)
        stamp = _now()
        for member in m.members:
            try:
                await self._write_status("harpernodes", member.resource, member.body.get("status"),
                                         hibernated_node_status(member, member.body.get("status"), stamp))
            except Exception:  # noqa: BLE001 - one status that cannot be written must not keep the others
                log.warning("status of HarperNode %s/%s not written", self.namespace, member.resource, exc_info=True)
        kept = self._kept_ledger(body, wanted_since={})
        status = hibernated_cluster_status(m, body["metadata"].get("generation"), body.get("status"), stamp,
                                           waiting=pods.problem)
        status.update(ledger_to_status(kept), replicas=pods.replicas, selector=pods.selector)
        await self._write_status("harperclusters", self.name, body.get("status"), status)
        self._ledger = kept
        self._passed = {}
        asleep = "the cluster to wake up: with replicas 0 no pod runs, so nothing can confirm its records"
        return Result(converged=pods.hibernated, hibernated=True, drain_waits={h: asleep for h in m.deleting})

    async def _carry_out(self, body, m: Membership, ops: list[Operation], restarts: Restarts,
                         stopped: Callable[[], bool]) -> tuple[int, Problem | None]:
        """Execute the plan; returns (writes tried, the first failure as a Problem)."""
        # Owed restarts are written before the writes that need them: a round cut short after a remove still
        # restarts the node later, whichever process runs it.
        await self._book(body, settle_restarts(restarts.before, restarts.ledger, restarts.admitted, ran=set()))
        outcomes = await execute(ops, m, self.pool, self._reporter(body), stopped)
        ran = {o.operation.on for o in outcomes if isinstance(o.operation, Restart) and not o.error and not o.skipped}
        restarts.ledger = settle_restarts(restarts.before, restarts.ledger, restarts.admitted, ran)
        if ran:
            await self._book(body, restarts.ledger)
        self._note_refused_joins(outcomes)
        if any(isinstance(o.operation, AddNode) and not o.error and not o.skipped for o in outcomes):
            self._joined_at = self.clock()
        failed = [o for o in outcomes if o.error]
        failure = _failure(failed[0].operation, failed[0].error, len(failed)) if failed else None
        return sum(1 for o in outcomes if not o.skipped), failure

    def _note_refused_joins(self, outcomes) -> None:
        """Keep, with the time it was first seen, each join a peer cut this round the way a peer that trusts an old CA
        of the member does (restarts_for_refused_joins); one that was skipped this round keeps its time, any other
        outcome (done, failed otherwise, no longer planned) ends it."""
        now, refused = self.clock(), {}
        for o in outcomes:
            if not isinstance(o.operation, AddNode):
                continue
            pair = (o.operation.on, o.operation.target.name)
            peer = getattr(o.error, "peer", None)
            if o.skipped and pair in self._refused_joins:
                refused[pair] = self._refused_joins[pair]
            elif peer is not None and peer.closed_at_first_join:
                refused[pair] = self._refused_joins.get(pair, now)
        self._refused_joins = refused

    async def _book(self, body, ledger: RestartLedger) -> None:
        """Put the restart ledger on record before the round goes on: owed restarts before the writes that need
        them, a restart made as soon as it ran (the rest of the round, its verify, can take 30 s). Kept in memory
        first: if this write fails the process still knows. A restart made but forgotten would be made again, its
        new pod taken for a roll's."""
        self._ledger = ledger
        wanted = ledger_to_status(ledger)
        if any(v != (body.get("status") or {}).get(k, []) for k, v in wanted.items()):
            await kube.patch_status("harperclusters", self.namespace, self.name, wanted)

    async def _write_cluster(self, body, rnd: Round, generation, stamp, restarts: Restarts,
                             pods: PodView | None = None) -> dict[str, Any]:
        status = cluster_status(rnd, generation, body.get("status"), stamp)
        status.update(ledger_to_status(restarts.ledger))
        if pods is not None:
            status.update(replicas=pods.replicas, selector=pods.selector)
        problem = next((c for c in status["conditions"] if c["type"] == "Stalled" and c["status"] == "True"), None)
        self._warn_once(body, "", Problem(problem["reason"], problem["message"]) if problem else None)
        await self._write_status("harperclusters", self.name, body.get("status"), status)
        self._ledger = restarts.ledger
        return status

    async def _write_status(self, plural: str, name: str, known: Mapping[str, Any] | None,
                            status: dict[str, Any]) -> None:
        """Patch a status unless it already says exactly that. `known` comes from the watch and may lag behind our
        own last write: it is trusted only when it shows that write too (else the write is made again)."""
        key = (plural, name)
        mine = self._written.get(key)
        if unchanged(status, known) and (mine is None or unchanged(mine, known)):
            return
        await kube.patch_status(plural, self.namespace, name, status)
        self._written[key] = status

    def _reporter(self, body):
        async def report(op: Operation, error: HarperError | None) -> None:
            if error is None:
                self.events(body, "Normal", type(op).__name__, op.describe())
                log.info("%s/%s: %s", self.namespace, self.name, op.describe())
            else:
                self.events(body, "Warning", f"{type(op).__name__}Failed", f"{op.describe()}: {error}")
                log.warning("%s/%s: %s failed: %s", self.namespace, self.name, op.describe(), error)
        return report

    async def _verify(self, body, spec: HarperClusterSpec, m: Membership, declared: Declared, stopped, patient: bool = True,
                      waiting: set[str] = frozenset(), done: list[Operation] = ()):
        """A 200 from Harper is not proof: re-read until cluster_status shows the plan done, or time runs out
        (not patient: read once). `waiting`: wiped nodes that join only after their peers' restarts."""
        began = time.monotonic()
        deadline = began + (self.verify_timeout if patient else 0)
        counted = len(m.members)
        _verifying["members"] += counted
        try:
            return await self._verify_looks(body, spec, m, declared, stopped, deadline, began, waiting, done)
        finally:
            _verifying["members"] -= counted

    async def _verify_looks(self, body, spec: HarperClusterSpec, m: Membership, declared: Declared, stopped,
                            deadline: float, began: float, waiting: set[str], done: list[Operation]):
        while True:
            sights = await self._look_all(m)
            now_intent = intent(m, sights, body, spec, declared, self._names.values(), self._kept_ledger(body))
            # A node that waits for a restart will not connect by waiting: stop verifying it. Not while its links
            # may still be coming up: then a link is up at one end first, which looks like a member needing a
            # restart (seen 0.1 s after the writes; the round ended there, not Ready, and Ready waited for the next).
            others = stuck(m, sights)
            restarting = set(now_intent.pending_restart) if time.monotonic() - began >= MESHING else set()
            # A ghost still inside its grace will not be removed by waiting here. Nor is a restart made by waiting:
            # the next round's budget admits it (seen on the node: each round of a routes change waited out the
            # whole verify timeout for the restarts still owed, and the members were restarted 30 s apart).
            writes = [op for op in now_intent.operations if not isinstance(op, Restart)]
            remaining, _ = hold_ghost_removals(self._unless_names_unknown(writes, m),
                                               m.desired.by_name(), self._ghost_since, self.clock(), self._grace_now)
            remaining, _ = hold_mends(remaining, self._mend_since, self.clock(), self.mend_grace)
            settled = not remaining and all(
                not missing_peers(x, sights.get(x.hostname), m, others | waiting)
                or x.hostname in restarting or x.hostname in waiting
                for x in m.members if x.managed)
            log.debug("%s/%s: verify: %s left to do, %s%s", self.namespace, self.name,
                      [op.describe() for op in now_intent.operations] or "nothing",
                      "settled" if settled else "peers missing",
                      f", restart pending for {now_intent.pending_restart}" if now_intent.pending_restart else "")
            # New work (a member that began to answer can now be joined) will not be done by waiting here: seen on
            # pods, the verify of two add_node held back two more pods that became Ready meanwhile for 30 s.
            if settled or stopped() or time.monotonic() >= deadline or _fresh(remaining, done):
                return sights, now_intent
            # Ready comes one look after the mesh: with looks 0.25 s then 0.5 s apart, a mesh 0.65 s after the last
            # add_node was seen 0.85 s after it (bench/converge.py; issue 12).
            now = time.monotonic()
            await asyncio.sleep(min(verify_delay(now - began, _verifying["members"]), max(deadline - now, 0.0)))


def _created(obj: Mapping[str, Any]) -> float:
    """metadata.creationTimestamp in epoch seconds; 0 when absent or unreadable."""
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0


def _soonest(*seconds: float | None) -> float | None:
    found = [s for s in seconds if s is not None]
    return min(found) if found else None


def _fresh(planned: Iterable[Operation], done: Iterable[Operation]) -> bool:
    """Writes planned now that were not part of the round's plan (restarts come and go with the budget)."""
    before = {op.describe() for op in done}
    return any(op.describe() not in before for op in planned if not isinstance(op, Restart))


def _leaving(waits: Mapping[str, str]) -> Problem | None:
    """HarperNodes being deleted whose finalizer waits for the proof (handlers/node.py): Reconciling, saying why."""
    if not waits:
        return None
    return Problem("WaitingForReplication", "HarperNode(s) being deleted stay in Harper until their records are "
                                            "confirmed on the members that stay: " +
                   "; ".join(f"{h}: {w}" for h, w in sorted(waits.items())), permanent=False, blocking=False)


def _failure(op: Operation, error: HarperError, count: int = 1) -> Problem:
    more = f" (and {count - 1} more failed write(s))" if count > 1 else ""
    if isinstance(error, FalseSuccessError):
        return Problem("HarperFalseSuccess", f"{op.describe()}: Harper answered success but {error}{more}",
                       permanent=False)
    # Harper said no to a well-formed request: the same request gets the same answer until something changes.
    return Problem(f"{type(op).__name__}Failed", f"{op.describe()}: {error}{more}",
                   permanent=isinstance(error, PermanentHarperError))


def _now() -> datetime:
    """The shell reads the clock; the pure status functions take the time as an argument."""
    return datetime.now(timezone.utc)
