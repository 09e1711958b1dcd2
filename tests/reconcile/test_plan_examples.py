"""Example-based tests of plan()/diagnose()/pending_restart() against the Harper MODEL (e2e/simulator/harper_model.py).

The model is a fake of Harper 4.7 built from experiments on real nodes (docs/harper-semantics.md); these tests check
the planner against it, not against Harper itself.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "simulator"))

import pytest  # noqa: E402
from harper_model import HarperModel, ModelNode, run_operator, verify  # noqa: E402
from harper_operator.reconcile import (AddNode, DeleteRoutes, DesiredCluster, DesiredNode, ObservedCluster,
                                       ObservedNode, RemoveNode, Restart, Route, SetRoutes, Subscription,
                                       UpdateNode, choose_seed, diagnose, pending_restart, plan)
from harper_operator.reconcile.plan import REJOIN_RESTART, mends, waiting_for_restarts
from harper_operator.reconcile.topology import PeerRecord, pair_subscriptions, url_key

T = Subscription("data", "t", True, True)
U_IN = Subscription("data", "u", True, False)


def node(name: str, **kw) -> DesiredNode:
    return DesiredNode(name, f"wss://{name}:9933", **kw)


def cluster(*nodes: DesiredNode, routes=()) -> DesiredCluster:
    return DesiredCluster(nodes=tuple(nodes), routes=tuple(routes))


def full(*names: str) -> DesiredCluster:
    return cluster(*(node(n) for n in names))


def converged(names, desired=None) -> HarperModel:
    m = HarperModel(names)
    run_operator(m, desired or full(*names))
    assert verify(m, desired or full(*names)) == []
    return m


def kinds(ops):
    return [(type(o).__name__, o.on, getattr(getattr(o, "target", None), "name", None) or getattr(o, "hostname", None))
            for o in ops]


# --- full mesh ------------------------------------------------------------------------------------------------------


def test_three_nodes_from_nothing_take_two_add_node_on_one_seed():
    m = HarperModel(["n1", "n2", "n3"])
    d = full("n1", "n2", "n3")
    ops = plan(d, m.observe())
    assert kinds(ops) == [("AddNode", "n1", "n2"), ("AddNode", "n1", "n3")]
    assert all(o.target.subscriptions is None for o in ops)
    for op in ops:
        m.apply(op)
    assert plan(d, m.observe()) == []
    assert verify(m, d) == []


def test_grow_three_to_four_is_one_add_on_the_seed():
    m = converged(["n1", "n2", "n3"])
    m.nodes["n4"] = ModelNode("n4", "wss://n4:9933")
    d = full("n1", "n2", "n3", "n4")
    assert kinds(plan(d, m.observe())) == [("AddNode", "n1", "n4")]
    run_operator(m, d)
    assert verify(m, d) == []


def test_shrink_four_to_three_removes_once_and_the_removal_spreads():
    m = converged(["n1", "n2", "n3", "n4"])
    d = full("n1", "n2", "n3")
    ops = plan(d, m.observe(["n1", "n2", "n3"]))
    assert ops == [RemoveNode("n1", "n4")]
    m.apply(ops[0])
    for n in ("n1", "n2", "n3"):
        assert "n4" not in m.observe_node(n).peers
    assert plan(d, m.observe(["n1", "n2", "n3"])) == []
    assert verify(m, d) == []


def test_a_converged_cluster_needs_nothing():
    m = converged(["n1", "n2", "n3"])
    d = full("n1", "n2", "n3")
    assert plan(d, m.observe()) == []
    assert pending_restart(d, m.observe()) == {}
    assert diagnose(d, m.observe()) == []


def test_shard_change_is_one_update_node_seen_by_every_member():
    m = converged(["n1", "n2", "n3"])
    d = cluster(node("n1"), node("n2", shard=2), node("n3"))
    ops = plan(d, m.observe())
    assert kinds(ops) == [("UpdateNode", "n1", "n2")] and ops[0].target.shard == 2
    m.apply(ops[0])
    assert m.observe_node("n3").peers["n2"].shard == 2
    assert m.observe_node("n2").shard == 2
    assert plan(d, m.observe()) == []


def test_clearing_a_shard_cannot_be_written_and_waits_for_a_restart():
    d2 = cluster(node("n1"), node("n2", shard=2), node("n3"))
    m = converged(["n1", "n2", "n3"], d2)
    d = full("n1", "n2", "n3")
    assert plan(d, m.observe()) == []  # update_node answers 400 for shard null: nothing to send
    assert pending_restart(d, m.observe()) == {"n2": "shard"}
    m.restart("n2")  # its own record goes back to the configured shard (none)
    assert m.observe_node("n1").peers["n2"].shard is None
    assert pending_restart(d, m.observe()) == {}
    assert verify(m, d) == []


def test_revoked_certificates_are_added_with_update_node():
    m = converged(["n1", "n2", "n3"])
    d = cluster(node("n1"), node("n2", revoked_certificates=("0A1B",)), node("n3"))
    ops = plan(d, m.observe())
    assert kinds(ops) == [("UpdateNode", "n1", "n2")]
    run_operator(m, d)
    assert m.observe_node("n3").peers["n2"].revoked_certificates == ("0A1B",)


def test_seed_shard_is_fixed_from_another_member():
    m = converged(["n1", "n2", "n3"])
    d = cluster(node("n1", shard=1), node("n2"), node("n3"))
    ops = plan(d, m.observe())
    assert kinds(ops) == [("UpdateNode", "n2", "n1")]
    run_operator(m, d)
    assert verify(m, d) == []


def test_moved_url_is_updated():
    m = converged(["n1", "n2", "n3"])
    m.nodes["n2"].url = "wss://n2:9955"
    d = cluster(node("n1"), DesiredNode("n2", "wss://n2:9955"), node("n3"))
    ops = plan(d, m.observe())
    assert kinds(ops) == [("UpdateNode", "n1", "n2")]
    run_operator(m, d)
    assert verify(m, d) == []


# --- drift ----------------------------------------------------------------------------------------------------------


def test_ghost_record_is_removed_once_on_the_seed():
    m = converged(["n1", "n2", "n3"])
    m.inject("n2", "10.9.9.9", "wss://10.9.9.9:9933")  # e.g. an add_node to a wrong address that answered 200
    assert all("10.9.9.9" in m.observe_node(n).peers for n in ("n1", "n2", "n3"))  # it gossiped
    d = full("n1", "n2", "n3")
    assert plan(d, m.observe()) == [RemoveNode("n1", "10.9.9.9")]
    run_operator(m, d)
    assert verify(m, d) == []


def _seen(rows: dict[str, str]) -> ObservedCluster:
    """What 4 real nodes showed while a seed's add_node calls took effect (4.7.29, polled every 40 ms): per node, its
    records as "peer:1" (connected) or "peer:0"."""
    nodes = {}
    for name, listed in rows.items():
        peers = {}
        for item in listed.split():
            peer, up = item.split(":")
            peers[peer] = PeerRecord(peer, f"wss://{peer}:9933", None, None, True, up == "1")
        nodes[name] = ObservedNode(name, True, peers=peers)
    return ObservedCluster(nodes=nodes)


@pytest.mark.parametrize("moment", [
    # 0.24 s after the calls: the seed's three records still down, one joined node's record of it up
    {"n1": "n2:0 n3:0 n4:0", "n2": "n1:0", "n3": "n1:0", "n4": "n1:1 n2:0 n3:0"},
    # 0.34 s: gossip under way, the seed's records coming up one at a time
    {"n1": "n2:1 n3:0 n4:0", "n2": "n1:1 n3:0 n4:0", "n3": "n1:1 n2:0 n4:0", "n4": "n1:1 n2:0"},
    # two nodes meeting for the first time: the seed's records up, the joined nodes' records of it down for a second
    {"n1": "n2:1 n3:1 n4:0", "n2": "n1:0", "n3": "n1:0", "n4": "n1:0"},
])
def test_a_mesh_on_its_way_keeps_its_seed_and_plans_no_write(moment):
    """Right after the seed's add_node calls every joined node's record comes up in its own time; no look at any
    such moment may pick another seed and plan add_node calls on it (bench/converge.py saw one 0.1 s after the
    writes: two needless writes, and a round cut short)."""
    d = full("n1", "n2", "n3", "n4")
    assert choose_seed(d, _seen(moment)) == "n1"
    assert [op for op in plan(d, _seen(moment)) if isinstance(op, AddNode)] == []


def test_node_removed_by_hand_is_added_back_and_restarted_without_a_grace():
    """Harper keeps a removed node's sockets closed after it is added back, until it restarts (seen on 4.7.29), so
    the plan asks for that restart with the add_node, as one following a write of ours (settle=False): no grace, in
    which the member would only wait for a picture that cannot change."""
    m = converged(["n1", "n2", "n3"])
    m.remove_node("n2", "n3")  # someone ran remove_node by hand
    obs = m.observe()
    assert "n3" not in obs.nodes["n1"].peers and "n3" not in obs.nodes["n2"].peers
    assert set(obs.nodes["n3"].peers) == {"n1", "n2"}  # the removed node keeps its old rows, disconnected
    d = full("n1", "n2", "n3")
    ops = plan(d, obs)
    assert kinds(ops) == [("AddNode", "n1", "n3"), ("Restart", "n3", None)]
    assert ops[1] == Restart("n3", REJOIN_RESTART, settle=False)
    m.apply(ops[0])
    assert plan(d, m.observe()) == []
    assert pending_restart(d, m.observe()) == {"n3": "reconnect"}  # seen on 4.7.29: sockets stay down
    m.apply(ops[1])
    assert pending_restart(d, m.observe()) == {}
    assert verify(m, d) == []


def test_a_joining_node_or_one_still_listed_by_a_member_gets_no_rejoin_restart():
    """Only the removed picture (old records, all down, held by no member) earns the restart with the add_node."""
    fresh = HarperModel(["n1", "n2", "n3"])
    assert [op for op in plan(full("n1", "n2", "n3"), fresh.observe()) if isinstance(op, Restart)] == []
    m = converged(["n1", "n2", "n3"])
    m.remove_node("n2", "n3")
    obs = m.observe()
    # n2 still holds n3's record (the removal has not reached it yet): not the removed picture
    still = replace(obs.nodes["n2"], peers={**obs.nodes["n2"].peers, "n3": obs.nodes["n1"].peers["n2"]})
    half = ObservedCluster(nodes={**obs.nodes, "n2": still})
    assert [op for op in plan(full("n1", "n2", "n3"), half) if isinstance(op, Restart)] == []
    # one of n3's own records is up: not the removed picture either
    row = next(iter(obs.nodes["n3"].peers.values()))
    up = replace(obs.nodes["n3"], peers={**obs.nodes["n3"].peers, "n1": replace(row, connected=True)})
    assert [op for op in plan(full("n1", "n2", "n3"), ObservedCluster(nodes={**obs.nodes, "n3": up}))
            if isinstance(op, Restart)] == []


def test_restarted_node_shown_disconnected_needs_no_write():
    m = converged(["n1", "n2", "n3"])
    d = full("n1", "n2", "n3")
    m.stop("n2")
    obs = m.observe()
    assert obs.nodes["n1"].peers["n2"].connected is False
    assert plan(d, obs) == []
    assert [(p.reason, p.node, p.permanent) for p in diagnose(d, obs)] == [("Unreachable", "n2", False)]
    m.start("n2")
    assert plan(d, m.observe()) == []
    assert verify(m, d) == []


def test_unreachable_seed_is_never_asked_and_another_member_seeds():
    m = converged(["n1", "n2", "n3"])
    m.nodes["n4"] = ModelNode("n4", "wss://n4:9933")
    m.stop("n1")
    d = full("n1", "n2", "n3", "n4")
    ops = plan(d, m.observe())
    assert kinds(ops) == [("AddNode", "n2", "n4")]
    run_operator(m, d)
    m.start("n1")
    run_operator(m, d)
    assert verify(m, d) == []


def test_all_unreachable_plans_nothing_and_says_why():
    m = HarperModel(["n1", "n2", "n3"])
    for n in ("n1", "n2", "n3"):
        m.stop(n)
    d = full("n1", "n2", "n3")
    assert plan(d, m.observe()) == []
    reasons = [(p.reason, p.node) for p in diagnose(d, m.observe())]
    assert reasons == [("NoReachableSeed", None), ("Unreachable", "n1"), ("Unreachable", "n2"), ("Unreachable", "n3")]


def test_a_member_down_at_first_join_is_added_when_it_answers():
    m = HarperModel(["n1", "n2", "n3"])
    m.stop("n3")
    d = full("n1", "n2", "n3")
    assert kinds(plan(d, m.observe())) == [("AddNode", "n1", "n2")]
    run_operator(m, d)
    m.start("n3")
    assert kinds(plan(d, m.observe())) == [("AddNode", "n1", "n3")]
    run_operator(m, d)
    assert verify(m, d) == []


def test_wiped_member_rejoins_through_the_seed():
    m = converged(["n1", "n2", "n3"])
    m.wipe("n3")
    d = full("n1", "n2", "n3")
    assert kinds(plan(d, m.observe())) == [("AddNode", "n1", "n3")]
    run_operator(m, d)
    assert verify(m, d) == []


# --- explicit subscriptions -----------------------------------------------------------------------------------------


def test_explicit_node_joins_pair_by_pair_with_calls_on_itself():
    m = converged(["n1", "n2", "n3"])
    m.nodes["n4"] = ModelNode("n4", "wss://n4:9933")
    d = cluster(node("n1"), node("n2"), node("n3"), node("n4", subscriptions=(T, U_IN)))
    ops = plan(d, m.observe())
    assert kinds(ops) == [("AddNode", "n4", "n1"), ("AddNode", "n4", "n2"), ("AddNode", "n4", "n3")]
    assert all(o.target.subscriptions == (T, U_IN) for o in ops)  # n4's own point of view
    for op in ops:
        m.apply(op)
    # the full members share one record of n4, seen from their side: the list reversed
    assert m.observe_node("n2").peers["n4"].subscriptions == (T, Subscription("data", "u", False, True))
    assert m.observe_node("n4").peers["n1"].subscriptions == (T, U_IN)
    assert not any(m.observe_node(n).peers["n4"].replicates for n in ("n1", "n2", "n3"))  # no full record of n4
    assert plan(d, m.observe()) == []
    assert verify(m, d) == []


def test_first_explicit_pair_gossips_a_record_others_cannot_use_yet():
    m = converged(["n1", "n2", "n3"])
    m.nodes["n4"] = ModelNode("n4", "wss://n4:9933")
    d = cluster(node("n1"), node("n2"), node("n3"), node("n4", subscriptions=(T,)))
    m.apply(AddNode("n4", replace(node("n1"), subscriptions=(T,))))
    row = m.observe_node("n2").peers["n4"]  # seen on 4.7.29: listed, connected:false
    assert row.subscriptions == (T,) and not row.connected
    assert kinds(plan(d, m.observe())) == [("AddNode", "n4", "n2"), ("AddNode", "n4", "n3")]


def test_changing_an_explicit_list_recreates_each_pair_and_asks_for_a_restart():
    d1 = cluster(node("n1"), node("n2"), node("n3", subscriptions=(T,)))
    m = converged(["n1", "n2", "n3"], d1)
    d2 = cluster(node("n1"), node("n2"), node("n3", subscriptions=(U_IN,)))
    ops = plan(d2, m.observe(), restart_for_subscriptions=True)
    assert kinds(ops) == [("RemoveNode", "n3", "n1"), ("RemoveNode", "n3", "n2"), ("AddNode", "n3", "n1"),
                          ("AddNode", "n3", "n2"), ("Restart", "n3", None)]
    assert ops[2].restart_required and "restart n3" in ops[2].describe()
    for op in ops:
        m.apply(op)
    assert plan(d2, m.observe()) == []
    assert verify(m, d2) == []
    assert plan(d2, m.observe(), restart_for_subscriptions=False) == []


def test_switch_full_to_explicit_in_place_is_refused_until_the_node_is_fresh():
    m = converged(["n1", "n2", "n3", "n4"])
    d = cluster(node("n1"), node("n2"), node("n3"), node("n4", subscriptions=(T,)))
    problems = diagnose(d, m.observe())
    assert [(p.reason, p.node, p.permanent) for p in problems] == [("FullToExplicitNeedsFreshNode", "n4", True)]
    assert plan(d, m.observe()) == []
    m.wipe("n4")  # what the message asks: a fresh Harper under the same name
    ops = plan(d, m.observe())
    assert kinds(ops) == [("RemoveNode", "n1", "n4"), ("AddNode", "n4", "n1"), ("AddNode", "n4", "n2"),
                          ("AddNode", "n4", "n3")]
    run_operator(m, d)
    assert verify(m, d) == []
    assert diagnose(d, m.observe()) == []


def test_switch_explicit_to_full_in_place_is_refused_until_the_node_is_fresh():
    d1 = cluster(node("n1"), node("n2"), node("n3"), node("n4", subscriptions=(T,)))
    m = converged(["n1", "n2", "n3", "n4"], d1)
    d = full("n1", "n2", "n3", "n4")
    assert [p.reason for p in diagnose(d, m.observe())] == ["ExplicitToFullNeedsFreshNode"]
    assert plan(d, m.observe()) == []
    m.wipe("n4")
    assert kinds(plan(d, m.observe())) == [("RemoveNode", "n1", "n4"), ("AddNode", "n1", "n4")]
    run_operator(m, d)
    assert verify(m, d) == []


def test_two_explicit_nodes_exchange_only_what_one_publishes_and_the_other_subscribes():
    a = node("a", subscriptions=(Subscription("data", "t", True, True), Subscription("data", "u", False, True)))
    b = node("b", subscriptions=(Subscription("data", "t", True, False), Subscription("data", "u", True, True)))
    # t: a sends it (b subscribes), b does not send it back (b does not publish t)
    assert pair_subscriptions(a, b) == (Subscription("data", "t", False, True), Subscription("data", "u", False, True))
    assert pair_subscriptions(b, a) == (Subscription("data", "t", True, False), Subscription("data", "u", True, False))
    c = node("c", subscriptions=(Subscription("data", "v", True, True),))
    assert pair_subscriptions(a, c) == ()
    m = HarperModel(["a", "b", "c", "f"])
    d = cluster(a, b, c, node("f"))
    run_operator(m, d)
    assert verify(m, d) == []
    assert "c" not in m.observe_node("a").peers


def test_explicit_node_with_no_tables_is_taken_out():
    d1 = cluster(node("n1"), node("n2"), node("n3", subscriptions=(T,)))
    m = converged(["n1", "n2", "n3"], d1)
    d2 = cluster(node("n1"), node("n2"), node("n3", subscriptions=()))
    ops = plan(d2, m.observe())
    assert kinds(ops) == [("RemoveNode", "n3", "n1"), ("RemoveNode", "n3", "n2")]
    run_operator(m, d2)
    assert verify(m, d2) == []


def test_explicit_node_shard_is_written_on_the_mesh_record():
    d1 = cluster(node("n1"), node("n2"), node("n3", subscriptions=(T,)))
    m = converged(["n1", "n2", "n3"], d1)
    d2 = cluster(node("n1"), node("n2"), node("n3", subscriptions=(T,), shard=4))
    ops = plan(d2, m.observe())
    assert kinds(ops) == [("UpdateNode", "n1", "n3")] and ops[0].target.subscriptions == (T,)
    run_operator(m, d2)
    assert verify(m, d2) == []


# --- routes ---------------------------------------------------------------------------------------------------------

R1, R2 = Route("r1.example", 9933), Route("r2.example", 9933)


def test_routes_are_written_and_wait_for_a_restart_when_restarts_are_not_allowed():
    m = converged(["n1", "n2"])
    d = full("n1", "n2")
    d = replace(d, routes=(R1,))
    ops = plan(d, m.observe())
    assert ops == [SetRoutes("n1", (R1,)), SetRoutes("n2", (R1,))]
    for op in ops:
        m.apply(op)
    assert plan(d, m.observe()) == []
    assert pending_restart(d, m.observe()) == {"n1": "routes", "n2": "routes"}
    m.restart("n1")
    assert pending_restart(d, m.observe()) == {"n2": "routes"}


def test_routes_with_restart_allowed_are_set_then_restarted():
    m = converged(["n1", "n2"])
    d = replace(full("n1", "n2"), routes=(R1,))
    ops = plan(d, m.observe(), restart_for_routes=True)
    assert kinds(ops) == [("SetRoutes", "n1", None), ("SetRoutes", "n2", None), ("Restart", "n1", None),
                          ("Restart", "n2", None)]
    run_operator(m, d, restart_for_routes=True)
    assert verify(m, d) == []


def test_replacing_a_route_sets_before_it_deletes():
    d1 = replace(full("n1", "n2"), routes=(R1,))
    m = HarperModel(["n1", "n2"])
    run_operator(m, d1, restart_for_routes=True)
    d2 = replace(d1, routes=(R2,))
    ops = plan(d2, m.observe())
    # 4.7: set writes loaded+new (and appends to the loaded list); delete writes loaded-minus-deleted
    assert ops == [SetRoutes("n1", (R2,)), DeleteRoutes("n1", (R1,)), SetRoutes("n2", (R2,)), DeleteRoutes("n2", (R1,))]
    for op in ops:
        m.apply(op)
    assert m.observe_node("n1").routes_on_disk == (R2,)
    run_operator(m, d2, restart_for_routes=True)
    assert verify(m, d2) == []


def test_a_stray_file_edit_is_reset_with_an_empty_set():
    d = replace(full("n1"), routes=(R1,))
    m = HarperModel(["n1"])
    run_operator(m, d, restart_for_routes=True)
    m.nodes["n1"].routes_disk = [R1, R2]  # someone edited the file; not loaded yet
    assert plan(d, m.observe()) == [SetRoutes("n1", ())]
    run_operator(m, d)
    assert m.observe_node("n1").routes_on_disk == (R1,)


def test_a_route_is_normalised_once_when_it_is_made():
    assert Route("Harper-1.Example.", 9933) == Route("harper-1.example", 9933)
    assert Route(" [harper-1.example] ", 9933).hostname == "harper-1.example"
    assert hash(Route("HARPER-1", 1)) == hash(Route("harper-1", 1))
    assert Route("[FD00::0001]", 1).url == "wss://[fd00::1]:1"
    assert Route("fd00:0:0::1", 1) == Route("[fd00::1]", 1)
    assert Route("10.0.0.1", 9933).url == "wss://10.0.0.1:9933"
    assert sorted([Route("B", 1), Route("a", 2)]) == [Route("a", 2), Route("b", 1)]
    assert R1.url == "wss://r1.example:9933"


def test_routes_spelled_differently_from_harper_need_no_write_and_no_restart():
    # Harper lower-cases the host it parses out of a route: an upper-case spec once restarted every member forever
    spec_routes = (Route("R1.Example.", 9933), Route("[FD00::0001]", 9933))
    harper_routes = (Route("fd00::1", 9933), Route("r1.example", 9933))
    d = replace(full("n1", "n2"), routes=spec_routes)
    obs = ObservedCluster(nodes={n: ObservedNode(n, True, routes=harper_routes, routes_on_disk=harper_routes,
                                                 routes_running=harper_routes) for n in ("n1", "n2")})
    ops = plan(d, obs, restart_for_routes=True)
    assert not [o for o in ops if isinstance(o, (SetRoutes, DeleteRoutes, Restart))]
    assert pending_restart(d, obs) == {}


def test_a_record_url_spelled_differently_needs_no_update():
    m = converged(["n1", "n2", "n3"])
    d = cluster(node("n1"), DesiredNode("n2", "WSS://N2:9933/"), node("n3"))
    assert plan(d, m.observe()) == []


def test_url_key_compares_what_harper_compares():
    assert url_key("WSS://Harper-1.Example.:9933/") == "wss://harper-1.example:9933"
    assert url_key("wss://[FD00:0:0::0001]:9933/path") == "wss://[fd00::1]:9933"
    assert url_key("wss://user:secret@h:1") == "wss://h:1"
    assert url_key("wss://h") == "wss://h"  # no port invented
    assert url_key(" Not A URL ") == "not a url"
    assert url_key("wss://h:99999") == "wss://h:99999"  # bad port: compared as text, never raises
    assert url_key("wss://[zz") == "wss://[zz"
    assert url_key("") == ""


# --- records plan must keep -----------------------------------------------------------------------------------------


def test_a_member_harper_names_differently_is_not_a_ghost():
    # HarperNode n3 declares hostname n3, but its Harper calls itself n3.harper.svc: the record of its real name
    # points at the declared url, and removing it would take a healthy node out of replication
    m = converged(["n1", "n2"])
    m.inject("n1", "n3.harper.svc", "wss://N3:9933/")
    d = full("n1", "n2", "n3")
    obs = m.observe()  # n3 itself is not asked (the shell holds it for its hostname mismatch)
    assert not [o for o in plan(d, obs) if isinstance(o, RemoveNode)]
    assert verify(m, d, skip={"n3"}) == []


def test_kept_names_stay_and_true_ghosts_still_go():
    m = converged(["n1", "n2", "n3"])
    m.inject("n2", "retained-a", "wss://10.1.1.1:9933")  # a node deleted with deletionPolicy Retain
    m.inject("n2", "other-cluster-b", "wss://10.1.1.2:9933")  # declared by a HarperNode of another cluster
    m.inject("n2", "stray", "wss://10.1.1.3:9933")
    m.inject("n2", "old-url", "wss://10.1.1.4:9933")
    d = replace(full("n1", "n2", "n3"), keep=frozenset({"retained-a", "other-cluster-b"}),
                keep_urls=frozenset({"WSS://10.1.1.4:9933"}))
    assert plan(d, m.observe()) == [RemoveNode("n1", "stray")]
    run_operator(m, d)
    assert {"retained-a", "other-cluster-b", "old-url"} <= set(m.observe_node("n3").peers)
    assert "stray" not in m.observe_node("n3").peers
    assert plan(full("n1", "n2", "n3"), m.observe()) == [RemoveNode("n1", "old-url"), RemoveNode("n1", "other-cluster-b"),
                                                         RemoveNode("n1", "retained-a")]


def test_an_explicit_member_keeps_its_own_kept_records_too():
    d = replace(cluster(node("n1"), node("n2"), node("n3", subscriptions=(T,))), keep=frozenset({"k"}))
    m = converged(["n1", "n2", "n3"], d)
    m.inject("n3", "k", "wss://10.1.1.9:9933", replicates=False, subscriptions=(T,))
    m.inject("n3", "g", "wss://10.1.1.8:9933", replicates=False, subscriptions=(T,))
    assert plan(d, m.observe()) == [RemoveNode("n3", "g")]


# --- diagnose -------------------------------------------------------------------------------------------------------


def test_duplicate_hostnames_stop_everything():
    d = cluster(node("n1", resource="a"), node("n1", resource="b"), node("n2"))
    obs = HarperModel(["n1", "n2"]).observe()
    assert [p.reason for p in diagnose(d, obs)] == ["DuplicateHostname"]
    assert plan(d, obs) == []


def test_url_host_must_name_the_node_unless_it_is_an_ip():
    d = cluster(DesiredNode("n1", "wss://other:9933", resource="hn-1"), DesiredNode("10.0.0.5", "wss://10.0.0.5:9933"),
                DesiredNode("n3", "wss://127.0.0.3:9933"))
    obs = ObservedCluster(nodes={n.name: ObservedNode(n.name, True) for n in d.nodes})
    probs = diagnose(d, obs)
    assert [(p.reason, p.node) for p in probs] == [("HostnameUrlMismatch", "n1")]
    assert "hn-1" in probs[0].message and "wss://n1:<port>" in probs[0].message
    assert all(op.on != "n1" and getattr(op.target, "name", "") != "n1" for op in plan(d, obs))


def test_duplicate_urls_are_reported():
    d = cluster(DesiredNode("a", "wss://10.0.0.1:9933"), DesiredNode("b", "wss://10.0.0.1:9933"))
    assert [p.reason for p in diagnose(d, ObservedCluster(nodes={}))][0] == "DuplicateUrl"


def test_unknown_nodes_in_observed_are_ignored_and_missing_ones_are_unreachable():
    d = full("n1", "n2")
    obs = ObservedCluster(nodes={"n1": ObservedNode("n1", True)})
    assert kinds(plan(d, obs)) == []
    assert [(p.reason, p.node) for p in diagnose(d, obs)] == [("Unreachable", "n2")]


def test_describe_is_one_line_without_credentials():
    ops = [AddNode("n1", node("n2", subscriptions=(T,), shard=1), restart_required=True),
           UpdateNode("n1", node("n2", revoked_certificates=("x",))), RemoveNode("n1", "g"),
           SetRoutes("n1", (R1,)), SetRoutes("n1", ()), DeleteRoutes("n1", (R1,)), Restart("n1", "load routes")]
    for op in ops:
        text = op.describe()
        assert "\n" not in text and "password" not in text.lower() and op.on in text


# --- a wiped node back under its old name (docs/harper-semantics.md, section 9) --------------------------------------


def with_cas(observed: ObservedCluster, name: str, own: str, seen: str) -> ObservedCluster:
    """`name`'s own CA serial is `own`; every record of it elsewhere shows `seen` (the CA its peers hold)."""
    nodes = {}
    for a, o in observed.nodes.items():
        if a == name:
            nodes[a] = replace(o, ca_serial=own)
        else:
            nodes[a] = replace(o, peers={p: replace(r, ca_serial=seen) if p == name else r for p, r in o.peers.items()})
    return ObservedCluster(nodes=nodes)


def test_a_wiped_full_node_loses_its_old_record_and_every_peer_restarts_to_forget_its_old_ca():
    m = converged(["n1", "n2", "n3", "n4"])
    d = full("n1", "n2", "n3", "n4")
    m.wipe("n4")
    ops = plan(d, with_cas(m.observe(), "n4", own="02", seen="01"))
    # No join yet: a pair made before the peer restarted stays half-made (seen).
    assert kinds(ops) == [("RemoveNode", "n1", "n4"), ("Restart", "n1", None), ("Restart", "n2", None),
                          ("Restart", "n3", None)]
    assert all("old certificate authority of n4" in o.reason for o in ops if isinstance(o, Restart))
    assert not any(isinstance(o, Restart) and o.settle for o in ops)
    assert waiting_for_restarts([o.reason for o in ops if isinstance(o, Restart)]) == {"n4"}
    # A member down at that moment is restarted too, once it answers (the restart budget holds it till then).
    down = with_cas(m.observe(), "n4", own="02", seen="01")
    down = ObservedCluster(nodes={**down.nodes, "n3": ObservedNode("n3", reachable=False)})
    assert ("Restart", "n3", None) in kinds(plan(d, down))
    m.apply(ops[0])
    # While restarts for it are owed, it waits; then it joins as a new node.
    assert plan(d, m.observe(), hold={"n4"}) == []
    assert kinds(plan(d, m.observe())) == [("AddNode", "n1", "n4")]


def test_a_wiped_node_switching_to_explicit_restarts_the_peers_too():
    m = converged(["n1", "n2", "n3", "n4"])
    d = cluster(node("n1"), node("n2"), node("n3"), node("n4", subscriptions=(T,)))
    m.wipe("n4")
    ops = plan(d, with_cas(m.observe(), "n4", own="02", seen="01"))
    assert kinds(ops) == [("RemoveNode", "n1", "n4"), ("Restart", "n1", None), ("Restart", "n2", None),
                          ("Restart", "n3", None)]
    m.apply(ops[0])
    assert plan(d, m.observe(), hold={"n4"}) == []
    assert kinds(plan(d, m.observe())) == [("AddNode", "n4", "n1"), ("AddNode", "n4", "n2"), ("AddNode", "n4", "n3")]


def test_a_new_node_or_one_showing_the_ca_its_peers_hold_restarts_nobody():
    m = converged(["n1", "n2", "n3"])
    m4 = HarperModel(["n1", "n2", "n3", "n4"])
    run_operator(m4, full("n1", "n2", "n3"))
    d = full("n1", "n2", "n3", "n4")
    new = replace(m4.observe().nodes["n4"], ca_serial="09")
    observed = ObservedCluster(nodes={**m4.observe().nodes, "n4": new})
    assert kinds(plan(d, observed)) == [("AddNode", "n1", "n4")]
    # A node that just joined (its records not arrived yet) shows the CA its peers hold: not wiped either.
    m.wipe("n3")
    assert not any(isinstance(o, Restart) for o in plan(full("n1", "n2", "n3"),
                                                        with_cas(m.observe(), "n3", own="05", seen="05")))
    # Without its own CA (older Harper, or a read that failed) nothing is assumed.
    assert not any(isinstance(o, Restart) for o in plan(full("n1", "n2", "n3"),
                                                        with_cas(m.observe(), "n3", own="", seen="05")))


def test_an_explicit_node_whose_own_sockets_stay_down_while_its_peer_shows_it_connected_needs_a_restart():
    d = cluster(node("n1"), node("n2"), node("n3", subscriptions=(T,)))
    m = converged(["n1", "n2", "n3"], d)
    o = m.observe()
    n3 = o.nodes["n3"]
    down = replace(n3, peers={p: replace(r, connected=False) if p == "n2" else r for p, r in n3.peers.items()})
    observed = ObservedCluster(nodes={**o.nodes, "n3": down})
    assert pending_restart(d, observed) == {"n3": "reconnect"}
    assert pending_restart(d, o) == {}
    # Its peer's side down instead: waiting (or the peer's restart) is the cure, not restarting n3.
    n2 = o.nodes["n2"]
    peer_down = replace(n2, peers={p: replace(r, connected=False) if p == "n3" else r for p, r in n2.peers.items()})
    assert "n3" not in pending_restart(d, ObservedCluster(nodes={**o.nodes, "n2": peer_down}))


def _cut(o: ObservedCluster, a: str, b: str) -> ObservedCluster:
    """Both sides of the pair a-b shown disconnected, records kept."""
    def down(n, p):
        return replace(o.nodes[n], peers={q: replace(r, connected=False) if q == p else r
                                          for q, r in o.nodes[n].peers.items()})
    return ObservedCluster(nodes={**o.nodes, a: down(a, b), b: down(b, a)})


def test_two_members_that_never_connect_to_each_other_get_one_restart():
    """Seen on 4.7.29: two nodes added 0.1 s apart through one seed held each other's record and stayed apart for
    six minutes, each connected to every other peer. The later one restarts; the first rule covers the rest."""
    d = full("n1", "n2", "n3", "n4", "n5")
    m = converged(["n1", "n2", "n3", "n4", "n5"])
    assert pending_restart(d, m.observe()) == {}
    assert pending_restart(d, _cut(m.observe(), "n3", "n4")) == {"n4": "apart"}
    # After n4's restart its side is up and n3's is not: the first rule names n3.
    o = _cut(m.observe(), "n3", "n4")
    n4 = o.nodes["n4"]
    mended = replace(n4, peers={q: replace(r, connected=True) for q, r in n4.peers.items()})
    assert pending_restart(d, ObservedCluster(nodes={**o.nodes, "n4": mended})) == {"n3": "reconnect"}


def test_a_member_cut_off_from_everyone_is_not_restarted():
    """A replication port cut (or a node still starting) shows every pair with it down: a restart mends nothing."""
    d = full("n1", "n2", "n3")
    o = converged(["n1", "n2", "n3"]).observe()
    cut = _cut(_cut(o, "n1", "n3"), "n2", "n3")
    assert pending_restart(d, cut) == {}
    # Two members only: nobody is connected to anyone else, so no restart either.
    two = _cut(converged(["n1", "n2"]).observe(), "n1", "n2")
    assert pending_restart(full("n1", "n2"), two) == {}


def test_a_record_gossip_never_brought_is_mended_by_an_add_node_on_the_member_that_lacks_it():
    """Seen on pods after 3 -> 5 (two add_node through one seed): hc-3 held no record of hc-4, which held hc-3's,
    for ten minutes; nothing was planned since the seed's records were whole. plan() still writes nothing (a mesh
    on its way shows such holes for a moment); mends() names the add_node ON the member that lacks the record,
    which the shell makes after a grace."""
    m = converged(["n1", "n2", "n3", "n4", "n5"])
    m.lose_gossip("n4", "n5")
    obs = m.observe()
    assert "n5" not in obs.nodes["n4"].peers and not obs.nodes["n5"].peers["n4"].connected
    d = full("n1", "n2", "n3", "n4", "n5")
    assert plan(d, obs) == []
    (mend,) = mends(d, obs)
    assert (mend.on, mend.target.name, mend.mend) == ("n4", "n5", True)
    assert "n4 lacks this record" in mend.describe()
    m.apply(mend)
    assert verify(m, d) == [] and mends(d, m.observe()) == []


def test_no_mend_for_a_member_not_joined_yet_or_held():
    m = converged(["n1", "n2", "n3"])
    d = full("n1", "n2", "n3", "n4")
    assert mends(d, m.observe(["n1", "n2", "n3", "n4"])) == []  # n4 is joined by plan(), not mended
    m.lose_gossip("n2", "n3")
    m.lose_gossip("n3", "n2")
    both = mends(full("n1", "n2", "n3"), m.observe())
    assert [(x.on, x.target.name) for x in both] == [("n2", "n3")]  # both lack each other: the smaller name calls
    assert mends(full("n1", "n2", "n3"), m.observe(), hold={"n2"}) == []


def test_a_full_and_an_explicit_member_apart_get_one_restart_too():
    """Found by the model checker (tests/modelcheck): a full member and an explicit one that hold each other's pair
    record and never connect, each connected to another peer, were left apart for ever (Reconciling, never Ready
    nor Stalled): `apart` looked only at pairs of one kind. A pair held in the wrong mode is plan()'s, not a
    restart's."""
    d = cluster(node("f1"), node("f2"), node("x1", subscriptions=(T,)))
    m = converged(["f1", "f2", "x1"], d)
    m.set_apart("f1", "x1")
    assert pending_restart(d, m.observe()) == {"x1": "apart"}  # a tie on connections: the later name
    m.restart("x1")
    assert pending_restart(d, m.observe()) == {} and verify(m, d) == []
    # The same pair with f1's row held as full replication: a mode to re-make, not a reason to restart.
    o = _cut(m.observe(), "f1", "x1")
    wrong_mode = replace(o.nodes["f1"], peers={**o.nodes["f1"].peers, "x1": replace(
        o.nodes["f1"].peers["x1"], replicates=True, subscriptions=None)})
    assert "apart" not in pending_restart(d, ObservedCluster(nodes={**o.nodes, "f1": wrong_mode})).get("x1", "")


def test_with_a_shared_authority_a_wiped_node_under_another_ca_rejoins_with_no_restart():
    """A provisioned cluster's members trust a file of authorities: after a rollover a wiped node comes back with a
    certificate of the new authority while its peers' records name the old one. Harper checks the file, not the
    record (seen on loopback 4.7.29: re-added by one add_node, meshed in 1.2 s, no restart), so it joins again as a
    new node does and nobody restarts."""
    m = converged(["n1", "n2", "n3"])
    m.wipe("n3")
    d = replace(full("n1", "n2", "n3"), shared_authority=True)
    ops = plan(d, with_cas(m.observe(), "n3", own="02", seen="01"))
    assert kinds(ops) == [("AddNode", "n1", "n3")]
    assert not any(isinstance(o, Restart) for o in ops)
