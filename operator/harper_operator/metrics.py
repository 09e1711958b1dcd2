"""Prometheus metrics: reconciles, Harper calls, and per-cluster readiness and lag."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("harper_operator_reconciles_total", "Cluster reconciles by result", ["result"])
HARPER_CALLS = Counter("harper_operator_harper_calls_total", "Harper operations API calls",
                       ["operation", "outcome"])
HARPER_LATENCY = Histogram("harper_operator_harper_call_seconds", "Harper operations API call latency",
                           ["operation"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
HARPER_WRITES = Counter("harper_operator_harper_writes_total", "Harper calls that change the cluster",
                        ["operation"])
READY_NODES = Gauge("harper_operator_cluster_ready_nodes", "Members replicating as declared",
                    ["namespace", "cluster"])
LAST_RECONCILE = Gauge("harper_operator_cluster_last_reconcile_timestamp_seconds",
                       "When the cluster's last reconcile round ended (the status is written only when it changes)",
                       ["namespace", "cluster"])
MAX_LAG = Gauge("harper_operator_cluster_max_lag_milliseconds", "Largest replication lag between members",
                ["namespace", "cluster"])

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


def serve(port: int) -> None:
    if port:
        start_http_server(port)
