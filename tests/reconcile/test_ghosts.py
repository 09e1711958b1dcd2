"""hold_ghost_removals(): a ghost is removed only after it stayed one for the grace period."""

from harper_operator.reconcile.ghosts import hold_ghost_removals
from harper_operator.reconcile.plan import RemoveNode, Restart

OPS = [RemoveNode("a", "ghost"), RemoveNode("a", "b"), Restart("a")]


def test_a_new_ghost_waits_and_declared_removals_do_not():
    kept, since = hold_ghost_removals(OPS, {"a", "b"}, {}, 100.0, 20.0)
    assert kept == [RemoveNode("a", "b"), Restart("a")] and since == {"ghost": 100.0}
    kept, since = hold_ghost_removals(OPS, {"a", "b"}, since, 119.0, 20.0)
    assert RemoveNode("a", "ghost") not in kept
    kept, since = hold_ghost_removals(OPS, {"a", "b"}, since, 120.0, 20.0)
    assert kept == OPS


def test_a_break_starts_the_wait_again():
    _, since = hold_ghost_removals(OPS, {"a", "b"}, {}, 100.0, 20.0)
    _, since = hold_ghost_removals([], {"a", "b"}, since, 110.0, 20.0)  # declared again for a moment
    kept, _ = hold_ghost_removals(OPS, {"a", "b"}, since, 125.0, 20.0)
    assert RemoveNode("a", "ghost") not in kept
