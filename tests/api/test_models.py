"""The models parse what users write and reject what the schema rejects."""

import pytest
from pydantic import ValidationError

from harper_operator.api import HarperClusterSpec, HarperNodeSpec

NODE = {"clusterRef": {"name": "c"}, "hostname": "node-1.harper", "url": "wss://node-1.harper:9933",
        "operationsUrl": "https://node-1.harper:9925"}


def test_cluster_defaults():
    spec = HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "admin"}}})
    assert spec.tls.verify is True
    assert spec.deletion_policy == "Delete"
    assert spec.reconcile_interval_seconds == 60
    assert spec.routes == []


def test_node_parses_camel_case():
    spec = HarperNodeSpec.model_validate({**NODE, "shard": 2, "subscriptions": [{"database": "data"}]})
    assert spec.cluster_ref.name == "c" and spec.operations_url.startswith("https://")
    assert spec.subscriptions[0].subscribe and spec.subscriptions[0].publish
    assert spec.subscriptions[0].table is None


@pytest.mark.parametrize("field,value", [
    ("url", "http://node-1:9933"), ("url", "wss://node-1:9933/path"), ("operationsUrl", "node-1:9925"),
    ("hostname", "-bad"), ("shard", -1), ("clusterRef", {"name": "Bad_Name"}),
])
def test_node_rejects(field, value):
    with pytest.raises(ValidationError):
        HarperNodeSpec.model_validate({**NODE, field: value})


def test_interval_minimum():
    with pytest.raises(ValidationError):
        HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "a"}}, "reconcileIntervalSeconds": 1})
