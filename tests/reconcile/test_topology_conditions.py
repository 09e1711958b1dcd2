"""Parsing Harper answers into the observed topology, subscription algebra, and conditions."""

from __future__ import annotations

from datetime import datetime, timezone

from harper_operator.reconcile import (AddNode, DesiredNode, Problem, Route, Subscription, conditions, from_round,
                                       normalize, observed_node_from_harper, pair_subscriptions, reverse)

# Shape of a real 4.7.29 answer (127.0.0.51 in a mesh with 52, 53 and an explicit 54), trimmed of ca_info details.
CLUSTER_STATUS = {
    "type": "cluster-status", "node_name": "127.0.0.51", "url": "wss://127.0.0.51:9933", "is_enabled": True,
    "connections": [
        {"name": "127.0.0.52", "url": "wss://127.0.0.52:9933", "replicates": True, "subscriptions": None, "shard": 5,
         "revoked_certificates": ["ABC123"], "ca_info": {},
         "database_sockets": [{"database": "system", "connected": True, "latency": 0.4},
                              {"database": "data", "connected": True}]},
        {"name": "127.0.0.53", "url": "wss://127.0.0.53:9933", "replicates": True, "subscriptions": None,
         "database_sockets": [{"database": "system", "connected": False}, {"database": "data", "connected": True}]},
        {"name": "127.0.0.54", "url": "wss://127.0.0.54:9933",
         "subscriptions": [{"database": "data", "table": "t", "subscribe": True, "publish": True},
                           {"database": "data", "table": "u", "subscribe": False, "publish": True}],
         "database_sockets": [{"database": "data", "connected": True}]},
        {"name": "127.0.0.51", "url": "wss://127.0.0.51:9933", "replicates": True, "database_sockets": []},
    ],
}


def test_cluster_status_becomes_an_observed_node():
    o = observed_node_from_harper("127.0.0.51", CLUSTER_STATUS, routes=["wss://r:9933"],
                                  routes_on_disk=[{"hostname": "r", "port": 9933}, "wss://s:9944"])
    assert o.reachable and set(o.peers) == {"127.0.0.52", "127.0.0.53", "127.0.0.54"}  # never itself
    p52, p53, p54 = o.peers["127.0.0.52"], o.peers["127.0.0.53"], o.peers["127.0.0.54"]
    assert p52.replicates and p52.connected and p52.shard == 5 and p52.revoked_certificates == ("ABC123",)
    assert p53.replicates and not p53.connected  # one socket down
    assert not p54.replicates and p54.connected
    assert p54.subscriptions == (Subscription("data", "t", True, True), Subscription("data", "u", False, True))
    assert o.routes == (Route("r", 9933),) and o.routes_on_disk == (Route("r", 9933), Route("s", 9944))
    assert o.shard is None
    assert observed_node_from_harper("x", None).reachable is False


def test_normalize_drops_entries_that_move_nothing_and_merges_duplicates():
    a = Subscription("d", "t", True, False)
    b = Subscription("d", "t", False, True)
    off = Subscription("d", "u", False, False)
    assert normalize([off, b, a]) == (Subscription("d", "t", True, True),)
    assert normalize(None) is None and normalize([]) == ()
    assert reverse([a]) == (Subscription("d", "t", False, True),)


def test_pair_subscriptions_cases():
    t = Subscription("d", "t", True, False)
    full, ex = DesiredNode("f", "wss://f:1"), DesiredNode("x", "wss://x:1", subscriptions=(t,))
    assert pair_subscriptions(full, DesiredNode("g", "wss://g:1")) is None
    assert pair_subscriptions(ex, full) == (t,)
    assert pair_subscriptions(full, ex) == (Subscription("d", "t", False, True),)
    assert pair_subscriptions(ex, DesiredNode("y", "wss://y:1", subscriptions=(t,))) == ()  # nobody publishes t


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
LATER = datetime(2026, 1, 2, 4, 0, 0, tzinfo=timezone.utc)


def by_type(conds):
    return {c["type"]: c for c in conds}


def test_ready_when_nothing_to_do():
    c = by_type(conditions(ready_reason="Converged", ready_message="3 node(s) replicate as declared", generation=4,
                           now=NOW))
    assert c["Ready"]["status"] == "True" and c["Ready"]["reason"] == "Converged"
    assert c["Reconciling"]["status"] == "False" and c["Stalled"]["status"] == "False"
    assert c["Ready"]["observedGeneration"] == 4 and c["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"


def test_permanent_problem_stalls_and_transient_reconciles():
    stalled = by_type(conditions(problem=Problem("DuplicateHostname", "fix it"), generation=1, now=NOW))
    assert stalled["Stalled"]["status"] == "True" and stalled["Ready"]["status"] == "False"
    assert stalled["Stalled"]["reason"] == "DuplicateHostname" and stalled["Stalled"]["message"] == "fix it"
    busy = by_type(conditions(problem=Problem("Unreachable", "wait", permanent=False), busy=True, generation=1,
                              now=NOW))
    assert busy["Reconciling"]["status"] == "True" and busy["Stalled"]["status"] == "False"
    paused = by_type(conditions(busy=True, paused=True, generation=1, now=NOW))
    assert paused["Ready"]["reason"] == "Paused" and paused["Reconciling"]["status"] == "False"


def test_last_transition_time_is_kept_while_status_is_unchanged():
    first = conditions(ready_reason="Converged", generation=1, now=NOW)
    again = by_type(conditions(ready_reason="Converged", generation=2, previous=first, now=LATER))
    assert again["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    flipped = by_type(conditions(busy=True, generation=2, previous=first, now=LATER))
    assert flipped["Ready"]["lastTransitionTime"] == "2026-01-02T04:00:00Z"
    assert flipped["Stalled"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"  # still False


def test_from_round_picks_permanent_then_transient_then_pending():
    op = AddNode("a", DesiredNode("b", "wss://b:1"))
    c = by_type(from_round([Problem("Unreachable", "w", permanent=False), Problem("X", "y")], [op], True,
                           generation=1, now=NOW))
    assert c["Stalled"]["reason"] == "X"
    c = by_type(from_round([], [op], True, generation=1, now=NOW))
    assert c["Reconciling"]["status"] == "True" and "add_node on a" in c["Reconciling"]["message"]
    c = by_type(from_round([], [], False, generation=1, now=NOW))
    assert c["Reconciling"]["reason"] == "Verifying"
    c = by_type(from_round([], [], True, generation=1, now=NOW))
    assert c["Ready"]["status"] == "True"
