"""provision.render: the objects a provisioned HarperCluster owns (pure; checked against the API models)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from harper_operator.api import HarperClusterSpec, HarperNodeSpec
from harper_operator.provision import pki, render

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

OWNER = render.Owner("db", "hc", "uid-1")


def spec(**instances) -> HarperClusterSpec:
    return HarperClusterSpec.model_validate({"instances": {"image": "reg/harper:1", **instances}})


def test_statefulset_shape():
    sts = render.statefulset(OWNER, spec(), 3)
    assert sts["metadata"]["ownerReferences"] == [{"apiVersion": "harperoperator.dev/v1alpha1", "kind": "HarperCluster",
                                                   "name": "hc", "uid": "uid-1", "controller": True,
                                                   "blockOwnerDeletion": True}]
    s = sts["spec"]
    assert s["replicas"] == 3 and s["serviceName"] == "hc" and s["updateStrategy"] == {"type": "OnDelete"}
    # whenScaled Retain whatever the policy: replicas 0 hibernates; the operator deletes a proven volume itself.
    assert s["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}
    assert s["selector"]["matchLabels"] == {"app.kubernetes.io/name": "harper", "harperoperator.dev/cluster": "hc"}
    (c,) = s["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HDB_ADMIN_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "hc-admin", "key": "password"}}
    assert env["REPLICATION_HOSTNAME"]["value"] == "$(POD_NAME).hc.$(POD_NAMESPACE).svc.cluster.local"
    assert "storageClassName" not in s["volumeClaimTemplates"][0]["spec"]  # the cluster's default class
    # Each pod reads its own certificate of the cluster's authority from the one mounted Secret.
    assert env["TLS_CERTIFICATE"]["value"] == "/etc/harper/tls/$(POD_NAME).crt"
    assert env["TLS_PRIVATEKEY"]["value"] == "/etc/harper/tls/$(POD_NAME).key"
    assert env["TLS_CERTIFICATEAUTHORITY"]["value"] == "/etc/harper/tls/ca.crt"
    assert {"name": "tls", "mountPath": "/etc/harper/tls", "readOnly": True} in c["volumeMounts"]
    assert s["template"]["spec"]["volumes"] == [{"name": "tls", "secret": {"secretName": "hc-tls"}}]
    assert render.statefulset(OWNER, spec(), 3) == sts, "the same spec renders the same object"


def test_retain_keeps_the_claims():
    keep = HarperClusterSpec.model_validate({"instances": {"image": "x"}, "deletionPolicy": "Retain"})
    assert render.statefulset(OWNER, keep, 1)["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain"}


def test_user_overrides_never_replace_the_selector_or_the_operators_env():
    s = spec(podTemplate={"labels": {"harperoperator.dev/cluster": "other", "team": "a"},
                          "tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": {"disk": "ssd"}},
             env=[{"name": "THREADS_COUNT", "value": "2"}], storage={"storageClassName": "", "size": "5Gi"},
             credentials=None)
    sts = render.statefulset(OWNER, s, 1)["spec"]
    assert sts["template"]["metadata"]["labels"]["harperoperator.dev/cluster"] == "hc"
    assert sts["template"]["metadata"]["labels"]["team"] == "a"
    pod = sts["template"]["spec"]
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}] and pod["nodeSelector"] == {"disk": "ssd"}
    assert {"name": "THREADS_COUNT", "value": "2"} in pod["containers"][0]["env"]
    assert sts["volumeClaimTemplates"][0]["spec"]["storageClassName"] == ""


@pytest.mark.parametrize("name", ["HDB_ADMIN_PASSWORD", "REPLICATION_HOSTNAME", "TLS_CERTIFICATE", "TLS_PRIVATEKEY",
                                  "TLS_CERTIFICATEAUTHORITY"])
def test_reserved_env_is_refused(name):
    # The CRD refuses it at apply (CEL); the model says the same for a reconcile.
    from harper_operator.api.instances import RESERVED_ENV
    assert name in RESERVED_ENV


def test_image_xor_adopt_and_credentials_or_instances():
    with pytest.raises(ValidationError):
        HarperClusterSpec.model_validate({"instances": {}})
    with pytest.raises(ValidationError):
        HarperClusterSpec.model_validate({"instances": {"image": "x", "adopt": {"matchLabels": {"a": "b"}}}})
    with pytest.raises(ValidationError):
        HarperClusterSpec.model_validate({})
    assert HarperClusterSpec.model_validate({"instances": {"image": "x"}}).secret_name("hc") == "hc-admin"
    named = HarperClusterSpec.model_validate({"instances": {"image": "x"}, "credentials": {"secretRef": {"name": "s"}},
                                              "tls": {"caSecretRef": {"name": "my-ca"}}})
    assert named.secret_name("hc") == "s" and named.with_credentials("hc") is named
    filled = HarperClusterSpec.model_validate({"instances": {"image": "x"}}).with_credentials("hc")
    assert filled.credentials.secret_ref.name == "hc-admin"
    # The operator's own authority is what a provisioned cluster's calls trust, verified by default.
    assert filled.tls.ca_secret_ref.name == "hc-ca" and filled.tls.ca_secret_ref.key == "ca.crt" and filled.tls.verify
    unverified = HarperClusterSpec.model_validate({"instances": {"image": "x"}, "tls": {"verify": False}})
    assert not unverified.with_credentials("hc").tls.verify
    # An adopted StatefulSet's pods keep their own certificates; external members name their CA themselves.
    adopted = HarperClusterSpec.model_validate({"instances": {"adopt": {"matchLabels": {"a": "b"}}},
                                                "credentials": {"secretRef": {"name": "s"}}})
    external = HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "s"}}})
    assert adopted.with_credentials("hc") is adopted and external.with_credentials("hc") is external


def test_harper_nodes_point_only_at_their_pods_and_pass_the_default_allow_list():
    s = spec(ordinals=[{"ordinal": 1, "shard": 2, "subscriptions": [{"database": "data"}]}])
    place = render.Place("hc", "hc")
    node = render.harper_node(OWNER, s.instances, place, 1)
    parsed = HarperNodeSpec.model_validate(node["spec"])
    assert parsed.hostname == "hc-1.hc.db.svc.cluster.local"
    assert parsed.url == "wss://hc-1.hc.db.svc.cluster.local:9933"
    assert parsed.operations_url == "https://hc-1.hc.db.svc.cluster.local:9925"
    assert parsed.shard == 2 and parsed.subscriptions[0].database == "data" and parsed.deletion_policy == "Delete"
    assert s.admits(parsed.hostname, "db")
    assert node["metadata"]["annotations"] == {render.POD_ANNOTATION: "hc-1"}
    assert "shard" not in render.harper_node(OWNER, s.instances, place, 0)["spec"]


def test_services_budget_and_secret():
    assert render.headless_service(OWNER)["spec"]["publishNotReadyAddresses"] is True
    assert render.client_service(OWNER)["metadata"]["name"] == "hc-client"
    assert render.disruption_budget(OWNER)["spec"]["maxUnavailable"] == 1
    secret = render.admin_secret(OWNER, "hc-admin", "admin", "pw")
    assert secret["metadata"]["labels"]["harperoperator.dev/readable"] == "true"
    assert secret["stringData"] == {"username": "admin", "password": "pw"}


def test_certificates_name_the_pod_first_and_its_secrets_keep_keys_apart():
    place = render.Place("hc", "hc")
    names = render.certificate_names(OWNER, place, 2)
    assert names[0] == "hc-2.hc.db.svc.cluster.local"  # Harper's node name: who the pod is to its peers
    assert {"hc-2.hc", "hc-2.hc.db.svc", "hc-client", "hc-client.db.svc.cluster.local", "localhost",
            "127.0.0.1"} <= set(names)
    assert render.certificate_names(render.Owner("db", "hc", "u", "example.org"), place, 0)[0] == \
        "hc-0.hc.db.svc.example.org"
    made = pki.new_authority("db/hc", NOW)
    authority = pki.Authority(made, (made.certificate,))
    ca = render.ca_secret(OWNER, authority)
    assert ca["metadata"]["name"] == "hc-ca" and set(ca["data"]) == {"ca.crt", "ca.key"}
    assert ca["metadata"]["labels"]["harperoperator.dev/readable"] == "true"
    # A rollover's start keeps the previous key beside the new one; its end drops it (null in a merge patch).
    rolled = pki.roll_over(authority, "db/hc", NOW)
    start = render.ca_secret_change(rolled)["data"]
    assert base64.b64decode(start["previous.key"]).decode() == made.key
    assert base64.b64decode(start["ca.crt"]).decode() == rolled.bundle
    assert render.ca_secret_change(pki.settled(rolled))["data"]["previous.key"] is None
    tls = render.tls_secret(OWNER, "CA", {"hc-0": pki.KeyPair("C0", "K0")})
    assert tls["metadata"]["name"] == "hc-tls" and set(tls["data"]) == {"ca.crt", "hc-0.crt", "hc-0.key"}
    assert base64.b64decode(tls["data"]["hc-0.key"]) == b"K0"


def test_adoption_selects_by_the_statefulsets_labels_or_its_pods():
    sts = {"metadata": {"name": "harper", "labels": {"team": "a"}},
           "spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/name": "harper"}}}}}
    assert render.adopts({"app.kubernetes.io/name": "harper"}, sts)  # Harper's own chart labels only the pods
    assert render.adopts({"team": "a"}, sts)
    assert not render.adopts({"team": "a", "app.kubernetes.io/name": "harper"}, sts)  # one set must hold them all
    assert not render.adopts({"app.kubernetes.io/name": "other"}, sts)
