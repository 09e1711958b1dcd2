"""One round of the fault matrix (bench/faults.py runs five): every fault once, at a seeded random moment of a step
of the lifecycle, on the real test bed; after each, Harper itself is checked (e2e/faults/truth.py).

The seed is printed; FAULTS_SEED=N replays the same choices and moments.
"""

from __future__ import annotations

import os
import random

from ..faults import matrix
from ..faults.faults import LOOPBACK
from ..faults.lifecycle import STEPS, LoopbackWorld


def test_every_fault_once_leaves_nothing_lost(kube, operator, harper_fleet, control_plane):
    seed = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"fault matrix seed {seed} (replay: FAULTS_SEED={seed})")
    rng = random.Random(seed)
    plan = matrix.schedule([f.name for f in LOOPBACK], 1, len(STEPS), rng, baseline=False)
    world = LoopbackWorld(kube, operator, harper_fleet, control_plane)
    rows = matrix.run(world, plan, STEPS, rng, report=lambda r: print(
        f"{'ok ' if r.clean else 'BAD'} {r.step:<8} {r.fault:<18} {r.did} -> Ready in {r.to_ready_s}s, "
        f"{len(r.writes)} writes"))
    print(matrix.table(matrix.summarise(rows)))
    bad = [r for r in rows if not r.clean]
    assert not bad, f"seed {seed}:\n" + "\n\n".join(
        f"{r.step} + {r.fault} ({r.did}, {r.moment}): converged={r.converged} ghosts={r.ghosts} missing={r.missing} "
        f"lost={r.lost} wrong statuses={r.wrong_statuses}\n" + "\n".join(n[-4000:] for n in r.notes) for r in bad)
    assert {r.fault for r in rows} >= {f.name for f in LOOPBACK}, "a fault never ran (a step did not converge)"
