"""Membership: who is managed, who is held and why (pure; no Kubernetes, no Harper)."""

from harper_operator.api import HarperClusterSpec
from harper_operator.controller import members as _members
from harper_operator.controller.members import SecretData, secret_names

CLUSTER = HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "admin"}},
                                            "allowedHosts": ["10.0.0.0/8"], "allowPlaintext": True})
SECRETS = {"admin": SecretData(True, {"username": "hdb", "password": "s3cret"})}


def membership(cluster, nodes, secrets, namespace="ns", **kw):
    return _members.membership(cluster, nodes, secrets, namespace=namespace, **kw)


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
    m = membership(CLUSTER, [node("a", "10.0.0.1")], {"admin": SecretData(True, {"username": "hdb"})})
    assert m.members[0].problem.reason == "SecretInvalid" and "password" in m.members[0].problem.message


def test_node_override_secret():
    spec = {"credentials": {"secretRef": {"name": "other"}}}
    m = membership(CLUSTER, [node("a", "10.0.0.1", **spec)], {**SECRETS, "other": SecretData(True, {"username": "u", "password": "p"})})
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


# --- Guarantee 1: credentials go only where the cluster's owner allows -----------------------------------------

DEFAULT = HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "admin"}}})


def test_only_labelled_secrets_are_used():
    m = membership(CLUSTER, [node("a", "10.0.0.1")], {"admin": SecretData(False)})
    assert m.members[0].problem.reason == "SecretNotReadable"
    assert "harperoperator.dev/readable=true" in m.members[0].problem.message and m.members[0].access is None


def test_a_secret_that_cannot_be_read_waits_with_the_cause():
    m = membership(CLUSTER, [node("a", "10.0.0.1")], {"admin": SecretData(False, error="Forbidden")})
    assert m.members[0].problem.reason == "SecretReadFailed" and not m.members[0].problem.permanent


def test_binary_values_are_not_passwords():
    m = membership(CLUSTER, [node("a", "10.0.0.1")], {"admin": SecretData(True, {"username": "u", "password": None})})
    assert m.members[0].problem.reason == "SecretInvalid"


def test_the_default_admits_the_namespaces_services_and_loopback_only():
    def reason(host, scheme="https", namespace="db"):
        body = node("a", host)
        body["spec"]["operationsUrl"] = f"{scheme}://{host}:9925"
        body["spec"]["url"] = f"wss://{host}:9933"
        problem = membership(DEFAULT, [body], SECRETS, namespace=namespace).members[0].problem
        return problem.reason if problem else None

    assert reason("harper-0.harper.db.svc.cluster.local") is None
    assert reason("harper-0.harper.db.svc") is None
    assert reason("127.0.0.11", "http") is None  # loopback never leaves the operator's pod or machine
    assert reason("harper-0.harper.other.svc.cluster.local") == "HostNotAllowed"
    assert reason("harper.db.svc.evil.example") == "HostNotAllowed"
    assert reason("10.0.0.1") == "HostNotAllowed"
    assert reason("harper-0.harper.db.svc", "http") == "PlaintextNotAllowed"


def test_the_default_follows_the_operators_cluster_domain():
    """With a cluster domain other than cluster.local, a provisioned cluster's own members (named under that
    domain) are admitted, and the problem names the entries that were checked."""
    body = node("a", "hc-0.hc.db.svc.corp.example")
    body["spec"]["operationsUrl"] = "https://hc-0.hc.db.svc.corp.example:9925"
    assert membership(DEFAULT, [body], SECRETS, namespace="db", cluster_domain="corp.example").members[0].problem \
        is None
    problem = membership(DEFAULT, [body], SECRETS, namespace="db").members[0].problem
    assert problem.reason == "HostNotAllowed" and "*.db.svc.cluster.local" in problem.message
    problem = membership(DEFAULT, [node("b", "hc-0.hc.db.svc.cluster.local")], SECRETS, namespace="db",
                         cluster_domain="corp.example").members[0].problem
    assert problem.reason == "HostNotAllowed" and "*.db.svc.corp.example" in problem.message


def test_the_replication_url_must_be_allowed_too():
    body = node("a", "10.0.0.1")
    body["spec"]["url"] = "wss://attacker.example:9933"
    problem = membership(CLUSTER, [body], SECRETS).members[0].problem
    assert problem.reason == "HostNotAllowed" and "spec.url" in problem.message


def test_allowed_hosts_entries():
    spec = HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "a"}},
                                             "allowedHosts": ["*.harper.example", "db.example", "fd00::/8"]})
    assert spec.admits("h-0.harper.example", "ns") and spec.admits("H-0.Harper.Example.", "ns")
    assert not spec.admits("harper.example", "ns") and not spec.admits("xharper.example", "ns")
    assert spec.admits("db.example", "ns") and not spec.admits("x.db.example", "ns")
    assert spec.admits("[fd00::5]", "ns") and not spec.admits("::1", "ns")
    assert not spec.admits_plaintext("h-0.harper.example") and spec.admits_plaintext("127.0.0.1")


def test_garbage_ca_is_that_members_problem():
    tls = {"verify": True, "caSecretRef": {"name": "ca"}}
    secrets = {**SECRETS, "ca": SecretData(True, {"ca.crt": "garbage"})}
    m = membership(CLUSTER, [node("a", "10.0.0.1", tls=tls), node("b", "10.0.0.2")], secrets)
    assert m.members[0].problem.reason == "CASecretInvalid" and m.members[1].managed
    secrets = {**SECRETS, "ca": SecretData(False)}
    assert membership(CLUSTER, [node("a", "10.0.0.1", tls=tls)], secrets).members[0].problem.reason == \
        "SecretNotReadable"
