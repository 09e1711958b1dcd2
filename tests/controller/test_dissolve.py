"""remove_member() and dissolve() on the FAKE fleet: Retain respected, nothing raises, what is left is named."""

from __future__ import annotations

from fake_fleet import FakePool, cluster_body, node_body

from harper_operator.api import HarperClusterSpec
from harper_operator.controller.dissolve import dissolve, remove_member
from harper_operator.controller.loop import ClusterReconciler
from harper_operator.harper.errors import TransientHarperError

A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"
SPEC = HarperClusterSpec.model_validate(cluster_body()["spec"])


async def joined(fleet, fake_kube, members):
    r = ClusterReconciler("ns", "c", events=lambda *a: None, verify_timeout=0)
    r.pool = FakePool(fleet)
    body = cluster_body()
    for _ in range(4):
        if (await r.reconcile(body, members)).converged:
            return
    raise AssertionError("did not converge")


async def test_dissolve_leaves_members_whose_own_policy_is_retain(fleet, fake_kube):
    members = [node_body("n1", A), node_body("n2", B), node_body("n3", C, deletionPolicy="Retain")]
    await joined(fleet, fake_kube, members)
    fleet.calls.clear()
    removal = await dissolve(cluster_body(), SPEC, members)
    assert C not in {c.node for c in fleet.writes()}
    assert C not in {c.detail for c in fleet.calls if c.operation == "remove_node"}
    assert any("Retain" in line and C in line for line in removal.left)
    assert fleet.model.rec(C, C) is not None


async def test_dissolve_names_what_is_left_when_the_secret_is_gone(fleet, fake_kube):
    members = [node_body("n1", A), node_body("n2", B)]
    await joined(fleet, fake_kube, members)
    del fake_kube.secrets["admin"]
    removal = await dissolve(cluster_body(), SPEC, members)
    assert removal.done == [] and len(removal.left) == 2
    assert all("SecretNotFound" in line or "does not exist" in line for line in removal.left)


async def test_dissolve_never_raises_for_a_member_that_answers_oddly(fleet, fake_kube):
    members = [node_body("n1", A), node_body("n2", B)]
    await joined(fleet, fake_kube, members)
    fleet.failures[(A, "cluster_status")] = RecursionError("nested")
    removal = await dissolve(cluster_body(), SPEC, members)
    assert any("RecursionError" in f for f in removal.failures)
    assert any(B in line for line in removal.done)


async def test_remove_member_tries_the_next_peer_and_reports_when_none_is_left(fleet, fake_kube):
    members = [node_body("n1", A), node_body("n2", B), node_body("n3", C)]
    await joined(fleet, fake_kube, members)
    fleet.failures[(A, "remove_node")] = TransientHarperError("remove_node", None, "cannot connect")
    removal = await remove_member(cluster_body(), SPEC, members, C)
    # B's removal spreads to A by gossip when A answers again: nothing to retry, so the handler does not retry
    assert removal.done == [f"removed {C} on {B}"] and removal.failures == []
    del fake_kube.secrets["admin"]
    removal = await remove_member(cluster_body(), SPEC, members, C)
    assert removal.done == [] and removal.left and f"remove_node {C}" in removal.left[0]


async def test_deletion_writes_reach_the_observer_a_round_uses(fleet, fake_kube, monkeypatch):
    """remove_node made by a deletion counts in harper_operator_harper_writes_total like a round's (it did not)."""
    from harper_operator.controller import dissolve as module
    members = [node_body("n1", A), node_body("n2", B), node_body("n3", C)]
    await joined(fleet, fake_kube, members)
    pools = []
    monkeypatch.setattr(module, "ClientPool", lambda *a, **kw: pools.append(kw.get("observer")) or FakePool(fleet))

    def observer(operation, outcome, seconds):
        pass
    await remove_member(cluster_body(), SPEC, members, C, observer=observer)
    await dissolve(cluster_body(), SPEC, members[:2], observer=observer)
    assert pools == [observer, observer]
