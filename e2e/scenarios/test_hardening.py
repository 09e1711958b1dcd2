"""The two guarantees of the "Harden" issue on the real test bed (real kube-apiserver, real Harper nodes).

1. Credentials go only where the cluster's owner allows: a HarperNode pointing at a server of the test's own
   receives no credential and no other Secret's content, in every mode.
2. One bad member, one bad answer or one odd spec never hurts the rest: no healthy record is removed, no
   restart loops, the others stay Ready and every status keeps being written, finalizers always release.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import pytest
import yaml

from ..operator_process import ROOT
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
    # iso-ca never joined, but iso-keystore (its own Secret does not work) cannot be asked whether it lists iso-ca:
    # the deletion waits and names it (docs/safety.md, S1). iso-elsewhere is never asked (its URL is refused).
    kube.delete("harpernode", "iso-ca", wait=False)
    waiting = kit.wait_until("iso-ca's deletion says what it waits for", lambda: next((
        e for e in kube.events("iso-ca") if e["reason"] == "WaitingForReplication"
        and f"{d.name} to be asked whether it lists {c.name}" in e["message"]), None), timeout=60)
    assert "keystore" in waiting["message"], waiting  # the Secret to fix
    assert kube.get("harpernode", "iso-ca"), "left without proof"
    # Both bad members deleted: neither is listed by a member that answered, and every finalizer releases.
    for name in ("iso-keystore", "iso-elsewhere"):
        kube.delete("harpernode", name, wait=False)
    kit.wait_until("every bad member gone", lambda: not any(
        kube.get("harpernode", n) for n in ("iso-ca", "iso-keystore", "iso-elsewhere")), timeout=60)
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


# --- Issue 20 (S5): every value the CRD admits, and every value it once admitted, is one the code handles ---------

NODE_CRD = ROOT / "crds" / "harperoperator.dev_harpernodes.yaml"


@contextlib.contextmanager
def _urls_unchecked(kube):
    """The HarperNode CRD with no rule on url and operationsUrl, as an older release's loose pattern was: objects
    stored meanwhile stay stored after the strict CRD is back, and the operator reads them back from then on."""
    crd = yaml.safe_load(NODE_CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for field in ("url", "operationsUrl"):
        spec[field] = {"type": "string", "description": spec[field]["description"]}
    kube.run("apply", "-f", "-", input=json.dumps(crd))
    try:
        yield
    finally:
        kube.run("apply", "-f", str(NODE_CRD))


def _cluster_observed(kube, name: str) -> dict:
    return kit.wait_until(f"{name}'s status at its generation",
                          lambda: (h := kube.get("harpercluster", name))["status"].get("observedGeneration") ==
                          h["metadata"]["generation"] and h, timeout=60)


def test_urls_stored_before_the_crd_refused_them_stop_no_round_and_no_finalizer(kube, operator, harper_nodes):
    a, b = harper_nodes[:2]
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("brk", interval=INTERVAL),
               kit.node("brk-a", "brk", a), kit.node("brk-b", "brk", b))
    kit.ready_with(kube, "harpercluster", "brk", "2/2")
    stored = [_hn("brk-v4", "brk", "127.0.0.250", "wss://127.0.0.250:9933", "https://[1.2.3.4]:9925"),
              _hn("brk-v6", "brk", "127.0.0.251", "wss://[::1::2]:9933", "https://127.0.0.251:9925")]
    with _urls_unchecked(kube):
        kit.wait_until("the loose CRD in force", lambda: kube.apply(*stored, check=False).returncode == 0, timeout=30)
    late = _hn("brk-late", "brk", "127.0.0.252", "wss://[1.2.3.4]:9933", "https://127.0.0.252:9925")
    kit.wait_until("the strict CRD back in force", lambda: kube.run(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(late), check=False).returncode != 0, timeout=30)

    for name, field in (("brk-v4", "operationsUrl"), ("brk-v6", "url")):
        stalled = _reason(kube, name, "Stalled", "InvalidURL")
        assert stalled["message"].startswith(f"spec.{field} host [") and "IPv6" in stalled["message"], stalled
    # The round goes on: the old Ready=True is gone, the cause is named, a spec change is still observed.
    kube.patch("harpercluster", "brk", {"spec": {"reconcileIntervalSeconds": INTERVAL + 1}})
    hc = _cluster_observed(kube, "brk")
    assert kit.condition(hc, "Ready")["status"] == "False"
    stalled = kit.condition(hc, "Stalled")
    assert stalled["reason"] == "InvalidURL" and stalled["message"].startswith("HarperNode brk-v"), stalled
    assert hc["status"]["readyNodes"] == "2/4"
    assert kube.ready("harpernode", "brk-a") and kube.ready("harpernode", "brk-b")
    assert kit.peers(a) == {b.name: True}, "nothing was written about the held members"

    started = time.monotonic()
    kube.delete("harpernode", "brk-v4")  # --wait: returns once the finalizer is released
    kube.delete("harpercluster", "brk")
    assert kube.get("harpernode", "brk-v4") is None and kube.get("harpercluster", "brk") is None
    assert time.monotonic() - started < 60, "a deletion was retried"
    left = " ".join(e["message"] for e in kube.events("brk") if e["reason"] == "RecordsLeft")
    assert "127.0.0.251" in left and "spec.url" in left, left
    for name in ("brk-v6", "brk-a", "brk-b"):
        kube.delete("harpernode", name)


# Pattern-valid, and each one an edge: an IPv4-mapped loopback address (not loopback to allowedHosts), the
# unspecified addresses, a 63-character label, port 65535 and port 1, an all-numeric name that is no address.
ADMITTED_EDGES = {
    "edge-mapped": ("wss://[::ffff:127.0.0.1]:9933", "https://[::FFFF:7F00:1]:9925"),
    "edge-unspecified": ("wss://[::]:65535", "https://0.0.0.0:1"),
    "edge-long-label": (f"wss://{'a' * 63}.example:9933", f"https://{'b' * 63}.example:9925"),
    "edge-numeric": ("wss://999.1.1.1:9933", "https://1.2.3.4.5:9925/"),
}


def test_admitted_edge_urls_are_each_their_members_problem_and_release_their_finalizers(kube, operator,
                                                                                         harper_nodes):
    a, b = harper_nodes[:2]
    kube.apply(kit.secret("harper-admin", a.username, a.password),
               kit.cluster("edge", interval=INTERVAL, allowedHosts=[a.ip, b.ip, "::/0"]),
               kit.node("edge-a", "edge", a), kit.node("edge-b", "edge", b))
    kit.ready_with(kube, "harpercluster", "edge", "2/2")
    kube.apply(*(_hn(name, "edge", f"{name}.example", url, ops) for name, (url, ops) in ADMITTED_EDGES.items()))
    for name in ADMITTED_EDGES:
        kit.wait_until(f"{name} not Ready, with a reason", lambda: (c := kit.condition(
            kube.get("harpernode", name) or {}, "Ready")).get("status") == "False" and c.get("reason") and c, timeout=90)
    kube.patch("harpercluster", "edge", {"spec": {"reconcileIntervalSeconds": INTERVAL + 1}})
    hc = _cluster_observed(kube, "edge")
    rows = {r["name"]: r for r in hc["status"]["members"]}
    assert all(rows[name]["message"] for name in ADMITTED_EDGES), rows
    assert kit.peers(a).get(b.name) and kit.peers(b).get(a.name), "the good pair stays meshed"
    for name in ADMITTED_EDGES:
        kube.delete("harpernode", name)
    kube.delete("harpercluster", "edge")
    assert kube.get("harpercluster", "edge") is None
