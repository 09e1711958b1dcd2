"""Kopf's own settings: where it keeps its state, how it posts, how replicas share the work; its login; and the
Kubernetes client's session closed on the way out."""

from __future__ import annotations

import logging
import socket

import kopf

from .. import kube
from .. import settings as config
from ..api import GROUP
from . import events


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Kopf's bookkeeping goes to annotations: our status schema is strict and would prune `status.kopf`.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # Our own Events say what was written to Harper; Kopf's "Handler succeeded" would drown them.
    settings.posting.level = logging.WARNING
    # Kopf posts every Event (ours and its own) signed with these: the operator, not the framework. The instance is
    # the pod (its hostname), so two replicas' Events can be told apart.
    settings.posting.reporting_component = events.REPORTING_COMPONENT
    settings.posting.reporting_instance = (socket.gethostname() or events.REPORTING_COMPONENT)[
        :events.REPORTING_INSTANCE_LIMIT]
    settings.posting.event_name_prefix = f"{events.REPORTING_COMPONENT}-"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Kopf's own writes (Events, finalizers, peering) give up instead of hanging on a silent API server.
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    if config.current.peering:
        settings.peering.name = config.current.peering
        settings.peering.priority = config.current.priority
        settings.peering.standalone = False
        settings.peering.clusterwide = not config.current.namespaces
    else:
        settings.peering.standalone = True


@kopf.on.login()
def login(**kwargs) -> kopf.ConnectionInfo | None:
    """Kopf's own logins, which read the credentials afresh on every call: Kopf calls this again when the API
    server answers 401, and an exec plugin runs again (an OIDC token is refreshed, a rotated token file re-read).

    In a pod without `--kubeconfig`: the service account. Otherwise the client library's kubeconfig, which
    runner.py pointed at `--kubeconfig`, the same file kube.py reads.
    """
    if not config.current.kubeconfig and kube.in_cluster():
        return kopf.login_with_service_account(**kwargs)
    return kopf.login_via_client(**kwargs)


@kopf.on.cleanup()
async def close_kubernetes_client(**_) -> None:
    """The aio client's session belongs to this loop: close it before the loop ends."""
    await kube.close()
