"""Bad input is refused by `kubectl apply` itself, with a message that names the field (real kube-apiserver)."""

from __future__ import annotations

import copy

import pytest

from . import kit


class _Harper:  # only the three addresses a HarperNode manifest needs
    name, replication_url, operations_url = "10.1.2.3", "wss://10.1.2.3:9933", "http://10.1.2.3:9925"


def _node(**spec):
    n = kit.node("n1", "c1", _Harper)
    n["spec"].update(spec)
    return n


def _cluster(**spec):
    c = kit.cluster("c1")
    c["spec"].update(spec)
    return c


def _without(obj, *path):
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return obj


CASES = {
    "url-scheme": (_node(url="https://10.1.2.3:9933"), "spec.url"),
    "url-path": (_node(url="wss://10.1.2.3:9933/x"), "spec.url"),
    "hostname-missing": (_without(_node(), "spec", "hostname"), "missing required field \"hostname\""),
    "hostname-shape": (_node(hostname="-bad-"), "spec.hostname"),
    "shard-negative": (_node(shard=-1), "spec.shard"),
    "operations-url": (_node(operationsUrl="10.1.2.3:9925"), "spec.operationsUrl"),
    "subscription-moves-nothing": (_node(subscriptions=[{"database": "d", "subscribe": False, "publish": False}]),
                                   "spec.subscriptions[0]"),
    "subscription-twice": (_node(subscriptions=[{"database": "d"}, {"database": "d"}]), "spec.subscriptions"),
    "cluster-ref-name": (_node(clusterRef={"name": "Not_A_Name"}), "spec.clusterRef.name"),
    "node-deletion-policy": (_node(deletionPolicy="Sometimes"), "spec.deletionPolicy"),
    "unknown-field": (_node(replicas=3), "replicas"),
    "cluster-credentials-missing": (_without(_cluster(), "spec", "credentials"),
                                    "credentials are required unless spec.instances is set"),
    # spec.instances: the operator runs Harper
    "instances-image-and-adopt": (_cluster(instances={"image": "x", "adopt": {"matchLabels": {"a": "b"}}}),
                                  "set exactly one of image"),
    "instances-adopt-without-credentials": (_without(_cluster(instances={"adopt": {"matchLabels": {"a": "b"}}}),
                                                     "spec", "credentials"), "adopting a StatefulSet needs"),
    "instances-neither": (_cluster(instances={"replicas": 3}), "set exactly one of image"),
    "instances-replicas": (_cluster(instances={"image": "x", "replicas": -1}), "spec.instances.replicas"),
    "instances-reserved-env": (_cluster(instances={"image": "x", "env": [{"name": "REPLICATION_HOSTNAME",
                                                                          "value": "evil.example"}]}),
                               "env may not set"),
    "instances-env-twice": (_cluster(instances={"image": "x", "env": [{"name": "A"}, {"name": "A"}]}),
                            "env names must be unique"),
    "instances-storage-size": (_cluster(instances={"image": "x", "storage": {"size": "lots"}}),
                               "spec.instances.storage.size"),
    "instances-ordinal-twice": (_cluster(instances={"image": "x", "ordinals": [{"ordinal": 1}, {"ordinal": 1}]}),
                                "each ordinal may appear once"),
    "issuer-and-own-ca": (_cluster(instances={"image": "x"}, tls={"issuerRef": {"name": "a"},
                                                                  "caSecretRef": {"name": "b"}}),
                          "issuerRef and caSecretRef exclude each other"),
    "issuer-without-instances": (_cluster(tls={"issuerRef": {"name": "a"}}), "spec.tls.issuerRef is for a provisioned"),
    "issuer-kind": (_cluster(instances={"image": "x"}, tls={"issuerRef": {"name": "a", "kind": "Vault"}}),
                    "spec.tls.issuerRef.kind"),
    "cluster-deletion-policy": (_cluster(deletionPolicy="Maybe"), "spec.deletionPolicy"),
    "cluster-interval": (_cluster(reconcileIntervalSeconds=1), "spec.reconcileIntervalSeconds"),
    "route-port": (_cluster(routes=[{"hostname": "a", "port": 70000}]), "spec.routes[0].port"),
    "route-twice": (_cluster(routes=[{"hostname": "a", "port": 9933}, {"hostname": "a", "port": 9933}]),
                    "spec.routes"),
    "restart-policy": (_cluster(restartPolicy="Always"), "spec.restartPolicy"),
    # URLs the operator could not parse, or that would carry credentials in the URL itself
    "operations-url-userinfo": (_node(operationsUrl="https://ops@10.1.2.3:9925"), "spec.operationsUrl"),
    "operations-url-port": (_node(operationsUrl="https://10.1.2.3:99999"), "spec.operationsUrl"),
    "url-port": (_node(url="wss://10.1.2.3:99999"), "spec.url"),
    "url-userinfo": (_node(url="wss://u:p@10.1.2.3:9933"), "spec.url"),
    "allowed-hosts-cidr": (_cluster(allowedHosts=["10.0.0.0/99"]), "spec.allowedHosts"),
    "allowed-hosts-shape": (_cluster(allowedHosts=["https://x"]), "spec.allowedHosts[0]"),
    "secret-name": (_cluster(credentials={"secretRef": {"name": "UPPER"}}), "spec.credentials.secretRef.name"),
    # Issue 20: hosts the CRD once admitted and urllib.parse raised on; each is refused in words, not only by regex
    "url-bracketed-ipv4": (_node(url="wss://[1.2.3.4]:9933"), "a host in brackets must be an IPv6 address"),
    "url-bracketed-bad-ipv6": (_node(url="wss://[::1::2]:9933"), "a host in brackets must be an IPv6 address"),
    "operations-url-bracketed-ipv4": (_node(operationsUrl="https://[1.2.3.4]:9925"),
                                      "spec.operationsUrl: Invalid value: \"https://[1.2.3.4]:9925\": a host in brackets"),
    "operations-url-empty-brackets": (_node(operationsUrl="http://[:]:9925"), "a host in brackets"),
    "url-port-zero": (_node(url="wss://10.1.2.3:0"), "the port must be a number from 1 to 65535"),
    "url-port-leading-zero": (_node(url="wss://10.1.2.3:09933"), "the port must be a number from 1 to 65535"),
    "url-userinfo-in-words": (_node(url="wss://u@10.1.2.3:9933"), "no user info"),
    "url-label-too-long": (_node(url=f"wss://{'a' * 64}.example:9933"), "spec.url"),
    "route-bracketed-ipv4": (_cluster(routes=[{"hostname": "[1.2.3.4]", "port": 9933}]),
                             "spec.routes[0].hostname"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_apply_rejects_with_the_field_named(kube, case):
    manifest, field = CASES[case]
    done = kube.apply(manifest, check=False)
    assert done.returncode != 0, f"{case} was accepted"
    assert field in done.stderr, f"{case}: {field} not named in: {done.stderr}"


@pytest.mark.parametrize("field,value,message", [
    ("hostname", "10.9.9.9", "hostname is immutable"),
    ("clusterRef", {"name": "other"}, "clusterRef is immutable"),
])
def test_immutable_fields(kube, field, value, message):
    kube.apply(_node())
    done = kube.apply(_node(**{field: value}), check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert kube.get("harpernode", "n1")["spec"]["hostname"] == "10.1.2.3"
