"""Kopf's own settings: where it keeps its state, how it posts, how replicas share the work."""

from __future__ import annotations

import logging

import kopf

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
    if config.current.peering:
        settings.peering.name = config.current.peering
        settings.peering.standalone = False
        settings.peering.clusterwide = not config.current.namespaces
    else:
        settings.peering.standalone = True
