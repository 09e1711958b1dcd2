"""Kopf's own settings: where it keeps its state, how it posts, how replicas share the work."""

from __future__ import annotations

import logging

import kopf

from .. import kube
from .. import settings as config
from ..api import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Kopf's bookkeeping goes to annotations: our status schema is strict and would prune `status.kopf`.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # Our own Events say what was written to Harper; Kopf's "Handler succeeded" would drown them.
    settings.posting.level = logging.WARNING
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
    """Log Kopf in with what `--kubeconfig` (or in-cluster config) loaded, not Kopf's own guess."""
    if not config.current.kubeconfig and kube.in_cluster():
        return kopf.login_with_service_account(**kwargs)
    cfg = kube.connection()
    header = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken") or ""
    scheme, _, token = header.partition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
        username=cfg.username or None, password=cfg.password or None,
        scheme=scheme or None, token=token or None,
        certificate_path=cfg.cert_file, private_key_path=cfg.key_file)
