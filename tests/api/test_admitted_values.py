"""Every value the CRD admits is one the code handles (issue 20, invariant S5), checked from the CRD itself.

The strategies are derived from the generated CRDs in crds/: each string from its `pattern` (fullmatch), `enum`,
minLength/maxLength, each number from its bounds, each list and map from its item schema, so a pattern loosened or
tightened later is what the tests draw from. CEL rules (x-kubernetes-validations) are not evaluated here: a value
that breaks one still reaches the code (an object stored before a rule existed), which must not raise on it either.

The values then drive the operator's pure pieces and its shell on FAKES (tests/controller/fake_fleet.py: a FAKE
Harper fleet, a FAKE Kubernetes): membership, a reconcile round against an observed cluster that holds records
with those URLs, a member's removal and the cluster's dissolution. Nothing may raise; a value the code cannot act
on must become that member's Problem, written into its status.
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "controller"))

from fake_fleet import FakeFleet, FakeKube, FakePool, admin_secret  # noqa: E402

from harper_operator import kube  # noqa: E402
from harper_operator.api import HarperClusterSpec, HarperNodeSpec, urls  # noqa: E402
from harper_operator.controller import dissolve as dissolving, observe  # noqa: E402
from harper_operator.controller.dissolve import Removal, dissolve, remove_member  # noqa: E402
from harper_operator.controller.loop import ClusterReconciler, Declared, declared_entry  # noqa: E402
from harper_operator.controller.members import membership, SecretData  # noqa: E402
from harper_operator.harper import models as wire  # noqa: E402
from harper_operator.reconcile.topology import Route, url_key  # noqa: E402

A, B = "127.0.0.11", "127.0.0.12"


def _spec_schema(plural: str) -> dict:
    crd = yaml.safe_load((ROOT / "crds" / f"harperoperator.dev_{plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


NODE, CLUSTER = _spec_schema("harpernodes"), _spec_schema("harperclusters")
# spec.instances is most of the cluster's schema and most of the time spent drawing; the membership and the round
# read only its absence (provisioning has tests of its own), so most examples draw the cluster without it.
UNPROVISIONED = {**CLUSTER, "properties": {k: v for k, v in CLUSTER["properties"].items() if k != "instances"}}

_SMALL = 3  # list and map sizes: enough for duplicates and pairs, small enough for a fast round


def admitted(schema: dict) -> st.SearchStrategy:
    """Values the API server's OpenAPI validation admits for `schema` (CEL rules aside)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2 ** 31)), schema.get("maximum", 2 ** 31))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(admitted(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", _SMALL), _SMALL))
    if kind == "object":
        return _object(schema)
    raise AssertionError(f"a schema type the strategies do not know: {schema}")


def _string(schema: dict) -> st.SearchStrategy:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 64)
    if schema.get("format") == "date-time":
        return st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
    base = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else st.text(max_size=min(high, 24))
    return base.filter(lambda s: low <= len(s) <= high)


def _object(schema: dict) -> st.SearchStrategy:
    if "properties" in schema:
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: admitted(v) for k, v in schema["properties"].items() if k in required},
            optional={k: admitted(v) for k, v in schema["properties"].items() if k not in required})
    if isinstance(schema.get("additionalProperties"), dict):
        return st.dictionaries(st.text(min_size=1, max_size=8), admitted(schema["additionalProperties"]),
                               min_size=schema.get("minProperties", 0),
                               max_size=min(schema.get("maxProperties", _SMALL), _SMALL))
    assert schema.get("x-kubernetes-preserve-unknown-fields"), schema
    return st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=6), st.integers()), max_size=2)


def _field(schema: dict, *path: str) -> dict:
    for key in path:
        schema = schema["items"] if key == "[]" else schema["properties"][key]
    return schema


REPLICATION_URLS = admitted(_field(NODE, "url"))
OPERATIONS_URLS = admitted(_field(NODE, "operationsUrl"))
ROUTE_HOSTS = admitted(_field(CLUSTER, "routes", "[]", "hostname"))
# Built once: a strategy made inside a draw is made (and its regular expressions parsed) again for every example.
NODE_SPECS, CLUSTER_SPECS, UNPROVISIONED_SPECS = admitted(NODE), admitted(CLUSTER), admitted(UNPROVISIONED)


@st.composite
def node_specs(draw) -> dict:
    """A HarperNode spec the CRD admits, in cluster "c"; without Secret overrides most of the time, so most members
    get as far as Harper."""
    spec = draw(NODE_SPECS)
    spec["clusterRef"] = {"name": "c"}
    if draw(st.integers(0, 3)) < 3:  # hypothesis favours 0: the common case is the small number
        spec.pop("credentials", None)
        spec.pop("tls", None)
    return spec


@st.composite
def cluster_specs(draw, hosts: list[str] = ()) -> dict:
    """A HarperCluster spec the CRD admits; mostly with the test's Secret, not provisioned, and with every host
    in `hosts` allowed, so the hostile URLs reach the planner rather than stopping at allowedHosts."""
    spec = draw(UNPROVISIONED_SPECS if draw(st.integers(0, 4)) < 4 else CLUSTER_SPECS)
    if draw(st.integers(0, 4)) < 4:
        spec["credentials"] = {"secretRef": {"name": "admin"}}
        spec.get("tls", {}).pop("caSecretRef", None)
    if draw(st.integers(0, 4)) < 4:
        spec["allowedHosts"] = [*spec.get("allowedHosts", [])[:2], "0.0.0.0/0", "::/0",
                                *sorted({h for h in hosts if re.fullmatch(r"[A-Za-z0-9.\-]+", h)})][:64]
        spec["allowPlaintext"] = True
    return spec


def _body(name: str, spec: dict, **meta) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "generation": 1,
                         "creationTimestamp": f"2026-01-01T00:00:{len(name):02d}Z", **meta}, "spec": spec}


def _good(name: str, host: str) -> dict:
    return _body(name, {"clusterRef": {"name": "c"}, "hostname": host, "url": f"wss://{host}:9933",
                        "operationsUrl": f"http://{host}:9925"})


def _hosts(specs: list[dict]) -> list[str]:
    return [urls.split(s[k])[1] for s in specs for k in ("url", "operationsUrl")]


# --- the URLs themselves ---------------------------------------------------------------------------------------


@given(st.one_of(REPLICATION_URLS, OPERATIONS_URLS))
def test_every_admitted_url_is_read_by_urllib_the_models_and_url_key(url):
    assert urls.why_not(url, ("wss", "ws", "https", "http"), "wss://h:1") is None
    parts = urlsplit(url)
    assert parts.hostname and (parts.port is None or 1 <= parts.port <= 65535)
    assert urls.split(url) == (parts.scheme, parts.hostname)
    key = url_key(url)
    assert key.startswith(parts.scheme + "://") and url_key(key) == key


@given(REPLICATION_URLS, OPERATIONS_URLS)
def test_every_admitted_pair_of_urls_parses_as_a_node_spec(url, operations_url):
    spec = HarperNodeSpec.model_validate({"clusterRef": {"name": "c"}, "hostname": "h", "url": url,
                                          "operationsUrl": operations_url})
    assert spec.url == url


@given(ROUTE_HOSTS, st.integers(1, 65535))
def test_every_admitted_route_is_one_harper_can_be_sent(hostname, port):
    assert HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "a"}},
                                             "routes": [{"hostname": hostname, "port": port}]})
    route = Route(hostname, port)
    sent = wire.Route.model_validate(route.url)  # what cluster_set_routes writes, read back as Harper answers it
    assert Route(sent.hostname, sent.port) == route


# --- membership ----------------------------------------------------------------------------------------------------


@settings(max_examples=80)
@given(st.lists(node_specs(), min_size=1, max_size=3), st.data())
def test_membership_holds_or_manages_every_admitted_node(specs, data):
    cluster = data.draw(cluster_specs(_hosts(specs)))
    try:
        parsed = HarperClusterSpec.model_validate(cluster).with_credentials("c")
    except ValueError:
        return  # a spec the model refuses is the round's InvalidSpec (test below), never membership's
    secrets = {"admin": SecretData(True, {"username": "u", "password": "p"})}
    m = membership(parsed, [_body(f"n{i}", s) for i, s in enumerate(specs)], secrets, namespace="ns")
    for member in m.members:
        event(f"member: {member.problem.reason if member.problem else 'managed'}")
        assert member.managed or member.deleting or (member.problem and member.problem.reason
                                                     and member.problem.message)
        assert member.problem is None or member.problem.reason != "InvalidURL", member.problem  # the CRD admitted it
    for node in m.desired.nodes:
        assert urls.split(node.url) is not None


# --- the shell on FAKES: a round, a removal, a dissolution -----------------------------------------------------


def _run(coro):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@settings(max_examples=60)
@given(st.lists(node_specs(), min_size=1, max_size=2), st.data())
def test_a_round_removal_and_dissolution_on_admitted_values_end_and_write_status(specs, data):
    cluster = _body("c", data.draw(cluster_specs(_hosts(specs))), annotations={})
    cluster["status"] = {}
    nodes = [_good("good-a", A), _good("good-b", B)] + [_body(f"x{i}", s) for i, s in enumerate(specs)]
    fleet = FakeFleet.of(A, B)
    for spec in specs:  # the observed side holds records with the hostile URLs too
        fleet.model.inject(A, spec["hostname"], spec["url"])
    fake = FakeKube(secrets={"admin": admin_secret()})
    declared = Declared.of(declared_entry(n["spec"]) for n in nodes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kube, "read_secret", fake.read_secret)
        mp.setattr(kube, "patch_status", fake.patch_status)
        mp.setattr(kube, "list_objects", fake.list_objects)
        mp.setattr(observe, "probe_replication", fleet.probe)
        mp.setattr(dissolving, "ClientPool", lambda *a, **kw: FakePool(fleet))
        r = ClusterReconciler("ns", "c", events=lambda *a: None, verify_timeout=0)
        r.pool = FakePool(fleet)
        for _ in range(2):
            _run(r.reconcile(cluster, nodes, declared=declared))
        written = fake.last("harperclusters", "c")
        event(f"cluster: {next((c['reason'] for c in written.get('conditions', []) if c['type'] == 'Ready'), None)}")
        assert written.get("observedGeneration") == 1 and written.get("conditions"), written
        try:
            spec = HarperClusterSpec.model_validate(cluster["spec"]).with_credentials("c")
        except ValueError:
            return  # the round wrote InvalidSpec; the deletion handlers never get this far with such a spec
        for node in nodes:
            status = fake.last("harpernodes", node["metadata"]["name"])
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True" or ready["reason"] and ready["message"], status
        for node in nodes[2:]:
            assert isinstance(_run(remove_member(cluster, spec, nodes, node["spec"]["hostname"])), Removal)
        assert isinstance(_run(remove_member(cluster, spec, nodes, B)), Removal)
        assert isinstance(_run(dissolve(cluster, spec, nodes)), Removal)
