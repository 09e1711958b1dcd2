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

from .api import GROUP, VERSION

_api: kubernetes.client.ApiClient | None = None


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


async def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's data decoded, or None when it does not exist."""

    def call() -> dict[str, str] | None:
        try:
            secret = kubernetes.client.CoreV1Api(_client()).read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        data.update(secret.string_data or {})
        return data

    return await asyncio.to_thread(call)


async def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    def call():
        try:
            return kubernetes.client.CustomObjectsApi(_client()).get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    return await asyncio.to_thread(call)


async def list_objects(plural: str, namespace: str) -> list[dict[str, Any]]:
    def call():
        return kubernetes.client.CustomObjectsApi(_client()).list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural)["items"]

    return await asyncio.to_thread(call)


async def patch_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Merge-patch `.status`; False when the object is gone (deleted while we reconciled)."""

    def call() -> bool:
        try:
            kubernetes.client.CustomObjectsApi(_client()).patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status})
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    return await asyncio.to_thread(call)


async def annotate(plural: str, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
    def call() -> None:
        kubernetes.client.CustomObjectsApi(_client()).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, {"metadata": {"annotations": annotations}})

    await asyncio.to_thread(call)
