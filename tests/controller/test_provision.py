"""Provisioner.ensure(), orphan() and _pods() on FAKE Kubernetes objects (fake_fleet.FakeKubeObjects).

No API server: the kube module's object calls are replaced by a store that records every write, so these tests
pin what the provisioning shell writes (and, in a steady state, that it writes nothing).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from fake_fleet import FakeKubeObjects

from harper_operator import kube
from harper_operator.controller.provision import Provisioner, _pods, orphan
from harper_operator.provision import pki

CLUSTER_LABEL = "harperoperator.dev/cluster"
SELECTOR = {"app.kubernetes.io/name": "harper", CLUSTER_LABEL: "hc"}
OBJECTS = [("Secret", "hc-tls"), ("Service", "hc"), ("Service", "hc-client"), ("PodDisruptionBudget", "hc"),
           ("StatefulSet", "hc")]


@pytest.fixture
def k8s(monkeypatch) -> FakeKubeObjects:
    fake = FakeKubeObjects()
    for call in ("apply", "merge_patch", "create_secret", "delete", "read_secret", "read_statefulset",
                 "list_statefulsets", "list_pods", "list_claims"):
        monkeypatch.setattr(kube, call, getattr(fake, call))
    return fake


@pytest.fixture
def events() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
def provisioner(events) -> Provisioner:
    return Provisioner("db", "hc", events=lambda body, kind, reason, message: events.append((kind, reason, message)))


def cluster(replicas: int = 3, image: str = "reg/harper:1", **spec) -> dict:
    return {"metadata": {"name": "hc", "namespace": "db", "uid": "u1", "generation": 1},
            "spec": {"instances": {"image": image, "replicas": replicas}, **spec}}


def adopting(replicas: int = 3) -> dict:
    return {"metadata": {"name": "hc", "namespace": "db", "uid": "u1", "generation": 1},
            "spec": {"credentials": {"secretRef": {"name": "admin"}},
                     "instances": {"adopt": {"matchLabels": {"app": "harper"}}, "replicas": replicas}}}


def pod(i: int, *, ready: bool = True, revision: str = "r1", prefix: str = "hc", labels=None,
        deleting: bool = False) -> dict:
    meta = {"name": f"{prefix}-{i}", "labels": {**(labels or SELECTOR), "controller-revision-hash": revision}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"kind": "Pod", "metadata": meta,
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def external_statefulset(name: str = "harper", **labels) -> dict:
    return {"kind": "StatefulSet", "metadata": {"name": name, "labels": labels or {"app": "harper"}},
            "spec": {"replicas": 3, "serviceName": name, "selector": {"matchLabels": {"app": "harper"}},
                     "template": {"spec": {"containers": [{"name": "harper", "image": "theirs:1"}]}}}}


def applied(k8s: FakeKubeObjects) -> list[tuple[str, str]]:
    return [(kind, name) for _, kind, name, _ in k8s.calls("apply")]


def harper_nodes(k8s: FakeKubeObjects, count: int) -> list[dict]:
    return [k8s.get("HarperNode", f"hc-{i}") for i in range(count)]


def host(i: int, pod_prefix: str = "hc") -> str:
    return f"{pod_prefix}-{i}.{pod_prefix}.db.svc.cluster.local"


async def test_a_new_cluster_gets_its_objects_an_admin_secret_and_one_harper_node_per_pod(k8s, provisioner, events):
    view = await provisioner.ensure(cluster(), [], converged=False)
    assert applied(k8s) == OBJECTS + [("HarperNode", f"hc-{i}") for i in range(3)]
    assert k8s.get("StatefulSet", "hc")["spec"]["replicas"] == 3
    assert [(kind, name) for _, kind, name, _ in k8s.calls("create_secret")] == [("Secret", "hc-admin"),
                                                                                   ("Secret", "hc-ca")]
    secret = k8s.get("Secret", "hc-admin")
    assert secret["metadata"]["labels"]["harperoperator.dev/readable"] == "true"
    password = secret["stringData"]["password"]
    assert password and not any(password in message for _, _, message in events)
    # The cluster's authority, and a certificate of it for each pod, named for the pod, before the StatefulSet.
    _, ca = await k8s.read_secret("db", "hc-ca")
    _, files = await k8s.read_secret("db", "hc-tls")
    assert set(files) == {"ca.crt", *(f"hc-{i}.{ext}" for i in range(3) for ext in ("crt", "key"))}
    assert files["ca.crt"] == ca["ca.crt"] and "ca.key" not in files  # the authority's key never reaches a pod
    for i in range(3):
        assert pki.signed_by(files[f"hc-{i}.crt"], ca["ca.crt"]) and host(i) in pki.names(files[f"hc-{i}.crt"])
    assert not any(ca["ca.key"][40:80] in m or files["hc-0.key"][40:80] in m for _, _, m in events)
    assert ("Normal", "CertificateAuthorityCreated") in {(k, r) for k, r, _ in events}
    assert any(r == "CertificatesIssued" and "hc-0, hc-1, hc-2" in m for _, r, m in events)
    template = k8s.get("StatefulSet", "hc")["spec"]["template"]["spec"]
    assert template["volumes"] == [{"name": "tls", "secret": {"secretName": "hc-tls"}}]
    # The first expiry among them, for the HarperCertificateExpiring alert: a pod's, a year from now.
    assert provisioner.first_expiry == min(pki.expires(files[f"hc-{i}.crt"]).timestamp() for i in range(3))
    assert view.problem is not None and not view.problem.permanent and view.problem.reason == "Scaling"
    assert view.replicas == 0 and f"{CLUSTER_LABEL}=hc" in view.selector
    assert view.not_ready == {host(i) for i in range(3)}
    assert [r for _, r, _ in events].count("Applied") == len(k8s.calls("apply"))
    assert [r for _, r, _ in events].count("SecretCreated") == 1

    k8s.objects.clear()  # another cluster's first round (or this one recreated): a new password
    await Provisioner("db", "hc", events=lambda *a: None).ensure(cluster(), [], converged=False)
    assert k8s.get("Secret", "hc-admin")["stringData"]["password"] != password


async def test_an_unchanged_cluster_writes_nothing_and_a_new_image_rewrites_only_the_statefulset(k8s, provisioner):
    await provisioner.ensure(cluster(), [], converged=False)
    nodes = harper_nodes(k8s, 3)
    k8s.writes.clear()
    await provisioner.ensure(cluster(), nodes, converged=False)
    assert k8s.writes == []

    await provisioner.ensure(cluster(image="reg/harper:2"), nodes, converged=False)
    assert applied(k8s) == [("StatefulSet", "hc")] and len(k8s.writes) == 1
    container = k8s.get("StatefulSet", "hc")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/harper:2"


async def test_a_second_provisioner_leaves_the_existing_admin_secret_alone(k8s, provisioner, events):
    await provisioner.ensure(cluster(), [], converged=False)
    before = k8s.get("Secret", "hc-admin")["stringData"]["password"]
    later: list = []
    restarted = Provisioner("db", "hc", events=lambda *a: later.append(a))
    certificates = k8s.get("Secret", "hc-tls")["data"]
    await restarted.ensure(cluster(), harper_nodes(k8s, 3), converged=False)
    # The admin Secret: it tried once, and was told the Secret exists; the authority it found, and kept.
    assert len(k8s.calls("create_secret")) == 3
    assert k8s.get("Secret", "hc-admin")["stringData"]["password"] == before
    assert not any(a[2] in ("SecretCreated", "CertificateAuthorityCreated", "CertificatesIssued") for a in later)
    assert k8s.get("Secret", "hc-tls")["data"] == certificates  # every certificate still good: none issued again


async def test_scaling_down_deletes_the_leaving_harper_nodes_before_lowering_the_statefulset(k8s, provisioner,
                                                                                             events):
    await Provisioner("db", "hc", events=lambda *a: None).ensure(cluster(replicas=5), [], converged=False)
    nodes = harper_nodes(k8s, 5)
    assert all(n["metadata"]["ownerReferences"][0]["uid"] == "u1" for n in nodes)
    k8s.writes.clear()

    for i in range(5):
        k8s.put(pod(i))
    # Not proven yet: the leaving pods leave the client Service, nothing is deleted, the cluster says why.
    view = await provisioner.ensure(cluster(replicas=3), nodes, converged=False,
                                    waits={host(3): "hc-0 still receives hc-3's writes"})
    assert k8s.calls("delete") == []
    assert [(name, p["metadata"]["labels"]) for _, kind, name, p in k8s.calls("merge_patch") if kind == "Pod"] == [
        *((f"hc-{i}", {"harperoperator.dev/serving": "true"}) for i in range(3)),
        *((f"hc-{i}", {"harperoperator.dev/serving": "false"}) for i in (3, 4))]
    assert view.leaving == {host(3), host(4)} and view.out_of_service == {host(3), host(4)}
    assert view.problem.reason == "WaitingForReplication" and "hc-0 still receives" in view.problem.message
    assert ("Normal", "OutOfService", "took pod hc-3 out of the client Service: no new client write reaches it "
            "while it leaves") in events
    k8s.put({"kind": "PersistentVolumeClaim", "metadata": {"name": "data-hc-3", "labels": SELECTOR}})
    k8s.writes.clear()

    # A proof that did not cover every other member (hc-4 came back since, say) counts for nothing.
    view = await provisioner.ensure(cluster(replicas=3), nodes, converged=False,
                                    drained={host(3): frozenset(host(i) for i in range(3))})
    assert k8s.calls("delete") == []
    everyone = {host(i) for i in range(5)}
    view = await provisioner.ensure(cluster(replicas=3), nodes, converged=False,
                                    drained={h: frozenset(everyone - {h}) for h in (host(3), host(4))})
    assert [(kind, name) for _, kind, name, _ in k8s.calls("delete")] == [("HarperNode", "hc-3"),
                                                                          ("HarperNode", "hc-4")]
    assert k8s.get("PersistentVolumeClaim", "data-hc-3")["metadata"]["annotations"] == {
        "harperoperator.dev/released": "true"}
    assert k8s.get("StatefulSet", "hc")["spec"]["replicas"] == 5
    assert view.problem.reason == "ScalingDown" and not view.problem.permanent

    k8s.writes.clear()
    await provisioner.ensure(cluster(replicas=3), nodes[:3], converged=False)
    assert [obj["spec"]["replicas"] for _, kind, _, obj in k8s.calls("apply") if kind == "StatefulSet"] == [3]
    assert k8s.calls("delete") == []
    assert ("Normal", "Scaled", "StatefulSet hc: replicas 5 -> 3") in events
    # The pods went: the marked volume goes, and only it.
    k8s.put({"kind": "PersistentVolumeClaim", "metadata": {"name": "data-hc-5", "labels": SELECTOR}})
    for i in (3, 4):
        k8s.objects.pop(("Pod", f"hc-{i}"))
    k8s.writes.clear()
    await provisioner.ensure(cluster(replicas=3), nodes[:3], converged=False)
    assert [(kind, name) for _, kind, name, _ in k8s.calls("delete")] == [("PersistentVolumeClaim", "data-hc-3")]
    assert events[-1][1] == "VolumeDeleted"


async def test_replicas_zero_hibernates_and_keeps_every_harper_node(k8s, provisioner, events):
    await provisioner.ensure(cluster(replicas=2), [], converged=False)
    nodes = harper_nodes(k8s, 2)
    for i in range(2):
        k8s.put(pod(i))
    view = await provisioner.ensure(cluster(replicas=0), nodes, converged=True)
    assert k8s.get("StatefulSet", "hc")["spec"]["replicas"] == 0 and k8s.calls("delete") == []
    assert view.hibernating and not view.hibernated and view.problem.reason == "Hibernating"
    assert ("Normal", "Hibernating", "StatefulSet hc: replicas 2 -> 0") in events
    for i in range(2):
        k8s.objects.pop(("Pod", f"hc-{i}"))
    view = await provisioner.ensure(cluster(replicas=0), nodes, converged=False)
    assert view.hibernated and view.problem is None and k8s.get("HarperNode", "hc-1") is not None


async def test_an_adopted_statefulset_that_would_delete_its_volumes_is_not_hibernated(k8s, provisioner):
    sts = external_statefulset()
    sts["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenScaled": "Delete"}
    k8s.put(sts)
    view = await provisioner.ensure(adopting(replicas=0), [], converged=False)
    assert view.problem.reason == "HibernationWouldDeleteVolumes" and view.problem.permanent
    assert k8s.get("StatefulSet", "harper")["spec"]["replicas"] == 3


@pytest.mark.parametrize("converged, deleted", [(True, [("Pod", "hc-2")]), (False, [])])
async def test_a_rollout_deletes_one_outdated_pod_and_only_once_the_cluster_converged(k8s, provisioner, converged,
                                                                                     deleted):
    await Provisioner("db", "hc", events=lambda *a: None).ensure(cluster(), [], converged=False)
    k8s.objects[("StatefulSet", "hc")]["status"] = {"updateRevision": "r2"}
    for i in range(3):
        k8s.put(pod(i, revision="r1"))
    k8s.writes.clear()
    view = await provisioner.ensure(cluster(), harper_nodes(k8s, 3), converged=converged)
    assert [(kind, name) for _, kind, name, _ in k8s.calls("delete")] == deleted
    assert view.problem.reason == "RollingUpdate" and view.replicas == 3


async def test_pods_not_ready_are_named_by_hostname(k8s, provisioner, events):
    await provisioner.ensure(cluster(), [], converged=False)
    k8s.put(pod(0))
    k8s.put(pod(1, ready=False))
    view = await provisioner.ensure(cluster(), harper_nodes(k8s, 3), converged=False)
    assert view.not_ready == {host(1), host(2)}
    assert view.problem.reason == "PodsNotReady" and view.replicas == 2


async def test_a_statefulset_of_that_name_that_is_not_ours_stops_the_cluster_without_a_write(k8s, provisioner):
    k8s.put(external_statefulset("hc", app="other"))
    view = await provisioner.ensure(cluster(), [], converged=False)
    assert view.problem.reason == "StatefulSetNotOwned" and view.problem.permanent
    assert k8s.writes == []


async def test_a_harper_node_of_that_name_that_is_not_ours_stops_the_cluster_without_a_write(k8s, provisioner):
    intruder = {"kind": "HarperNode", "metadata": {"name": "hc-1", "ownerReferences": [{"uid": "someone"}]},
                "spec": {"clusterRef": {"name": "hc"}, "hostname": "elsewhere"}}
    body = cluster(credentials={"secretRef": {"name": "admin"}})
    view = await provisioner.ensure(body, [intruder], converged=False)
    assert view.problem.reason == "HarperNodeNameTaken" and view.problem.permanent
    assert "hc-1" in view.problem.message
    assert k8s.writes == []


async def test_adopting_a_statefulset_adds_only_the_owner_reference_and_names_its_pods(k8s, provisioner, events):
    original = k8s.put(external_statefulset())
    view = await provisioner.ensure(adopting(), [], converged=False)
    [(_, kind, name, patch)] = k8s.calls("merge_patch")
    assert (kind, name) == ("StatefulSet", "harper") and list(patch) == ["metadata"]
    assert [r["uid"] for r in patch["metadata"]["ownerReferences"]] == ["u1"]
    assert k8s.get("StatefulSet", "harper")["spec"] == original["spec"]
    assert applied(k8s) == [("HarperNode", f"hc-{i}") for i in range(3)]
    assert [k8s.get("HarperNode", f"hc-{i}")["spec"]["hostname"] for i in range(3)] == \
        [host(i, "harper") for i in range(3)]
    assert view.not_ready == {host(i, "harper") for i in range(3)} and view.selector == "app=harper"
    assert any(reason == "Adopted" for _, reason, _ in events)

    k8s.writes.clear()  # adopted once: the next round leaves its metadata alone
    await provisioner.ensure(adopting(), harper_nodes(k8s, 3), converged=False)
    assert k8s.calls("merge_patch") == []


@pytest.mark.parametrize("found, reason", [(0, "AdoptionTargetNotFound"), (2, "AdoptionAmbiguous")])
async def test_adoption_needs_exactly_one_statefulset(k8s, provisioner, found, reason):
    for name in ("harper", "harper-b")[:found]:
        k8s.put(external_statefulset(name))
    view = await provisioner.ensure(adopting(), [], converged=False)
    assert view.problem.reason == reason and view.problem.permanent
    assert k8s.writes == []


async def test_orphan_releases_every_object_the_operator_created(k8s, provisioner):
    body = cluster(deletionPolicy="Retain")
    await provisioner.ensure(body, [], converged=False)
    k8s.writes.clear()
    released = await orphan(body)
    expected = [("StatefulSet", "hc"), ("Service", "hc"), ("Service", "hc-client"), ("PodDisruptionBudget", "hc"),
                ("Secret", "hc-admin"), ("Secret", "hc-tls"), ("Secret", "hc-ca")]
    assert [(kind, name) for _, kind, name, _ in k8s.writes] == expected
    assert all(w[0] == "merge_patch" and w[3] == {"metadata": {"ownerReferences": None}} for w in k8s.writes)
    assert released == [f"{kind} {name}" for kind, name in expected]
    assert all("ownerReferences" not in k8s.get(kind, name)["metadata"] for kind, name in expected)


async def test_an_external_cluster_is_neither_provisioned_nor_orphaned(k8s, provisioner):
    body = {"metadata": {"name": "hc", "namespace": "db", "uid": "u1"},
            "spec": {"credentials": {"secretRef": {"name": "admin"}}, "deletionPolicy": "Retain"}}
    assert await provisioner.ensure(body, [], converged=True) is None
    assert await orphan(body) == []
    assert k8s.writes == []


async def test_a_write_kubernetes_refuses_is_a_permanent_problem(k8s, provisioner):
    k8s.fail_apply = kube.ApiException(status=422)
    view = await provisioner.ensure(cluster(), [], converged=False)
    assert view.problem.reason == "KubernetesRefused" and view.problem.permanent
    assert "422" in view.problem.message


def test_pods_reads_ordinal_readiness_revision_and_deletion_of_the_statefulsets_pods_only():
    items = [pod(0), pod(1, ready=False, revision="r2", deleting=True), pod(0, prefix="hc-client"),
             {"metadata": {"name": "hc-x"}}]
    assert [(p.ordinal, p.name, p.ready, p.revision, p.deleting) for p in _pods(items, "hc")] == [
        (0, "hc-0", True, "r1", False), (1, "hc-1", False, "r2", True)]


async def test_an_operator_without_provisioning_rights_says_so_and_writes_nothing(k8s):
    """--no-provisioning (the chart's rbac.provisioning=false): a cluster with spec.instances is Stalled."""
    posted = []
    p = Provisioner("db", "hc", events=lambda *a: posted.append(a), enabled=False)
    body = {"metadata": {"name": "hc", "namespace": "db", "uid": "u1", "generation": 1},
            "spec": {"instances": {"image": "reg/harper:1", "replicas": 3}}}
    view = await p.ensure(body, [], converged=False)
    assert view.problem.reason == "ProvisioningDisabled" and view.problem.permanent
    assert not k8s.writes and not posted


async def test_an_edited_generated_harper_node_is_put_back(k8s, provisioner):
    """Its URLs decide where the credentials go: an edit by hand is undone in the next round (FAKE objects)."""
    body = cluster()
    await provisioner.ensure(body, [], converged=False)
    nodes = [dict(k8s.objects[("HarperNode", f"hc-{i}")]) for i in range(3)]
    k8s.writes.clear()
    await provisioner.ensure(body, nodes, converged=False)
    assert not [w for w in k8s.writes if w[0] == "apply"], "nothing changed: nothing applied"
    edited = {**nodes[1], "spec": {**nodes[1]["spec"], "operationsUrl": "https://evil.db.svc:9925"}}
    await provisioner.ensure(body, [nodes[0], edited, nodes[2]], converged=False)
    applied = [w for w in k8s.writes if w[0] == "apply"]
    assert len(applied) == 1 and "hc-1" in str(applied[0])


async def test_a_broken_authority_stops_provisioning_and_says_how_to_mend_it(k8s, provisioner):
    k8s.put({"kind": "Secret", "metadata": {"name": "hc-ca", "labels": {"harperoperator.dev/readable": "true"}},
             "data": {"ca.crt": "", "ca.key": ""}})
    view = await provisioner.ensure(cluster(), [], converged=False)
    assert view.problem.reason == "CertificateAuthorityInvalid" and view.problem.permanent
    assert "hc-ca" in view.problem.message and "delete it for a new one" in view.problem.message
    assert k8s.get("StatefulSet", "hc") is None and k8s.get("Secret", "hc-tls") is None
    assert not k8s.calls("create_secret") or all(w[2] != "hc-ca" for w in k8s.calls("create_secret"))


async def test_scaling_up_issues_certificates_for_the_new_pods_only_and_a_bad_one_again(k8s, provisioner, events):
    await provisioner.ensure(cluster(replicas=3), [], converged=False)
    _, before = await k8s.read_secret("db", "hc-tls")
    events.clear()
    await provisioner.ensure(cluster(replicas=5), harper_nodes(k8s, 3), converged=True)
    _, after = await k8s.read_secret("db", "hc-tls")
    assert all(after[f"hc-{i}.crt"] == before[f"hc-{i}.crt"] for i in range(3))
    assert {"hc-3.crt", "hc-4.crt"} <= set(after)
    assert [m for _, r, m in events if r == "CertificatesIssued"] == [
        "issued certificates for hc-3, hc-4 from the cluster's authority (Secret hc-tls)"]
    # Someone swaps hc-1's certificate for hc-0's: it is not for hc-1's names, so hc-1 gets a new one.
    tampered = k8s.get("Secret", "hc-tls")
    tampered["data"]["hc-1.crt"], tampered["data"]["hc-1.key"] = tampered["data"]["hc-0.crt"], tampered["data"]["hc-0.key"]
    events.clear()
    await provisioner.ensure(cluster(replicas=5), harper_nodes(k8s, 5), converged=True)
    _, mended = await k8s.read_secret("db", "hc-tls")
    assert host(1) in pki.names(mended["hc-1.crt"]) and mended["hc-0.crt"] == after["hc-0.crt"]
    assert [m for _, r, m in events if r == "CertificatesIssued"] == [
        "issued certificates for hc-1 from the cluster's authority (Secret hc-tls)"]


async def test_a_users_own_ca_signs_the_pods_certificates_and_stays_theirs(k8s, provisioner, events):
    theirs = pki.new_authority("their PKI", datetime.now(timezone.utc))
    other = pki.new_authority("another", datetime.now(timezone.utc))
    k8s.put({"kind": "Secret", "metadata": {"name": "corp-ca", "labels": {"harperoperator.dev/readable": "true"}},
             "data": {k: base64.b64encode(v.encode()).decode() for k, v in {
                 "tls.crt": theirs.certificate + other.certificate, "tls.key": theirs.key}.items()}})
    body = cluster(tls={"caSecretRef": {"name": "corp-ca", "key": "tls.crt"}}, deletionPolicy="Retain")
    await provisioner.ensure(body, [], converged=False)
    assert k8s.get("Secret", "hc-ca") is None and not any(r == "CertificateAuthorityCreated" for _, r, _ in events)
    _, files = await k8s.read_secret("db", "hc-tls")
    assert all(pki.signed_by(files[f"hc-{i}.crt"], theirs.certificate) for i in range(3))
    assert files["ca.crt"] == theirs.certificate + other.certificate  # the pods trust the whole bundle given
    # deletionPolicy Retain releases the pods' certificates, never the user's CA Secret.
    released = await orphan(body)
    assert "Secret hc-tls" in released and not any("corp-ca" in r or "hc-ca" in r for r in released)


async def test_a_users_ca_without_its_key_is_refused_with_what_is_missing(k8s, provisioner):
    k8s.put({"kind": "Secret", "metadata": {"name": "corp-ca", "labels": {"harperoperator.dev/readable": "true"}},
             "data": {"ca.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()}})
    view = await provisioner.ensure(cluster(tls={"caSecretRef": {"name": "corp-ca"}}), [], converged=False)
    assert view.problem.reason == "CertificateAuthorityInvalid" and view.problem.permanent
    assert "corp-ca" in view.problem.message and "ca.key or tls.key" in view.problem.message
    assert "signs the pods' certificates" in view.problem.message
    assert k8s.get("Secret", "hc-ca") is None and k8s.get("StatefulSet", "hc") is None


async def test_renewed_lists_only_pods_whose_harper_started_before_their_certificate(k8s, provisioner):
    """PodView.renewed: the pods whose Harper read other certificate files at start-up than those issued to them
    now (the loop checks what they present). A pod started after the issue, or with no running container, is not
    listed."""
    def running(i: int, started: str) -> dict:
        p = pod(i)
        p["status"]["containerStatuses"] = [{"name": "harper", "state": {"running": {"startedAt": started}}}]
        return p

    await provisioner.ensure(cluster(), [], converged=False)
    _, files = await k8s.read_secret("db", "hc-tls")
    issued = {i: pki.serial_and_issued_at(files[f"hc-{i}.crt"]) for i in range(3)}
    before = datetime.fromtimestamp(issued[0][1] - 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    after = datetime.fromtimestamp(issued[1][1] + 5, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    k8s.put(running(0, before))
    k8s.put(running(1, after))
    k8s.put(pod(2))  # not running yet
    view = await provisioner.ensure(cluster(), harper_nodes(k8s, 3), converged=True)
    assert view.renewed == {host(0): issued[0][0]}
    assert abs(issued[0][1] - datetime.now(timezone.utc).timestamp()) < 60  # when it was issued, not its start


async def test_an_authority_due_rolls_over_and_the_pods_move_only_once_all_trust_the_new_one(k8s, provisioner, events):
    """The operator's own authority with a third of its lifetime left (FAKE objects): a new one signs from then on,
    both are trusted (the new one first), and the running pods keep certificates of the old one until every one of
    them was seen to trust the new one; then each gets one of the new; once each presents it, the old one is trusted
    no more."""
    from datetime import timedelta

    from harper_operator.controller.provision import Confirmed
    now = datetime.now(timezone.utc)
    aged = pki.new_authority("db/hc", now - timedelta(days=2500))  # 10 years long, less than a third left
    k8s.put({"kind": "Secret", "metadata": {"name": "hc-ca", "labels": {"harperoperator.dev/readable": "true"}},
             "data": {k: base64.b64encode(v.encode()).decode() for k, v in {
                 "ca.crt": aged.certificate, "ca.key": aged.key}.items()}})
    long_ago = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(3):
        p = pod(i)
        p["status"]["containerStatuses"] = [{"name": "harper", "state": {"running": {"startedAt": long_ago}}}]
        k8s.put(p)

    async def round_(confirmed: Confirmed = Confirmed()):
        nodes = [n for n in harper_nodes(k8s, 3) if n]
        view = await provisioner.ensure(cluster(), nodes, converged=True, confirmed=confirmed)
        return view, (await k8s.read_secret("db", "hc-ca"))[1], (await k8s.read_secret("db", "hc-tls"))[1]

    view, ca, tls = await round_()
    new = pki.split(ca["ca.crt"])[0]
    assert pki.split(ca["ca.crt"]) == [new, aged.certificate] and ca["previous.key"] == aged.key
    assert tls["ca.crt"] == ca["ca.crt"]  # the pods trust both, the new one first
    assert all(pki.signed_by(tls[f"hc-{i}.crt"], aged.certificate) for i in range(3))  # nobody trusts the new one yet
    assert view.authority == pki.serial(new)
    assert [r for _, r, _ in events].count("CertificateAuthorityRollover") == 1
    serial = pki.serial(new)

    # Two of three seen to trust it: nothing moves.
    view, ca, tls2 = await round_(Confirmed(trusts={host(0): serial, host(1): serial}))
    assert tls2 == tls and view.authority == serial and ca["previous.key"] == aged.key

    # All three: each pod gets a certificate of the new authority; the loop then checks what they present.
    view, ca, tls3 = await round_(Confirmed(trusts={host(i): serial for i in range(3)}))
    assert all(pki.signed_by(tls3[f"hc-{i}.crt"], new) for i in range(3)) and view.authority is None
    assert set(view.renewed) == {host(i) for i in range(3)}
    assert ca["previous.key"] == aged.key  # still trusted: the pods may present the old certificates a while

    presents = {host(i): pki.serial(tls3[f"hc-{i}.crt"]) for i in range(3)}
    view, ca, _ = await round_(Confirmed(trusts={host(i): serial for i in range(2)} | {host(2): serial},
                                         presents={**presents, host(2): 1}))
    assert "previous.key" in ca  # hc-2 still presents another one
    view, ca, _ = await round_(Confirmed(trusts={host(i): serial for i in range(3)}, presents=presents))
    assert pki.split(ca["ca.crt"]) == [new] and not ca.get("previous.key")
    assert [r for _, r, _ in events].count("CertificateAuthorityRolledOver") == 1
    view, _, tls5 = await round_(Confirmed(trusts={host(i): serial for i in range(3)}, presents=presents))
    assert tls5["ca.crt"] == new and all(tls5[f"hc-{i}.crt"] == tls3[f"hc-{i}.crt"] for i in range(3))
    assert view.authority is None


async def test_with_an_issuer_ref_cert_manager_issues_and_the_pods_mount_what_it_issued(k8s, provisioner, events):
    """spec.tls.issuerRef (FAKE objects; cert-manager's side is a put of the Secrets it would write): one Certificate
    per pod for the pod's names, nothing started until each is issued, then what it issued is copied into the pods'
    Secret with its CA as the one to trust; a steady cluster is not written again."""
    from harper_operator.provision import render
    body = cluster(tls={"issuerRef": {"name": "corp", "kind": "ClusterIssuer"}})
    view = await provisioner.ensure(body, [], converged=False)
    assert view.problem.reason == "CertificatesPending" and not view.problem.permanent
    assert "hc-0-tls, hc-1-tls, hc-2-tls" in view.problem.message and "ClusterIssuer corp" in view.problem.message
    assert k8s.get("StatefulSet", "hc") is None and k8s.get("Secret", "hc-tls") is None
    asked = k8s.get("Certificate", "hc-1-tls")["spec"]
    assert asked["issuerRef"] == {"name": "corp", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert asked["secretName"] == "hc-1-tls" and asked["commonName"] == host(1)
    assert host(1) in asked["dnsNames"] and asked["ipAddresses"] == ["127.0.0.1"]
    assert {"server auth", "client auth"} <= set(asked["usages"])
    assert asked["secretTemplate"]["labels"]["harperoperator.dev/readable"] == "true"
    assert not any(r == "CertificateAuthorityCreated" for _, r, _ in events)  # no CA of the operator's own

    corp = pki.new_authority("corp", datetime.now(timezone.utc))
    owner, place = render.Owner("db", "hc", "u1", "cluster.local"), render.Place("hc", "hc")
    for i in range(3):
        names = render.certificate_names(owner, place, i)
        pair = pki.issue(corp, names[0], names[1:], datetime.now(timezone.utc))
        k8s.put({"kind": "Secret", "metadata": {"name": f"hc-{i}-tls", "labels": {"harperoperator.dev/readable": "true"}},
                 "data": {k: base64.b64encode(v.encode()).decode() for k, v in {
                     "tls.crt": pair.certificate, "tls.key": pair.key, "ca.crt": corp.certificate}.items()}})
    view = await provisioner.ensure(body, [], converged=False)
    assert view.problem is None or view.problem.reason != "CertificatesPending"
    _, files = await k8s.read_secret("db", "hc-tls")
    assert files["ca.crt"] == corp.certificate
    for i in range(3):
        assert files[f"hc-{i}.crt"] == (await k8s.read_secret("db", f"hc-{i}-tls"))[1]["tls.crt"]
    assert k8s.get("StatefulSet", "hc") is not None
    assert [r for _, r, _ in events].count("CertificatesIssued") == 1
    k8s.writes.clear()
    await provisioner.ensure(body, harper_nodes(k8s, 3), converged=True)
    assert not [w for w in k8s.calls("apply") if w[1] in ("Secret", "Certificate")], "steady: nothing written"
    # deletionPolicy Retain keeps the Certificates (cert-manager renews what the retained pods mount).
    retained = cluster(tls={"issuerRef": {"name": "corp"}}, deletionPolicy="Retain")
    assert "Certificate hc-2-tls" in await orphan(retained) and "Secret hc-ca" not in await orphan(retained)


async def test_an_issuer_ref_without_cert_manager_says_to_install_it(k8s, provisioner):
    k8s.fail_apply = kube.ApiException(status=404, reason="Not Found")
    view = await provisioner.ensure(cluster(tls={"issuerRef": {"name": "corp"}}), [], converged=False)
    assert view.problem.reason == "CertManagerNotInstalled" and view.problem.permanent
    assert "install cert-manager" in view.problem.message


def test_an_issuer_ref_is_for_provisioned_clusters_and_excludes_a_ca_of_ones_own():
    from pydantic import ValidationError

    from harper_operator.api import HarperClusterSpec
    with pytest.raises(ValidationError, match="exclude each other"):
        HarperClusterSpec.model_validate(cluster(tls={"issuerRef": {"name": "a"}, "caSecretRef": {"name": "b"}})["spec"])
    with pytest.raises(ValidationError, match="provisioned cluster"):
        HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "s"}}, "tls": {"issuerRef": {"name": "a"}}})
    spec = HarperClusterSpec.model_validate(cluster(tls={"issuerRef": {"name": "a"}})["spec"])
    assert spec.with_credentials("hc").tls.ca_secret_ref.name == "hc-tls"  # calls trust what cert-manager issued


async def test_setting_an_issuer_ref_on_a_running_cluster_moves_its_pods_as_a_rollover_does(k8s, provisioner, events):
    """issuerRef set on a cluster whose pods run with the operator's own CA (FAKE objects; cert-manager's Secrets are
    put as it would write them): both authorities are trusted and the pods keep their certificates until each was
    seen trusting the issuer's CA; then they get the issued ones; the operator's CA goes once each presents its new
    one. No pod presents a certificate a peer does not trust yet."""
    from datetime import timedelta

    from harper_operator.controller.provision import Confirmed
    from harper_operator.provision import render
    now = datetime.now(timezone.utc)
    long_ago = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(3):
        p = pod(i)
        p["status"]["containerStatuses"] = [{"name": "harper", "state": {"running": {"startedAt": long_ago}}}]
        k8s.put(p)
    await provisioner.ensure(cluster(), [], converged=False)
    _, own = await k8s.read_secret("db", "hc-tls")
    corp = pki.new_authority("corp", now)
    owner, place = render.Owner("db", "hc", "u1", "cluster.local"), render.Place("hc", "hc")
    for i in range(3):
        names = render.certificate_names(owner, place, i)
        pair = pki.issue(corp, names[0], names[1:], now)
        k8s.put({"kind": "Secret", "metadata": {"name": f"hc-{i}-tls", "labels": {"harperoperator.dev/readable": "true"}},
                 "data": {k: base64.b64encode(v.encode()).decode() for k, v in {
                     "tls.crt": pair.certificate, "tls.key": pair.key, "ca.crt": corp.certificate}.items()}})
    body = cluster(tls={"issuerRef": {"name": "corp"}})
    nodes = [n for n in harper_nodes(k8s, 3) if n]

    async def round_(confirmed: Confirmed = Confirmed()):
        view = await provisioner.ensure(body, nodes, converged=True, confirmed=confirmed)
        return view, (await k8s.read_secret("db", "hc-tls"))[1]

    view, tls = await round_()
    assert pki.split(tls["ca.crt"]) == [corp.certificate, own["ca.crt"]]
    assert all(tls[f"hc-{i}.crt"] == own[f"hc-{i}.crt"] for i in range(3))  # kept: nobody trusts corp yet
    assert view.authority == pki.serial(corp.certificate)
    trusts = {host(i): pki.serial(corp.certificate) for i in range(3)}
    view, tls = await round_(Confirmed(trusts=trusts))
    assert all(pki.signed_by(tls[f"hc-{i}.crt"], corp.certificate) for i in range(3)) and view.authority is None
    assert pki.split(tls["ca.crt"]) == [corp.certificate, own["ca.crt"]]  # still both: the pods may present the old
    presents = {host(i): pki.serial(tls[f"hc-{i}.crt"]) for i in range(3)}
    view, tls = await round_(Confirmed(trusts=trusts, presents=presents))
    assert pki.split(tls["ca.crt"]) == [corp.certificate]
