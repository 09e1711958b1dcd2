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


def test_scale_down_removes_from_harper_before_the_pods_go():
    seen = Seen(desired=3, statefulset_replicas=5, node_ordinals=frozenset(range(5)), pods=pods(5), converged=True)
    s = steps(seen)
    assert s.replicas == 5, "the StatefulSet keeps the leaving pods while Harper still knows them"
    assert s.delete_nodes == (3, 4) and s.progress.startswith("scaling down")
    # The finalizers are running: nothing new is deleted, the replicas still wait.
    s = steps(Seen(desired=3, statefulset_replicas=5, node_ordinals=frozenset(range(3)),
                   deleting_ordinals=frozenset({3, 4}), pods=pods(5)))
    assert s.replicas == 5 and s.delete_nodes == ()
    # Harper forgot them: now the StatefulSet shrinks.
    s = steps(Seen(desired=3, statefulset_replicas=5, node_ordinals=frozenset(range(3)), pods=pods(5)))
    assert s.replicas == 3 and s.delete_nodes == ()


def test_a_reverted_scale_down_keeps_the_nodes_not_yet_deleted():
    s = steps(Seen(desired=5, statefulset_replicas=5, node_ordinals=frozenset(range(4)),
                   deleting_ordinals=frozenset({4}), pods=pods(5)))
    assert s.replicas == 5 and s.delete_nodes == () and s.create_nodes == (), "4 is re-created once it is gone"
    s = steps(Seen(desired=5, statefulset_replicas=5, node_ordinals=frozenset(range(4)), pods=pods(5)))
    assert s.create_nodes == (4,)


def test_scale_to_zero():
    s = steps(Seen(desired=0, statefulset_replicas=2, node_ordinals=frozenset({0, 1}), pods=pods(2)))
    assert s.delete_nodes == (0, 1) and s.replicas == 2
    assert steps(Seen(desired=0, statefulset_replicas=2, pods=pods(2))).replicas == 0


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
