"""The few Kubernetes API calls the operator makes itself (Kopf does the watching).

They use kubernetes.aio, the official client's asyncio half. Its ApiClient holds an aiohttp session, which belongs
to the event loop it was made in: it is made on the first call inside the running loop, and close() (the operator's
cleanup) closes it. configure() runs before the loop and only says where the credentials come from.

Credentials are read again when the API server answers 401 (an exec plugin's or an OIDC token expired, a token file
was rotated), and the call is tried once more; in-cluster, the client itself re-reads the rotated token file.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any, Awaitable, Callable

import aiohttp
import kubernetes.client.exceptions
from kubernetes.aio import client as aio
from kubernetes.aio import config as aio_config
from kubernetes.aio.client import rest as aio_rest

from .api import GROUP, READABLE_LABEL, VERSION


class ApiException(kubernetes.client.exceptions.ApiException, aio.ApiException):
    """What every function here raises when the API server refuses: an ApiException of both the sync and the aio
    client, so callers catching either one (handlers/node.py catches the sync one) keep working."""


# Every call gives up after this (connect, read) in seconds, so no round can hang on a silent API server.
TIMEOUT = (5.0, 30.0)

# An ApiClient replaced after new credentials changed its TLS material is closed this long after, once the calls
# that were using it are done (a call can take TIMEOUT's connect + read; lists a few reads).
RETIRE_AFTER = 120.0

IN_CLUSTER = "in-cluster"  # _source when the pod's service account is used


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


_source: str | None = None  # a kubeconfig path (a KUBECONFIG list a:b is fine) or IN_CLUSTER; None: not configured
_api: aio.ApiClient | None = None
_loop: asyncio.AbstractEventLoop | None = None  # the loop _api's session belongs to
_lock: asyncio.Lock | None = None  # one loading of credentials at a time
_generation = 0  # how many times the credentials were (re)loaded: a 401 reloads only once for all calls at once
_retiring: set[asyncio.Task] = set()
_serializer: aio.ApiClient | None = None


def configure(kubeconfig: str | None = None) -> None:
    """`--kubeconfig` when given, else in-cluster, else $KUBECONFIG or ~/.kube/config.

    Synchronous, for runner.py before the loop starts: a kubeconfig is parsed now so a wrong path or a broken file
    fails the start, but credentials (an exec plugin's run) are loaded by the first call, inside the loop.
    """
    global _source, _api, _generation
    if kubeconfig:
        source = kubeconfig
    elif in_cluster():
        source = IN_CLUSTER
    else:
        source = os.environ.get("KUBECONFIG") or aio_config.KUBE_CONFIG_DEFAULT_LOCATION  # ~/.kube/config
    if source != IN_CLUSTER:
        aio_config.list_kube_config_contexts(source)  # raises ConfigException for a missing or broken kubeconfig
    _source = source
    if _api is not None:  # configured again (tests): the next call makes a client with the new credentials
        _retire(_api)
        _api = None
    _generation += 1


def preload(*, provisioning: bool) -> None:
    """Import now, before the event loop starts, the API classes the rounds call. The client imports each one (and
    its models) on first use: CoreV1Api takes 0.56 s and 25 MiB, AppsV1Api 0.27 s. Inside the loop that import
    stalls every handler and daemon: the process's first cluster waited 0.55 s for its Secret read before its
    first write (bench/converge.py). The memory is the same, only spent at the start."""
    for name in ("CoreV1Api", "CustomObjectsApi", *(("AppsV1Api", "PolicyV1Api") if provisioning else ())):
        getattr(aio, name)


def source() -> str | None:
    """Where the credentials come from: a kubeconfig path, IN_CLUSTER, or None before configure()."""
    return _source


class _Rest(aio_rest.RESTClientObject):
    """The aio client hands `_request_timeout` to aiohttp as it is, and aiohttp reads a pair as nothing it knows:
    a (connect, read) pair becomes aiohttp's connect and read timeouts, what the sync client made of it."""

    async def request(self, method, url, headers=None, body=None, post_params=None, _request_timeout=None):
        if isinstance(_request_timeout, tuple):
            connect, read = _request_timeout
            _request_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        return await super().request(method, url, headers=headers, body=body, post_params=post_params,
                                     _request_timeout=_request_timeout)


async def _load() -> aio.Configuration:
    """A fresh client configuration: runs the exec plugin, reads the token files, again on every call."""
    if _source is None:
        configure()
    cfg = aio.Configuration()
    if _source == IN_CLUSTER:
        # Installs a hook that re-reads the (rotated, projected) service-account token every minute.
        aio_config.load_incluster_config(client_configuration=cfg)
    else:
        await aio_config.load_kube_config(config_file=_source, client_configuration=cfg, persist_config=False)
    return cfg


def _new_client(cfg: aio.Configuration) -> aio.ApiClient:
    api = aio.ApiClient(cfg)
    api.rest_client = _Rest(cfg)  # no session yet: aiohttp's is made on the first request
    return api


# What the ApiClient's session was built with (its TLS context, its proxy): new credentials that change one of
# these need a new ApiClient; new tokens or passwords go into the live configuration.
_TRANSPORT = ("host", "ssl_ca_cert", "ca_cert_data", "cert_file", "key_file", "verify_ssl", "tls_server_name",
              "proxy", "proxy_headers")


def _retire(api: aio.ApiClient) -> None:
    """Close a replaced client once the calls still using it are done (or at close())."""
    async def later() -> None:
        try:
            await asyncio.sleep(RETIRE_AFTER)
        finally:
            await api.close()

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # configure() outside the loop: its session, if any, went with that loop
        return
    if loop is _loop:
        task = loop.create_task(later())
        _retiring.add(task)
        task.add_done_callback(_retiring.discard)


def _bind_to_running_loop() -> asyncio.Lock:
    """The client and the lock of the running loop; a client of another (finished) loop is forgotten."""
    global _api, _loop, _lock
    loop = asyncio.get_running_loop()
    if _loop is not loop or _lock is None:
        _api, _loop, _lock = None, loop, asyncio.Lock()
        _retiring.clear()
    return _lock


async def _client() -> tuple[aio.ApiClient, int]:
    """The running loop's ApiClient (made now if there is none) and the generation of its credentials."""
    global _api
    lock = _bind_to_running_loop()
    if _api is None:
        async with lock:
            if _api is None:
                _api = _new_client(await _load())
    return _api, _generation


async def _reauthenticate(seen: int) -> aio.ApiClient:
    """After a 401: load the credentials again, unless another call did since `seen`; the client to retry with."""
    global _api, _generation
    lock = _bind_to_running_loop()
    async with lock:
        if _api is None:
            _api = _new_client(await _load())
        elif _generation == seen:
            fresh = await _load()
            live = _api.configuration
            if all(getattr(live, k, None) == getattr(fresh, k, None) for k in _TRANSPORT):
                live.api_key, live.api_key_prefix = fresh.api_key, fresh.api_key_prefix
                live.username, live.password = fresh.username, fresh.password
                live.refresh_api_key_hook = fresh.refresh_api_key_hook
            else:
                _retire(_api)
                _api = _new_client(fresh)
        _generation += 1
        return _api


def _error(e: aio.ApiException) -> ApiException:
    error = ApiException(status=e.status, reason=e.reason, body=e.body, data=e.data)
    error.headers = e.headers
    return error


async def _call(request: Callable[[aio.ApiClient], Awaitable[Any]]) -> Any:
    """request(api); our ApiException for a refusal. A 401 reloads the credentials and tries once more."""
    api, seen = await _client()
    try:
        return await request(api)
    except aio.ApiException as e:
        if e.status != 401:
            raise _error(e) from e
    api = await _reauthenticate(seen)
    try:
        return await request(api)
    except aio.ApiException as e:
        raise _error(e) from e


async def close() -> None:
    """Close the client's session (on the operator's exit; the next call makes a new one)."""
    global _api
    api, _api = _api, None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None or running is not _loop:
        return  # that session went with its loop
    retiring = list(_retiring)
    for task in retiring:
        task.cancel()
    await asyncio.gather(*retiring, return_exceptions=True)
    if api is not None:
        await api.close()


def _text(value: str) -> str | None:
    """A Secret value as text; None for binary values (a keystore), which no caller can use as a password."""
    try:
        return base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


async def _unless_missing(request: Callable[[aio.ApiClient], Awaitable[Any]]) -> Any:
    """The call's answer, or None when the API server answers 404 (the object does not exist)."""
    try:
        return await _call(request)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


async def read_secret(namespace: str, name: str) -> tuple[bool, dict[str, str | None]] | None:
    """(readable, data) of a Secret, or None when it does not exist.

    Only a Secret labelled READABLE_LABEL=true is decoded; any other comes back as (False, {}), so its content
    never reaches the operator's logic, whoever names it.
    """
    secret = await _unless_missing(lambda api: aio.CoreV1Api(api).read_namespaced_secret(
        name, namespace, _request_timeout=TIMEOUT))
    if secret is None:
        return None
    if ((secret.metadata.labels or {}).get(READABLE_LABEL) or "").lower() != "true":
        return False, {}
    return True, {k: _text(v) for k, v in (secret.data or {}).items()}


async def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await _unless_missing(lambda api: aio.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, _request_timeout=TIMEOUT))


async def list_objects(plural: str, namespace: str) -> list[dict[str, Any]]:
    found = await _call(lambda api: aio.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, _request_timeout=TIMEOUT))
    return found["items"]


async def patch_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Merge-patch `.status`; False when the object is gone (deleted while we reconciled)."""
    found = await _unless_missing(lambda api: _true(aio.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {"status": status}, _request_timeout=TIMEOUT)))
    return found is not None


async def patch_metadata(plural: str, namespace: str, name: str, metadata: dict[str, Any]) -> None:
    """Merge-patch `.metadata` (annotations; with a resourceVersion the API server refuses a stale write: 409)."""
    await _call(lambda api: aio.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, {"metadata": metadata}, _request_timeout=TIMEOUT))


async def _true(answer: Awaitable[Any]) -> bool:
    await answer
    return True


# --- Objects a provisioned HarperCluster owns (StatefulSet, Services, PodDisruptionBudget, Secret, HarperNodes) ---

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
FIELD_MANAGER = "harper-operator"


def _plain(obj: Any) -> dict[str, Any]:
    """A client model as the API's own camelCase dict."""
    global _serializer
    if _serializer is None:  # serializing needs no session: this client never sends anything
        _serializer = aio.ApiClient(aio.Configuration())
    return _serializer.sanitize_for_serialization(obj)


def _patcher(api: aio.ApiClient, kind: str):
    """The patch call of one kind we own, called as f(name, namespace, body, ...)."""
    if kind in _CUSTOM:
        custom, (group, version, plural) = aio.CustomObjectsApi(api), _CUSTOM[kind]
        return lambda name, namespace, body, **kw: custom.patch_namespaced_custom_object(
            group, version, namespace, plural, name, body, **kw)
    core = aio.CoreV1Api(api)
    return {"Service": core.patch_namespaced_service, "Secret": core.patch_namespaced_secret,
            "Pod": core.patch_namespaced_pod, "PersistentVolumeClaim": core.patch_namespaced_persistent_volume_claim,
            "StatefulSet": aio.AppsV1Api(api).patch_namespaced_stateful_set,
            "PodDisruptionBudget": aio.PolicyV1Api(api).patch_namespaced_pod_disruption_budget,
            }[kind]


def _deleter(api: aio.ApiClient, kind: str):
    """What the operator deletes itself: a pod (rolling restart), a HarperNode (scale-down) and a volume claim whose
    data was proven safe elsewhere (scale-down); Kubernetes' garbage collector removes the rest through owner
    references."""
    if kind == "HarperNode":
        custom = aio.CustomObjectsApi(api)
        return lambda name, namespace, **kw: custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "harpernodes", name, **kw)
    core = aio.CoreV1Api(api)
    return {"Pod": core.delete_namespaced_pod,
            "PersistentVolumeClaim": core.delete_namespaced_persistent_volume_claim}[kind]


def _known(kind: str, known: tuple[str, ...]) -> None:
    """A kind no call here handles is a KeyError before anything is sent, as a lookup in _patcher/_deleter."""
    if kind not in known:
        raise KeyError(kind)


_PATCHED = ("HarperNode", "Service", "Secret", "StatefulSet", "PodDisruptionBudget", "Pod", "PersistentVolumeClaim",
            "Certificate")
# Custom kinds: ours, and cert-manager's Certificate (a provisioned cluster's pod certificates with spec.tls.issuerRef).
_CUSTOM = {"HarperNode": (GROUP, VERSION, "harpernodes"), "Certificate": ("cert-manager.io", "v1", "certificates")}
_DELETED = ("HarperNode", "Pod", "PersistentVolumeClaim")


async def apply(obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of a whole object we own: creates it, or changes only what differs (an unchanged object
    is not written), and takes over fields another manager set on it."""
    _known(obj["kind"], _PATCHED)
    meta = obj["metadata"]
    found = await _call(lambda api: _patcher(api, obj["kind"])(
        meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
        _request_timeout=TIMEOUT))
    return found if isinstance(found, dict) else _plain(found)


async def merge_patch(kind: str, namespace: str, name: str, patch_body: dict[str, Any]) -> bool:
    """JSON merge patch; False when the object is gone."""
    _known(kind, _PATCHED)
    found = await _unless_missing(lambda api: _true(_patcher(api, kind)(
        name, namespace, patch_body, _content_type=MERGE, _request_timeout=TIMEOUT)))
    return found is not None


async def create_secret(obj: dict[str, Any]) -> bool:
    """Create a Secret; False when one of that name exists already (it is never replaced)."""
    try:
        await _call(lambda api: aio.CoreV1Api(api).create_namespaced_secret(
            obj["metadata"]["namespace"], obj, field_manager=FIELD_MANAGER, _request_timeout=TIMEOUT))
        return True
    except ApiException as e:
        if e.status == 409:
            return False
        raise


async def delete(kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
    """Delete one object (only that uid when given, so a successor of the same name survives); False when gone."""
    _known(kind, _DELETED)
    kw = {"body": {"preconditions": {"uid": uid}}} if uid else {}
    try:
        await _call(lambda api: _deleter(api, kind)(name, namespace, _request_timeout=TIMEOUT, **kw))
        return True
    except ApiException as e:
        if e.status in (404, 409):
            return False
        raise


async def read_statefulset(namespace: str, name: str) -> dict[str, Any] | None:
    found = await _unless_missing(lambda api: aio.AppsV1Api(api).read_namespaced_stateful_set(
        name, namespace, _request_timeout=TIMEOUT))
    return None if found is None else _plain(found)


async def list_statefulsets(namespace: str, selector: str) -> list[dict[str, Any]]:
    found = await _call(lambda api: aio.AppsV1Api(api).list_namespaced_stateful_set(
        namespace, label_selector=selector, _request_timeout=TIMEOUT))
    return [_plain(x) for x in found.items]


async def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    found = await _call(lambda api: aio.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=selector, _request_timeout=TIMEOUT))
    return [_plain(x) for x in found.items]


async def list_claims(namespace: str, selector: str) -> list[dict[str, Any]]:
    """Volume claims of a StatefulSet: Kubernetes labels them with the StatefulSet's selector."""
    found = await _call(lambda api: aio.CoreV1Api(api).list_namespaced_persistent_volume_claim(
        namespace, label_selector=selector, _request_timeout=TIMEOUT))
    return [_plain(x) for x in found.items]
