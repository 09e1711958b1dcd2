"""provision.render: the objects a provisioned HarperCluster owns (pure; checked against the API models)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harper_operator.api import HarperClusterSpec, HarperNodeSpec
from harper_operator.provision import render

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


@pytest.mark.parametrize("name", ["HDB_ADMIN_PASSWORD", "REPLICATION_HOSTNAME"])
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
    named = HarperClusterSpec.model_validate({"instances": {"image": "x"}, "credentials": {"secretRef": {"name": "s"}}})
    assert named.secret_name("hc") == "s" and named.with_credentials("hc") is named
    filled = HarperClusterSpec.model_validate({"instances": {"image": "x"}}).with_credentials("hc")
    assert filled.credentials.secret_ref.name == "hc-admin"


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


def test_adoption_selects_by_the_statefulsets_labels_or_its_pods():
    sts = {"metadata": {"name": "harper", "labels": {"team": "a"}},
           "spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/name": "harper"}}}}}
    assert render.adopts({"app.kubernetes.io/name": "harper"}, sts)  # Harper's own chart labels only the pods
    assert render.adopts({"team": "a"}, sts)
    assert not render.adopts({"team": "a", "app.kubernetes.io/name": "harper"}, sts)  # one set must hold them all
    assert not render.adopts({"app.kubernetes.io/name": "other"}, sts)
