"""The model checker (explore.py) on the small bound, and the checker itself shown able to fail.

What is explored is the MODEL of Harper (e2e/simulator/harper_model.py, a fake built from experiments), driven by
the operator's real pure core; docs/modelcheck.md has the transitions, the verdicts and the figures. The larger
bound runs from bench/modelcheck.py.
"""

from __future__ import annotations

import inspect
import time

import pytest
from explore import (KNOWN_LIMITS, MEND_GRACE, RESTART_COOLDOWN, RESTART_GRACE, Bounds, Memory, Operator, State,
                     Topology, explore, full_mesh, with_explicit)
from harper_model import HarperModel
from harper_operator.reconcile import DeleteRoutes, DesiredNode, Problem, Route, SetRoutes, UpdateNode
from harper_operator.reconcile.plan import AddNode

ROUTE = Route("r1", 9933)

# The small bound: every state reachable with at most `quirks` quirks, each chain of rounds judged within `rounds`
# rounds (10 s apart). Floors: somewhat below what is explored today, so a change that makes the exploration collapse
# (a quirk that no longer applies, a key that merges distinct states) fails here.
SMALL = [
    (full_mesh(3), Bounds(quirks=2, rounds=30), 8_000),
    (full_mesh(4), Bounds(quirks=2, rounds=30), 20_000),
    (with_explicit(1), Bounds(quirks=2, rounds=30), 6_500),
    (full_mesh(3, routes=(ROUTE,)), Bounds(quirks=1, rounds=30), 1_000),
]


@pytest.fixture(scope="module")
def small_bound(model_check_summary):
    reports = []
    began = time.monotonic()
    for topology, bounds, floor in SMALL:
        report = explore(topology, bounds)
        reports.append((report, floor))
        model_check_summary.append(report.line())
    model_check_summary.append(f"small bound: {sum(r.states for r, _ in reports)} states in "
                               f"{time.monotonic() - began:.1f}s")
    return reports


@pytest.mark.parametrize("index", range(len(SMALL)), ids=[t.name for t, _, _ in SMALL])
def test_every_reachable_state_ends_ready_stalled_or_waiting_for_a_named_cause(small_bound, index):
    report, floor = small_bound[index]
    print(report.line())
    assert not report.truncated
    assert report.states >= floor, f"exploration collapsed: {report.states} states, expected at least {floor}"
    assert report.unexpected == [], "\n\n".join(f.describe() for f in report.unexpected)
    assert report.max_rounds <= report.bounds.rounds
    assert report.outcomes["ready"] > report.states // 2


def test_only_the_known_limits_show_and_each_is_what_it_says(small_bound):
    """The known limits (docs/modelcheck.md) turn up, and only as themselves: a member connected to no peer is
    waited for, and a wiped member whose old CA no record shows any more is retried, both named, never Stalled."""
    seen = {f.kind for report, _ in small_bound for f in report.failures}
    assert seen <= set(KNOWN_LIMITS)
    assert seen == {"isolated", "unseen-old-ca"}
    for report, _ in small_bound:
        for f in report.failures:
            if f.kind == "isolated":
                assert "connected to no peer" in f.detail
                assert any("stay apart" in t or "goes down" in t for t in f.trace)
            else:
                assert "trusts an old CA of" in f.detail
                assert any("is wiped" in t for t in f.trace)


# --- the explorer can fail ----------------------------------------------------------------------------------------


class Flapping(Operator):
    """Seeded bug: once nothing is left to do, it writes a route on n1 that the spec does not have; the real plan
    deletes it again; and so on."""

    def plan_ops(self, desired, observed, hold):
        ops = super().plan_ops(desired, observed, hold)
        if ops or not observed.reachable("n1"):
            return ops
        return [SetRoutes("n1", (ROUTE,))] if not observed.nodes["n1"].routes_on_disk else [DeleteRoutes("n1", (ROUTE,))]


class Idle(Operator):
    """Seeded bug: plans nothing, ever."""

    def plan_ops(self, desired, observed, hold):
        return []


class Unnamed(Operator):
    """Seeded bug: a permanent problem about n2 whose message does not name it."""

    def diagnose(self, desired, observed):
        return [*super().diagnose(desired, observed), Problem("Broken", "something is wrong", node="n2")]


class RestartsN1(Operator):
    """Seeded bug: asks, for ever, for a restart of n1 that cannot help."""

    def pending(self, desired, observed):
        return {**super().pending(desired, observed), "n1": "reconnect"}


class WrongUrl(Operator):
    """Seeded bug: once joined, sends an add_node for n2 at n3's URL (the model refuses it)."""

    def plan_ops(self, desired, observed, hold):
        ops = super().plan_ops(desired, observed, hold)
        return ops or [AddNode("n1", DesiredNode("n2", "wss://n3:9933"))]


class WritesToTheDown(Operator):
    """Seeded bug: writes to a member that did not answer."""

    def plan_ops(self, desired, observed, hold):
        ops = super().plan_ops(desired, observed, hold)
        down = [n for n in sorted(observed.nodes) if not observed.reachable(n)]
        return ops + [UpdateNode(down[0], DesiredNode("n1", "wss://n1:9933"))] if down else ops


def kinds(report) -> set[str]:
    return {f.kind for f in report.failures}


def test_a_planner_that_oscillates_is_caught_with_its_cycle():
    report = explore(full_mesh(3), Bounds(quirks=0), operator=Flapping())
    (f,) = report.failures
    assert f.kind == "oscillation" and "cluster_set_routes on n1: wss://r1:9933" in f.detail
    assert f.chain  # the rounds that repeat, for a person to read
    assert "oscillation" in f.describe()


def test_a_planner_that_never_converges_is_caught_as_stuck():
    report = explore(full_mesh(3), Bounds(quirks=1), operator=Idle())
    assert kinds(report) == {"stuck"}
    assert all("NodesNotReady" in f.detail or "Unreachable" in f.detail for f in report.failures)


def test_an_end_slower_than_the_bound_is_caught():
    report = explore(full_mesh(3), Bounds(quirks=1, rounds=2))
    assert "slow" in kinds(report)
    assert explore(full_mesh(3), Bounds(quirks=1, rounds=30)).unexpected == []


def test_stalled_without_naming_its_node_is_caught():
    report = explore(full_mesh(3), Bounds(quirks=0), operator=Unnamed())
    assert kinds(report) == {"unnamed"}


def test_restarts_that_never_help_are_caught_although_stalled_is_reported_between_them():
    report = explore(full_mesh(3), Bounds(quirks=0), operator=RestartsN1())
    assert kinds(report) == {"restart-loop"}
    assert "RestartLoop" in report.failures[0].detail and "restart n1" in report.failures[0].detail


def test_writes_the_model_refuses_and_writes_to_a_member_that_did_not_answer_are_caught():
    assert "refused" in kinds(explore(full_mesh(3), Bounds(quirks=0), operator=WrongUrl()))
    report = explore(full_mesh(3), Bounds(quirks=1), operator=WritesToTheDown(), quirks=("stop",))
    assert "misdirected" in kinds(report)


# --- the explorer's own parts -------------------------------------------------------------------------------------


def test_the_constants_are_the_shells():
    from harper_operator.controller import loop

    defaults = inspect.signature(loop.ClusterReconciler.__init__).parameters
    assert (RESTART_GRACE, RESTART_COOLDOWN, MEND_GRACE) == (
        defaults["restart_grace"].default, defaults["restart_cooldown"].default, loop.MEND_GRACE)


def test_a_models_key_is_canonical_and_a_clone_is_independent():
    def built(offset: int) -> HarperModel:
        m = HarperModel(["n1", "n2", "n3"], cas=True)
        m.clock = offset  # the same history, later: only the order of writes matters
        m.set_node("n1", DesiredNode("n2", "wss://n2:9933"))
        m.set_node("n1", DesiredNode("n3", "wss://n3:9933"))
        return m

    a, b = built(0), built(1000)
    assert a.key() == b.key()
    c = a.clone()
    c.set_apart("n1", "n2")
    c.lose_gossip("n3", "n2")
    c.wipe("n2")
    assert a.key() == b.key() != c.key()
    assert a.observe() == b.observe() and a.observe() != c.observe()
    assert c.clone().key() == c.key()


def test_the_memory_keeps_ages_and_forgets_what_no_longer_matters():
    m = Memory(done=(("n1", "why", 100.0),), wanted=(("n2", 55.0),), mend_since=(("mend", 5.0),))
    later = m.later(30.0, cooldown=120.0)  # ages past the longest grace (APART_GRACE, 60 s) are all alike
    assert later.done == () and later.wanted == (("n2", 60.0),) and later.mend_since == (("mend", 35.0),)
    assert Memory.of(m.ledger(), m.mends()) == m


def test_a_quirk_harper_refuses_is_no_transition():
    """An add_node cut off midway when the target distrusts the caller writes nothing: no state, no error."""
    topology = Topology("two", full_mesh(2).desired)
    assert explore(topology, Bounds(quirks=1)).unexpected == []
    state = State(topology.fresh())
    assert state.key() == State(topology.fresh()).key()
