"""Issue 21: the cluster domain is one setting. A provisioned cluster's HarperNodes are named under the operator's
cluster domain (--cluster-domain, the chart's clusterDomain); the default allowedHosts must admit them under that
same domain, or a cluster provisioned with another domain refuses its own nodes (HostNotAllowed)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from harper_operator.api import HarperClusterSpec, HarperNodeSpec, hosts
from harper_operator.provision import render

DOMAIN = "example.internal"


def provisioned(domain: str) -> tuple[HarperClusterSpec, HarperNodeSpec]:
    cluster = HarperClusterSpec.model_validate({"instances": {"image": "reg/harper:1"}})
    owner = render.Owner("db", "hc", "uid-1", domain=domain)
    node = render.harper_node(owner, cluster.instances, render.Place("hc", "hc"), 0)
    return cluster, HarperNodeSpec.model_validate(node["spec"])


def node_hosts(node: HarperNodeSpec) -> set[str]:
    return {urlsplit(node.operations_url).hostname, urlsplit(node.url).hostname}


def test_a_generated_harper_node_under_another_domain_is_admitted():
    cluster, node = provisioned(DOMAIN)
    assert node_hosts(node) == {f"hc-0.hc.db.svc.{DOMAIN}"}
    assert all(cluster.admits(host, "db", DOMAIN) for host in node_hosts(node))
    assert f"*.db.svc.{DOMAIN}" in cluster.host_entries("db", DOMAIN)


def test_the_default_domain_admits_only_its_own_names():
    cluster, node = provisioned(DOMAIN)
    # What issue 21 saw: entries for cluster.local, nodes named under example.internal.
    assert not any(cluster.admits(host, "db") for host in node_hosts(node))
    cluster, node = provisioned(hosts.DEFAULT_CLUSTER_DOMAIN)
    assert all(cluster.admits(host, "db") for host in node_hosts(node))


@pytest.mark.parametrize("host", ["hc-0.hc.db.svc.cluster.local", "hc-0.hc.other.svc.example.internal",
                                  "hc-0.hc.db.svc.example.internal.evil.test", "example.internal"])
def test_another_domain_admits_nothing_else(host):
    cluster, _ = provisioned(DOMAIN)
    assert not cluster.admits(host, "db", DOMAIN)


def test_explicit_allowed_hosts_are_not_widened_by_the_domain():
    cluster = HarperClusterSpec.model_validate({"instances": {"image": "reg/harper:1"},
                                                "allowedHosts": ["*.harper.example.com"]})
    assert cluster.host_entries("db", DOMAIN) == ("*.harper.example.com",)
    assert not cluster.admits(f"hc-0.hc.db.svc.{DOMAIN}", "db", DOMAIN)


@pytest.mark.parametrize("given", [f"{DOMAIN}.", DOMAIN.upper(), ""])
def test_the_domain_is_read_as_dns_reads_it(given):
    expected = DOMAIN if given else hosts.DEFAULT_CLUSTER_DOMAIN
    assert hosts.default_entries("db", given)[1] == f"*.db.svc.{expected}"
