"""Issue 21: the cluster domain is one setting. The chart's clusterDomain reaches the operator's settings, the value
that names provisioned pods and the default allowedHosts alike (tests/api/test_allowed_hosts_domain.py)."""

from __future__ import annotations

from chart_support import one

from harper_operator.api import HarperClusterSpec
from harper_operator.cli import parser
from harper_operator.settings import OperatorSettings


def operator_args(docs: list[dict]) -> list[str]:
    (container,) = [c for c in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "operator"]
    return container["args"]


def test_the_chart_value_becomes_the_operators_cluster_domain(helm):
    args = operator_args(helm.render({"clusterDomain": "example.internal"}))
    assert "--cluster-domain=example.internal" in args
    settings = OperatorSettings.from_args(parser().parse_args(["run", *args]))
    assert settings.cluster_domain == "example.internal"
    # ...and the default allow-list built from it admits the pods the operator names under it.
    cluster = HarperClusterSpec.model_validate({"instances": {"image": "reg/harper:1"}})
    assert cluster.admits("hc-0.hc.db.svc.example.internal", "db", settings.cluster_domain)


def test_the_default_is_cluster_local(helm):
    args = operator_args(helm.render())
    assert OperatorSettings.from_args(parser().parse_args(["run", *args])).cluster_domain == "cluster.local"
