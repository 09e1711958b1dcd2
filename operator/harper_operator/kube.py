"""The few Kubernetes API calls the operator makes itself (Kopf does the watching).

The official client is synchronous; each call runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .api import GROUP, READABLE_LABEL, VERSION

_api: kubernetes.client.ApiClient | None = None

# Every call gives up after this (connect, read) in seconds, so no round can hang on a silent API server.
TIMEOUT = (5.0, 30.0)


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def configure(kubeconfig: str | None = None) -> None:
    """`--kubeconfig` when given, else in-cluster, else $KUBECONFIG or ~/.kube/config."""
    global _api
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig)
    elif in_cluster():
        kubernetes.config.load_incluster_config()
    else:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    _api = kubernetes.client.ApiClient()


def connection() -> kubernetes.client.Configuration:
    """The loaded configuration, for Kopf's login (so Kopf and we always use the same credentials)."""
    return _client().configuration


def _client() -> kubernetes.client.ApiClient:
    if _api is None:
        configure()
    return _api


def _text(value: str) -> str | None:
    """A Secret value as text; None for binary values (a keystore), which no caller can use as a password."""
    try:
        return base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


async def read_secret(namespace: str, name: str) -> tuple[bool, dict[str, str | None]] | None:
    """(readable, data) of a Secret, or None when it does not exist.

    Only a Secret labelled READABLE_LABEL=true is decoded; any other comes back as (False, {}), so its content
    never reaches the operator's logic, whoever names it.
    """

    def call() -> tuple[bool, dict[str, str | None]] | None:
        try:
            secret = kubernetes.client.CoreV1Api(_client()).read_namespaced_secret(
                name, namespace, _request_timeout=TIMEOUT)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        if ((secret.metadata.labels or {}).get(READABLE_LABEL) or "").lower() != "true":
            return False, {}
        return True, {k: _text(v) for k, v in (secret.data or {}).items()}

    return await asyncio.to_thread(call)


async def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    def call():
        try:
            return kubernetes.client.CustomObjectsApi(_client()).get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _request_timeout=TIMEOUT)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    return await asyncio.to_thread(call)


async def list_objects(plural: str, namespace: str) -> list[dict[str, Any]]:
    def call():
        return kubernetes.client.CustomObjectsApi(_client()).list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, _request_timeout=TIMEOUT)["items"]

    return await asyncio.to_thread(call)


async def patch_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Merge-patch `.status`; False when the object is gone (deleted while we reconciled)."""

    def call() -> bool:
        try:
            kubernetes.client.CustomObjectsApi(_client()).patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}, _request_timeout=TIMEOUT)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    return await asyncio.to_thread(call)


async def patch_metadata(plural: str, namespace: str, name: str, metadata: dict[str, Any]) -> None:
    """Merge-patch `.metadata` (annotations; with a resourceVersion the API server refuses a stale write: 409)."""

    def call() -> None:
        kubernetes.client.CustomObjectsApi(_client()).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, {"metadata": metadata}, _request_timeout=TIMEOUT)

    await asyncio.to_thread(call)
