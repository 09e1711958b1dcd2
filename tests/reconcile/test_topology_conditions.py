"""Core topology values, the one Problem, subscription algebra, and conditions."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from harper_operator.reconcile import (DesiredCluster, DesiredNode, ObservedCluster, ObservedNode, PeerRecord,
                                       Problem, Route, Subscription, conditions, diagnose, normalize,
                                       pair_subscriptions, pending_restart, plan, reverse, url_key)

T = Subscription("data", "t", True, True)
U_IN, U_OUT = Subscription("data", "u", True, False), Subscription("data", "u", False, True)


def full_row(name: str, **kw) -> PeerRecord:
    return PeerRecord(name, f"wss://{name}:9933", kw.pop("shard", None), None, True, kw.pop("connected", True), **kw)


# The core values of a real 4.7.29 mesh (127.0.0.51-53 full, 127.0.0.54 explicit [t <->, u <-]) as the controller
# builds them from cluster_status: each row from its lister's point of view (the mesh's row of 54 holds 54's list
# reversed), 52's shard and revoked certificate on the shared record. The spec writes 52's url in capitals:
# Harper's answer must still compare equal, or every round would update it.
MESH = ("127.0.0.51", "127.0.0.52", "127.0.0.53")


def observed_mesh(*, down: tuple[str, ...] = ()) -> ObservedCluster:
    nodes = {}
    for me in MESH:
        peers = {p: full_row(p, shard=5 if p == "127.0.0.52" else None,
                             revoked_certificates=("ABC123",) if p == "127.0.0.52" else ())
                 for p in MESH if p != me}
        peers["127.0.0.54"] = PeerRecord("127.0.0.54", "wss://127.0.0.54:9933", None, (T, U_OUT), False, True)
        nodes[me] = ObservedNode(me, True, peers=peers, shard=5 if me == "127.0.0.52" else None)
    nodes["127.0.0.54"] = ObservedNode("127.0.0.54", True, peers={
        p: PeerRecord(p, f"wss://{p}:9933", 5 if p == "127.0.0.52" else None, (T, U_IN), False, True,
                      revoked_certificates=("ABC123",) if p == "127.0.0.52" else ()) for p in MESH})
    for name in down:
        nodes[name] = ObservedNode(name, reachable=False)
    return ObservedCluster(nodes=nodes)


DECLARED = DesiredCluster(nodes=(
    DesiredNode("127.0.0.51", "wss://127.0.0.51:9933"),
    DesiredNode("127.0.0.52", "WSS://127.0.0.52:9933/", shard=5, revoked_certificates=("ABC123",)),
    DesiredNode("127.0.0.53", "wss://127.0.0.53:9933"),
    DesiredNode("127.0.0.54", "wss://127.0.0.54:9933", subscriptions=(T, U_IN))))


def test_a_converged_real_mesh_built_from_core_values_needs_nothing():
    obs = observed_mesh()
    assert diagnose(DECLARED, obs) == [] and plan(DECLARED, obs) == [] and pending_restart(DECLARED, obs) == {}
    down = observed_mesh(down=("127.0.0.53",))
    assert not down.reachable("127.0.0.53") and not down.reachable("nobody")
    assert plan(DECLARED, down) == []
    assert [(p.reason, p.node, p.permanent) for p in diagnose(DECLARED, down)] == [("Unreachable", "127.0.0.53", False)]


def test_one_problem_type_everywhere():
    from importlib import import_module

    plan_module, problems, restarts = (import_module(f"harper_operator.reconcile.{m}")
                                       for m in ("plan", "problems", "restarts"))

    assert plan_module.Problem is problems.Problem is restarts.Problem is Problem
    p = Problem("X", "y")
    assert (p.node, p.permanent, p.blocking) == (None, True, True)
    assert sorted([Problem("b", "m"), Problem("a", "m")])[0].reason == "a"


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


def kstatus(conds) -> str:
    """What kstatus (sigs.k8s.io/cli-utils v0.37.2, Flux's health checks) computes from these conditions at the
    observed generation: Reconciling=True -> InProgress, Stalled=True -> Failed, then its Ready fallback (True ->
    Current, otherwise InProgress); no deciding condition -> Current. e2e/scenarios/test_kstatus.py checks the real
    library on live objects."""
    c = by_type(conds)
    for type_, verdict in (("Reconciling", "InProgress"), ("Stalled", "Failed")):
        if c.get(type_, {}).get("status") == "True":
            return verdict
    ready = c.get("Ready")
    return "Current" if ready is None or ready["status"] == "True" else "InProgress"


def test_paused_with_work_is_reconciling_so_kstatus_says_in_progress():
    paused = by_type(conditions(busy=True, paused=True, generation=1, now=NOW))
    assert paused["Ready"]["status"] == "False" and paused["Ready"]["reason"] == "Paused"
    assert paused["Reconciling"]["status"] == "True" and paused["Reconciling"]["reason"] == "Paused"
    assert "paused" in paused["Reconciling"]["message"] and "writes" in paused["Reconciling"]["message"]
    assert paused["Stalled"]["status"] == "False"
    assert kstatus(paused.values()) == "InProgress"
    waiting = by_type(conditions(problem=Problem("Unreachable", "cannot reach n1", permanent=False), busy=True,
                                 paused=True, generation=1, now=NOW))
    assert waiting["Reconciling"]["reason"] == "Paused" and "cannot reach n1" in waiting["Reconciling"]["message"]


def test_paused_with_nothing_to_do_stays_ready_and_a_permanent_problem_still_stalls():
    idle = by_type(conditions(paused=True, ready_reason="Converged", generation=1, now=NOW))
    assert idle["Ready"]["status"] == "True" and idle["Reconciling"]["status"] == "False"
    assert kstatus(idle.values()) == "Current"
    stuck = by_type(conditions(problem=Problem("BadCredentials", "fix the Secret"), busy=True, paused=True,
                               generation=1, now=NOW))
    assert stuck["Stalled"]["status"] == "True" and kstatus(stuck.values()) == "Failed"


def test_pausing_and_unpausing_keeps_transition_times_honest():
    paused = conditions(busy=True, paused=True, generation=1, now=NOW)
    busy = by_type(conditions(busy=True, generation=1, previous=paused, now=LATER))
    assert busy["Reconciling"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"  # True all along
    done = by_type(conditions(generation=1, previous=paused, now=LATER))
    assert done["Reconciling"]["lastTransitionTime"] == "2026-01-02T04:00:00Z"
    assert kstatus(done.values()) == "Current"


def test_last_transition_time_is_kept_while_status_is_unchanged():
    first = conditions(ready_reason="Converged", generation=1, now=NOW)
    again = by_type(conditions(ready_reason="Converged", generation=2, previous=first, now=LATER))
    assert again["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    flipped = by_type(conditions(busy=True, generation=2, previous=first, now=LATER))
    assert flipped["Ready"]["lastTransitionTime"] == "2026-01-02T04:00:00Z"
    assert flipped["Stalled"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"  # still False



METAV1_FIELDS = {"type", "status", "lastTransitionTime", "reason", "message"}  # observedGeneration is optional


@given(problem=st.sampled_from([None, Problem("BadCredentials", "fix the Secret"),
                                Problem("Unreachable", "", permanent=False)]),
       busy=st.booleans(), paused=st.booleans(), generation=st.one_of(st.none(), st.integers(0, 10**6)),
       previous=st.booleans(), now=st.sampled_from([NOW, datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"]))
def test_every_condition_carries_the_five_metav1_fields(problem, busy, paused, generation, previous, now):
    before = conditions(generation=1, now=NOW) if previous else ()
    out = conditions(problem=problem, busy=busy, paused=paused, generation=generation, previous=before, now=now)
    assert sorted(c["type"] for c in out) == ["Ready", "Reconciling", "Stalled"]
    for c in out:
        assert METAV1_FIELDS <= c.keys(), c
        assert c["status"] in ("True", "False") and isinstance(c["reason"], str) and c["reason"]
        assert isinstance(c["message"], str)
        stamp = datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00"))
        assert stamp.utcoffset().total_seconds() == 0 and c["lastTransitionTime"].endswith("Z")
        assert ("observedGeneration" in c) == (generation is not None)
        assert c.get("observedGeneration") == generation
    # kstatus never has to fall back on Ready: not Ready always says why, Reconciling or Stalled, never both.
    c = by_type(out)
    abnormal = [t for t in ("Reconciling", "Stalled") if c[t]["status"] == "True"]
    assert len(abnormal) == (0 if c["Ready"]["status"] == "True" else 1), out
    idle, permanent = problem is None and not busy, problem is not None and problem.permanent
    assert kstatus(out) == ("Current" if idle else "Failed" if permanent else "InProgress"), out

# --- one spelling per host and URL ---------------------------------------------------------------------------------

hosts = st.one_of(st.text(max_size=12), st.sampled_from(["Harper-1.Example.", "[FD00::0001]", " h ", "10.0.0.1", "::1",
                                                         "[::ffff:10.0.0.1]", "fe80::1%eth0", "[", "]", "."]))


@given(hosts, st.integers(0, 70000))
def test_route_and_url_key_never_raise_and_normalise_once(host, port):
    r = Route(host, port)
    assert Route(r.hostname, port) == r  # normalising again changes nothing
    key = url_key(r.url)
    assert url_key(key) == key
    assert url_key(host) == url_key(url_key(host))
