"""The operator's metrics follow Prometheus conventions: base units, per-cluster series that leave with the cluster,
and a lag that is absent rather than stale when no member reports one."""

from __future__ import annotations

from prometheus_client import REGISTRY

from harper_operator import metrics


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_round_sets_the_cluster_series_and_lag_in_seconds():
    metrics.cluster_round("ns-m", "c1", seconds=0.3, declared=3, ready=2, max_lag_ms=1500)
    assert value("harper_operator_cluster_ready_nodes", namespace="ns-m", cluster="c1") == 2
    assert value("harper_operator_cluster_declared_nodes", namespace="ns-m", cluster="c1") == 3
    assert value("harper_operator_cluster_max_lag_seconds", namespace="ns-m", cluster="c1") == 1.5
    assert value("harper_operator_cluster_last_reconcile_timestamp_seconds", namespace="ns-m", cluster="c1") > 0
    assert value("harper_operator_reconcile_duration_seconds_count") >= 1


def test_an_unknown_lag_is_absent_not_stale():
    metrics.cluster_round("ns-m", "c2", seconds=0.1, declared=1, ready=1, max_lag_ms=200)
    metrics.cluster_round("ns-m", "c2", seconds=0.1, declared=1, ready=1, max_lag_ms=None)
    assert value("harper_operator_cluster_max_lag_seconds", namespace="ns-m", cluster="c2") is None
    metrics.cluster_round("ns-m", "c2", seconds=0.1, declared=1, ready=1, max_lag_ms=None)  # twice: no error


def test_a_gone_cluster_leaves_no_series():
    metrics.cluster_round("ns-m", "c3", seconds=0.1, declared=2, ready=2, max_lag_ms=10)
    metrics.certificates_expire("ns-m", "c3", 1_900_000_000.0)
    assert value("harper_operator_cluster_certificate_expiry_timestamp_seconds", namespace="ns-m",
                 cluster="c3") == 1_900_000_000.0
    metrics.forget_cluster("ns-m", "c3")
    for name in ("harper_operator_cluster_ready_nodes", "harper_operator_cluster_declared_nodes",
                 "harper_operator_cluster_max_lag_seconds",
                 "harper_operator_cluster_last_reconcile_timestamp_seconds",
                 "harper_operator_cluster_certificate_expiry_timestamp_seconds"):
        assert value(name, namespace="ns-m", cluster="c3") is None, name
    metrics.forget_cluster("ns-m", "never-seen")


def test_build_info_names_the_version():
    metrics.build_info()
    samples = [s for m in REGISTRY.collect() if m.name == "harper_operator_build_info" for s in m.samples]
    assert samples and samples[0].value == 1 and samples[0].labels["version"] not in ("", "unknown")
