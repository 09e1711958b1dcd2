"""`harper-operator run`: logging, metrics, Kubernetes credentials, then Kopf's loop (handlers/startup.py closes
the Kubernetes client in it on the way out)."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import threading

import kopf
import kubernetes.config.kube_config
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


def use_kubeconfig(path: str | None) -> None:
    """Make `--kubeconfig` the whole process's kubeconfig, for Kopf's own login too: kopf.login_via_client takes no
    path, it loads the client library's default kubeconfig (every time Kopf logs in, which is how exec-plugin and
    OIDC tokens get refreshed). Without a path nothing changes: in-cluster, else $KUBECONFIG or ~/.kube/config."""
    if not path:
        return
    os.environ["KUBECONFIG"] = path  # exec plugins and anything started from here see it too
    # The client read $KUBECONFIG into its default once, when it was imported (before the command line was read).
    kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = path
    # Kopf's login tries the pod's service account before any kubeconfig; `--kubeconfig` names the cluster to run
    # against, so in a pod the in-cluster variables must not win (kube.in_cluster() then agrees).
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        os.environ.pop(name, None)


# glibc keeps the heap Python frees for later instead of giving it back: after 250 clusters' first rounds the
# operator held about 150 MB of free heap for good (bench/scale.py at 250 x 4: 356 MB, then 212 MB after one
# malloc_trim). Giving it back once a minute costs milliseconds; the steady state reuses what it keeps.
TRIM_INTERVAL = 60.0


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def free_heap() -> bool:
    """Give the C heap's free pages back to the system now; False where that cannot be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def trim_heap_every(seconds: float = TRIM_INTERVAL) -> threading.Thread | None:
    """free_heap() every `seconds`, in a daemon thread (malloc_trim takes the allocator's own locks)."""
    if _malloc_trim() is None:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            free_heap()

    thread = threading.Thread(target=loop, name="heap-trim", daemon=True)
    thread.start()
    return thread


def run(settings: OperatorSettings) -> int:
    config.current = settings
    _logging(settings)
    use_kubeconfig(settings.kubeconfig)
    kube.configure(settings.kubeconfig)
    kube.preload(provisioning=settings.provisioning)
    metrics.serve(settings.metrics_port)
    trim_heap_every()
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
