"""`harper-operator run`: logging, metrics, Kubernetes credentials, then Kopf's loop."""

from __future__ import annotations

import asyncio
import logging

import kopf
# Kopf's own JSON formatter, the one `kopf run --log-format=json` uses (Kopf 1.45 does not re-export it; the
# dependency is pinned below 1.46). tests/test_cli_logs.py fails if it moves.
from kopf._core.actions.loggers import ObjectJsonFormatter

from . import kube, metrics
from . import settings as config
from .settings import OperatorSettings


def json_formatter() -> logging.Formatter:
    """One JSON object a line: `message`, `severity`, `logger`, a UTC ISO 8601 `timestamp`, and on every line
    logged about an object (kopf.objects, the handlers' `logger`) that object as
    `object: {apiVersion, kind, namespace, name, uid}`; a traceback in `exc_info`."""
    return ObjectJsonFormatter("%(name)s %(message)s", rename_fields={"name": "logger"}, timestamp=True)


class _QuietPodEvents(logging.Filter):
    """Kopf logs every event handler's success; pod events come several times a second during a roll."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and "'pod_changed'" in record.getMessage())


def _logging(settings: OperatorSettings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(_QuietPodEvents())


def run(settings: OperatorSettings) -> int:
    config.current = settings
    _logging(settings)
    kube.configure(settings.kubeconfig)
    metrics.serve(settings.metrics_port)
    from . import handlers  # noqa: F401 - registers the handlers
    if settings.provisioning:
        handlers.cluster.watch_pods()

    asyncio.run(kopf.operator(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=settings.peering is None,
        peering_name=settings.peering,
        liveness_endpoint=f"http://0.0.0.0:{settings.metrics_port + 1}/healthz" if settings.metrics_port else None,
    ))
    return 0
