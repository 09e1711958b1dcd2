"""`harper-operator plan` and `status` against the real test bed, and the pause annotation."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from . import kit

EXE = str(Path(sys.executable).with_name("harper-operator"))
WRITES = "harper_operator_harper_writes_total"


def _cli(kube, *args: str, code: int = 0) -> str:
    done = subprocess.run([EXE, *args, "-n", kube.namespace, "--kubeconfig", kube.kubeconfig],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    return done.stdout


def test_plan_status_and_pause(kube, operator, harper_nodes):
    a, b, c = harper_nodes[:3]
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("cli"),
               kit.node("cli-a", "cli", a), kit.node("cli-b", "cli", b))
    kit.ready_with(kube, "harpercluster", "cli", "2/2")
    assert _cli(kube, "plan", "cli", "--direct").strip() == "nothing to do"

    table = _cli(kube, "status", "cli").splitlines()
    assert table[0].split()[:4] == ["NODE", "PEER", "DATABASE", "CONNECTED"]
    rows = [line.split() for line in table[1:]]
    assert {(r[0], r[1]) for r in rows} == {(a.name, b.name), (b.name, a.name)}
    assert all(r[3] == "yes" for r in rows) and {"system"} <= {r[2] for r in rows}

    # Paused: a new member is planned but not written; status keeps refreshing.
    kube.run("annotate", "harpercluster", "cli", "harperoperator.dev/paused=true")
    writes = operator.metric(WRITES)
    kube.apply(kit.node("cli-c", "cli", c))
    hc = kit.wait_until("cluster says Paused", lambda: (lambda o: o and kit.condition(o, "Ready").get("reason") == "Paused"
                                                         and o)(kube.get("harpercluster", "cli")), timeout=60)
    assert hc["status"]["readyNodes"] != "3/3"  # a and b are declared to peer with c, which is not joined
    plan = _cli(kube, "plan", "cli", "--direct")
    assert f"add_node on {a.name}: {c.name}" in plan or f"add_node on {b.name}: {c.name}" in plan, plan
    time.sleep(6)
    assert operator.metric(WRITES) == writes, "paused, yet the operator wrote to Harper"
    assert c.name not in kit.peers(a), "plan (a dry run) or the paused operator changed Harper"

    kube.run("annotate", "harpercluster", "cli", "harperoperator.dev/paused-")
    kit.ready_with(kube, "harpercluster", "cli", "3/3")
    assert operator.metric(WRITES) - writes == 1

    # The certificates of an existing Harper fleet (Harper made them): not verified by the operator, whose
    # cluster runs with verify false; --ca-bundle collects the authorities that signed them, and with those in
    # a Secret the cluster verifies every call and stays Ready.
    rows = [line.split() for line in _cli(kube, "certificates", "cli", "--direct", code=3).splitlines()[1:]]
    assert {r[0] for r in rows} == {a.name, b.name, c.name} and all(r[-1] == "no" for r in rows), rows
    bundle = _cli(kube, "certificates", "cli", "--direct", "--ca-bundle")
    assert bundle.count("BEGIN CERTIFICATE") >= 1 and "PRIVATE" not in bundle
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fleet-ca", "labels": kit.READABLE},
                "stringData": {"ca.crt": bundle}})
    kube.patch("harpercluster", "cli", {"spec": {"tls": {"verify": True, "caSecretRef": {"name": "fleet-ca"}}}})
    kit.ready_with(kube, "harpercluster", "cli", "3/3")
    rows = [line.split() for line in _cli(kube, "certificates", "cli", "--direct").splitlines()[1:]]
    assert all(r[-1] == "yes" for r in rows), rows
