"""Issue 20 (S5): a URL one HarperNode carries never stops its cluster's round, another object's round or a finalizer.

The bracketed hosts below passed the CRD's pattern before it was tightened, and an object stored then is still
read back: urlsplit raises ValueError on them, which once escaped membership() and so every round, every
removal and the cluster's deletion. Runs on the FAKE fleet and FAKE Kubernetes of fake_fleet.py.
"""

from __future__ import annotations

import pytest
from fake_fleet import FakePool, cluster_body, node_body

from harper_operator.api import HarperClusterSpec
from harper_operator.controller.dissolve import dissolve, remove_member
from harper_operator.controller.loop import ClusterReconciler
from harper_operator.controller.members import SecretData, membership

A, B = "127.0.0.11", "127.0.0.12"
SPEC = HarperClusterSpec.model_validate(cluster_body()["spec"])
SECRETS = {"admin": SecretData(True, {"username": "admin", "password": "pw"})}

# (field, value): stored before the schema refused them; each raised ValueError in urllib.parse.
HOSTILE = [
    ("operationsUrl", "https://[1.2.3.4]:9925"),
    ("url", "wss://[::1::2]:9933"),
    ("url", "wss://[1.2.3.4]:9933"),
    ("operationsUrl", "http://[:]:9925"),
    ("operationsUrl", "http://[::1]:65536"),
]


def hostile(field: str, value: str, resource: str = "bad", hostname: str = "127.0.0.21") -> dict:
    body = node_body(resource, hostname)
    body["spec"][field] = value
    return body


@pytest.mark.parametrize("field,value", HOSTILE)
def test_membership_holds_the_member_with_an_invalid_url_problem(field, value):
    m = membership(SPEC, [node_body("n1", A), hostile(field, value)], SECRETS, namespace="ns")
    bad = next(x for x in m.members if x.resource == "bad")
    assert bad.problem is not None and bad.problem.reason == "InvalidURL", bad.problem
    assert f"spec.{field}" in bad.problem.message
    assert not bad.managed and bad.access is None
    assert [n.name for n in m.desired.nodes] == [A]


@pytest.mark.parametrize("field,value", HOSTILE)
async def test_the_round_writes_every_status_and_names_the_member_and_cause(fleet, fake_kube, field, value):
    r = ClusterReconciler("ns", "c", events=lambda *a: None, verify_timeout=0)
    r.pool = FakePool(fleet)
    body = cluster_body(status={"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    members = [node_body("n1", A), node_body("n2", B), hostile(field, value)]
    await r.reconcile(body, members)
    cluster = fake_kube.last("harperclusters", "c")
    ready = next(c for c in cluster["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"  # the old Ready=True is not left standing
    stalled = next(c for c in cluster["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "InvalidURL" and stalled["message"].startswith(f"HarperNode bad: spec.{field}")
    rows = {row["name"]: row for row in cluster["members"]}
    assert f"spec.{field}" in rows["bad"]["message"] and not rows["bad"]["ready"]
    assert rows["n1"]["expectedPeers"] == 1  # nobody is expected to reach the held member
    stalled = next(c for c in fake_kube.last("harpernodes", "bad")["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidURL" and f"spec.{field}" in stalled["message"]


@pytest.mark.parametrize("field,value", HOSTILE)
async def test_removing_the_member_or_another_one_ends(fleet, fake_kube, field, value):
    members = [node_body("n1", A), node_body("n2", B), hostile(field, value)]
    own = await remove_member(cluster_body(), SPEC, members, "127.0.0.21")
    assert own.failures == []  # nothing a retry could change: the finalizer is released
    other = await remove_member(cluster_body(), SPEC, members, B)
    assert other.failures == [] and other.done


@pytest.mark.parametrize("field,value", HOSTILE)
async def test_dissolving_the_cluster_ends_and_names_what_is_left(fleet, fake_kube, field, value):
    members = [node_body("n1", A), node_body("n2", B), hostile(field, value)]
    removal = await dissolve(cluster_body(), SPEC, members)
    assert any("127.0.0.21" in line and f"spec.{field}" in line for line in removal.left), removal.left
