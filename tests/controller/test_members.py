"""Membership: who is managed, who is held and why (pure; no Kubernetes, no Harper)."""

from harper_operator.api import HarperClusterSpec
from harper_operator.controller.members import membership, secret_names

CLUSTER = HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "admin"}}})
SECRETS = {"admin": {"username": "hdb", "password": "s3cret"}}


def node(name, hostname, **spec):
    return {"metadata": {"name": name, "generation": 1},
            "spec": {"clusterRef": {"name": "c"}, "hostname": hostname, "url": f"wss://{hostname}:9933",
                     "operationsUrl": f"http://{hostname}:9925", **spec}}


def test_all_managed_in_name_order():
    m = membership(CLUSTER, [node("b", "10.0.0.2"), node("a", "10.0.0.1")], SECRETS)
    assert [x.resource for x in m.members] == ["a", "b"]
    assert [n.name for n in m.desired.nodes] == ["10.0.0.1", "10.0.0.2"]
    assert m.held == frozenset()
    assert m.members[0].access.username == "hdb"


def test_credentials_never_in_repr():
    m = membership(CLUSTER, [node("a", "10.0.0.1")], SECRETS)
    assert "s3cret" not in repr(m) and "s3cret" not in repr(m.members[0].access)


def test_missing_secret_holds_every_member_with_a_fix():
    m = membership(CLUSTER, [node("a", "10.0.0.1")], {"admin": None})
    (member,) = m.members
    assert member.problem.reason == "SecretNotFound" and "create it" in member.problem.message
    assert m.held == {"10.0.0.1"} and m.desired.nodes == ()


def test_secret_without_password():
    m = membership(CLUSTER, [node("a", "10.0.0.1")], {"admin": {"username": "hdb"}})
    assert m.members[0].problem.reason == "SecretInvalid" and "password" in m.members[0].problem.message


def test_node_override_secret():
    spec = {"credentials": {"secretRef": {"name": "other"}}}
    m = membership(CLUSTER, [node("a", "10.0.0.1", **spec)], {**SECRETS, "other": {"username": "u", "password": "p"}})
    assert m.members[0].access.username == "u"
    assert secret_names(CLUSTER, [node("a", "10.0.0.1", **spec)]) == {"admin", "other"}


def test_duplicate_hostname_the_first_claimant_keeps_it():
    older, newer = node("b", "10.0.0.1"), node("a", "10.0.0.1")
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    m = membership(CLUSTER, [newer, older, node("c", "10.0.0.3")], SECRETS)
    problems = {x.resource: x.problem for x in m.members}
    assert problems["a"].reason == "DuplicateHostname" and "HarperNode b" in problems["a"].message
    assert problems["b"] is None and problems["c"] is None
    assert [n.name for n in m.desired.nodes] == ["10.0.0.1", "10.0.0.3"]
    assert m.held == frozenset()  # the owner of 10.0.0.1 is still managed
    assert [x.resource for x in m.members if not x.managed] == ["a"]


def test_deleting_member_is_held_but_keeps_access():
    body = node("a", "10.0.0.1")
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    m = membership(CLUSTER, [body, node("b", "10.0.0.2")], SECRETS)
    assert m.held == {"10.0.0.1"} and m.members[0].access is not None


def test_invalid_spec_that_slipped_past_the_schema():
    m = membership(CLUSTER, [node("a", "10.0.0.1", shard=-3)], SECRETS)
    assert m.members[0].problem.reason == "InvalidSpec" and "shard" in m.members[0].problem.message


def test_desired_node_carries_the_spec():
    spec = {"shard": 2, "subscriptions": [{"database": "data", "subscribe": True, "publish": False}],
            "revokedCertificates": ["0A"], "retainAuthorization": True}
    (d,) = membership(CLUSTER, [node("a", "10.0.0.1", **spec)], SECRETS).desired.nodes
    assert d.shard == 2 and d.revoked_certificates == ("0A",) and d.retain_authorization
    assert d.subscriptions[0].database == "data" and not d.subscriptions[0].publish
    assert d.resource == "a"
