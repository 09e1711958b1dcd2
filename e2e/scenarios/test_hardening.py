"""The two guarantees of the "Harden" issue on the real test bed (real kube-apiserver, real Harper nodes).

1. Credentials go only where the cluster's owner allows: a HarperNode pointing at a server of the test's own
   receives no credential and no other Secret's content, in every mode.
2. One bad member, one bad answer or one odd spec never hurts the rest: no healthy record is removed, no
   restart loops, the others stay Ready and every status keeps being written, finalizers always release.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from . import kit
from .rogue import Rogue

INTERVAL = 5


@pytest.fixture
def rogues():
    outside, inside = Rogue().start(), Rogue().start()
    yield outside, inside
    outside.stop()
    inside.stop()


def _hn(name: str, cluster: str, hostname: str, url: str, operations_url: str, **spec) -> dict:
    return {"apiVersion": kit.GROUP_VERSION, "kind": "HarperNode", "metadata": {"name": name},
            "spec": {"clusterRef": {"name": cluster}, "hostname": hostname, "url": url,
                     "operationsUrl": operations_url, **spec}}


def _reason(kube, name: str, type_: str, reason: str, timeout: float = 90) -> dict:
    def check():
        c = kit.condition(kube.get("harpernode", name) or {}, type_)
        return c if c.get("status") == "True" and c.get("reason") == reason else False
    return kit.wait_until(f"{name} {type_} with {reason}", check, timeout=timeout)


# --- Guarantee 1 ------------------------------------------------------------------------------------------------


def test_no_credential_reaches_a_host_the_owner_did_not_allow(kube, operator, harper_nodes, rogues):
    a, b, c = harper_nodes[:3]
    outside, inside = rogues
    other_password = "other-" + uuid.uuid4().hex
    kube.apply(kit.secret("harper-admin", a.username, a.password),
               kit.secret("not-for-the-operator", a.username, other_password, readable=False),
               kit.cluster("guard", interval=INTERVAL, allowedHosts=[f"{a.ip}/32", b.ip, c.ip, inside.ip]),
               kit.node("guard-a", "guard", a), kit.node("guard-b", "guard", b))
    kit.ready_with(kube, "harpercluster", "guard", "2/2")

    kube.apply(
        # both URLs on a host the owner did not list
        _hn("to-outside", "guard", outside.ip, outside.replication_url, outside.operations_url),
        # an allowed host, named with a Secret that did not opt in
        _hn("unlabelled", "guard", inside.ip, inside.replication_url, inside.operations_url,
            credentials={"secretRef": {"name": "not-for-the-operator"}}),
        # a real Harper's operations API, replication pointed at an allowed host that is not Harper
        _hn("impostor-url", "guard", c.name, inside.replication_url, c.operations_url))
    assert outside.ip in _reason(kube, "to-outside", "Stalled", "HostNotAllowed")["message"]
    _reason(kube, "unlabelled", "Stalled", "SecretNotReadable")
    impostor = _reason(kube, "impostor-url", "Stalled", "NotHarper")
    assert "not Harper's replication protocol" in impostor["message"]
    time.sleep(2 * INTERVAL + 2)  # more rounds: nothing changes its mind

    assert outside.received == [], f"the host outside allowedHosts was contacted: {outside.received[:3]}"
    assert inside.leaked(a.password, other_password) == []
    assert kit.peers(a) == {b.name: True} and kit.peers(b) == {a.name: True}, "no record for the impostor URL"
    assert kube.ready("harpernode", "guard-a") and kube.ready("harpernode", "guard-b")
    hc = kube.get("harpercluster", "guard")
    assert hc["status"]["readyNodes"] == "2/5"
    shown = json.dumps([hc, *(kube.get("harpernode", n) for n in ("to-outside", "unlabelled", "impostor-url")),
                        *kube.events("guard"), *kube.events("unlabelled")])
    assert other_password not in shown and a.password not in shown
    log = operator.log_path.read_text(errors="replace")
    assert other_password not in log and a.password not in log


# --- Guarantee 2 ------------------------------------------------------------------------------------------------


def test_a_hostname_that_differs_from_harpers_own_name_removes_nothing(kube, operator, harper_nodes):
    a, b, c = harper_nodes[:3]
    # A cluster joined by hand before the operator; its owner adopts it and mistypes one hostname.
    for n in (b, c):
        kit.ok(a, {"operation": "add_node", "hostname": n.name, "url": n.replication_url, "verify_tls": False,
                   "authorization": {"username": n.username, "password": n.password}})
    kit.wait_until("hand-made mesh", kit.mesh_is([a, b, c], kit.full_mesh([a, b, c])), timeout=90)
    wrong = "harper-2.harper.db.svc.cluster.local"
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("adopt", interval=INTERVAL),
               kit.node("adopt-a", "adopt", a), kit.node("adopt-b", "adopt", b),
               kit.node("adopt-c", "adopt", c, hostname=wrong))
    stalled = _reason(kube, "adopt-c", "Stalled", "HostnameMismatch")
    assert wrong in stalled["message"] and c.name in stalled["message"]
    time.sleep(3 * INTERVAL)
    assert kit.mesh_is([a, b, c], kit.full_mesh([a, b, c]))(), "a healthy node lost a record"
    assert not [e for e in kube.events("adopt") if e["reason"] == "RemoveNode"]
    hc = kube.get("harpercluster", "adopt")
    assert kit.condition(hc, "Stalled")["reason"] == "HostnameMismatch"

    # The fix the message asks for: recreate the HarperNode with Harper's own name.
    kube.delete("harpernode", "adopt-c")
    kube.apply(kit.node("adopt-c2", "adopt", c))
    kit.ready_with(kube, "harpercluster", "adopt", "3/3")
    assert kit.mesh_is([a, b, c], kit.full_mesh([a, b, c]))()


def test_an_upper_case_route_restarts_each_member_once(kube, operator, harper_nodes):
    a, b = harper_nodes[:2]
    before = {n.name: n.restarts for n in (a, b)}
    route = {"hostname": "Peer-Route.Example", "port": 9933}
    kube.apply(kit.secret("harper-admin", a.username, a.password),
               kit.cluster("routes", interval=INTERVAL, routes=[route]),
               kit.node("routes-a", "routes", a), kit.node("routes-b", "routes", b))
    kit.ready_with(kube, "harpercluster", "routes", "2/2", timeout=240)
    time.sleep(3 * INTERVAL)  # a loop would restart them again within these rounds
    assert {n.name: n.restarts - before[n.name] for n in (a, b)} == {a.name: 1, b.name: 1}
    assert kube.ready("harpercluster", "routes")
    for n in (a, b):
        routes = kit.ok(n, {"operation": "get_configuration"})["replication"]["routes"]
        assert "wss://peer-route.example:9933" in routes, routes


def test_one_bad_member_never_freezes_the_cluster(kube, operator, harper_nodes):
    a, b = harper_nodes[:2]
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("iso", interval=INTERVAL),
               kit.node("iso-a", "iso", a), kit.node("iso-b", "iso", b))
    kit.ready_with(kube, "harpercluster", "iso", "2/2")
    garbage_ca = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "garbage-ca", "labels": kit.READABLE},
                  "stringData": {"ca.crt": "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----"}}
    keystore = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keystore", "labels": kit.READABLE},
                "data": {"username": "YWRtaW4=", "password": "/+7/AAEC"}}  # a binary password (a keystore)
    c, d = harper_nodes[2:4]
    kube.apply(garbage_ca, keystore,
               kit.node("iso-ca", "iso", c, tls={"verify": True, "caSecretRef": {"name": "garbage-ca"}}),
               kit.node("iso-keystore", "iso", d, credentials={"secretRef": {"name": "keystore"}}),
               _hn("iso-elsewhere", "iso", "harper-9.elsewhere.example", "wss://harper-9.elsewhere.example:9933",
                   "https://harper-9.elsewhere.example:9925"))
    for name, reason in (("iso-ca", "CASecretInvalid"), ("iso-keystore", "SecretInvalid"),
                         ("iso-elsewhere", "HostNotAllowed")):
        _reason(kube, name, "Stalled", reason)
    # The cluster's status keeps moving: a spec change is observed, the good members stay Ready.
    kube.patch("harpercluster", "iso", {"spec": {"reconcileIntervalSeconds": INTERVAL + 1}})
    hc = kit.wait_until("status follows the new generation",
                        lambda: (h := kube.get("harpercluster", "iso"))["status"].get("observedGeneration") ==
                        h["metadata"]["generation"] and h, timeout=60)
    assert hc["status"]["readyNodes"] == "2/5"
    rows = {r["name"]: r for r in hc["status"]["members"]}
    assert rows["iso-a"]["ready"] and rows["iso-b"]["ready"]
    assert kube.ready("harpernode", "iso-a") and kube.ready("harpernode", "iso-b")
    # Every finalizer releases.
    for name in ("iso-ca", "iso-keystore", "iso-elsewhere"):
        kube.delete("harpernode", name)
    kit.ready_with(kube, "harpercluster", "iso", "2/2")


def test_retain_of_a_long_hostname_releases_the_finalizer(kube, operator, harper_nodes):
    a = harper_nodes[0]
    long_name = "r" * 60 + ".harper-operator-retained-node-with-a-long-name.example"
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("keep", interval=INTERVAL),
               kit.node("keep-a", "keep", a),
               _hn("keep-long", "keep", long_name, f"wss://{long_name}:9933", f"https://{long_name}:9925",
                   deletionPolicy="Retain"))
    _reason(kube, "keep-long", "Stalled", "HostNotAllowed")
    started = time.monotonic()
    kube.delete("harpernode", "keep-long")  # waits for the finalizer
    assert time.monotonic() - started < 60
    retained = json.loads(kube.get("harpercluster", "keep")["metadata"]["annotations"]
                          ["harperoperator.dev/retained-nodes"])
    assert retained == [long_name]
