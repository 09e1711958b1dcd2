"""provision.scale.steps: the order of a provisioned cluster's writes (pure; every rule by example)."""

from __future__ import annotations

from harper_operator.provision.scale import Pod, Seen, steps


def pods(n: int, revision: str = "r1", ready: bool = True, start: int = 0) -> tuple[Pod, ...]:
    return tuple(Pod(i, f"hc-{i}", ready, revision) for i in range(start, n))


def test_a_new_cluster_gets_its_statefulset_and_every_node():
    s = steps(Seen(desired=3, statefulset_replicas=None))
    assert (s.replicas, s.create_nodes, s.delete_nodes, s.delete_pod) == (3, (0, 1, 2), (), None)
    assert s.progress.startswith("scaling to 3")


def test_steady_state_does_nothing():
    s = steps(Seen(desired=3, statefulset_replicas=3, update_revision="r1", node_ordinals=frozenset({0, 1, 2}),
                   pods=pods(3), converged=True))
    assert (s.replicas, s.create_nodes, s.delete_nodes, s.delete_pod, s.progress) == (3, (), (), None, "")
    assert s.ready_pods == {0, 1, 2}


def test_scale_up_is_immediate():
    s = steps(Seen(desired=5, statefulset_replicas=3, node_ordinals=frozenset({0, 1, 2}), pods=pods(3)))
    assert s.replicas == 5 and s.create_nodes == (3, 4)


def test_scale_down_takes_the_leaving_pods_out_of_service_and_waits_for_their_data():
    """S1: nothing leaves before the last round proved its records are on the members that stay."""
    seen = Seen(desired=3, statefulset_replicas=5, node_ordinals=frozenset(range(5)), pods=pods(5), converged=True,
                waits={3: "hc-0 has not confirmed hc-3's writes"})
    s = steps(seen)
    assert s.replicas == 5, "the StatefulSet keeps the leaving pods while Harper still knows them"
    assert s.unserve == (3, 4) and s.serve == (0, 1, 2) and s.leaving == {3, 4}
    assert s.delete_nodes == () and s.delete_claims == ()
    assert "waiting for the leaving members' records" in s.progress and "hc-0 has not confirmed" in s.progress
    assert "ordinal 4: its records are not yet confirmed" in s.progress


def test_scale_down_removes_from_harper_only_what_was_proven_then_lowers_the_replicas():
    out = tuple(Pod(i, f"hc-{i}", True, "r1", serving=i < 3) for i in range(5))
    base = dict(desired=3, statefulset_replicas=5, pods=out, claims=frozenset(range(5)))
    s = steps(Seen(**base, node_ordinals=frozenset(range(5)), drained=frozenset({4})))
    assert s.delete_nodes == (4,) and s.release_claims == (4,) and s.unserve == () and s.replicas == 5
    assert "ordinal 3:" in s.progress
    s = steps(Seen(**base, node_ordinals=frozenset(range(5)), drained=frozenset({3, 4})))
    assert s.delete_nodes == (3, 4) and s.progress.startswith("scaling down to 3: removing")
    # The finalizers are running: nothing new is deleted, the replicas still wait.
    s = steps(Seen(**base, node_ordinals=frozenset(range(3)), deleting_ordinals=frozenset({3, 4}),
                   released=frozenset({3, 4})))
    assert s.replicas == 5 and s.delete_nodes == () and s.delete_claims == ()
    # Harper forgot them: now the StatefulSet shrinks; the marked volumes go once their pods are gone.
    s = steps(Seen(**base, node_ordinals=frozenset(range(3)), released=frozenset({3, 4})))
    assert s.replicas == 3 and s.delete_claims == ()
    s = steps(Seen(**{**base, "pods": out[:3]}, node_ordinals=frozenset(range(3)), released=frozenset({3, 4})))
    assert s.delete_claims == (3, 4)


def test_only_marked_volumes_are_ever_deleted_and_only_under_delete():
    done = dict(desired=3, statefulset_replicas=3, node_ordinals=frozenset(range(3)), pods=pods(3),
                claims=frozenset(range(6)))
    assert steps(Seen(**done)).delete_claims == (), "a claim nobody proved (an old cluster's, say) stays"
    assert steps(Seen(**done, released=frozenset({4}))).delete_claims == (4,)
    assert steps(Seen(**done, released=frozenset({4}), volumes_go=False)).delete_claims == ()


def test_a_marked_volume_of_an_ordinal_wanted_again_is_unmarked():
    s = steps(Seen(desired=5, statefulset_replicas=3, node_ordinals=frozenset(range(3)), pods=pods(3),
                   claims=frozenset(range(5)), released=frozenset({3, 4})))
    assert s.keep_claims == (3, 4) and s.delete_claims == () and s.create_nodes == (3, 4)


def test_a_scale_down_that_drops_a_shards_last_members_is_refused():
    s = steps(Seen(desired=2, statefulset_replicas=4, node_ordinals=frozenset(range(4)), pods=pods(4),
                   shards={0: 1, 1: 1, 2: 2, 3: 2}, drained=frozenset({2, 3})))
    assert s.refused and "shard(s) 2" in s.refused and "ordinal(s) 2, 3" in s.refused
    assert s.delete_nodes == () and s.unserve == () and s.replicas == 4
    s = steps(Seen(desired=3, statefulset_replicas=4, node_ordinals=frozenset(range(4)), pods=pods(4),
                   shards={0: 1, 1: 1, 2: 2, 3: 2}, drained=frozenset({3})))
    assert not s.refused and s.delete_nodes == (3,)


def test_a_reverted_scale_down_keeps_the_nodes_not_yet_deleted():
    s = steps(Seen(desired=5, statefulset_replicas=5, node_ordinals=frozenset(range(4)),
                   deleting_ordinals=frozenset({4}), pods=pods(5)))
    assert s.replicas == 5 and s.delete_nodes == () and s.create_nodes == (), "4 is re-created once it is gone"
    s = steps(Seen(desired=5, statefulset_replicas=5, node_ordinals=frozenset(range(4)), pods=pods(5)))
    assert s.create_nodes == (4,)
    # A pod taken out of service for a scale-down that was reverted goes back in.
    back = pods(4) + (Pod(4, "hc-4", True, "r1", serving=False),)
    assert 4 in steps(Seen(desired=5, statefulset_replicas=5, node_ordinals=frozenset(range(5)), pods=back)).serve


def test_replicas_zero_hibernates_keeping_every_node_and_volume():
    """S2: the pods go; HarperNodes, volumes and Harper's records stay."""
    s = steps(Seen(desired=0, statefulset_replicas=2, node_ordinals=frozenset({0, 1}), pods=pods(2),
                   claims=frozenset({0, 1}), released=frozenset({1})))
    assert s.replicas == 0 and s.delete_nodes == () and s.delete_claims == () and not s.hibernated
    assert s.progress.startswith("hibernating") and "hc-0, hc-1" in s.progress
    s = steps(Seen(desired=0, statefulset_replicas=0, node_ordinals=frozenset({0, 1}), claims=frozenset({0, 1})))
    assert s.hibernated and s.replicas == 0 and s.progress == "" and s.delete_claims == ()


def test_waking_up_brings_the_same_members_back_and_drains_any_beyond_the_new_replicas():
    s = steps(Seen(desired=3, statefulset_replicas=0, node_ordinals=frozenset({0, 1, 2})))
    assert s.replicas == 3 and s.create_nodes == () and s.delete_nodes == ()
    # Woken to fewer: the extra member runs again until its data is confirmed elsewhere.
    s = steps(Seen(desired=2, statefulset_replicas=0, node_ordinals=frozenset({0, 1, 2})))
    assert s.replicas == 3 and s.leaving == {2} and s.delete_nodes == ()


def test_waits_for_pods_to_be_ready():
    s = steps(Seen(desired=3, statefulset_replicas=3, update_revision="r1", node_ordinals=frozenset(range(3)),
                   pods=pods(2) + (Pod(2, "hc-2", False, "r1"),), converged=False))
    assert "2/3 Ready" in s.progress and s.ready_pods == {0, 1}


def test_rolls_one_pod_at_a_time_from_the_highest_ordinal():
    base = dict(desired=3, statefulset_replicas=3, update_revision="r2", node_ordinals=frozenset(range(3)))
    s = steps(Seen(**base, pods=pods(3, "r1"), converged=True))
    assert s.delete_pod == "hc-2" and s.progress.startswith("rolling out revision r2")
    # hc-2 is back on r2 but the mesh has not reconnected: wait.
    rolled = pods(2, "r1") + (Pod(2, "hc-2", True, "r2"),)
    s = steps(Seen(**base, pods=rolled, converged=False))
    assert s.delete_pod is None and "waiting for every member" in s.progress
    s = steps(Seen(**base, pods=rolled, converged=True))
    assert s.delete_pod == "hc-1"
    # A pod that is restarting stops the roll.
    s = steps(Seen(**base, pods=pods(2, "r1") + (Pod(2, "hc-2", False, "r2"),), converged=True))
    assert s.delete_pod is None


def test_no_roll_during_a_scale():
    s = steps(Seen(desired=5, statefulset_replicas=3, update_revision="r2", node_ordinals=frozenset(range(3)),
                   pods=pods(3, "r1"), converged=True))
    assert s.delete_pod is None
    s = steps(Seen(desired=2, statefulset_replicas=3, update_revision="r2", node_ordinals=frozenset(range(3)),
                   pods=pods(3, "r1"), converged=True))
    assert s.delete_pod is None


def test_a_harper_node_deleted_by_hand_leaves_the_client_service_and_waits_for_its_proof():
    """S1 whatever the cause: a provisioned HarperNode deleted by a person is a leaving member too (its finalizer
    waits for the proof, which needs its pod out of the client Service first). Nothing else of the cluster moves."""
    serving = tuple(Pod(i, f"hc-{i}", True, "r1", serving=True) for i in range(3))
    s = steps(Seen(desired=3, statefulset_replicas=3, update_revision="r1", node_ordinals=frozenset({0, 2}),
                   deleting_ordinals=frozenset({1}), pods=serving, converged=True))
    assert s.unserve == (1,) and s.leaving == {1} and 1 not in s.serve
    assert (s.replicas, s.create_nodes, s.delete_nodes, s.delete_pod, s.delete_claims) == (3, (), (), None, ())
    out = serving[:1] + (Pod(1, "hc-1", True, "r1", serving=False),) + serving[2:]
    s = steps(Seen(desired=3, statefulset_replicas=3, update_revision="r1", node_ordinals=frozenset({0, 2}),
                   deleting_ordinals=frozenset({1}), pods=out, converged=True))
    assert s.unserve == () and s.leaving == {1}, "already out: not patched again"
    s = steps(Seen(desired=3, statefulset_replicas=3, update_revision="r1", node_ordinals=frozenset({0, 2}),
                   pods=out, converged=True))
    assert s.create_nodes == (1,) and 1 in s.serve and s.leaving == set(), "once gone it comes back, served again"
