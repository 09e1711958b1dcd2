"""Prometheus metrics: reconciles, Harper calls, and per-cluster readiness and lag."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Prometheus conventions: base units (seconds), _total counters, per-cluster series removed with the cluster
# (forget_cluster), and a lag gauge that is absent, not stale, while the lag is unknown.
RECONCILES = Counter("harper_operator_reconciles_total", "Cluster reconciles by result", ["result"])
RECONCILE_SECONDS = Histogram("harper_operator_reconcile_duration_seconds", "Time one reconcile round takes",
                              buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
HARPER_CALLS = Counter("harper_operator_harper_calls_total", "Harper operations API calls",
                       ["operation", "outcome"])
HARPER_LATENCY = Histogram("harper_operator_harper_call_seconds", "Harper operations API call latency",
                           ["operation"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
HARPER_WRITES = Counter("harper_operator_harper_writes_total", "Harper calls that change the cluster",
                        ["operation"])
READY_NODES = Gauge("harper_operator_cluster_ready_nodes", "Members replicating as declared",
                    ["namespace", "cluster"])
DECLARED_NODES = Gauge("harper_operator_cluster_declared_nodes", "Members declared (HarperNodes naming the cluster)",
                       ["namespace", "cluster"])
LAST_RECONCILE = Gauge("harper_operator_cluster_last_reconcile_timestamp_seconds",
                       "When the cluster's last reconcile round ended (the status is written only when it changes)",
                       ["namespace", "cluster"])
MAX_LAG = Gauge("harper_operator_cluster_max_lag_seconds",
                "Largest replication lag between members; absent while no member reports one",
                ["namespace", "cluster"])
CERTIFICATE_EXPIRY = Gauge("harper_operator_cluster_certificate_expiry_timestamp_seconds",
                           "When the first of the certificates the operator issued the cluster's pods (or its "
                           "authority) expires; renewed with a third of its lifetime left, so one near expiry was not",
                           ["namespace", "cluster"])
BUILD_INFO = Gauge("harper_operator_build_info", "Always 1: the operator's version and what it runs on",
                   ["version", "kopf", "python"])
PER_CLUSTER = (READY_NODES, DECLARED_NODES, LAST_RECONCILE, MAX_LAG, CERTIFICATE_EXPIRY)

log = logging.getLogger(__name__)

WRITE_OPERATIONS = frozenset({"add_node", "update_node", "remove_node", "configure_cluster",
                              "cluster_set_routes", "cluster_delete_routes", "set_configuration", "restart"})


def observe_call(operation: str, outcome: str, seconds: float) -> None:
    """The Harper client's observer: every call it makes lands here."""
    HARPER_CALLS.labels(operation, outcome).inc()
    HARPER_LATENCY.labels(operation).observe(seconds)
    if operation in WRITE_OPERATIONS:
        HARPER_WRITES.labels(operation).inc()
        # One line per write, flushed at once: the counter dies with the process, the log does not (the fault
        # matrix counts writes across SIGKILLed operators from it).
        log.info("Harper write: %s (%s, %.3fs)", operation, outcome, seconds)


def cluster_round(namespace: str, name: str, *, seconds: float, declared: int, ready: int,
                  max_lag_ms: float | None) -> None:
    """Per-cluster series after one round."""
    RECONCILE_SECONDS.observe(seconds)
    READY_NODES.labels(namespace, name).set(ready)
    DECLARED_NODES.labels(namespace, name).set(declared)
    LAST_RECONCILE.labels(namespace, name).set_to_current_time()
    if max_lag_ms is None:
        _forget(MAX_LAG, namespace, name)
    else:
        MAX_LAG.labels(namespace, name).set(max_lag_ms / 1000)


def forget_cluster(namespace: str, name: str) -> None:
    """A cluster that is gone (or no longer this replica's) leaves no series behind."""
    for gauge in PER_CLUSTER:
        _forget(gauge, namespace, name)


def _forget(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:  # never set
        pass


def build_info() -> None:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"
    BUILD_INFO.labels(of("harper-operator"), of("kopf"), platform.python_version()).set(1)


def serve(port: int) -> None:
    if port:
        build_info()
        start_http_server(port)


def certificates_expire(namespace: str, name: str, when: float) -> None:
    """The first expiry (seconds since the epoch) among a provisioned cluster's certificates."""
    CERTIFICATE_EXPIRY.labels(namespace, name).set(when)
