"""The restart budget (reconcile/restarts.py): examples, the Harper MODEL driven through it, and properties."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "simulator"))

from harper_model import HarperModel, run_operator, verify  # noqa: E402
from harper_operator.reconcile import (DesiredCluster, DesiredNode, Problem, Restart, RestartLedger, Route,
                                       Subscription, admit, pending_restart, plan, restarts_for_pending)
from harper_operator.reconcile.restarts import REFUSED_JOIN_GRACE, next_admission, restarts_for_refused_joins

EMPTY = RestartLedger()
ROUTES = "load replication routes"
NO_REASON = "apply what Harper reads only at start-up"


def settle(node: str, reason: str = "reconnect to its peers") -> Restart:
    return Restart(node, reason, settle=True)


def loop_message(node: str, ago: int, before: str, now: str) -> str:
    return (f"{node} was restarted {ago}s ago to {before}, and Harper still needs a restart ({now}): the restart did "
            "not take effect; check the node's logs and configuration (the operator tries again after 120s)")


# --- what pending_restart() asks for ------------------------------------------------------------------------------


def test_pending_reconnect_and_shard_become_settling_restarts():
    pending = {"c": "routes, shard", "a": "reconnect", "b": "routes"}
    assert restarts_for_pending(pending) == [
        Restart("a", "reconnect to its peers", settle=True, transient=True),
        Restart("c", "load replication routes and drop the shard its spec clears", settle=True)]
    assert restarts_for_pending({}) == []


# --- grace ---------------------------------------------------------------------------------------------------------


def test_a_settling_restart_waits_for_the_picture_to_last():
    admitted, problems, ledger = admit(EMPTY, [settle("a")], 100.0)
    assert admitted == [] and problems == [] and ledger.wanted_since == {"a": 100.0}
    admitted, _, ledger = admit(ledger, [settle("a")], 109.9)
    assert admitted == [] and ledger.wanted_since == {"a": 100.0}  # the first time is kept
    admitted, _, ledger = admit(ledger, [settle("a")], 110.0)
    assert admitted == [settle("a")]
    assert ledger.done == {"a": ("reconnect to its peers", 110.0)} and ledger.wanted_since == {}


def test_the_next_round_is_due_when_a_held_back_restart_may_be_made():
    """The daemon sleeps no longer than until a waiting restart's grace (or its node's cooldown) is over."""
    _, _, ledger = admit(EMPTY, [settle("a")], 100.0)
    assert next_admission(ledger, [settle("a")], 103.0) == pytest.approx(7.0)
    assert next_admission(ledger, [settle("a", "x"), Restart("a", "y", settle=True, grace=60.0)], 103.0) == \
        pytest.approx(7.0)  # its reasons merged as admit() merges them
    assert next_admission(ledger, [settle("a")], 110.0) is None  # due now: nothing to wait for
    admitted, _, done = admit(ledger, [settle("a")], 110.0)
    assert admitted and next_admission(done, [], 111.0) is None  # made, nothing waits
    _, _, again = admit(done, [settle("a")], 115.0)  # wanted again while coming back: the cooldown holds it
    assert next_admission(again, [settle("a")], 130.0) == pytest.approx(100.0)
    _, _, owed = admit(EMPTY, [Restart("b", ROUTES)], 0.0, unreachable={"b"})
    assert next_admission(owed, [Restart("b", ROUTES)], 1.0) is None  # held back by its node being down, not time


def test_a_picture_that_goes_away_starts_its_grace_again():
    _, _, ledger = admit(EMPTY, [settle("a")], 0.0)
    _, _, ledger = admit(ledger, [], 5.0)
    assert ledger.wanted_since == {}
    _, _, ledger = admit(ledger, [settle("a")], 6.0)
    assert admit(ledger, [settle("a")], 15.0)[0] == []
    assert admit(ledger, [settle("a")], 16.0)[0] == [settle("a")]


def test_a_restart_after_our_own_write_needs_no_grace():
    assert admit(EMPTY, [Restart("a", ROUTES)], 0.0)[0] == [Restart("a", ROUTES)]


def test_one_restart_serves_every_reason_and_waits_only_when_all_may():
    admitted, _, ledger = admit(EMPTY, [settle("a"), Restart("a", ROUTES)], 0.0)
    assert admitted == [Restart("a", f"{ROUTES} and reconnect to its peers")]
    assert ledger.done == {"a": (f"{ROUTES} and reconnect to its peers", 0.0)}


# --- one member at a time ------------------------------------------------------------------------------------------


def test_one_member_at_a_time_lowest_name_first():
    admitted, _, ledger = admit(EMPTY, [Restart("b", ROUTES), Restart("a", ROUTES), Restart("c", ROUTES)], 0.0)
    assert admitted == [Restart("a", ROUTES)]
    # a is back: the next one goes
    admitted, _, ledger = admit(ledger, [Restart("b", ROUTES), Restart("c", ROUTES)], 5.0)
    assert admitted == [Restart("b", ROUTES)]


def test_nothing_while_any_member_is_down():
    """S3: one member down at a time, whatever took it down: a restart of ours still coming back, or a member (a
    pod) down for another reason. Restarting another would take a second member out of replication."""
    _, _, ledger = admit(EMPTY, [Restart("a", ROUTES)], 0.0)
    assert admit(ledger, [Restart("b", ROUTES)], 5.0, unreachable={"a"})[0] == []
    assert admit(ledger, [Restart("b", ROUTES)], 5.0, unreachable={"c"})[0] == []
    assert admit(ledger, [Restart("b", ROUTES)], 120.0, unreachable={"a"})[0] == []
    assert admit(ledger, [Restart("b", ROUTES)], 5.0)[0] == [Restart("b", ROUTES)]


def test_a_member_that_does_not_answer_is_not_restarted_and_holds_the_others():
    admitted, _, ledger = admit(EMPTY, [Restart("a", ROUTES), Restart("b", ROUTES)], 0.0, unreachable={"a"})
    assert admitted == [] and ledger.owed == {"a": (ROUTES,), "b": (ROUTES,)}
    admitted, _, ledger = admit(ledger, [], 5.0)
    assert admitted == [Restart("a", ROUTES)] and ledger.owed == {"b": (ROUTES,)}


def test_a_member_the_operator_cannot_write_to_is_not_restarted_and_holds_no_one_back():
    """Not managed this round (its Secret unreadable, its HarperNode being deleted): its restart stays owed; whether it
    also holds the others back is said by `unreachable`."""
    wanted = [Restart("a", ROUTES), Restart("b", ROUTES)]
    admitted, _, ledger = admit(EMPTY, wanted, 0.0, unmanaged={"a"})
    assert admitted == [Restart("b", ROUTES)] and ledger.owed == {"a": (ROUTES,)}
    admitted, _, ledger = admit(ledger, [], 5.0, unmanaged={"a"})
    assert admitted == [] and ledger.owed == {"a": (ROUTES,)}
    admitted, _, _ = admit(ledger, [], 10.0)
    assert admitted == [Restart("a", ROUTES)]


# --- cooldown ------------------------------------------------------------------------------------------------------


def test_wanted_again_within_the_cooldown_is_a_restart_loop_not_a_restart():
    _, _, ledger = admit(EMPTY, [settle("a")], 0.0, grace=0.0)
    admitted, problems, ledger = admit(ledger, [settle("a")], 5.0)
    assert admitted == [] and problems == []  # coming back: reconnecting takes a moment
    admitted, problems, ledger = admit(ledger, [settle("a")], 40.0)
    assert admitted == []
    assert problems == [Problem("RestartLoop", loop_message("a", 40, "reconnect to its peers", "reconnect to its peers"),
                                node="a", permanent=True)]
    admitted, problems, ledger = admit(ledger, [settle("a")], 119.9)
    assert admitted == [] and [p.reason for p in problems] == ["RestartLoop"]
    admitted, problems, ledger = admit(ledger, [settle("a")], 120.0)  # wanted since 5: grace long over
    assert admitted == [settle("a")] and problems == []
    assert ledger.done == {"a": ("reconnect to its peers", 120.0)}


def test_wanted_for_another_reason_within_the_cooldown_waits_without_a_loop():
    """A routes restart, then a need to reconnect (or a shard the spec clears since): not the same need coming
    back, so no RestartLoop; it still waits for the cooldown (seen on the node layer: Stalled for nothing)."""
    _, _, ledger = admit(EMPTY, [Restart("a", ROUTES)], 0.0)
    admitted, problems, ledger = admit(ledger, [settle("a")], 40.0)
    assert admitted == [] and problems == []
    admitted, problems, ledger = admit(ledger, [settle("a")], 120.0)
    assert admitted == [settle("a")] and problems == []


def test_a_member_pod_replaced_since_a_restart_makes_a_new_need_no_loop():
    """A rolling update replaces a peer's pod (a new address) after a survivor's reconnect restart: the survivor
    needs to reconnect again, and that is a new need, admitted at once, not a RestartLoop."""
    _, _, ledger = admit(EMPTY, [settle("a")], 0.0, grace=0.0)
    admitted, problems, _ = admit(ledger, [settle("a")], 60.0, grace=0.0)
    assert admitted == [] and [p.reason for p in problems] == ["RestartLoop"]
    admitted, problems, ledger = admit(ledger, [settle("a")], 60.0, grace=0.0, changed_at={"a": 30.0})
    assert admitted == [settle("a")] and problems == [] and ledger.done == {"a": ("reconnect to its peers", 60.0)}
    # A pod replaced BEFORE the restart explains nothing: the loop is still a loop.
    _, problems, _ = admit(ledger, [settle("a")], 100.0, grace=0.0, changed_at={"a": 50.0})
    assert [p.reason for p in problems] == ["RestartLoop"]
    # Another member's pod only: b's own restart (its pod replaced at 60) is no new need for b.
    _, problems, _ = admit(ledger, [settle("a")], 100.0, grace=0.0, changed_at={"b": 90.0})
    assert [p.reason for p in problems] == ["RestartLoop"]


def test_no_problem_when_the_restart_worked():
    _, _, ledger = admit(EMPTY, [Restart("a", ROUTES)], 0.0)
    admitted, problems, ledger = admit(ledger, [], 30.0)
    assert admitted == [] and problems == [] and set(ledger.done) == {"a"}
    assert admit(ledger, [], 120.0)[2].done == {}  # forgotten after the cooldown


def test_a_restart_stamped_by_another_clock_does_not_hold_a_node_forever():
    far = RestartLedger(done={"a": (ROUTES, 10_000.0)})
    assert admit(far, [Restart("a", ROUTES)], 0.0)[0] == [Restart("a", ROUTES)]
    near = RestartLedger(done={"a": (ROUTES, 5.0)})  # a little ahead: as good as just now
    admitted, problems, _ = admit(near, [Restart("a", ROUTES)], 0.0)
    assert admitted == [] and problems[0].message.startswith("a was restarted 0s ago")


# --- owed restarts -------------------------------------------------------------------------------------------------


def test_a_put_off_restart_after_our_write_is_owed_until_it_runs():
    # plan() asks for a subscription restart only in the round that re-creates the pairs: nothing shows it later
    subs = "apply the new subscription list"
    admitted, _, ledger = admit(EMPTY, [Restart("x1", subs), Restart("x2", subs)], 0.0)
    assert admitted == [Restart("x1", subs)] and ledger.owed == {"x2": (subs,)}
    admitted, _, ledger = admit(ledger, [], 5.0)
    assert admitted == [Restart("x2", subs)] and ledger.owed == {}
    assert admit(ledger, [], 10.0)[0] == []


def test_a_settling_restart_is_not_owed():
    _, _, ledger = admit(EMPTY, [Restart("a", ROUTES), settle("b")], 0.0)
    assert ledger.owed == {} and ledger.wanted_since == {"b": 0.0}
    _, _, ledger = admit(ledger, [], 20.0)
    assert ledger.wanted_since == {} and ledger.owed == {}


def test_only_keeps_the_members_still_in_the_cluster():
    ledger = RestartLedger(done={"a": (ROUTES, 1.0)}, wanted_since={"b": 2.0}, owed={"c": (ROUTES,)})
    assert ledger.only({"a"}) == RestartLedger(done={"a": (ROUTES, 1.0)})


# --- persistence ---------------------------------------------------------------------------------------------------


def test_the_ledger_survives_json():
    ledger = RestartLedger(done={"a": (ROUTES, 1.5)}, wanted_since={"b": 2.0}, owed={"c": (ROUTES, "x")})
    data = json.loads(json.dumps(ledger.to_dict()))
    assert data == {"done": {"a": {"reason": ROUTES, "at": 1.5}}, "wantedSince": {"b": 2.0},
                    "owed": {"c": [ROUTES, "x"]}}
    assert RestartLedger.from_dict(data) == ledger
    assert RestartLedger.from_dict({"done": {"a": [ROUTES, 3]}}).done == {"a": (ROUTES, 3.0)}


def test_garbage_reads_as_an_empty_ledger():
    for garbage in (None, 3, "x", [], [1, 2], {"done": 5}, {"done": {"a": "x"}}, {"done": {"a": {"reason": 1}}},
                    {"done": {"a": {"reason": "r", "at": "soon"}}}, {"done": {"a": {"reason": "r", "at": True}}},
                    {"wantedSince": {"a": float("nan")}}, {"wantedSince": {"": 1.0}}, {"wantedSince": [1]},
                    {"owed": {"a": "routes"}}, {"owed": {"a": [1]}}, {"owed": {"a": []}}, {"done": {5: ["r", 1]}}):
        assert RestartLedger.from_dict(garbage) == EMPTY, garbage
    partly = RestartLedger.from_dict({"done": {"a": ["r", 1], "b": "junk"}, "wantedSince": {"c": "x", "d": 4}})
    assert partly == RestartLedger(done={"a": ("r", 1.0)}, wanted_since={"d": 4.0})


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["done", "wantedSince", "owed", "a", "reason", "at"]),
                                             inner, max_size=4), max_leaves=12)


@given(json_values)
def test_from_dict_never_raises(data):
    assert isinstance(RestartLedger.from_dict(data), RestartLedger)


# --- the budget driving the Harper MODEL ---------------------------------------------------------------------------


def run_with_budget(model: HarperModel, desired: DesiredCluster, *, rounds: int = 12, step: float = 5.0):
    """The operator's round with every restart through admit(): returns the restarts made, in order."""
    ledger, now, made = EMPTY, 0.0, []
    names = sorted(n.name for n in desired.nodes)
    for _ in range(rounds):
        observed = model.observe(names)
        ops = plan(desired, observed, restart_for_routes=True, restart_for_subscriptions=True)
        writes = [o for o in ops if not isinstance(o, Restart)]
        wanted = [o for o in ops if isinstance(o, Restart)] + restarts_for_pending(pending_restart(desired, observed))
        down = [n for n in names if not observed.reachable(n)]
        admitted, problems, ledger = admit(ledger, wanted, now, unreachable=down)
        assert problems == []
        if not writes and not admitted and not ledger.owed and not ledger.wanted_since:
            return made
        for op in writes + admitted:
            model.apply(op)
        made += [r.on for r in admitted]
        now += step
    raise AssertionError(f"no convergence; restarts made: {made}")


def test_new_routes_restart_the_members_one_at_a_time():
    m = HarperModel(["n1", "n2", "n3"])
    run_operator(m, DesiredCluster(nodes=tuple(DesiredNode(n, f"wss://{n}:9933") for n in ("n1", "n2", "n3"))))
    d = DesiredCluster(nodes=tuple(DesiredNode(n, f"wss://{n}:9933") for n in ("n1", "n2", "n3")),
                       routes=(Route("R1.Example", 9933),))
    assert run_with_budget(m, d) == ["n1", "n2", "n3"]
    assert verify(m, d) == []


def test_two_changed_explicit_lists_are_both_restarted_though_only_one_shows_it():
    t, u = Subscription("data", "t", True, True), Subscription("data", "u", True, True)
    before = DesiredCluster(nodes=(DesiredNode("f", "wss://f:9933"), DesiredNode("x1", "wss://x1:9933", subscriptions=(t,)),
                                   DesiredNode("x2", "wss://x2:9933", subscriptions=(t,))))
    m = HarperModel(["f", "x1", "x2"])
    run_operator(m, before)
    after = replace(before, nodes=(before.nodes[0], replace(before.nodes[1], subscriptions=(u,)),
                                   replace(before.nodes[2], subscriptions=(u,))))
    assert run_with_budget(m, after) == ["x1", "x2"]
    assert verify(m, after) == []


def test_a_node_that_will_not_reconnect_is_restarted_after_the_grace():
    nodes = tuple(DesiredNode(n, f"wss://{n}:9933") for n in ("n1", "n2", "n3"))
    d = DesiredCluster(nodes=nodes)
    m = HarperModel(["n1", "n2", "n3"])
    run_operator(m, d)
    m.remove_node("n2", "n3")  # by hand: n3 comes back only after its restart
    assert run_with_budget(m, d, step=4.0) == ["n3"]
    assert verify(m, d) == []


# --- properties ----------------------------------------------------------------------------------------------------

NODES = ["a", "b", "c", "d"]
GRACE, COOLDOWN = 10.0, 120.0

wish = st.tuples(st.sampled_from(NODES), st.booleans(), st.sampled_from(["r1", "r2", ""]))
step = st.tuples(st.lists(wish, max_size=5), st.sets(st.sampled_from(NODES), max_size=2),
                 st.sampled_from([0.0, 1.0, 4.0, 9.5, 10.0, 30.0, 60.0, 119.0, 120.0, 200.0]))


@settings(max_examples=300)
@given(st.lists(step, min_size=1, max_size=25))
def test_the_budget_keeps_its_promises(steps):
    ledger, now = EMPTY, 0.0
    last: dict[str, float] = {}  # node -> when this test saw it admitted
    last_reasons: dict[str, set[str]] = {}  # node -> the reasons it was restarted for
    since: dict[str, float] = {}  # node -> when it began to be wanted, without a break, since its last restart
    for wishes, down, dt in steps:
        now += dt
        wanted = [Restart(n, reason, settle=s) for n, s, reason in wishes]
        wanted_nodes = {r.on for r in wanted} | set(ledger.owed)
        only_settle = {n for n in wanted_nodes if n not in ledger.owed and all(r.settle for r in wanted if r.on == n)}
        since = {n: since.get(n, now) for n in wanted_nodes}
        reasons = {n: ({r.reason for r in wanted if r.on == n and r.reason} | set(ledger.owed.get(n, ())))
                   or {NO_REASON} for n in wanted_nodes}
        admitted, problems, ledger = admit(ledger, wanted, now, unreachable=down, grace=GRACE, cooldown=COOLDOWN)
        recent = {n for n, t in last.items() if now - t < COOLDOWN}

        assert len(admitted) <= 1  # one member at a time
        # RestartLoop exactly when wanted again too soon (a settling need only once it outlasts the grace)
        settled = {n for n in wanted_nodes if n not in only_settle or now - since[n] >= GRACE}
        again = {n for n in wanted_nodes if reasons[n] & last_reasons.get(n, set())}  # the same need again
        assert {p.node for p in problems} == wanted_nodes & recent & settled & again
        assert all(p.reason == "RestartLoop" and p.permanent for p in problems)
        for r in admitted:
            assert r.on not in recent  # never twice within the cooldown
            assert r.on in wanted_nodes and r.on not in down
            assert not down  # nobody while any member is down (S3)
            assert r.settle == (r.on in only_settle)
            if r.settle:
                assert now - since[r.on] >= GRACE
            last[r.on] = now
            last_reasons[r.on] = set(r.reason.split(" and "))
            del since[r.on]
        ledger = RestartLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))  # the shell persists it
        assert admit(ledger, wanted, now, unreachable=down)[0] == admit(ledger, list(reversed(wanted)), now,
                                                                        unreachable=down)[0]


def test_a_pair_apart_waits_its_longer_grace_and_reconnect_the_default():
    """`apart` (both sides of a pair down) is what a joining node shows for ~20 s: it waits APART_GRACE; with a
    reason that needs no such patience the default grace holds."""
    from harper_operator.reconcile.restarts import APART_GRACE
    wanted = restarts_for_pending({"a": "apart"})
    assert wanted == [Restart("a", "connect to a peer that it and the peer both show apart", settle=True,
                              grace=APART_GRACE, transient=True)]
    admitted, _, ledger = admit(RestartLedger(), wanted, 0.0, grace=10)
    admitted, _, ledger = admit(ledger, wanted, 30.0, grace=10)
    assert admitted == []  # past the default grace, within its own
    admitted, _, ledger = admit(ledger, wanted, APART_GRACE + 1, grace=10)
    assert [r.on for r in admitted] == ["a"]
    mixed = restarts_for_pending({"b": "reconnect, apart"})
    assert mixed[0].grace is None
    admitted, _, ledger = admit(RestartLedger(), mixed, 0.0, grace=10)
    admitted, _, _ = admit(ledger, mixed, 11.0, grace=10)
    assert [r.on for r in admitted] == ["b"]


def test_a_wiped_members_peer_cut_off_from_the_seed_drops_the_old_record_itself_before_its_restart():
    """Found by the model checker (tests/modelcheck), on the model with certificate authorities: n2 is wiped, and n1's
    own record is removed by hand (on n3), so n1 keeps its sockets down and gets no gossip. The old record of n2 was
    removed on the seed only; n1 restarted (to forget n2's old CA) while it still held that record, so it loaded the
    old CA again (a node restarts with the CAs of the records it holds: docs/findings-wiped-node.md). n1 and n2 then
    never connected, and `apart` restarted n2, which cannot help, every cooldown (RestartLoop) for ever. A member
    that does not get the seed's gossip now removes its own copy in the same round, before any restart."""
    from harper_operator.reconcile.plan import mends, waiting_for_restarts

    names = ["n1", "n2", "n3", "n4"]
    d = DesiredCluster(nodes=tuple(DesiredNode(n, f"wss://{n}:9933") for n in names))
    m = HarperModel(names, cas=True)
    run_operator(m, d)
    m.wipe("n2")
    m.remove_node("n3", "n1")
    observed = m.observe()
    ops = plan(d, observed, restart_for_routes=True)
    assert [(o.on, o.hostname) for o in ops if type(o).__name__ == "RemoveNode"] == [("n3", "n2"), ("n1", "n2")]
    ledger, now, loops = EMPTY, 0.0, []
    for _ in range(40):
        observed = m.observe()
        hold = waiting_for_restarts([r for rs in ledger.owed.values() for r in rs])
        ops = plan(d, observed, restart_for_routes=True, hold=hold)
        ops += mends(d, observed, hold=hold) if not ops else []
        wanted = [o for o in ops if isinstance(o, Restart)] + restarts_for_pending(pending_restart(d, observed))
        admitted, problems, ledger = admit(ledger, wanted, now)
        loops += [p for p in problems if p.reason == "RestartLoop"]
        for op in [o for o in ops if not isinstance(o, Restart)] + admitted:
            m.apply(op)
        now += 10.0
    assert loops == [] and verify(m, d) == []


def test_a_peer_is_restarted_for_a_refused_join_only_after_the_grace_once_for_all_its_members():
    refused = {("w", "p"): 100.0, ("v", "p"): 110.0, ("w", "q"): 125.0}
    assert restarts_for_refused_joins(refused, 100.0 + REFUSED_JOIN_GRACE - 1) == []
    [only] = restarts_for_refused_joins(refused, 100.0 + REFUSED_JOIN_GRACE)
    assert only.on == "p" and only.settle and only.grace == 0.0 and "old certificate authority of w" in only.reason
    both = restarts_for_refused_joins(refused, 200.0)
    assert [r.on for r in both] == ["p", "q"] and "of v" in both[0].reason and "of w" in both[0].reason


def test_a_reconnect_right_after_a_join_waits_for_the_join_to_settle():
    """Seen in CI: a node added through a seed showed its own link to a peer down for 18 s, and was restarted for
    `reconnect` at the default grace. A transient picture waits JOIN_GRACE after the last join; without a join, or
    once the join is old, the default grace holds; a join repeated every round holds it JOIN_CAP at most."""
    from harper_operator.reconcile.restarts import JOIN_CAP, JOIN_GRACE
    wanted = restarts_for_pending({"d": "reconnect"})
    assert wanted[0].transient
    _, _, ledger = admit(RestartLedger(), wanted, 100.0, grace=10, joined_at=95.0)
    admitted, _, ledger = admit(ledger, wanted, 118.0, grace=10, joined_at=95.0)
    assert admitted == []  # past the default grace, 23 s after the join
    assert next_admission(ledger, wanted, 118.0, grace=10, joined_at=95.0) == 95.0 + JOIN_GRACE - 118.0
    admitted, _, _ = admit(ledger, wanted, 95.0 + JOIN_GRACE, grace=10, joined_at=95.0)
    assert [r.on for r in admitted] == ["d"]
    # No join since this process began, or an old one: the default grace.
    for joined in (None, 0.0):
        _, _, ledger = admit(RestartLedger(), wanted, 100.0, grace=10, joined_at=joined)
        assert [r.on for r in admit(ledger, wanted, 110.0, grace=10, joined_at=joined)[0]] == ["d"]
    # A join in every round: held, but not past JOIN_CAP after the picture began.
    _, _, ledger = admit(RestartLedger(), wanted, 100.0, grace=10, joined_at=100.0)
    assert admit(ledger, wanted, 100.0 + JOIN_CAP - 1, grace=10, joined_at=100.0 + JOIN_CAP - 2)[0] == []
    assert [r.on for r in admit(ledger, wanted, 100.0 + JOIN_CAP, grace=10, joined_at=100.0 + JOIN_CAP - 1)[0]] \
        == ["d"]


def test_only_a_picture_a_join_explains_waits_for_the_join():
    """A shard to clear, a forgotten CA, a restart that follows a write of ours: a join explains none of them."""
    shard = restarts_for_pending({"a": "shard"})
    mixed = restarts_for_pending({"b": "reconnect, shard"})
    assert not shard[0].transient and not mixed[0].transient
    _, _, ledger = admit(RestartLedger(), shard, 100.0, grace=10, joined_at=100.0)
    assert [r.on for r in admit(ledger, shard, 110.0, grace=10, joined_at=100.0)[0]] == ["a"]
    # One node, a transient wish and one that is not: the merged restart is not transient.
    both = restarts_for_pending({"c": "apart"}) + [Restart("c", "x", settle=True)]
    _, _, ledger = admit(RestartLedger(), both, 100.0, grace=10, joined_at=100.0)
    assert [r.on for r in admit(ledger, both, 110.0, grace=10, joined_at=100.0)[0]] == ["c"]
