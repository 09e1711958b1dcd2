"""The fault matrix's node-layer faults on the real node: a Harper pod deleted, the kubelet restarted, the
operator's pod deleted, each at a seeded random moment of a step (e2e/faults/on_node.py), with Harper itself
checked after every one (e2e/faults/truth.py).

`make test` runs one round; `bench/faults.py --bed node` runs five (FAULTS_ROUNDS) and writes the table.
FAULTS_SEED=N replays the same choices and moments.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from ..faults import matrix
from ..faults.faults import NODE
from ..faults.on_node import STEPS, NodeWorld
from .conftest import CHART

OPERATOR_NS = "harper-faults"
RELEASE = "harper-operator-faults"


@pytest.fixture(scope="module")
def faults_release(bed, harper_pods):
    """The chart installed again, after the chart scenarios uninstalled theirs; what they left in the Harper
    namespace (resources without finalizers) is deleted first, so only this module's cluster owns the pods."""
    ns = harper_pods.namespace
    for kind in ("harperclusters", "harpernodes"):
        listed = bed.kubectl("get", kind, "-n", ns, "-o", "json", check=False)  # no CRDs yet when run alone
        for obj in json.loads(listed.stdout)["items"] if listed.returncode == 0 else []:
            bed.kubectl("patch", kind, obj["metadata"]["name"], "-n", ns, "--type=merge",
                        "-p", json.dumps({"metadata": {"finalizers": None}}), check=False)
            bed.kubectl("delete", kind, obj["metadata"]["name"], "-n", ns, "--wait=false", check=False)
    repository, tag = bed.images["operator"].rsplit(":", 1)
    bed.kubectl("create", "namespace", OPERATOR_NS)
    # --take-ownership: the chart's CRDs (kept on uninstall) may belong to another release of this node bed.
    bed.run_helm("install", RELEASE, CHART, "-n", OPERATOR_NS, "--set", f"image.repository={repository}",
                 "--set", f"image.tag={tag}", "--set-json", f'watchNamespaces=["{ns}"]', "--take-ownership", "--wait", "--timeout", "240s")
    yield harper_pods
    bed.kubectl("delete", "harpercluster,harpernode", "--all", "-n", ns, "--wait=true", "--timeout=90s", check=False)
    bed.run_helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--timeout", "120s", check=False)


def test_node_faults_leave_nothing_lost(bed, faults_release):
    seed = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1 << 32))
    rounds = int(os.environ.get("FAULTS_ROUNDS") or 1)
    print(f"node fault matrix seed {seed} (replay: FAULTS_SEED={seed})")
    rng = random.Random(seed)
    plan = matrix.schedule([f.name for f in NODE], rounds, len(STEPS), rng, baseline=rounds > 1)
    world = NodeWorld(bed, faults_release, OPERATOR_NS)
    rows = matrix.run(world, plan, STEPS, rng, report=lambda r: print(
        f"{'ok ' if r.clean else 'BAD'} {r.step:<8} {r.fault:<20} {r.did} -> Ready in {r.to_ready_s}s, "
        f"{len(r.writes)} writes {r.writes}", flush=True))
    summary = matrix.summarise(rows)
    print(matrix.table(summary))
    if os.environ.get("FAULTS_RESULTS"):
        Path(os.environ["FAULTS_RESULTS"]).write_text(json.dumps(
            {"seed": seed, "rounds": rounds, "summary": summary, "rows": [matrix.as_dict(r) for r in rows]}, indent=2))
    bad = [r for r in rows if not r.clean]
    assert not bad, f"seed {seed}:\n" + "\n\n".join(
        f"{r.step} + {r.fault} ({r.did}, {r.moment}): converged={r.converged} ghosts={r.ghosts} missing={r.missing} "
        f"lost={r.lost} wrong statuses={r.wrong_statuses}\n" + "\n".join(r.notes)[-5000:] for r in bad)
    assert {r.fault for r in rows} >= {f.name for f in NODE}, "a fault never ran (a step did not converge)"
