"""The few Kubernetes API calls the operator makes itself (Kopf does the watching).

The official client is synchronous; each call runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any, Callable

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


def _unless_missing(call: Callable[[], Any]) -> Any:
    """call(), or None when the API server answers 404 (the object does not exist)."""
    try:
        return call()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


async def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await asyncio.to_thread(_unless_missing, lambda: kubernetes.client.CustomObjectsApi(
        _client()).get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, _request_timeout=TIMEOUT))


async def list_objects(plural: str, namespace: str) -> list[dict[str, Any]]:
    def call():
        return kubernetes.client.CustomObjectsApi(_client()).list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, _request_timeout=TIMEOUT)["items"]

    return await asyncio.to_thread(call)


async def patch_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Merge-patch `.status`; False when the object is gone (deleted while we reconciled)."""

    found = await asyncio.to_thread(_unless_missing, lambda: kubernetes.client.CustomObjectsApi(
        _client()).patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": status},
                                                         _request_timeout=TIMEOUT) or True)
    return found is not None


async def patch_metadata(plural: str, namespace: str, name: str, metadata: dict[str, Any]) -> None:
    """Merge-patch `.metadata` (annotations; with a resourceVersion the API server refuses a stale write: 409)."""

    def call() -> None:
        kubernetes.client.CustomObjectsApi(_client()).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, {"metadata": metadata}, _request_timeout=TIMEOUT)

    await asyncio.to_thread(call)


# --- Objects a provisioned HarperCluster owns (StatefulSet, Services, PodDisruptionBudget, Secret, HarperNodes) ---

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
FIELD_MANAGER = "harper-operator"


def _plain(obj: Any) -> dict[str, Any]:
    """A client model as the API's own camelCase dict."""
    return _client().sanitize_for_serialization(obj)


def _patcher(kind: str):
    """The patch call of one kind we own, called as f(name, namespace, body, ...)."""
    if kind == "HarperNode":
        custom = kubernetes.client.CustomObjectsApi(_client())
        return lambda name, namespace, body, **kw: custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "harpernodes", name, body, **kw)
    core = kubernetes.client.CoreV1Api(_client())
    return {"Service": core.patch_namespaced_service, "Secret": core.patch_namespaced_secret,
            "StatefulSet": kubernetes.client.AppsV1Api(_client()).patch_namespaced_stateful_set,
            "PodDisruptionBudget": kubernetes.client.PolicyV1Api(_client()).patch_namespaced_pod_disruption_budget,
            }[kind]


def _deleter(kind: str):
    """What the operator deletes itself: a pod (rolling restart) and a HarperNode (scale-down); Kubernetes'
    garbage collector removes the rest through owner references."""
    if kind == "HarperNode":
        custom = kubernetes.client.CustomObjectsApi(_client())
        return lambda name, namespace, **kw: custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "harpernodes", name, **kw)
    return {"Pod": kubernetes.client.CoreV1Api(_client()).delete_namespaced_pod}[kind]


async def apply(obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of a whole object we own: creates it, or changes only what differs (an unchanged object
    is not written), and takes over fields another manager set on it."""
    patch = _patcher(obj["kind"])
    meta = obj["metadata"]

    def call():
        return patch(meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=True,
                     _content_type=APPLY, _request_timeout=TIMEOUT)

    found = await asyncio.to_thread(call)
    return found if isinstance(found, dict) else _plain(found)


async def merge_patch(kind: str, namespace: str, name: str, patch_body: dict[str, Any]) -> bool:
    """JSON merge patch; False when the object is gone."""
    patch = _patcher(kind)
    found = await asyncio.to_thread(_unless_missing, lambda: patch(
        name, namespace, patch_body, _content_type=MERGE, _request_timeout=TIMEOUT) or True)
    return found is not None


async def create_secret(obj: dict[str, Any]) -> bool:
    """Create a Secret; False when one of that name exists already (it is never replaced)."""

    def call() -> bool:
        try:
            kubernetes.client.CoreV1Api(_client()).create_namespaced_secret(
                obj["metadata"]["namespace"], obj, field_manager=FIELD_MANAGER, _request_timeout=TIMEOUT)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    return await asyncio.to_thread(call)


async def delete(kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
    """Delete one object (only that uid when given, so a successor of the same name survives); False when gone."""
    remove = _deleter(kind)

    def call() -> bool:
        kw = {"body": {"preconditions": {"uid": uid}}} if uid else {}
        try:
            remove(name, namespace, _request_timeout=TIMEOUT, **kw)
            return True
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise

    return await asyncio.to_thread(call)


async def read_statefulset(namespace: str, name: str) -> dict[str, Any] | None:
    found = await asyncio.to_thread(_unless_missing, lambda: kubernetes.client.AppsV1Api(
        _client()).read_namespaced_stateful_set(name, namespace, _request_timeout=TIMEOUT))
    return None if found is None else _plain(found)


async def list_statefulsets(namespace: str, selector: str) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(kubernetes.client.AppsV1Api(_client()).list_namespaced_stateful_set,
                                    namespace, label_selector=selector, _request_timeout=TIMEOUT)
    return [_plain(x) for x in found.items]


async def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(kubernetes.client.CoreV1Api(_client()).list_namespaced_pod,
                                    namespace, label_selector=selector, _request_timeout=TIMEOUT)
    return [_plain(x) for x in found.items]
