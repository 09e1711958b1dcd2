"""`status` and `plan` (of `harper-operator` and of `kubectl harper`): read-only views of a HarperCluster.

Where the answers come from:

* `status` by default: the resources' `.status`, as the operator last wrote it. No Harper call, no Secret read:
  it works wherever `kubectl get harperclusters` works.
* through the API server (`status --live`; `plan` by default): Harper's operations API is called through the
  API server's proxy subresource of the Service or pod that `operationsUrl` names, with the user's own
  credentials, so the user's RBAC decides (`create` on `services/proxy` or `pods/proxy`, `get` on the Secret).
  A host that is not a cluster Service or pod name (an IP, an external name) is refused and never contacted
  from here. `plan` alone also calls a loopback `operationsUrl` directly: such a Harper listens on this very
  machine (the loopback test bed), and no proxy can reach it.
* `--direct`: every `operationsUrl` is called from this machine, as the operator does (in-cluster, or where
  the names resolve).

The API server removes the `Authorization` header from every request it authenticates, before it proxies it,
so Harper's Basic credentials cannot ride there. Through the proxy, the Harper client logs in with Harper's
`login` operation (credentials in the body) and sends back the session cookie Harper sets
(`authentication.enableSessions`, on by default since Harper 4.2); `logout` ends the session afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, TextIO
from urllib.parse import urlsplit

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from .api import GROUP, READABLE_LABEL, VERSION, HarperClusterSpec, hosts
from .controller.clients import ClientPool
from .controller.loop import intent
from .controller.members import Access, Membership, SecretData, membership, secret_names
from .controller.observe import Sight, look_all
from .harper import models as wire
from .harper.client import HarperClient, _decode
from .harper.errors import HarperError, InvalidTargetError, TransientHarperError, UnexpectedAnswerError
from .harper.probe import ProbeResult

# Exit codes a script can use (docs/cli.md).
OK, FAILED, NOT_FOUND, NOT_READY = 0, 1, 2, 3

TIMEOUT = (5.0, 30.0)  # (connect, read) seconds of every API call
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
NOT_PROBED = "not probed through the API server"


class CliError(Exception):
    """What ends a command with a message on stderr and an exit code."""

    code = FAILED


class NotFound(CliError):
    code = NOT_FOUND


# ----------------------------------------------------------------------------------------------- connection


@dataclass
class Kube:
    """An API client with the user's own credentials, and the namespace a command uses when -n is absent."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str


def _kubeconfig_namespace(path: str, context: str | None) -> str:
    contexts, current = kubernetes.config.list_kube_config_contexts(config_file=path)
    chosen = current if context is None else next((c for c in contexts if c.get("name") == context), None)
    if chosen is None:
        raise CliError(f"context {context!r} is not in the kubeconfig ({path})")
    return ((chosen.get("context") or {}).get("namespace")) or "default"


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """kubectl's choice of credentials: --kubeconfig, else $KUBECONFIG, else in-cluster (a pod's service
    account), else ~/.kube/config; --context picks a context (default: the current one). The namespace is the
    context's (in a pod: the service account's), else "default"."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config = kubernetes.client.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=config)
            try:
                with open(SA_NAMESPACE) as f:
                    namespace = f.read().strip() or "default"
            except OSError:
                namespace = "default"
            return Kube(kubernetes.client.ApiClient(config), namespace)
        path = path or "~/.kube/config"  # the loader expands ~ and reads a KUBECONFIG list (a:b)
        namespace = _kubeconfig_namespace(path, context)
        return Kube(kubernetes.config.new_client_from_config(config_file=path, context=context), namespace)
    except ConfigException as e:
        raise CliError(f"kubeconfig: {e}") from None


def _api_error(e: ApiException, what: str) -> CliError:
    try:
        message = json.loads(e.body).get("message") or ""
    except (TypeError, ValueError, AttributeError):
        message = ""
    text = f"{what}: the API server answered {e.status} {e.reason or ''}".rstrip()
    return (NotFound if e.status == 404 else CliError)(f"{text}: {message}" if message else text)


def _custom(kube: Kube):
    return kubernetes.client.CustomObjectsApi(kube.api)


def get_cluster(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    try:
        return _custom(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, "harperclusters", name,
                                                          _request_timeout=TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            raise NotFound(f"HarperCluster {namespace}/{name} not found") from None
        raise _api_error(e, f"reading HarperCluster {namespace}/{name}") from None


def list_clusters(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    """Every HarperCluster of a namespace, or of every namespace (None)."""
    try:
        if namespace is None:
            found = _custom(kube).list_cluster_custom_object(GROUP, VERSION, "harperclusters",
                                                             _request_timeout=TIMEOUT)
        else:
            found = _custom(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, "harperclusters",
                                                                _request_timeout=TIMEOUT)
    except ApiException as e:
        raise _api_error(e, "listing HarperClusters") from None
    return sorted(found.get("items") or [], key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))


def nodes_of(kube: Kube, cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The HarperNodes whose spec.clusterRef.name names the cluster, in its namespace."""
    namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
    try:
        found = _custom(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, "harpernodes",
                                                            _request_timeout=TIMEOUT)
    except ApiException as e:
        raise _api_error(e, f"listing the HarperNodes of {namespace}") from None
    return sorted((n for n in found.get("items") or []
                   if ((n.get("spec") or {}).get("clusterRef") or {}).get("name") == name),
                  key=lambda n: n["metadata"]["name"])


def _text(value: str) -> str | None:
    try:
        return base64.b64decode(value).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def read_secret(kube: Kube, namespace: str, name: str) -> SecretData | None:
    """A Secret as the operator would see it (content only with the readable label), read with the user's
    credentials: their RBAC decides. None when it does not exist."""
    try:
        secret = kubernetes.client.CoreV1Api(kube.api).read_namespaced_secret(name, namespace,
                                                                              _request_timeout=TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            return None
        return SecretData(readable=False, error=str(_api_error(e, f"reading Secret {namespace}/{name}")))
    if ((secret.metadata.labels or {}).get(READABLE_LABEL) or "").lower() != "true":
        return SecretData(readable=False)
    return SecretData(readable=True, data={k: _text(v) for k, v in (secret.data or {}).items()})


def read_membership(kube: Kube, cluster: Mapping[str, Any], spec: HarperClusterSpec,
                    nodes: list[dict[str, Any]]) -> Membership:
    namespace = cluster["metadata"]["namespace"]
    spec = spec.with_credentials(cluster["metadata"]["name"])
    secrets = {n: read_secret(kube, namespace, n) for n in sorted(secret_names(spec, nodes))}
    return membership(spec, nodes, secrets, namespace=namespace)


# ----------------------------------------------------------------------------------------------- routing

DIRECT, LIVE, AUTO = "direct", "live", "auto"  # how Harper is reached: see the module's docstring


class Refused(ValueError):
    """An operationsUrl that the chosen way of reaching Harper does not contact."""


def _label(value: str) -> bool:
    return 0 < len(value) <= 63 and value.replace("-", "a").isalnum() and value.isascii() and \
        value[0] != "-" and value[-1] != "-" and value == value.lower()


def proxy_path(operations_url: str, cluster_domain: str = "cluster.local") -> str:
    """The API server path that proxies to the Service or pod an operationsUrl names.

    * `<svc>.<ns>.svc[.<cluster domain>]` -> /api/v1/namespaces/<ns>/services/<scheme>:<svc>:<port>/proxy/
    * `<pod>.<svc>.<ns>.svc[.<cluster domain>]` (a pod of a headless Service, which cannot be proxied itself)
      -> /api/v1/namespaces/<ns>/pods/<scheme>:<pod>:<port>/proxy/ (the first label is the pod's name, as for
      the pods of a StatefulSet)

    Anything else raises Refused.
    """
    parts = urlsplit(operations_url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"operationsUrl {operations_url!r} has an invalid port") from None
    labels = host.split(".")
    suffixes = [["svc"], ["svc", *cluster_domain.strip(".").split(".")]]
    for suffix in suffixes:
        if labels[-len(suffix):] == suffix and len(labels) - len(suffix) in (2, 3):
            names = labels[:-len(suffix)]
            break
    else:
        raise Refused(f"{host or operations_url!r} is not the name of a Service or pod of the cluster "
                      f"(<service>.<namespace>.svc or <pod>.<service>.<namespace>.svc, optionally followed by "
                      f".{cluster_domain})")
    if parts.scheme not in ("http", "https") or not all(_label(n) for n in names):
        raise Refused(f"{host!r} does not name a Service or pod the API server can proxy to")
    path = (parts.path or "/").lstrip("/")
    if len(names) == 2:
        service, namespace = names
        return f"/api/v1/namespaces/{namespace}/services/{parts.scheme}:{service}:{port}/proxy/{path}"
    pod, _service, namespace = names
    return f"/api/v1/namespaces/{namespace}/pods/{parts.scheme}:{pod}:{port}/proxy/{path}"


def route(operations_url: str, via: str, cluster_domain: str = "cluster.local") -> str | None:
    """None: call the URL from this machine; else the API server's proxy path. Raises Refused."""
    if via == DIRECT:
        return None
    host = (urlsplit(operations_url).hostname or "").rstrip(".")
    if via == AUTO and (hosts.is_loopback(host) or host == "localhost"):
        return None
    try:
        return proxy_path(operations_url, cluster_domain)
    except Refused as e:
        raise Refused(f"{e}: this command reaches Harper only through the API server and sent nothing there; "
                      "run it with --direct where that URL resolves") from None


def _status_error(raw: bytes) -> str | None:
    """The message of the API server's own error answer (a Status object), None for anything else."""
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("apiVersion") == "v1":
        return str(parsed.get("message") or parsed.get("reason") or "")
    return None


class ProxiedHarperClient(HarperClient):
    """A HarperClient whose every request goes through the API server's proxy subresource.

    Only the transport differs (this overrides HarperClient._exchange): the answers are read, mapped to errors and
    redacted by HarperClient itself. Harper's credentials go in the body of a `login` (the API server drops the
    Authorization header before proxying), and the session cookie Harper answers with goes with every later
    request. The API server does not check Harper's certificate, so tls.verify and the CA bundle play no part.
    """

    def __init__(self, access: Access, path: str, api: Any, *, timeout: float = 10.0) -> None:
        super().__init__(access.operations_url, username=access.username, password=access.password,
                         verify_tls=access.verify_tls, timeout=timeout)
        self.path = path
        self._api = api
        self._cookie: str | None = None
        self._answered_cookies: list[str] = []
        self._login_lock = asyncio.Lock()

    def _post(self, body: dict[str, Any], cookie: str | None, timeout: float) -> tuple[int, bytes, str | None,
                                                                                        list[str]]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if cookie:
            headers["Cookie"] = cookie
        method, url, headers, body, _ = self._api.param_serialize(
            "POST", self.path, header_params=headers, body=body, auth_settings=["BearerToken"])
        resp = self._api.call_api(method, url, header_params=headers, body=body, _request_timeout=(5.0, timeout))
        raw = bytearray()
        try:
            while chunk := resp.response.read(64 * 1024):
                raw += chunk
                if len(raw) > self.max_answer_bytes:
                    break
        finally:
            resp.response.release_conn()
        content_type = resp.response.headers.get("Content-Type") or ""
        charset = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")[1:]
                        if p.strip().lower().startswith("charset=")), None)
        cookies = [c.split(";", 1)[0].strip() for c in resp.response.headers.getlist("Set-Cookie")]
        return resp.status, bytes(raw), charset, [c for c in cookies if "=" in c]

    async def _exchange(self, operation: str, body: dict[str, Any], auth_header: str | None,
                        timeout: float | None, retry_stale: bool) -> tuple[int, Any, str]:
        # auth_header (HarperClient's Basic credentials) is never sent: the API server would drop it.
        if operation != "login" and self._cookie is None:
            await self._log_in()
        try:
            status, raw, charset, cookies = await asyncio.to_thread(
                self._post, body, None if operation == "login" else self._cookie, timeout or self.timeout)
        except Exception as e:  # noqa: BLE001 - the API server unreachable, TLS, kubeconfig credentials
            raise TransientHarperError(operation, None, f"cannot reach the API server: {type(e).__name__}: "
                                                        f"{str(e)[:300]}", url=self.operations_url) from None
        if len(raw) > self.max_answer_bytes:
            raise UnexpectedAnswerError(operation, status, f"answer larger than {self.max_answer_bytes} bytes",
                                        url=self.operations_url)
        if not 200 <= status < 300 and (message := _status_error(raw)) is not None:
            raise self._refusal(operation, status, message)
        if operation == "login":
            self._answered_cookies = cookies
        parsed, text = _decode(raw, charset)
        return status, parsed, text

    def _refusal(self, operation: str, status: int, message: str) -> HarperError:
        """The API server's own refusal (not Harper's answer) as the HarperError it amounts to."""
        where = self.path.split("/proxy/", 1)[0].removeprefix("/api/v1/namespaces/")
        if status in (401, 403):
            return InvalidTargetError(operation, status, f"the API server refused to proxy to {where}: {message} "
                                      "(needs create on services/proxy or pods/proxy there)", url=self.operations_url)
        if status == 404:
            return InvalidTargetError(operation, status, f"the API server found no {where}: {message}",
                                      url=self.operations_url)
        return TransientHarperError(operation, status, f"the API server could not reach Harper at {where}: "
                                                       f"{message}", url=self.operations_url)

    def _session_cookie(self, parsed: Any) -> str:
        if not self._answered_cookies:
            raise InvalidTargetError(
                "login", 200, "Harper answered login without a session cookie (authentication.enableSessions "
                "off?): through the API server, which drops the Authorization header, there is no other way to "
                "send Harper's credentials; run with --direct where operationsUrl resolves", url=self.operations_url)
        return "; ".join(self._answered_cookies)

    async def _log_in(self) -> None:
        async with self._login_lock:
            if self._cookie is None:
                body = {"operation": "login", "username": self.username,
                        "password": self._password.get_secret_value()}
                self._cookie = await self._call("login", body, self._session_cookie, auth=False)

    async def close(self) -> None:
        if self._cookie is not None:
            try:
                await self._call("logout", {"operation": "logout"}, lambda parsed: parsed)
            except HarperError:
                pass  # the session ends by itself in Harper
            self._cookie = None
        await super().close()


class RoutedPool(ClientPool):
    """A ClientPool that reaches each member the chosen way: directly (the pool's own clients), through the API
    server (ProxiedHarperClient), or not at all (InvalidTargetError, which becomes the member's problem)."""

    def __init__(self, api: Any, via: str, cluster_domain: str = "cluster.local", timeout: float = 10.0) -> None:
        super().__init__(timeout=timeout)
        self.api, self.via, self.cluster_domain = api, via, cluster_domain
        self._proxied: dict[Access, ProxiedHarperClient] = {}

    def route(self, operations_url: str) -> str | None:
        return route(operations_url, self.via, self.cluster_domain)

    def proxied(self, access: Access | None) -> bool:
        try:
            return access is not None and self.route(access.operations_url) is not None
        except Refused:
            return False

    def client(self, access: Access) -> HarperClient:
        try:
            path = self.route(access.operations_url)
        except Refused as e:
            raise InvalidTargetError("connect", None, str(e)) from None
        if path is None:
            return super().client(access)
        if access not in self._proxied:
            self._proxied[access] = ProxiedHarperClient(access, path, self.api, timeout=self._timeout)
        return self._proxied[access]

    async def close(self) -> None:
        for client in self._proxied.values():
            await client.close()
        self._proxied.clear()
        await super().close()


def _unprobed(m: Membership, pool: RoutedPool) -> dict[str, Sight]:
    """For members reached through the API server: a last sight whose replication probe still holds, so look_all
    does not open a WebSocket to the replication URL from here. The operator probes it itself; its verdict is in
    the HarperNode's conditions."""
    now = time.monotonic()
    return {x.hostname: Sight(x, status=wire.ClusterStatus(), probe=ProbeResult(reachable=True, error=NOT_PROBED),
                              probed_at=now)
            for x in m.members if x.managed and pool.proxied(x.access)}


async def _look(kube: Kube, m: Membership, via: str, cluster_domain: str) -> tuple[dict[str, Sight], dict[str, str]]:
    """Every managed member's sight, and how each was reached: "api-server", "direct" or "refused"."""
    pool = RoutedPool(kube.api, via, cluster_domain)
    ways = {}
    for x in m.members:
        if x.managed:
            try:
                ways[x.hostname] = "direct" if pool.route(x.access.operations_url) is None else "api-server"
            except Refused:
                ways[x.hostname] = "refused"
    try:
        sights = await look_all(m, pool, _unprobed(m, pool))
    finally:
        await pool.close()
    return sights, ways


# ----------------------------------------------------------------------------------------------- documents


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in ((obj.get("status") or {}).get("conditions") or [])
                 if isinstance(c, dict) and c.get("type") == type_), {})


def _age(obj: Mapping[str, Any], now: datetime | None = None) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cluster_row(cluster: Mapping[str, Any]) -> dict[str, Any]:
    ready = condition(cluster, "Ready")
    return {"namespace": cluster["metadata"].get("namespace"), "name": cluster["metadata"]["name"],
            "readyNodes": (cluster.get("status") or {}).get("readyNodes"), "ready": ready.get("status", "Unknown"),
            "reason": ready.get("reason", ""), "message": ready.get("message", ""), "age": _age(cluster)}


def status_document(cluster: Mapping[str, Any], nodes: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A cluster and its nodes as their .status says, as the operator last wrote it."""
    status = cluster.get("status") or {}
    members = {r.get("name"): r for r in status.get("members") or [] if isinstance(r, dict)}
    out = []
    for node in nodes:
        name, nstatus = node["metadata"]["name"], node.get("status") or {}
        row, ncond = members.get(name), condition(node, "Ready")
        ready = bool(row.get("ready")) if row else ncond.get("status") == "True"
        out.append({
            "name": name, "hostname": (node.get("spec") or {}).get("hostname") or nstatus.get("nodeName") or name,
            "ready": ready, "connectedPeers": nstatus.get("connectedPeers"),
            "message": "" if ready else ((row or {}).get("message") or ncond.get("message") or ""),
            # Never written by the operator (the CRD's default status holds only observedGeneration 0): unknown.
            "peers": None if not set(nstatus) - {"observedGeneration"} else [
                {"name": p.get("name"), "connected": bool(p.get("connected")),
                 "sockets": [{"database": s.get("database"), "connected": bool(s.get("connected"))}
                             for s in p.get("sockets") or []]}
                for p in nstatus.get("peers") or []]})
    return {**cluster_row(cluster), "source": "status", "observedGeneration": status.get("observedGeneration"),
            "generation": cluster["metadata"].get("generation"), "nodes": out}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def live_document(cluster: Mapping[str, Any], m: Membership, sights: Mapping[str, Sight],
                  ways: Mapping[str, str]) -> dict[str, Any]:
    """A cluster and its nodes as Harper answers now (cluster_status of every member)."""
    out = []
    for x in m.members:
        sight = sights.get(x.hostname)
        problem = x.problem or (sight.problem if sight else None)
        peers = None
        if sight is not None and sight.status is not None:
            peers = [{"name": c.name, "connected": c.connected,
                      "sockets": [{"database": s.database, "connected": s.connected, "latencyMs": _ms(s.latency),
                                   "lagMs": _ms(s.lag_ms), "backPressurePercent": _ms(s.back_pressure_percent)}
                                  for s in c.database_sockets]}
                     for c in sorted(sight.status.connections, key=lambda c: c.name or "")]
        out.append({"name": x.resource, "hostname": x.hostname,
                    "via": ways.get(x.hostname),
                    "problem": {"reason": problem.reason, "message": problem.message} if problem else None,
                    "peers": peers})
    return {**cluster_row(cluster), "source": "harper", "nodes": out}


def plan_document(cluster: Mapping[str, Any], spec: HarperClusterSpec, m: Membership,
                  sights: Mapping[str, Sight], ways: Mapping[str, str]) -> dict[str, Any]:
    now = intent(m, sights, cluster, spec)
    left = []
    for x in m.members:
        problem = x.problem or (sights[x.hostname].problem if x.hostname in sights else None)
        if problem:
            left.append({"node": x.resource, "hostname": x.hostname, "reason": problem.reason,
                         "message": problem.message})
    return {"namespace": cluster["metadata"]["namespace"], "name": cluster["metadata"]["name"],
            "operations": [op.describe() for op in now.operations],
            "leftAlone": left,
            "diagnosed": [{"node": n, "reason": p.reason, "message": p.message}
                          for n, p in sorted(now.diagnosed.items())],
            "pendingRestart": [{"node": n, "why": why} for n, why in sorted(now.pending_restart.items())],
            "throughApiServer": sorted(h for h, way in ways.items() if way == "api-server")}


# ----------------------------------------------------------------------------------------------- rendering


def table(rows: list[tuple], out: TextIO) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")


def dump(doc: Any, output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(yaml.safe_dump(doc, sort_keys=False))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _fmt(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def status_rows(doc: Mapping[str, Any]) -> list[tuple]:
    """One row per node, peer and database: NODE PEER DATABASE CONNECTED MESSAGE."""
    rows: list[tuple] = [("NODE", "PEER", "DATABASE", "CONNECTED", "MESSAGE")]
    for node in doc["nodes"]:
        mine: list[list] = []
        if node["peers"] is None:
            mine.append([node["hostname"], "-", "-", "unknown"])
        elif not node["peers"]:
            mine.append([node["hostname"], "-", "-", "none"])
        for peer in node["peers"] or []:
            for s in peer["sockets"] or [None]:
                mine.append([node["hostname"], peer["name"] or "?", s["database"] if s else "-",
                             _yes(s["connected"] if s else peer["connected"])])
        rows += [(*r, node["message"] if i == 0 else "") for i, r in enumerate(mine)]
    return rows


def live_rows(doc: Mapping[str, Any]) -> list[tuple]:
    """NODE PEER DATABASE CONNECTED LATENCY LAG BACKPRESSURE, as Harper answers now."""
    rows: list[tuple] = [("NODE", "PEER", "DATABASE", "CONNECTED", "LATENCY", "LAG", "BACKPRESSURE")]
    for node in doc["nodes"]:
        if node["peers"] is None:
            rows.append((node["hostname"], "-", "-", "unknown", "-", "-",
                         node["problem"]["reason"] if node["problem"] else "-"))
            continue
        if not node["peers"]:
            rows.append((node["hostname"], "-", "-", "no peers", "-", "-", "-"))
        for peer in node["peers"]:
            for s in peer["sockets"] or [None]:
                rows.append((node["hostname"], peer["name"] or "?", s["database"] if s else "-",
                             _yes(bool(s and s["connected"])), _fmt(s["latencyMs"] if s else None, "ms"),
                             _fmt(s["lagMs"] if s else None, "ms"), _fmt(s["backPressurePercent"] if s else None, "%")))
    return rows


def plan_lines(doc: Mapping[str, Any]) -> list[str]:
    lines = [f"# {x['node']} ({x['hostname']}) is left alone: {x['reason']}: {x['message']}" for x in doc["leftAlone"]]
    lines += [f"# {x['node']} is left alone: {x['reason']}: {x['message']}" for x in doc["diagnosed"]]
    lines += doc["operations"]
    lines += [f"# {x['node']}: waits for a restart ({x['why']})" for x in doc["pendingRestart"]]
    if doc["throughApiServer"]:
        lines.append(f"# read through the API server: {', '.join(doc['throughApiServer'])} (their replication "
                     "endpoints were not probed from here; the operator's verdict is in their conditions)")
    if not doc["operations"]:
        lines.append("nothing to do")
    return lines


# ----------------------------------------------------------------------------------------------- commands


@dataclass
class Options:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None  # None: the context's
    output: str = "table"
    via: str | None = None  # None: status from .status; else DIRECT, LIVE or AUTO
    all_namespaces: bool = False
    cluster_domain: str = "cluster.local"
    err: TextIO | None = field(default=None, repr=False)  # None: sys.stderr


def status(cluster: str | None, opts: Options, out: TextIO | None = None) -> int:
    """One cluster's mesh, or a list of clusters (no name: the namespace's; -A: every namespace's). Exit code 3
    when a cluster shown is not Ready."""
    out = out or sys.stdout
    if cluster and opts.all_namespaces:
        raise CliError("a cluster name and --all-namespaces exclude each other")
    if opts.via is not None and not cluster:
        raise CliError("--live and --direct need a cluster name")
    kube = connect(opts.kubeconfig, opts.context)
    namespace = opts.namespace or kube.namespace
    if not cluster:
        found = list_clusters(kube, None if opts.all_namespaces else namespace)
        rows = [cluster_row(c) for c in found]
        if opts.output != "table":
            dump({"items": rows}, opts.output, out)
        elif not rows:
            (opts.err or sys.stderr).write("No HarperClusters found" + ("" if opts.all_namespaces else f" in {namespace}") + "\n")
        else:
            head = ("NAMESPACE",) if opts.all_namespaces else ()
            table([(*head, "NAME", "READY-NODES", "READY", "REASON", "AGE")] +
                  [((r["namespace"],) if opts.all_namespaces else ()) +
                   (r["name"], r["readyNodes"] or "-", r["ready"], r["reason"] or "-", r["age"]) for r in rows], out)
        return NOT_READY if any(r["ready"] != "True" for r in rows) else OK
    body = get_cluster(kube, namespace, cluster)
    nodes = nodes_of(kube, body)
    if opts.via is None:
        doc = status_document(body, nodes)
        rows = status_rows(doc)
    else:
        spec = _spec(body)
        m = read_membership(kube, body, spec, nodes)
        sights, ways = asyncio.run(_look(kube, m, opts.via, opts.cluster_domain))
        doc = live_document(body, m, sights, ways)
        rows = live_rows(doc)
    if opts.output == "table":
        table(rows, out)
    else:
        dump(doc, opts.output, out)
    if doc["ready"] != "True":
        (opts.err or sys.stderr).write(f"HarperCluster {namespace}/{cluster} is not Ready: {doc['reason'] or doc['ready']}"
                       f"{': ' + doc['message'] if doc['message'] else ''}\n")
        return NOT_READY
    return OK


def _spec(body: Mapping[str, Any]) -> HarperClusterSpec:
    try:
        return HarperClusterSpec.model_validate(body.get("spec") or {})
    except ValueError as e:
        raise CliError(f"HarperCluster {body['metadata']['name']} has a spec the operator cannot read: {e}") from None


def plan(cluster: str, opts: Options, out: TextIO | None = None) -> int:
    """A dry run of one reconcile: the operations, one per line, or 'nothing to do'. Writes nothing."""
    out = out or sys.stdout
    kube = connect(opts.kubeconfig, opts.context)
    namespace = opts.namespace or kube.namespace
    body = get_cluster(kube, namespace, cluster)
    spec = _spec(body)
    m = read_membership(kube, body, spec, nodes_of(kube, body))
    sights, ways = asyncio.run(_look(kube, m, opts.via or AUTO, opts.cluster_domain))
    doc = plan_document(body, spec, m, sights, ways)
    if opts.output == "table":
        out.write("".join(line + "\n" for line in plan_lines(doc)))
    else:
        dump(doc, opts.output, out)
    return OK
