"""What Flux sees: kstatus (sigs.k8s.io/cli-utils, the library behind Flux's health checks) computed by the real
library on live HarperClusters and HarperNodes, through the small program in e2e/tools/kstatus.

Not seen by any operator yet -> InProgress (the CRDs default status to observedGeneration 0); Ready -> Current;
paused with work to do -> InProgress (Reconciling=True, reason Paused); paused with nothing to do -> Current.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from ..testbed.tools import ensure_kstatus
from . import kit

KINDS = "harperclusters,harpernodes"
PAUSED = "harperoperator.dev/paused"
LAST_ROUND = "harper_operator_cluster_last_reconcile_timestamp_seconds"


@pytest.fixture(scope="module")
def kstatus_exe(request) -> Path:
    # The first build takes half a minute: show its progress rather than look hung.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        return ensure_kstatus()


def kstatus(exe: Path, objects: str) -> dict[str, tuple[str, str]]:
    """`<kind>/<name>` -> (status, message) for the JSON `kubectl get -o json` printed."""
    done = subprocess.run([str(exe)], input=objects, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    out = {}
    for line in done.stdout.splitlines():
        ref, status, *message = line.split(" ", 2)
        out[ref] = (status, message[0] if message else "")
    return out


def live(kube, exe: Path) -> dict[str, tuple[str, str]]:
    return kstatus(exe, kube.run("get", KINDS, "-o", "json").stdout)


def test_flux_sees_unseen_and_paused_as_in_progress(kube, operator, harper_nodes, kstatus_exe):
    a, b, c = harper_nodes[:3]
    names = ("HarperCluster/ks", "HarperNode/ks-a", "HarperNode/ks-b")

    # (a) No operator runs: the objects were never written by one. The shared operator serves every namespace, so it
    # is stopped for this part and started again whatever happens.
    operator.stop()
    try:
        kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("ks"),
                   kit.node("ks-a", "ks", a), kit.node("ks-b", "ks", b))
        listed = kube.run("get", KINDS, "-o", "json").stdout
        unseen = kstatus(kstatus_exe, listed)
        assert unseen == {ref: ("InProgress", f"{ref.split('/')[0]} generation is 1, but latest observed generation "
                                              "is 0") for ref in names}, unseen
        items = json.loads(listed)["items"]
        assert all(o["status"] == {"observedGeneration": 0} for o in items), items  # the CRD's default
        # Without that default the same objects read Current: what Flux saw before.
        bare = {"apiVersion": "v1", "kind": "List", "items": [{k: v for k, v in o.items() if k != "status"}
                                                             for o in items]}
        assert {s for s, _ in kstatus(kstatus_exe, json.dumps(bare)).values()} == {"Current"}
    finally:
        operator.start()

    # (b) Ready -> Current, every object.
    kit.ready_with(kube, "harpercluster", "ks", "2/2")
    kit.wait_until("kstatus Current for the cluster and its nodes",
                   lambda: (lambda s: {v[0] for v in s.values()} == {"Current"} and s)(live(kube, kstatus_exe)),
                   timeout=30)

    # Paused with nothing to do stays Ready, so Current: after two rounds that saw the annotation (the first may
    # have begun before it), nothing changed.
    kube.run("annotate", "harpercluster", "ks", f"{PAUSED}=true")
    rounds: set[float] = set()
    since = time.time()

    def two_rounds() -> bool:
        at = operator.metric(LAST_ROUND, namespace=kube.namespace, cluster="ks")
        if at > since:
            rounds.add(at)
        return len(rounds) >= 2

    kit.wait_until("two rounds of the paused cluster", two_rounds, timeout=30)
    idle = live(kube, kstatus_exe)
    assert {v[0] for v in idle.values()} == {"Current"}, idle

    # (c) Paused with a new member to join: the operator does not write it, and says so as Reconciling=True.
    kube.apply(kit.node("ks-c", "ks", c))
    hc = kit.wait_until("cluster Reconciling because Paused", lambda: (lambda o: o and kit.condition(
        o, "Reconciling").get("reason") == "Paused" and o)(kube.get("harpercluster", "ks")), timeout=30)
    reconciling = kit.condition(hc, "Reconciling")
    assert reconciling["status"] == "True" and "paused" in reconciling["message"], reconciling
    assert kit.condition(hc, "Ready")["status"] == "False" and kit.condition(hc, "Stalled")["status"] == "False"
    # The condition decides, not a generation not yet observed: the annotation did not change the generation.
    assert hc["status"]["observedGeneration"] == hc["metadata"]["generation"]
    paused = live(kube, kstatus_exe)
    assert paused["HarperCluster/ks"] == ("InProgress", reconciling["message"]), paused
    assert {ref: s for ref, (s, _) in paused.items()} == {
        ref: "InProgress" for ref in (*names, "HarperNode/ks-c")}, paused  # a and b wait for c, c for its peers

    # Unpaused: c joins, and Flux sees everything Current again.
    kube.run("annotate", "harpercluster", "ks", f"{PAUSED}-")
    kit.ready_with(kube, "harpercluster", "ks", "3/3")
    kit.wait_until("kstatus Current again",
                   lambda: (lambda s: len(s) == 4 and {v[0] for v in s.values()} == {"Current"} and s)(
                       live(kube, kstatus_exe)), timeout=30)
