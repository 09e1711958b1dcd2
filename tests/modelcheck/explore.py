"""A bounded, exhaustive model checker of the operator's pure core against the Harper MODEL.

What it explores is a FAKE: e2e/simulator/harper_model.py, an in-memory model of Harper 4.7 clustering built from
experiments on real nodes. It is not Harper, and nothing here talks to Harper or Kubernetes. The operator's side is
real code: plan(), mends(), pending_restart(), diagnose() and the restart budget (admit(), hold_mends()), called
the way the shell (controller/loop.py) calls them in one round; the shell itself (I/O, verify loop, pods, status
objects) is replaced by `Operator.round` below, a few lines that mirror it.

A state is the model's canonical snapshot (HarperModel.key(): records, timestamps by rank, who is up, routes, lost
gossip, pairs apart, each node's CA and the CAs it trusts: topologies run the model with cas=True) plus what the operator remembers between rounds (`Memory`: the restart ledger and the mends'
first sightings, kept as ages so that time passing does not make every state new). Transitions:

* quirks, what Harper and people do (`QUIRKS`): gossip that never brings one record to one node, a pair of nodes
  that stays apart, a wiped node, a node restarted by someone else, an add_node cut off after the target's writes
  (a one-sided record), a member removed by hand, a node stopped and started again;
* the operator's round: observe -> plan + mends (held for their grace) -> apply -> the restarts the budget admits;
  then `step` seconds pass, so graces and cooldowns run out.

explore() walks every state reachable from a fresh cluster (no node joined yet) through rounds and at most
`Bounds.quirks` quirks, in any interleaving. Rounds are deterministic, so from every state the rounds alone form
one chain, and each chain is judged (see `Report`): it must end, within `Bounds.rounds` rounds, in

* ready: nothing to write, nothing pending, every declared pair as declared and connected (verify()), all up;
* stalled: the conditions say Stalled=True with a reason, and the message names the node the problem is about;
* waiting: a node is down (a quirk left it so), the conditions (not Stalled) name it or say the whole cluster waits
  for one (NoReachableSeed), and the members that answer are as declared, or what is left waits for the down one
  (a restart the budget owes: it restarts nobody while a member is down).

Anything else is a failure: a cycle with writes in it (oscillation; when only restarts and a Stalled RestartLoop
repeat, restart-loop: the model always takes a restart, so a restart that does not help went to the wrong node), a
state that stops changing without being one of the above (stuck), a chain longer than the bound (slow), a write the
model refuses other than the expected ones (refused), or an operation sent to a node that did not answer
(misdirected), or Stalled without naming the node (unnamed). Failures that are known limits of the operator
(KNOWN_LIMITS) are reported apart (Report.unexpected leaves them out).

Not mirrored from the shell: ghost-record grace (no quirk makes a record of an undeclared name), pods and their
readiness, paused clusters, restartPolicy other than Restart, the verify loop's re-reads (the model is synchronous).
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "simulator"))

from harper_model import HarperModel, ModelError, check_targets, verify  # noqa: E402
from harper_operator.harper.errors import parse_peer_failure  # noqa: E402
from harper_operator.reconcile.conditions import conditions  # noqa: E402
from harper_operator.reconcile.ghosts import hold_mends  # noqa: E402
from harper_operator.reconcile.plan import (Operation, RemoveNode, Restart, diagnose, mends,  # noqa: E402
                                            pending_restart, plan, waiting_for_restarts, wiped)
from harper_operator.reconcile.problems import Problem  # noqa: E402
from harper_operator.reconcile.restarts import (APART_GRACE, RestartLedger, admit,  # noqa: E402
                                                restarts_for_pending, settle_restarts)
from harper_operator.reconcile.topology import (DesiredCluster, DesiredNode, Route, Subscription,  # noqa: E402
                                                pair_subscriptions)

# The shell's defaults (ClusterReconciler: restart_grace, restart_cooldown; loop.MEND_GRACE). A test checks that
# they still agree.
RESTART_GRACE = 10.0
RESTART_COOLDOWN = 120.0
MEND_GRACE = 10.0
NOW = 1_000_000.0  # the wall clock the budget is shown each round; Memory keeps ages, so any value will do


# --- declared topologies ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    name: str
    desired: DesiredCluster
    config_shards: tuple[tuple[str, int], ...] = ()  # replication.shard in a node's config (kept equal to the spec)
    cas: bool = True  # model certificate authorities (a wiped node's new CA; HarperModel(cas=True))

    @property
    def names(self) -> list[str]:
        return sorted(n.name for n in self.desired.nodes)

    def fresh(self) -> HarperModel:
        m = HarperModel(self.names, {n.name: n.url for n in self.desired.nodes}, cas=self.cas)
        for name, shard in self.config_shards:
            m.nodes[name].config_shard = shard
        return m


def full_mesh(size: int, *, routes: Sequence[Route] = ()) -> Topology:
    names = [f"n{i}" for i in range(1, size + 1)]
    return Topology(f"full{size}" + ("+routes" if routes else ""),
                    DesiredCluster(nodes=tuple(DesiredNode(n, f"wss://{n}:9933") for n in names),
                                   routes=tuple(routes)))


def with_explicit(explicit: int = 1) -> Topology:
    """Two full members and `explicit` members that declare explicit subscriptions (data.t both ways)."""
    t = (Subscription("data", "t", True, True),)
    xs = tuple(DesiredNode(f"x{i}", f"wss://x{i}:9933", subscriptions=t) for i in range(1, explicit + 1))
    return Topology(f"full2+explicit{explicit}", DesiredCluster(nodes=(
        DesiredNode("f1", "wss://f1:9933"), DesiredNode("f2", "wss://f2:9933"), *xs)))


def sharded(size: int = 4) -> Topology:
    """A full mesh in two shards, each node's config holding its spec's shard (docs/harper-semantics.md, 4)."""
    nodes = tuple(DesiredNode(f"n{i}", f"wss://n{i}:9933", shard=1 + (i - 1) * 2 // size) for i in range(1, size + 1))
    return Topology(f"full{size}+shards", DesiredCluster(nodes=nodes),
                    config_shards=tuple((n.name, n.shard) for n in nodes))


# --- what the operator remembers between rounds -------------------------------------------------------------------


def _horizon() -> float:
    return max(RESTART_GRACE, APART_GRACE, MEND_GRACE)


@dataclass(frozen=True)
class Memory:
    """The restart ledger and the mends' first sightings, as ages in seconds (how long ago), so that it is canonical.

    Ages past the longest grace are clamped (nothing tells them apart any more), and a restart older than the
    cooldown is forgotten (admit() forgets it too)."""

    done: tuple[tuple[str, str, float], ...] = ()  # node, reason, age
    wanted: tuple[tuple[str, float], ...] = ()  # node, age
    owed: tuple[tuple[str, tuple[str, ...]], ...] = ()  # node, reasons
    mend_since: tuple[tuple[str, float], ...] = ()  # AddNode.describe(), age

    def ledger(self) -> RestartLedger:
        return RestartLedger(done={n: (r, NOW - a) for n, r, a in self.done},
                             wanted_since={n: NOW - a for n, a in self.wanted},
                             owed=dict(self.owed))

    def mends(self) -> dict[str, float]:
        return {k: NOW - a for k, a in self.mend_since}

    @classmethod
    def of(cls, ledger: RestartLedger, mend_since: dict[str, float]) -> "Memory":
        return cls(done=tuple(sorted((n, r, NOW - t) for n, (r, t) in ledger.done.items())),
                   wanted=tuple(sorted((n, NOW - t) for n, t in ledger.wanted_since.items())),
                   owed=tuple(sorted(ledger.owed.items())),
                   mend_since=tuple(sorted((k, NOW - t) for k, t in mend_since.items())))

    def later(self, seconds: float, cooldown: float) -> "Memory":
        horizon = _horizon()
        return Memory(done=tuple((n, r, a + seconds) for n, r, a in self.done if a + seconds < cooldown),
                      wanted=tuple((n, min(a + seconds, horizon)) for n, a in self.wanted),
                      owed=self.owed,
                      mend_since=tuple((k, min(a + seconds, horizon)) for k, a in self.mend_since))


@dataclass
class State:
    """A model and the operator's memory. Once made, a state's model is never changed (a move works on a clone),
    so states may share one."""

    model: HarperModel
    memory: Memory = field(default_factory=Memory)
    mkey: tuple | None = None  # the model's key, once computed

    def model_key(self) -> tuple:
        if self.mkey is None:
            self.mkey = self.model.key()
        return self.mkey

    def key(self) -> tuple:
        return self.model_key(), self.memory


# --- the operator's round -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    """What one round did and what the conditions said, from the state the round started in."""

    writes: tuple[str, ...]  # every operation applied (restarts included), as described to a person
    refused: tuple[str, ...]  # operations the model refused, with its answer
    misdirected: tuple[str, ...]  # operations sent to a node that did not answer (check_targets)
    problem: Problem | None  # the problem the cluster's conditions report
    stalled: bool
    ready: bool
    wrong: tuple[str, ...]  # verify() among the nodes that answered (computed only when nothing was planned)
    down: tuple[str, ...]
    isolated: tuple[str, ...] = ()  # members that answer, hold records of peers, and are connected to none
    owed: tuple[str, ...] = ()  # members the budget still owes a restart (after this round)
    unseen_ca: tuple[str, ...] = ()  # "a trusts an old CA of b" where nothing the operator reads shows it

    def summary(self) -> str:
        what = ", ".join(self.writes) if self.writes else "no writes"
        cond = "Ready" if self.ready else (f"Stalled {self.problem.reason}" if self.stalled else
                                           f"Reconciling {self.problem.reason if self.problem else ''}")
        return f"{what} [{cond}]"


def execute(model: HarperModel, ops: Iterable[Operation]) -> tuple[list[Operation], list[tuple[Operation, str]],
                                                                  set[str]]:
    """Apply in order, as controller/execute.py does: a remove_node of a record already gone is success; after a
    failure, what involves the node it was about is skipped; a restart only after a failed call on that node.
    Returns (applied, (operation, Harper's answer) for each refusal, restarts that did not run)."""
    applied, refused, doubtful, failed_on, not_run = [], [], set(), set(), set()
    for op in ops:
        subject = getattr(getattr(op, "target", None), "name", None) or getattr(op, "hostname", None) or op.on
        if (op.on in failed_on) if isinstance(op, Restart) else bool({op.on, subject} & doubtful):
            if isinstance(op, Restart):
                not_run.add(op.on)
            continue
        try:
            model.apply(op)
        except ModelError as e:
            if isinstance(op, RemoveNode) and "does not exist" in str(e):
                applied.append(op)
                continue
            refused.append((op, str(e)))
            doubtful.add(subject)
            if subject == op.on or "does not answer" in str(e):
                failed_on.add(op.on)
                doubtful.add(op.on)
            if isinstance(op, Restart):
                not_run.add(op.on)
            continue
        applied.append(op)
    return applied, refused, not_run


def failure_problem(op: Operation, answer: str) -> Problem:
    """The Problem the shell makes of a refused write (controller/loop._failure): permanent only when the client
    would raise a PermanentHarperError, i.e. a peer that answered and refused (harper/errors.PeerFailure)."""
    peer = parse_peer_failure(answer)
    permanent = peer.rejected if peer else "does not answer" not in answer
    return Problem(f"{type(op).__name__}Failed", f"{op.describe()}: {answer}", permanent=permanent)


# Refusals Harper makes of a well-planned write, which the operator retries: an add_node while a peer still
# trusts a wiped node's old CA (docs/findings-wiped-node.md). Any other refusal is a failure of the plan.
EXPECTED_REFUSALS = ("connection was required to sign certificate",)


def names_the_cause(problem: Problem | None) -> bool:
    """A reason, a message, and the node's name in the message when the problem is about a node."""
    return bool(problem and problem.reason and problem.message and (problem.node is None
                                                                    or problem.node in problem.message))


@dataclass(frozen=True)
class Look:
    """What a round reads and plans from the model alone (the same for every memory: cached)."""

    ops: tuple[Operation, ...]
    pending: tuple[tuple[str, str], ...]
    diagnosed: tuple[Problem, ...]
    down: tuple[str, ...]
    isolated: tuple[str, ...]
    unseen_ca: tuple[str, ...]
    wrong: tuple[str, ...]  # verify(), when nothing is planned nor pending
    misdirected: tuple[str, ...]
    reachable: frozenset[str]


class Operator:
    """One round of the shell, over the pure functions. Subclass and override plan_ops(), pending() or diagnose()
    to check that the explorer catches a broken operator.

    What a round reads and plans depends on the model alone (and on the restarts owed), and what its writes do on
    the model and the writes alone: both are cached, since many states share a model and differ in memory only."""

    def __init__(self, *, step: float = 10.0, grace: float = RESTART_GRACE, cooldown: float = RESTART_COOLDOWN,
                 mend_grace: float = MEND_GRACE):
        self.step, self.grace, self.cooldown, self.mend_grace = step, grace, cooldown, mend_grace
        self._looks: dict[tuple, Look] = {}
        self._applied: dict[tuple, tuple] = {}

    def plan_ops(self, desired: DesiredCluster, observed, hold: set[str]) -> list[Operation]:
        """What controller/loop.intent() plans: plan() with restartPolicy Restart, then the mends."""
        ops = plan(desired, observed, restart_for_routes=True, restart_for_subscriptions=True, hold=hold)
        return ops + mends(desired, observed, hold=hold)

    def pending(self, desired: DesiredCluster, observed) -> dict[str, str]:
        return pending_restart(desired, observed)

    def diagnose(self, desired: DesiredCluster, observed) -> list[Problem]:
        return diagnose(desired, observed)

    def look(self, state: State, desired: DesiredCluster, hold: set[str]) -> Look:
        key = (state.model_key(), tuple(sorted(hold)))
        found = self._looks.get(key)
        if found is not None:
            return found
        model = state.model
        names = sorted(n.name for n in desired.nodes)
        observed = model.observe(names)
        ops = self.plan_ops(desired, observed, hold)
        misdirected = []
        try:  # restarts are wishes the budget grants only to members that answer (checked in round())
            check_targets([op for op in ops if not isinstance(op, Restart)], observed)
        except AssertionError as e:
            misdirected.append(str(e))
        pending = self.pending(desired, observed)
        down = tuple(n for n in names if not observed.reachable(n))
        found = self._looks[key] = Look(
            ops=tuple(ops), pending=tuple(sorted(pending.items())), diagnosed=tuple(self.diagnose(desired, observed)),
            down=down,
            isolated=tuple(n for n in names if observed.reachable(n) and observed.nodes[n].peers
                           and not any(r.connected for r in observed.nodes[n].peers.values())),
            unseen_ca=_unseen_ca(model, observed),
            wrong=tuple(verify(model, desired, skip=down)) if not ops and not pending else (),
            misdirected=tuple(misdirected), reachable=frozenset(n for n in names if observed.reachable(n)))
        return found

    def apply(self, state: State, ops: list[Operation]) -> tuple[HarperModel, tuple, tuple, tuple, set]:
        """(the model after `ops`, its key, the operations applied, the refusals, restarts not run)."""
        if not ops:
            return state.model, state.model_key(), (), (), set()
        key = (state.model_key(), tuple(ops))
        found = self._applied.get(key)
        if found is None:
            model = state.model.clone()
            applied, refused, not_run = execute(model, ops)
            found = self._applied[key] = (model, model.key(), tuple(applied), tuple(refused), not_run)
        return found

    def round(self, state: State, desired: DesiredCluster) -> tuple[State, RoundResult]:
        ledger = state.memory.ledger()
        hold = waiting_for_restarts([r for reasons in ledger.owed.values() for r in reasons])
        look = self.look(state, desired, hold)
        pending = dict(look.pending)
        wanted = [op for op in look.ops if isinstance(op, Restart)] + restarts_for_pending(pending)
        admitted, restart_problems, after = admit(ledger, wanted, NOW, unreachable=look.down, grace=self.grace,
                                                  cooldown=self.cooldown)
        misdirected = list(look.misdirected) + [f"{r.describe()} is admitted for a node that did not answer"
                                                for r in admitted if r.on not in look.reachable]
        writes = [op for op in look.ops if not isinstance(op, Restart)]
        writes, mend_since = hold_mends(writes, state.memory.mends(), NOW, self.mend_grace)
        model, mkey, applied, refused, not_run = self.apply(state, writes + admitted)

        # The conditions, from what this round saw (controller/status.py's order: permanent problems first).
        failures = [failure_problem(op, answer) for op, answer in refused]
        problem = _cluster_problem(list(look.diagnosed), restart_problems, failures, look.wrong, pending,
                                   bool(look.ops or after.owed))
        conds = {c["type"]: c for c in conditions(problem=problem, busy=bool(look.ops) or bool(
            problem and not problem.permanent), now="1970-01-01T00:00:00Z")}
        if not_run:  # a restart booked but not made is owed again, as in the shell
            after = settle_restarts(ledger, after, admitted, ran={r.on for r in admitted} - set(not_run))
        result = RoundResult(
            writes=tuple(op.describe() for op in applied), refused=tuple(p.message for p in failures),
            misdirected=tuple(misdirected), problem=problem, stalled=conds["Stalled"]["status"] == "True",
            ready=conds["Ready"]["status"] == "True", wrong=look.wrong, down=look.down, isolated=look.isolated,
            owed=tuple(sorted(after.owed)), unseen_ca=look.unseen_ca)
        return State(model, Memory.of(after, mend_since).later(self.step, self.cooldown), mkey), result


def _unseen_ca(model: HarperModel, observed) -> tuple[str, ...]:
    """Members that trust an old CA of a peer (the model's truth) while wiped() cannot see it: the wiped peer's
    old records are gone, or it holds records again (its own CA is read only while it holds none)."""
    if not model.cas:
        return ()
    out = []
    for a, n in sorted(model.nodes.items()):
        for b, held in sorted(n.trusted.items()):
            if b in model.nodes and held[0] != model.nodes[b].ca and not wiped(b, observed):
                out.append(f"{a} trusts an old CA of {b}")
    return tuple(out)


def _cluster_problem(diagnosed: list[Problem], restart_problems: list[Problem], failures: list[Problem],
                     wrong: tuple[str, ...], pending: dict[str, str], busy: bool) -> Problem | None:
    """The one problem the cluster's conditions report, in controller/status.py's order."""
    permanent = [p for p in diagnosed + restart_problems + failures if p.permanent]
    if permanent:
        return permanent[0]
    whole = [p for p in diagnosed if p.node is None]
    if whole:
        return whole[0]
    if failures:
        return failures[0]
    if diagnosed:
        return diagnosed[0]
    if wrong:
        return Problem("NodesNotReady", "waiting for " + "; ".join(wrong), permanent=False)
    if pending:
        return Problem("RestartPending", "waiting for a restart of " + ", ".join(f"{k} ({v})" for k, v in
                                                                               sorted(pending.items())),
                       permanent=False)
    if busy:
        return Problem("OperationsPending", "operations still to do", permanent=False)
    return None


# --- quirks -------------------------------------------------------------------------------------------------------

Move = tuple[str, Callable[[HarperModel], None]]


def _live(m: HarperModel, a: str, b: str) -> bool:
    return m.rec(a, b) is not None


def _lose(m: HarperModel, d: DesiredCluster) -> list[Move]:
    names = sorted(m.nodes)
    return [(f"gossip never brings {b}'s record to {a}", lambda x, a=a, b=b: x.lose_gossip(a, b))
            for a in names for b in names if a != b and _live(m, a, b) and (a, b) not in m.lost]


def _apart(m: HarperModel, d: DesiredCluster) -> list[Move]:
    names = sorted(m.nodes)
    out = []
    for a in names:
        for b in names:
            if b <= a or frozenset((a, b)) in m.apart or not (m.nodes[a].up and m.nodes[b].up):
                continue
            ra, rb = m.rec(a, b), m.rec(b, a)
            if ra and rb and m._connected(a, b, ra) and m._connected(b, a, rb):
                out.append((f"{a} and {b} stay apart", lambda x, a=a, b=b: x.set_apart(a, b)))
    return out


def _wipe(m: HarperModel, d: DesiredCluster) -> list[Move]:
    return [(f"{a} is wiped", lambda x, a=a: x.wipe(a)) for a in sorted(m.nodes)
            if m.nodes[a].table or m.nodes[a].routes_disk or m.nodes[a].routes_loaded]


def _crash(m: HarperModel, d: DesiredCluster) -> list[Move]:
    return [(f"{a} restarts (not by the operator)", lambda x, a=a: x.restart(a)) for a in sorted(m.nodes)
            if m.nodes[a].up]


def _half(m: HarperModel, d: DesiredCluster) -> list[Move]:
    """add_node on `a` for `b`, cut off after b's writes: b holds a's record, a holds none of b."""
    nodes = d.by_name()
    out = []
    for a in sorted(m.nodes):
        for b in sorted(m.nodes):
            if a == b or not (m.nodes[a].up and m.nodes[b].up) or _live(m, a, b):
                continue
            if nodes[a].full != nodes[b].full and nodes[a].full:
                continue  # an explicit pair is written by an add_node ON the explicit node
            subs = pair_subscriptions(nodes[a], nodes[b])
            if subs == ():
                continue
            target = replace(nodes[b], subscriptions=subs)
            out.append((f"add_node on {a} for {b} cut off after {b}'s writes",
                        lambda x, a=a, t=target: x.set_node(a, t, only_target=True)))
    return out


def _remove(m: HarperModel, d: DesiredCluster) -> list[Move]:
    names = sorted(m.nodes)
    return [(f"remove_node on {a} for {b} by hand", lambda x, a=a, b=b: x.remove_node(a, b))
            for a in names for b in names if a != b and m.nodes[a].up and _live(m, a, b)]


def _stop(m: HarperModel, d: DesiredCluster) -> list[Move]:
    return [(f"{a} goes down", lambda x, a=a: x.stop(a)) for a in sorted(m.nodes) if m.nodes[a].up]


def _start(m: HarperModel, d: DesiredCluster) -> list[Move]:
    return [(f"{a} comes back", lambda x, a=a: x.start(a)) for a in sorted(m.nodes) if not m.nodes[a].up]


QUIRKS: dict[str, Callable[[HarperModel, DesiredCluster], list[Move]]] = {
    "lose": _lose, "apart": _apart, "wipe": _wipe, "crash": _crash, "half": _half, "remove": _remove,
    "stop": _stop, "start": _start,
}


# --- exploration --------------------------------------------------------------------------------------------------


GOOD = ("ready", "stalled", "waiting")
# Ends that are not what the issue asks for, found by this checker, and left as they are on purpose (docs/modelcheck.md
# says why). A test asserts that nothing else turns up.
KNOWN_LIMITS = {
    "unseen-old-ca": "a wiped member re-joins while its peers trust its old CA and no record shows that CA any more "
                     "(removed by hand, or the member re-added before the operator looked): nothing the operator "
                     "reads tells it which peers to restart; it retries, Reconciling, never Stalled "
                     "(docs/harper-semantics.md section 9, 'Not handled')",
    "isolated": "a member that answers but is connected to no peer is waited for (Reconciling, naming it), never "
                "restarted and never Stalled: the operator cannot tell it from a cut network, which a restart does "
                "not mend (pending_restart, `apart`)",
}


@dataclass(frozen=True)
class Bounds:
    quirks: int = 1  # quirks on any path from the fresh cluster
    rounds: int = 40  # rounds within which every chain must settle
    max_states: int = 2_000_000  # a safety net: exploration stops (and says so) beyond it


@dataclass
class Failure:
    kind: str  # oscillation | stuck | slow | refused | misdirected
    detail: str
    trace: list[str]  # from the fresh cluster: quirks and rounds, to the first state found that leads here
    chain: list[str]  # the rounds from there on (up to the bound)
    states: int = 1  # states that lead to the same end

    def describe(self) -> str:
        lines = [f"{self.kind}: {self.detail} ({self.states} state(s))", "  reached by:"]
        lines += [f"    {t}" for t in self.trace] or ["    (the fresh cluster)"]
        lines.append("  then the operator alone:")
        lines += [f"    {c}" for c in self.chain]
        return "\n".join(lines)


@dataclass
class Report:
    topology: str
    bounds: Bounds
    quirk_kinds: tuple[str, ...]
    step: float
    states: int = 0
    rounds_run: int = 0
    seconds: float = 0.0
    truncated: bool = False
    outcomes: Counter = field(default_factory=Counter)  # states per end: ready, stalled, waiting, or a failure kind
    max_rounds: int = 0  # the longest chain to its end among the states that end well
    longest: Failure | None = None  # how that longest chain was reached and what it did (kind: its end)
    examples: dict[str, Failure] = field(default_factory=dict)  # one state per good end other than ready
    failures: list[Failure] = field(default_factory=list)
    stalled_reasons: Counter = field(default_factory=Counter)
    refusals: int = 0  # rounds' writes Harper refused as expected (EXPECTED_REFUSALS), retried later
    # states whose round reports Stalled while their chain still ends Ready or waiting: an alarm that passes
    transient_stalled: Counter = field(default_factory=Counter)

    @property
    def unexpected(self) -> list[Failure]:
        """The failures that are not known limits (KNOWN_LIMITS)."""
        return [f for f in self.failures if f.kind not in KNOWN_LIMITS]

    def line(self) -> str:
        return (f"{self.topology}: {self.states} states, quirks<={self.bounds.quirks} ({','.join(self.quirk_kinds)}), "
                f"rounds<={self.bounds.rounds} (step {self.step:.0f}s), longest settle {self.max_rounds} rounds, "
                f"{dict(sorted(self.outcomes.items()))}, {len(self.unexpected)} failure(s), {self.seconds:.1f}s"
                + (" TRUNCATED" if self.truncated else ""))

    def as_dict(self) -> dict:
        return {"topology": self.topology, "quirks": self.bounds.quirks, "rounds": self.bounds.rounds,
                "quirk_kinds": list(self.quirk_kinds), "step_seconds": self.step, "states": self.states,
                "rounds_run": self.rounds_run, "seconds": round(self.seconds, 2), "truncated": self.truncated,
                "outcomes": dict(sorted(self.outcomes.items())), "longest_settle_rounds": self.max_rounds,
                "stalled_reasons": dict(sorted(self.stalled_reasons.items())), "expected_refusals": self.refusals,
                "transient_stalled": dict(sorted(self.transient_stalled.items())),
                "failures": [{"kind": f.kind, "detail": f.detail, "states": f.states, "trace": f.trace,
                              "chain": f.chain} for f in self.failures]}


def explore(topology: Topology, bounds: Bounds = Bounds(), *, operator: Operator | None = None,
            quirks: Sequence[str] = tuple(QUIRKS)) -> Report:
    """Every state reachable from the fresh cluster through rounds and at most bounds.quirks quirks; then every
    state's chain of rounds judged. See the module docstring."""
    operator = operator or Operator()
    desired = topology.desired
    began = time.monotonic()
    report = Report(topology.name, bounds, tuple(quirks), operator.step)

    index: dict[tuple, int] = {}
    depth: list[int] = []  # fewest quirks that reach the state
    parent: list[tuple[int, str] | None] = []
    succ: list[int] = []
    results: list[RoundResult | None] = []
    pending: dict[int, State] = {}  # found, not expanded yet (expanded states keep only their key)

    def add(state: State, d: int, via: tuple[int, str] | None) -> tuple[int, bool]:
        k = state.key()
        i = index.get(k)
        if i is None:
            i = len(depth)
            index[k] = i
            depth.append(d)
            parent.append(via)
            succ.append(-1)
            results.append(None)
            pending[i] = state
            return i, True
        if d < depth[i] and i in pending:
            depth[i], parent[i] = d, via
            return i, True
        return i, False

    first, _ = add(State(topology.fresh()), 0, None)
    queue = deque([first])
    while queue:
        i = queue.popleft()
        state = pending.pop(i, None)
        if state is None:
            continue  # expanded already (queued twice)
        if len(depth) > bounds.max_states:
            report.truncated = True
            pending[i] = state
            break
        nxt, res = operator.round(state, desired)
        report.rounds_run += 1
        j, new = add(nxt, depth[i], (i, "round"))
        succ[i], results[i] = j, res
        if new:
            queue.appendleft(j)  # a round costs no quirk: 0-1 breadth-first, fewest quirks first
        if depth[i] < bounds.quirks:
            for kind in quirks:
                for label, move in QUIRKS[kind](state.model, desired):
                    m = state.model.clone()
                    try:
                        move(m)
                    except ModelError:
                        continue  # Harper refuses it here (an add_node whose target distrusts the caller)
                    j, new = add(State(m, state.memory), depth[i] + 1, (i, label))
                    if new:
                        queue.append(j)
    report.states = len(depth)
    _judge(report, succ, results, parent, bounds, depth)
    report.seconds = time.monotonic() - began
    return report


def _trace(parent: list, results: list, i: int) -> list[str]:
    out = []
    while parent[i] is not None:
        p, label = parent[i]
        out.append(f"round: {results[p].summary()}" if label == "round" else f"QUIRK {label}")
        i = p
    return list(reversed(out))


def _judge(report: Report, succ: list[int], results: list, parent: list, bounds: Bounds, depth: list[int]) -> None:
    n = len(succ)
    # outcome[i] = (kind, rounds to the end, end id); end id groups the states that end alike
    outcome: list[tuple[str, int, int] | None] = [None] * n
    ends: dict[int, tuple[str, str]] = {}  # end id -> (kind, detail)

    def chain(i: int) -> list[str]:
        out, seen = [], set()
        while len(out) < bounds.rounds + 2 and i >= 0 and results[i] is not None and i not in seen:
            seen.add(i)
            out.append(results[i].summary())
            if succ[i] == i and not results[i].writes:
                break
            if outcome[i] is not None and outcome[i][0] in GOOD and outcome[i][1] == 0 and succ[i] != i:
                out.append("(and so on)")
                break
            i = succ[i]
        return out

    for start in range(n):
        if outcome[start] is not None or results[start] is None:
            continue
        path, pos = [], {}
        j = start
        while True:
            if outcome[j] is not None:
                kind, rounds, end = outcome[j]
                base = (kind, rounds, end)
                break
            if results[j] is None:  # not expanded (truncated exploration)
                base = ("unexplored", 0, -1)
                break
            if j in pos:
                cycle = path[pos[j]:]
                end = cycle[0]
                ends[end] = _judge_cycle(cycle, results, succ)
                for k in cycle:
                    outcome[k] = (ends[end][0], 0, end)
                path = path[:pos[j]]
                base = outcome[j]
                break
            pos[j] = len(path)
            path.append(j)
            if succ[j] == j and not results[j].writes:
                ends[j] = _judge_end(results[j])
                outcome[j] = (ends[j][0], 0, j)
                path.pop()
                base = outcome[j]
                break
            j = succ[j]
        kind, rounds, end = base
        # Rounds until the end's verdict holds for good: a state already showing it (Ready, say, while the
        # ledger still ages) counts 0 when every later one does too.
        final = _verdict(results[end]) if end >= 0 and results[end] is not None else None
        for p in reversed(path):
            rounds = 0 if rounds == 0 and _verdict(results[p]) == final else rounds + 1
            outcome[p] = (kind, rounds, end)

    # Tally, and one failure per end (from the state with fewest quirks that leads to it).
    firsts: dict[int, int] = {}
    counts: Counter = Counter()
    longest = -1
    example: dict[str, int] = {}
    for i in range(n):
        if outcome[i] is None:
            continue
        kind, rounds, end = outcome[i]
        if kind in GOOD and rounds > bounds.rounds:
            kind = "slow"
            end = -2 - end  # its own group, per end
            ends.setdefault(end, ("slow", f"more than {bounds.rounds} rounds to reach it"))
        report.outcomes[kind] += 1
        if kind in ("ready", "waiting") and results[i].stalled:
            report.transient_stalled[results[i].problem.reason] += 1
            if "transient-stalled" not in example or depth[i] < depth[example["transient-stalled"]]:
                example["transient-stalled"] = i
        if kind in GOOD:
            if longest < 0 or rounds > report.max_rounds:
                report.max_rounds, longest = rounds, i
            if kind == "stalled":
                report.stalled_reasons[ends[end][1]] += 1
            if kind != "ready" and (kind not in example or depth[i] < depth[example[kind]]):
                example[kind] = i
            continue
        counts[end] += 1
        if end not in firsts or depth[i] < depth[firsts[end]]:
            firsts[end] = i
    if longest >= 0:
        report.longest = Failure(outcome[longest][0], f"the longest way to an end: {report.max_rounds} rounds",
                                 _trace(parent, results, longest), chain(longest))
    for kind, i in sorted(example.items()):
        detail = results[i].problem.message if kind == "transient-stalled" else ends[outcome[i][2]][1]
        report.examples[kind] = Failure(kind, detail, _trace(parent, results, i), chain(i),
                                        sum(report.transient_stalled.values()) if kind == "transient-stalled"
                                        else report.outcomes[kind])
    for end, i in sorted(firsts.items(), key=lambda kv: (depth[kv[1]], kv[0])):
        kind, detail = ends.get(end, ("unexplored", "exploration truncated"))
        report.failures.append(Failure(kind, detail, _trace(parent, results, i), chain(i), counts[end]))
    # Writes the model refused, and operations sent to nodes that did not answer: failures wherever they happen.
    seen: dict[tuple[str, str], int] = {}
    for i in range(n):
        r = results[i]
        if r is None:
            continue
        unexpected = [x for x in r.refused if not any(e in x for e in EXPECTED_REFUSALS)]
        report.refusals += len(r.refused) - len(unexpected)
        for kind, items in (("refused", unexpected), ("misdirected", r.misdirected)):
            for item in items:
                key = (kind, item.split(":")[0].split(" ")[0])
                if key not in seen:
                    seen[key] = len(report.failures)
                    report.failures.append(Failure(kind, item, _trace(parent, results, i), chain(i)))
                else:
                    report.failures[seen[key]].states += 1


def _verdict(r: RoundResult) -> tuple:
    if r.ready:
        return ("ready",)
    return ("stalled" if r.stalled else "reconciling", r.problem.reason if r.problem else "", bool(r.writes))


def _judge_end(r: RoundResult) -> tuple[str, str]:
    """A state the operator leaves as it is, writing nothing."""
    if r.ready:
        return "ready", "Ready"
    if r.stalled and names_the_cause(r.problem):
        return "stalled", r.problem.reason
    if r.down and names_the_cause(r.problem) and not r.problem.permanent and (
            r.problem.node is None or any(d in r.problem.message for d in r.down)) and (
            not r.wrong or r.owed or r.problem.node is None):
        # A member is down, and the conditions say so (Unreachable), or that the whole cluster waits for one
        # (NoReachableSeed); the members that answer are as declared, or what is left waits for the down member
        # (the budget restarts nobody while one is down, S3; or no full member answers to be the seed).
        return "waiting", r.problem.reason
    if r.unseen_ca and names_the_cause(r.problem):
        return "unseen-old-ca", f"{'; '.join(r.unseen_ca)}: conditions say {r.problem.reason}"
    cut_off = set(r.isolated) | set(r.down)
    if (r.isolated and names_the_cause(r.problem) and any(n in r.problem.message for n in cut_off)
            and all(cut_off & set(w.split()) for w in r.wrong)):
        return "isolated", f"{', '.join(r.isolated)} connected to no peer: waited for, never Stalled"
    if r.stalled:
        return "unnamed", f"Stalled without naming the cause: {r.problem}"
    return "stuck", (f"nothing more is done and the conditions say {r.problem.reason if r.problem else 'nothing'}"
                     f" ({r.problem.message if r.problem else ''}); wrong: {list(r.wrong)}")


def _judge_cycle(cycle: list[int], results: list, succ: list[int]) -> tuple[str, str]:
    rs = [results[i] for i in cycle]
    if not any(r.writes for r in rs):
        return _judge_end(rs[0])
    writes = [w for r in rs for w in r.writes]
    unseen = sorted({u for r in rs for u in r.unseen_ca})
    if unseen:
        return "unseen-old-ca", f"{'; '.join(unseen)}: a cycle of {len(cycle)} round(s) writing {writes}"
    stalled = [r for r in rs if r.stalled and names_the_cause(r.problem)]
    if stalled and all(all(w.startswith("restart ") for w in r.writes) for r in rs):
        # The budget's retry after a RestartLoop. Harper (the model) always takes a restart, so a restart that
        # does not help went to a node it cannot help.
        return "restart-loop", f"Stalled {stalled[0].problem.reason} between restarts that do not help: {writes}"
    return "oscillation", f"a cycle of {len(cycle)} round(s) writing {writes}"
