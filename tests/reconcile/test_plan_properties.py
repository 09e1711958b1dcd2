"""Property tests: plan() against the Harper MODEL (a fake of Harper 4.7 built from experiments on real nodes).

For random declared topologies and random drift (nodes down, removals by hand, ghost records, wiped nodes, shards
changed by hand, routes edited by hand): applying plan() to the model converges, the plan after convergence is
empty, plan never sends anything to a node that did not answer, and plan is deterministic. Records that the spec
keeps (names in DesiredCluster.keep, records pointing at a declared URL) are never removed.
"""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "simulator"))

from harper_model import HarperModel, check_targets, run_operator, verify  # noqa: E402
from harper_operator.reconcile import (AddNode, DesiredCluster, DesiredNode, ObservedCluster, RemoveNode, Route,
                                       Subscription, diagnose, plan, url_key)

POOL = ["n1", "n2", "n3", "n4", "n5"]
TABLES = ["t", "u", "v"]
ROUTES = [Route("r1", 9933), Route("r2", 9933), Route("r3", 9944)]

subscription = st.builds(Subscription, st.just("data"), st.sampled_from(TABLES), st.booleans(), st.booleans())


@st.composite
def desired_nodes(draw, min_size=1):
    names = draw(st.lists(st.sampled_from(POOL), min_size=min_size, max_size=len(POOL), unique=True))
    out = []
    for n in sorted(names):
        explicit = draw(st.integers(0, 2)) == 0
        subs = tuple(draw(st.lists(subscription, min_size=1, max_size=3))) if explicit else None
        out.append(DesiredNode(n, f"wss://{n}:9933", shard=draw(st.sampled_from([None, None, 1, 2])),
                               subscriptions=subs,
                               revoked_certificates=tuple(draw(st.lists(st.sampled_from(["A1", "B2"]), max_size=1)))))
    return out


@st.composite
def clusters(draw, min_size=1):
    nodes = draw(desired_nodes(min_size))
    routes = tuple(draw(st.lists(st.sampled_from(ROUTES), max_size=2, unique=True)))
    return DesiredCluster(nodes=tuple(nodes), routes=routes)


drift = st.lists(st.tuples(st.sampled_from(["stop", "start", "remove", "ghost", "wipe", "shard", "route", "lose"]),
                           st.sampled_from(POOL), st.sampled_from(POOL), st.integers(0, 3)), max_size=4)


def apply_drift(m: HarperModel, actions) -> None:
    for kind, a, b, k in actions:
        na = m.nodes[a]
        if kind == "stop":
            m.stop(a)
        elif kind == "start" and not na.up:
            m.start(a)
        elif kind == "remove" and na.up and m.rec(a, b) is not None:
            m.remove_node(a, b)
        elif kind == "ghost" and na.up:
            m.inject(a, f"ghost{k}", f"wss://10.9.9.{k}:9933")
        elif kind == "wipe":
            m.wipe(a)
        elif kind == "shard" and na.up and m.nodes[b].up and a != b and m.rec(a, b) is not None and m.full(a):
            m.set_node(a, DesiredNode(b, m.nodes[b].url, shard=k))
        elif kind == "route" and na.up:
            m.set_routes(a, [ROUTES[k % len(ROUTES)]])
        elif kind == "lose" and a != b:
            m.lose_gossip(a, b)


def blocked(desired, observed) -> set[str]:
    return {p.node for p in diagnose(desired, observed) if p.blocking and p.node}


SETTINGS = settings(max_examples=int(__import__("os").environ.get("PLAN_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(before=clusters(), actions=drift, after=clusters(), restart_routes=st.booleans())
def test_plan_converges_on_the_model_and_then_is_empty(before, actions, after, restart_routes):
    m = HarperModel(POOL)
    run_operator(m, before, restart_for_routes=True, rounds=10)
    apply_drift(m, actions)
    run_operator(m, after, restart_for_routes=restart_routes, rounds=10)
    observed = m.observe(sorted({n.name for n in after.nodes}))
    assert plan(after, observed, restart_for_routes=restart_routes) == []
    if any(p.blocking and p.node is None for p in diagnose(after, observed)):
        return  # the whole cluster waits (e.g. NoReachableSeed: every full member stopped), reported as such
    stuck = blocked(after, observed)
    problems = verify(m, after, skip=stuck)
    # only pairs involving a blocked node (a refused mode switch, reported by diagnose) may stay wrong
    assert [p for p in problems if not any(s in p for s in stuck)] == []


@SETTINGS
@given(desired=clusters(min_size=1))
def test_from_nothing_converges_and_full_mesh_costs_n_minus_1(desired):
    m = HarperModel(POOL)
    observed = m.observe(sorted(n.name for n in desired.nodes))
    ops = plan(desired, observed)
    if all(n.subscriptions is None for n in desired.nodes):
        adds = [o for o in ops if isinstance(o, AddNode)]
        assert len(adds) == len(desired.nodes) - 1
        assert len({o.on for o in adds}) <= 1  # all on one seed
    run_operator(m, desired, restart_for_routes=True)
    assert verify(m, desired) == []


@SETTINGS
@given(before=clusters(), actions=drift, after=clusters(), seed=st.integers(0, 10**6))
def test_plan_is_deterministic_and_never_targets_an_unreachable_node(before, actions, after, seed):
    m = HarperModel(POOL)
    run_operator(m, before, restart_for_routes=True, rounds=10)
    apply_drift(m, actions)
    names = sorted({n.name for n in after.nodes})
    observed = m.observe(names)
    ops = plan(after, observed, restart_for_routes=True, restart_for_subscriptions=True)
    check_targets(ops, observed)
    rng = random.Random(seed)
    shuffled_nodes = list(after.nodes)
    rng.shuffle(shuffled_nodes)
    items = list(observed.nodes.items())
    rng.shuffle(items)
    shuffled_obs = ObservedCluster(nodes={k: replace(v, peers=dict(rng.sample(list(v.peers.items()), len(v.peers))))
                                          for k, v in items})
    again = plan(replace(after, nodes=tuple(shuffled_nodes)), shuffled_obs, restart_for_routes=True,
                 restart_for_subscriptions=True)
    assert again == ops


# Records plan must keep: ("kept", k) a name in DesiredCluster.keep; ("kept_url", k) a name whose url is in keep_urls;
# ("alias", k) a declared member under the name its own Harper reports, i.e. a record at a declared url.
extra_records = st.lists(st.tuples(st.sampled_from(["kept", "kept_url", "alias"]), st.sampled_from(POOL),
                                   st.integers(0, 3), st.booleans()), min_size=1, max_size=4)


def true_ghost(name: str, desired: DesiredCluster, observed: ObservedCluster) -> bool:
    urls = {url_key(u) for u in desired.keep_urls} | {url_key(n.url) for n in desired.nodes}
    rows = [o.peers[name] for o in observed.nodes.values() if o.reachable and name in o.peers]
    return (name not in {n.name for n in desired.nodes} and name not in desired.keep
            and not any(url_key(r.url or "") in urls for r in rows))


@SETTINGS
@given(before=clusters(), actions=drift, after=clusters(), extra=extra_records, restart_routes=st.booleans())
def test_plan_never_removes_a_kept_record_and_removes_only_declared_names_or_true_ghosts(before, actions, after,
                                                                                         extra, restart_routes):
    m = HarperModel(POOL)
    run_operator(m, before, restart_for_routes=True, rounds=10)
    apply_drift(m, actions)
    keep, keep_urls, protected = set(), set(), set()
    for kind, on, k, shout in extra:
        if not m.nodes[on].up:
            continue
        if kind == "kept":
            name, url = f"kept{k}", f"wss://10.8.8.{k}:9933"
            keep.add(name)
        elif kind == "kept_url":
            name, url = f"moved{k}", f"wss://10.7.7.{k}:9933"
            keep_urls.add(url.upper() if shout else url)
        else:
            name, url = f"alias{k}", after.nodes[k % len(after.nodes)].url
            url = url.upper() + "/" if shout else url
        m.inject(on, name, url)
        protected.add(name)
    desired = replace(after, keep=frozenset(keep), keep_urls=frozenset(keep_urls))
    names = sorted({n.name for n in after.nodes})
    declared = set(names)
    listed_at_first = {p for o in m.observe(names).nodes.values() for p in o.peers} & protected
    for _ in range(6):
        observed = m.observe(names)
        ops = plan(desired, observed, restart_for_routes=restart_routes)
        check_targets(ops, observed)
        for op in ops:
            if isinstance(op, RemoveNode):
                assert op.hostname not in protected, op.describe()
                assert op.hostname in declared or true_ghost(op.hostname, desired, observed), op.describe()
        if not ops:
            break
        for op in ops:
            m.apply(op)
    still = {p for o in m.observe(names).nodes.values() for p in o.peers}
    assert listed_at_first <= still


@SETTINGS
@given(size=st.integers(3, 5), lost=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=4))
def test_records_gossip_never_brings_are_mended_and_the_mesh_completes(size, lost):
    """Harper's gossip may never bring a record to a member (seen on pods): plan() and the mends after their grace
    (what the shell runs) bring every member every record, whichever records were lost."""
    names = POOL[:size]
    desired = DesiredCluster(nodes=tuple(DesiredNode(n, f"wss://{n}:9933") for n in names))
    m = HarperModel(names)
    run_operator(m, desired)
    for a, b in lost:
        if a < size and b < size and a != b:
            m.lose_gossip(names[a], names[b])
    m.sync()
    run_operator(m, desired, rounds=10)
    assert verify(m, desired) == []
