"""A FAKE, data-level simulator of one provisioned Harper cluster, for the safety property tests (docs/safety.md).

This is not Harper and not Kubernetes. It models, at the level the operator's pure functions see, what S1-S3 and S6
are about, and calls those functions every round exactly as the shell calls them:
provision.scale.steps() (controller/provision.py, Provisioner.ensure), reconcile.restarts.admit() and
reconcile.restarts.settle_restarts() (ClusterReconciler._restarts / _carry_out), and reconcile.drain's survivors_of(),
received(), look() and drain() (ClusterReconciler._drains and controller/leaving.proof_look).

What it models, per ordinal 0..n-1:
* a pod: absent, starting (ready after START s), ready, crashed (down for a while), terminating (Pod.deleting);
  its revision; the serving label (None on a new pod: the label is not in the template);
* a HarperNode: present, or deleting (its finalizer runs remove_node at the next tick, once another member answers);
  a member of Harper's mesh is an ordinal whose HarperNode exists;
* a volume claim (created with the pod, released mark) holding that member's Harper data: record id -> (version,
  alive) and an audit log (this member's audit key, record id, version, deleted, the member that wrote it);
* replication: each member sends its OWN writes (not those it relays), oldest audit key first, to every peer it is
  linked with, DELAY s after they were committed; the receiver sets its lastReceivedVersion for the sender to the
  sender's audit key (docs/harper-semantics.md 12). A pair seen for the first time starts with a copy of the whole
  table. A cut link moves nothing (and cluster_status still shows it connected, as Harper does for a minute);
* the client Service: writes land on a ready pod labelled serving, or on one un-labelled less than LAG s ago (its
  endpoints lag); a write is acknowledged once committed on that member;
* versions and audit keys are one monotonically increasing clock (`stamp`).

The operator's memory between rounds is modelled as the shell keeps it: the proof (drained, waits) and `converged`
of the last round (handlers/cluster.py), when passing looks began (_passed), wanted_since and rolls (in memory), and
the restart ledger's done/owed (persisted in the cluster's status: an operator restart keeps them).

Checks (raise Violation): S1 when a member leaves Harper and at every step; S2 when a claim is deleted and in every
round at replicas 0; S3 whenever the operator takes a member's pod down. `check_settled` is the end state.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace

from harper_operator.reconcile.restarts import settle_restarts
from harper_operator.provision.scale import Pod, Seen, Steps, steps
from harper_operator.reconcile.drain import (AUDIT_LIMIT, AUDIT_PAGES, QUIET, Socket, Write, drain, look, received,
                                             still_proven, survivors_of)
from harper_operator.reconcile.plan import ROUTES_RESTART, Restart
from harper_operator.reconcile.restarts import RestartLedger, admit

DB, TABLE = "data", "t"
START = 2.0  # seconds from a pod's creation to Ready (Harper answers)
TERMINATE = 0.5  # seconds a deleted pod stays terminating
DELAY = 1.0  # replication delay
LAG = 1.0  # endpoints lag: a write may still reach a pod un-labelled this long ago (must stay below QUIET)
assert LAG < QUIET


class Violation(AssertionError):
    """A safety property does not hold."""


@dataclass
class PodSim:
    revision: int
    ready_at: float
    serving: bool | None = None
    unserved_at: float | None = None
    terminating_until: float | None = None
    crashed_until: float = 0.0
    started_at: float = 0.0  # when Harper last started in it (a restart loads the routes file)


@dataclass(frozen=True)
class Entry:
    key: float  # this member's audit key (its local commit time)
    rid: str
    version: float
    deleted: bool
    origin: int  # the member a client wrote it on


@dataclass
class Volume:
    data: dict[str, tuple[float, bool]] = field(default_factory=dict)  # rid -> (version, alive)
    audit: list[Entry] = field(default_factory=list)
    own: list[Entry] = field(default_factory=list)  # the entries written on this member (what it sends)
    own_keys: list[float] = field(default_factory=list)


def host(o: int) -> str:
    return f"h{o}"


def pod_name(o: int) -> str:
    return f"c-{o}"


class Cluster:
    """One provisioned cluster and its operator. `variant`: a deliberately broken operator, to show the checks bite
    ('ignore_drained': every leaving member counts as proven at once; 'ignore_down': the restart budget is told no
    member is down)."""

    def __init__(self, replicas: int, *, volumes_go: bool = True, variant: str | None = None,
                 audit_limit: int = AUDIT_LIMIT):
        self.now, self.seq = 1000.0, 0
        self.variant, self.volumes_go, self.audit_limit = variant, volumes_go, audit_limit
        self.desired = self.sts_replicas = replicas
        self.revision = 1
        self.pods = {o: PodSim(1, ready_at=self.now, serving=True) for o in range(replicas)}
        self.nodes = {o: "present" for o in range(replicas)}
        self.claims: dict[int, bool] = {o: False for o in range(replicas)}  # ordinal -> released mark
        self.volumes = {o: Volume() for o in range(replicas)}
        self.received: dict[tuple[int, int], float] = {}  # (dst, src) -> dst's lastReceivedVersion from src
        self.paired: set[tuple[int, int]] = {(a, b) for a in range(replicas) for b in range(replicas) if a != b}
        self.cut: set[frozenset[int]] = set()
        self.acked: dict[str, tuple[float, bool]] = {}  # rid -> the newest acknowledged (version, alive)
        self.rids = 0
        # The shell's memory (handlers/cluster.py and ClusterReconciler), and the status it persists.
        self.proof: tuple[dict[str, frozenset[str]], dict[str, str]] = ({}, {})
        self.converged = False
        self.passed: dict[str, tuple[float, frozenset[str]]] = {}
        self.wanted_since: dict[str, float] = {}
        self.rolled: dict[str, float] = {}
        self.ledger = RestartLedger()  # done and owed, as the status keeps them
        self.routes_due: set[int] = set()  # members whose routes changed and are not yet written to them
        self.routes_at: dict[int, float] = {}  # member -> when new routes were written to it (loaded at start)
        self.log: list[str] = []
        # A proof made while ordinal x was leaving, used after x stays again (found here; still_proven mends it).
        self.cover: dict[int, tuple[frozenset[int], frozenset[int]]] = {}  # leaving -> (its survivors, members)
        self.uncovered: set[int] = set()  # members that stay and that a removal's proof did not cover

    # ------------------------------------------------------------------ the world
    def stamp(self) -> float:
        self.seq += 1
        return self.now + self.seq * 1e-6

    def up(self, o: int) -> bool:
        p = self.pods.get(o)
        return (p is not None and p.terminating_until is None and self.now >= p.crashed_until
                and self.now >= p.ready_at)

    def linked(self, a: int, b: int) -> bool:
        return (a in self.nodes and b in self.nodes and self.up(a) and self.up(b)
                and frozenset((a, b)) not in self.cut)

    def _delete_pod(self, o: int) -> None:
        p = self.pods[o]
        if p.terminating_until is None:
            p.terminating_until = self.now + TERMINATE

    def write(self, pick: int, rid: str | None = None, delete: bool = False) -> str | None:
        """A client write through the Service: lands on one of the pods it reaches (None: none)."""
        reach = sorted(o for o, p in self.pods.items() if self.up(o) and (
            p.serving is True or (p.serving is False and p.unserved_at is not None
                                  and self.now - p.unserved_at < LAG)))
        if not reach:
            return None
        o = reach[pick % len(reach)]
        if rid is None:
            self.rids += 1
            rid = f"r{self.rids}"
        version = self.stamp()
        e = Entry(version, rid, version, delete, o)
        v = self.volumes[o]
        v.data[rid] = (version, not delete)
        v.audit.append(e)
        v.own.append(e)
        v.own_keys.append(e.key)
        self.acked[rid] = (version, not delete)
        self.log.append(f"write {rid}{' (delete)' if delete else ''} on {o}")
        return rid

    def crash(self, o: int, seconds: float) -> None:
        if o in self.pods and self.up(o):
            self.pods[o].crashed_until = self.now + seconds
            self.pods[o].started_at = self.now + seconds

    def _apply(self, dst: int, e: Entry) -> None:
        v = self.volumes[dst]
        mine = v.data.get(e.rid)
        if mine is None or mine[0] < e.version:
            v.data[e.rid] = (e.version, not e.deleted)
            v.audit.append(Entry(self.stamp(), e.rid, e.version, e.deleted, e.origin))

    def tick(self, dt: float) -> None:
        self.now += dt
        for o, p in list(self.pods.items()):
            if p.terminating_until is not None and self.now >= p.terminating_until:
                del self.pods[o]
        # The StatefulSet controller (OnDelete: a new pod gets the update revision, old ones keep theirs).
        for o, p in self.pods.items():
            if o >= self.sts_replicas:
                self._delete_pod(o)
        for o in range(self.sts_replicas):
            if o not in self.pods:
                self.pods[o] = PodSim(self.revision, ready_at=self.now + START, started_at=self.now + START)
                if o not in self.claims:
                    self.claims[o], self.volumes[o] = False, Volume()
        # Finalizers: remove_node, once a member that stays answers.
        for o in sorted(o for o, s in self.nodes.items() if s == "deleting"):
            if any(self.up(x) and self.nodes.get(x) == "present" for x in self.nodes if x != o):
                self._leaves(o)
        # Replication.
        for src in sorted(self.nodes):
            for dst in sorted(self.nodes):
                if src != dst and self.linked(src, dst):
                    self._replicate(src, dst)
        self.check_s1()

    def _replicate(self, src: int, dst: int) -> None:
        sv = self.volumes[src]
        if (dst, src) not in self.paired:  # a new pair: Harper copies the whole table first
            for rid, (version, alive) in sorted(sv.data.items()):
                self._apply(dst, Entry(0.0, rid, version, not alive, src))
            self.paired.add((dst, src))
            if sv.own_keys:
                self.received[(dst, src)] = sv.own_keys[-1]
            return
        start = bisect.bisect_right(sv.own_keys, self.received.get((dst, src), 0.0))
        for e in sv.own[start:]:
            if e.key > self.now - DELAY:
                break
            self._apply(dst, e)
            self.received[(dst, src)] = e.key

    def _leaves(self, o: int) -> None:
        """The finalizer's remove_node: o is no longer in Harper (S1: its records must be on a member that stays)."""
        del self.nodes[o]
        self.received = {k: v for k, v in self.received.items() if o not in k}
        self.paired = {k for k in self.paired if o not in k}
        self.routes_due.discard(o)
        self.routes_at.pop(o, None)
        self.log.append(f"member {o} left Harper")
        staying = [x for x in self.nodes if self.nodes[x] == "present"]
        self._held_elsewhere(o, staying, f"S1: member {o} left Harper")

    def _held_elsewhere(self, o: int, others: list[int], what: str) -> None:
        for rid, (version, _) in sorted(self.volumes[o].data.items()):
            if not any(self.volumes[x].data.get(rid, (-1.0, False))[0] >= version for x in others):
                raise Violation(f"{what}, and record {rid} (version {version:.6f}) it held is on none of the "
                                f"members that stay ({sorted(others)}); steps: {self.log[-40:]}")

    # ------------------------------------------------------------------ the checks
    def check_s1(self) -> None:
        """Every acknowledged record (its newest version, or its deletion) is on a member or a retained volume."""
        for rid, (version, _) in self.acked.items():
            if not any(v.data.get(rid, (-1.0, False))[0] >= version for v in self.volumes.values()):
                raise Violation(f"S1: record {rid} (version {version:.6f}) is lost; steps: {self.log[-40:]}")

    def _down(self, but: int) -> list[int]:
        return sorted(x for x in self.nodes if x != but and not self.up(x))

    def _takes_down(self, o: int, why: str) -> None:
        """S3: the operator takes member o's pod down; no other member may be down then."""
        if o not in self.nodes or not self.up(o) or self.desired == 0:
            return
        down = self._down(o)
        if down:
            raise Violation(f"S3: {why} took member {o} down while member(s) {down} were down; "
                            f"steps: {self.log[-40:]}")

    # ------------------------------------------------------------------ the operator's round
    def seen(self) -> Seen:
        drained, waits = self.proof
        ordinal = {host(o): o for o in range(self.top())}
        leaving = {o for o in self.nodes if o >= self.desired}
        # Provisioner._ensure: a proof counts only if it covered every member that stays now.
        drained = still_proven(drained, [host(o) for o, st in self.nodes.items() if st == "present"])
        if self.variant == "ignore_drained":
            drained = frozenset(host(o) for o in leaving)
        return Seen(desired=self.desired, statefulset_replicas=self.sts_replicas,
                    update_revision=f"r{self.revision}",
                    node_ordinals=frozenset(o for o, s in self.nodes.items() if s == "present"),
                    deleting_ordinals=frozenset(o for o, s in self.nodes.items() if s == "deleting"),
                    pods=tuple(Pod(o, pod_name(o), self.up(o), f"r{p.revision}",
                                   deleting=p.terminating_until is not None, serving=p.serving)
                               for o, p in sorted(self.pods.items())),
                    converged=self.converged,
                    drained=frozenset(ordinal[h] for h in drained if h in ordinal),
                    waits={ordinal[h]: w for h, w in waits.items() if h in ordinal},
                    claims=frozenset(self.claims), released=frozenset(o for o, m in self.claims.items() if m),
                    volumes_go=self.volumes_go)

    def top(self) -> int:
        return max([self.desired, self.sts_replicas, *(o + 1 for o in self.pods), *(o + 1 for o in self.nodes)])

    def _ensure(self, fails_at: int | None) -> tuple[frozenset[int], frozenset[int], frozenset[int], str | None]:
        """Provisioner._ensure, its writes in the shell's order: returns not_ready, leaving and out_of_service
        ordinals, and the rolled host. `fails_at`: the Kubernetes write that fails (an ApiException: the writes
        before it were made, the others not, and the round goes on with an empty PodView)."""
        plan = steps(self.seen())
        if self.desired == 0 and (plan.delete_nodes or plan.delete_claims):
            raise Violation(f"S2: replicas 0 deletes HarperNodes {plan.delete_nodes} / claims {plan.delete_claims}")
        unserved = {o for o, p in self.pods.items() if p.serving is False} | set(plan.unserve)
        writes = [lambda: self._label(plan), lambda: self._replicas(plan), lambda: self._nodes(),
                  lambda: self._marks(plan), lambda: self._delete_nodes(plan), lambda: self._roll(plan),
                  lambda: self._delete_claims(plan)]
        for i, w in enumerate(writes):
            if i == fails_at:
                self.log.append(f"kubernetes write {i} failed")
                return frozenset(), frozenset(), frozenset(), None
            w()
        rolled = host(next(o for o in self.pods if pod_name(o) == plan.delete_pod)) if plan.delete_pod else None
        return (frozenset(o for o in range(self.top()) if o not in plan.ready_pods), plan.leaving,
                frozenset(o for o in plan.leaving if o in unserved), rolled)

    def _label(self, plan: Steps) -> None:
        for o in plan.serve:
            if o in self.pods:
                self.pods[o].serving = True
        for o in plan.unserve:
            if o in self.pods:
                # Endpoints lag only behind a pod that was in the Service: a new pod (no label yet) never was.
                p = self.pods[o]
                p.serving, p.unserved_at = False, self.now if p.serving is True else p.unserved_at

    def _replicas(self, plan: Steps) -> None:
        for o in range(plan.replicas, self.sts_replicas):
            self._takes_down(o, f"lowering the StatefulSet's replicas to {plan.replicas}")
        if plan.replicas != self.sts_replicas:
            self.log.append(f"replicas {self.sts_replicas} -> {plan.replicas}")
        self.sts_replicas = plan.replicas

    def _nodes(self) -> None:
        for o in range(self.desired):  # every declared ordinal's HarperNode is applied (one being deleted stays so)
            self.nodes.setdefault(o, "present")

    def _marks(self, plan: Steps) -> None:
        for o in plan.release_claims:
            self.claims[o] = True
        for o in plan.keep_claims:
            if o in self.claims:
                self.claims[o] = False

    def _delete_nodes(self, plan: Steps) -> None:
        for o in plan.delete_nodes:
            self.log.append(f"delete HarperNode {o}")
            survivors, members = self.cover.get(o, (frozenset(), frozenset()))
            stale = {x for x in self.nodes if x < self.desired} & members - survivors
            if stale:
                self.uncovered |= stale
                self.log.append(f"(its proof did not cover member(s) {sorted(stale)}, that stay now)")
            self.nodes[o] = "deleting"

    def _roll(self, plan: Steps) -> None:
        if plan.delete_pod:
            o = next(x for x in self.pods if pod_name(x) == plan.delete_pod)
            self._takes_down(o, "a rolling update")
            self._delete_pod(o)
            self.log.append(f"roll pod {o}")

    def _delete_claims(self, plan: Steps) -> None:
        for o in plan.delete_claims:
            if o in self.nodes or o < self.desired:
                raise Violation(f"S2: claim {o} deleted while its member is declared or in Harper")
            self._held_elsewhere(o, [x for x in self.nodes if self.nodes[x] == "present" and x < self.desired],
                                 f"S2: volume claim {o} deleted")
            del self.claims[o], self.volumes[o]
            self.log.append(f"delete claim {o}")

    def round(self, fail: str | None = None) -> None:
        """One round of the daemon: ensure, then reconcile. fail: 'harper' (no member answers the operator this
        round), 'mute<o>' (member o does not), 'kube<i>' (the Kubernetes side's i-th write fails: 0 labels, 1
        replicas, 2 HarperNodes, 3 claim marks, 4 HarperNode deletions, 5 the roll, 6 claim deletions), 'write'
        (the restart call fails)."""
        self.log.append(f"round{'' if fail is None else ' (' + fail + ' fails)'} at {self.now:.1f}")
        fails_at = int(fail[4:]) if fail and fail.startswith("kube") else None
        not_ready, leaving, out, rolled = self._ensure(fails_at)
        if self.desired == 0 and fails_at is None:
            # hibernating: no Harper read or write; the proof starts again at the wake-up
            self.passed, self.proof, self.converged = {}, ({}, {}), False
            self.check_s1()
            return
        mute = {int(fail[4:])} if fail and fail.startswith("mute") else set()
        answered = set() if fail == "harper" else {o for o in self.nodes if self.up(o) and o not in mute}
        # Restarts (ClusterReconciler._restarts), after new routes were written to the members that answer.
        wanted = []
        for o in sorted(self.routes_due & answered):
            self.routes_due.discard(o)
            self.routes_at[o] = self.now
            wanted.append(Restart(host(o), ROUTES_RESTART))
        hosts = {host(o) for o in self.nodes}
        before = replace(self.ledger, wanted_since=self.wanted_since).only(hosts)
        down = {host(o) for o in self.nodes if o not in answered} | {host(o) for o in not_ready if o in self.nodes}
        if rolled:
            self.rolled[rolled] = self.now
        changed = {h: max((t for other, t in self.rolled.items() if other != h), default=0.0) for h in hosts}
        if self.variant == "ignore_down":
            down = set()
        admitted, _, ledger = admit(before, wanted, self.now, unreachable=down, changed_at=changed)
        self.wanted_since = dict(ledger.wanted_since)
        ran = set()
        for r in admitted:
            o = int(r.on[1:])
            if fail == "write":
                continue
            self._takes_down(o, f"a restart ({r.reason})")
            self._delete_pod(o)
            ran.add(r.on)
            self.log.append(f"restart {o}")
        self.ledger = settle_restarts(before, ledger, admitted, ran)
        # The leaving members' proof (ClusterReconciler._drains).
        found = self._links(answered)
        others = [host(o) for o in sorted(self.nodes) if self.nodes[o] == "present"]
        drains = {}
        for o in sorted(leaving):
            h, survivors = host(o), []
            if o not in self.nodes:
                waits = f"{h} cannot be read"
            elif o not in out:
                waits = f"taking {h} out of the client Service first"
            else:
                survivors = survivors_of(h, [x for x in others if x != h], found, False)
                self.cover[o] = (frozenset(int(x[1:]) for x in survivors), frozenset(self.nodes))
                versions = received(h, survivors, found, {host(x) for x in answered})
                waits = versions if isinstance(versions, str) else self._proof_look(o, survivors, versions)
            covered = frozenset(survivors)
            began, before = self.passed.get(h, (None, frozenset()))
            drains[h] = replace(drain(h, waits, began if before == covered else None, self.now), survivors=covered)
        self.passed = {h: (d.passed_at, d.survivors) for h, d in drains.items() if d.passed_at is not None}
        self.proof = ({h: d.survivors for h, d in drains.items() if d.proven},
                      {h: d.waits_for for h, d in drains.items() if not d.proven})
        self.converged = (fail != "write" and answered == set(self.nodes) and not admitted and not self.ledger.owed
                          and not self.routes_due
                          and all((a, b) in self.paired for a in self.nodes for b in self.nodes if a != b))

    def _links(self, answered: set[int]) -> dict:
        """cluster_status of every member that answers: a row per peer, connected even across a cut (Harper keeps
        a socket up for a minute without traffic), with what it received from that peer."""
        out = {}
        for a in answered:
            for b in self.nodes:
                if a != b and (a, b) in self.paired:
                    out[(host(a), host(b))] = {DB: Socket(True, received=self.received.get((a, b)))}
        return out

    def _proof_look(self, o: int, survivors: list[str], versions: dict[str, float]) -> str:
        """controller/leaving.proof_look: o's audit log after what the survivors received (paged: about two reads of
        `audit_limit` entries a page, up to AUDIT_PAGES reads), and their versions."""
        start = math.nextafter(versions.get(DB, 0.0), math.inf)
        after = [e for e in self.volumes[o].audit if e.key >= start]
        complete = len(after) < self.audit_limit * (AUDIT_PAGES // 2)
        entries = after if complete else after[:self.audit_limit * (AUDIT_PAGES // 2)]
        writes = [Write(DB, TABLE, e.rid, e.version, deleted=e.deleted) for e in entries]
        held = {}
        for s in survivors:
            data = self.volumes[int(s[1:])].data
            for e in entries:
                version, alive = data.get(e.rid, (0.0, False))
                held[(s, DB, TABLE, e.rid)] = version if alive else None
        return look(host(o), survivors, writes, held, truncated=not complete)

    # ------------------------------------------------------------------ user actions and faults
    def scale(self, n: int) -> None:
        self.desired = n
        self.log.append(f"scale to {n}")

    def roll(self) -> None:
        self.revision += 1
        self.log.append(f"new revision {self.revision}")

    def new_routes(self) -> None:
        self.routes_due |= set(self.nodes)
        self.log.append("new routes")

    def operator_restart(self) -> None:
        """A new operator process: its memory goes, the cluster's status (the restart ledger) stays."""
        self.proof, self.converged, self.passed, self.wanted_since, self.rolled = ({}, {}), False, {}, {}, {}
        self.log.append("operator restarted")

    def heal(self) -> None:
        self.cut.clear()

    # ------------------------------------------------------------------ the end state
    def settled(self) -> bool:
        """What is declared holds on the Kubernetes side, nothing is owed, and replication has caught up."""
        if self.sts_replicas != self.desired or set(self.pods) != set(range(self.desired)):
            return False
        if any(not self.up(o) or p.revision != self.revision or p.serving is not True for o, p in self.pods.items()):
            return False
        if self.desired == 0:
            return True
        return (self.nodes == {o: "present" for o in range(self.desired)} and not self.ledger.owed
                and not self.routes_due and all(not self.claims.get(o, False) for o in range(self.desired))
                and all((b, a) in self.paired and self.received.get((b, a), 0.0) >= self.volumes[a].own_keys[-1]
                        for a in self.nodes if self.volumes[a].own_keys for b in self.nodes if a != b))

    def check_settled(self) -> None:
        """Once settled(): S1 (every member holds every acknowledged record, at its newest version) and S6 (every
        member whose routes changed has restarted since)."""
        for o in range(self.desired):
            data = self.volumes[o].data
            lacks = sorted(rid for rid, (version, _) in self.acked.items() if data.get(rid, (-1.0, False))[0] < version)
            if lacks:
                raise Violation(f"S1: member {o} lacks records {lacks[:5]} after the cluster settled; "
                                f"steps: {self.log[-40:]}")
        for o, t in self.routes_at.items():
            if self.desired and self.pods[o].started_at < t:
                raise Violation(f"S6: member {o} did not restart after its routes changed at {t:.1f}; "
                                f"steps: {self.log[-40:]}")
