"""Patience before removing a ghost record, or mending a record gossip has not brought: pure, `now` is passed in.

A record no HarperNode declares is a ghost, and plan() removes it. But "no HarperNode declares it" is only as
true as the operator's view: the HarperNodes of a `kubectl apply` (or of a GitOps sync) arrive one event at a
time, and just after the operator starts its index may not hold them all yet. Removing a healthy node on such a
moment would be the worst thing the operator could do, so a ghost is removed only after it has stayed a ghost
for `grace` seconds without a break.
"""

from __future__ import annotations

from typing import Collection, Mapping

from .plan import AddNode, Operation, RemoveNode


def hold_ghost_removals(ops: list[Operation], declared: Collection[str], ghost_since: Mapping[str, float],
                        now: float, grace: float) -> tuple[list[Operation], dict[str, float]]:
    """(operations to run now, ghost -> since when it has been one). Removals of declared names (re-creating a
    pair, a mode switch) are never held: they are the planner's deliberate steps, not ghosts."""
    declared = set(declared)
    ghosts = {op.hostname for op in ops if isinstance(op, RemoveNode) and op.hostname not in declared}
    since = {g: min(ghost_since.get(g, now), now) for g in ghosts}
    ripe = {g for g, t in since.items() if now - t >= grace}
    kept = [op for op in ops if not (isinstance(op, RemoveNode) and op.hostname in ghosts - ripe)]
    return kept, since


def hold_mends(ops: list[Operation], mend_since: Mapping[str, float], now: float,
               grace: float) -> tuple[list[Operation], dict[str, float]]:
    """(operations to run now, mend -> since when it has been wanted). A record gossip has not brought yet is
    normal for a second or two after a join: the add_node that mends it (plan's `_mends`) waits until it has been
    wanted for `grace` seconds without a break."""
    wanted = {op.describe(): op for op in ops if isinstance(op, AddNode) and op.mend}
    since = {k: min(mend_since.get(k, now), now) for k in wanted}
    ripe = {k for k, t in since.items() if now - t >= grace}
    return [op for op in ops if not (isinstance(op, AddNode) and op.mend and op.describe() not in ripe)], since
