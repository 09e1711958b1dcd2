"""Async client for one Harper node's operations API.

One HarperClient per node: it owns one aiohttp session (one connection pool). Every call has a
timeout, TLS is verified unless told otherwise, and every call ends with one observer callback
`observer(operation, outcome, seconds)` where outcome is ok / transient / permanent /
false_success; the operator feeds its metrics (and its count of writes) from there.

What the client does NOT do: retry failed writes, or treat a 200 as proof. Harper 4.7 answers
200 to writes that half-failed (FalseSuccessError here) and even to some that silently did
nothing; verifying through cluster_status and probe_replication is the caller's job.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from pydantic import SecretStr, ValidationError

from .errors import (
    AuthenticationError,
    AuthorizationError,
    FalseSuccessError,
    HarperError,
    OperationNotFoundError,
    PeerRejectedError,
    PeerUnreachableError,
    RequestValidationError,
    TLSVerificationError,
    TransientHarperError,
    UnexpectedAnswerError,
    UnknownNodeError,
    parse_peer_failure,
)
from .models import (
    FALSE_SUCCESS_MARKER,
    ClusterStatus,
    ConfigureClusterResult,
    NodeRequest,
    NodeWriteResult,
    Route,
    RoutesResult,
    Tokens,
    parse_routes,
)
from .routes import add_routes, remove_routes
from .tls import client_ssl_context

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float], None]
T = TypeVar("T")

# aiohttp drops idle pooled sockets after this many seconds; Harper closes idle keep-alive
# sockets after 30 s, so staying below that avoids writing into a socket Harper is closing.
_KEEPALIVE_SECONDS = 15.0
# Renew an operation token this long before it expires (capped at a fifth of its lifetime).
_TOKEN_RENEW_MARGIN = timedelta(seconds=60)
# fastify answers malformed bodies itself: {"statusCode":400,"error":"Bad Request","message":...}
_HTTP_REASONS = {"Bad Request", "Unauthorized", "Forbidden", "Not Found", "Internal Server Error",
                 "Service Unavailable", "Method Not Allowed", "Payload Too Large", "Request Timeout"}


class _NotJson:
    """Marker for an answer body that is not JSON."""


_NOT_JSON = _NotJson()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(f"cannot send {type(value).__name__} to Harper")


def _quoted(message: str) -> str | None:
    """The first '...'-quoted part of a Harper message (the URL or node name it acted on)."""
    start = message.find("'")
    end = message.find("'", start + 1)
    return message[start + 1:end] if start >= 0 and end > start else None


class HarperClient:
    """Operations API client for one node. Use as `async with HarperClient(...) as c:`."""

    def __init__(self, operations_url: str, *, username: str, password: str | SecretStr,
                 verify_tls: bool = True, ca_pem: str | None = None, timeout: float = 10.0,
                 use_token: bool = False, observer: Observer | None = None,
                 write_timeout: float | None = None) -> None:
        parts = urlsplit(operations_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("operations_url must look like https://host:9925")
        if parts.username or parts.password:
            raise ValueError("put credentials in username/password, not in operations_url")
        if timeout <= 0 or (write_timeout is not None and write_timeout <= 0):
            raise ValueError("timeouts must be positive")
        base_path = parts.path.rstrip("/")
        self.operations_url = urlunsplit((parts.scheme, parts.netloc, base_path + "/", "", ""))
        self.health_url = urlunsplit((parts.scheme, parts.netloc, base_path + "/health", "", ""))
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self.verify_tls = verify_tls
        self.timeout = float(timeout)
        # Writes may wait on the peer (a first join signs a certificate there, ~2 s on loopback).
        self.write_timeout = float(write_timeout) if write_timeout is not None else self.timeout
        self.use_token = use_token
        self._observer = observer
        self._ssl: ssl.SSLContext | bool = client_ssl_context(verify_tls, ca_pem) if parts.scheme == "https" else True
        self._session: aiohttp.ClientSession | None = None
        self._tokens: Tokens | None = None
        self._token_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        return (f"HarperClient(operations_url={self.operations_url!r}, username={self.username!r}, "
                f"verify_tls={self.verify_tls}, use_token={self.use_token})")

    __str__ = __repr__

    async def __aenter__(self) -> "HarperClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily so the session binds to the loop that actually uses it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=8, keepalive_timeout=_KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  headers={"Content-Type": "application/json"})
        return self._session

    # ------------------------------------------------------------------ secrets

    @property
    def _basic(self) -> str:
        raw = f"{self.username}:{self._password.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _secrets(self, extra: Iterable[str] = ()) -> list[str]:
        found = [self._password.get_secret_value(), self._basic.split(" ", 1)[1], *extra]
        if self._tokens is not None:
            found.append(self._tokens.operation_token.get_secret_value())
            if self._tokens.refresh_token is not None:
                found.append(self._tokens.refresh_token.get_secret_value())
        # Longest first so a secret containing another is replaced whole; tiny strings are skipped
        # because replacing "a" everywhere would only make messages unreadable.
        return sorted({s for s in found if s and len(s) >= 3}, key=len, reverse=True)

    def _redact(self, text: str, extra: Iterable[str] = ()) -> str:
        for secret in self._secrets(extra):
            text = text.replace(secret, "***")
        return text

    # ------------------------------------------------------------------ observed calls

    def _observe(self, operation: str, outcome: str, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(operation, outcome, seconds)
        except Exception:  # a broken metrics hook must never break a reconcile
            log.exception("Harper client observer failed")

    async def _call(self, operation: str, body: dict[str, Any], interpret: Callable[[Any], T], *,
                    timeout: float | None = None, retry_stale: bool = False,
                    secrets: Sequence[str] = (), auth: bool | str = True) -> T:
        """One observed operation: send (renewing a token once if needed), map errors, interpret.

        `auth`: True = this client's credentials (Basic, or a Bearer token it renews), False = no
        header, a string = that exact header (used for the refresh token).
        """
        start = time.monotonic()
        outcome = "transient"  # also what a cancelled call reports: its effect is unknown
        try:
            parsed = await self._send_authorized(operation, body, timeout=timeout, retry_stale=retry_stale,
                                                 auth=auth)
            try:
                result = interpret(parsed)
            except ValidationError as exc:
                raise UnexpectedAnswerError(operation, 200, f"answer has an unexpected shape: {exc.error_count()} "
                                            f"problem(s), first: {exc.errors(include_input=False)[0]['msg']}",
                                            url=self.operations_url) from None
            outcome = "ok"
            return result
        except HarperError as exc:
            outcome = exc.outcome
            exc.message = self._redact(exc.message, secrets)
            exc.args = (exc.operation, exc.status, exc.message)
            raise
        finally:
            seconds = time.monotonic() - start
            log.debug("harper %s %s -> %s in %.3fs", self.operations_url, operation, outcome, seconds)
            self._observe(operation, outcome, seconds)

    async def _send_authorized(self, operation: str, body: dict[str, Any], *, timeout: float | None,
                               retry_stale: bool, auth: bool | str) -> Any:
        if isinstance(auth, str):
            header: str | None = auth
        else:
            header = await self._auth_header() if auth else None
        status, parsed, text = await self._exchange(operation, body, header, timeout, retry_stale)
        if auth is True and self.use_token and self._token_rejected(status, parsed, text):
            # An expired or revoked operation token: renew once (refresh, else log in) and resend.
            await self._renew_tokens(stale_header=header)
            header = await self._auth_header()
            status, parsed, text = await self._exchange(operation, body, header, timeout, retry_stale)
        if 200 <= status < 300:
            if parsed is _NOT_JSON:
                raise UnexpectedAnswerError(operation, status, f"answer is not JSON: {text[:200]!r}",
                                            url=self.operations_url)
            return parsed
        raise self._error_for(operation, status, parsed, text)

    async def _exchange(self, operation: str, body: dict[str, Any], auth_header: str | None,
                        timeout: float | None, retry_stale: bool) -> tuple[int, Any, str]:
        """POST one body; transport failures become HarperErrors. Returns (status, json|_NOT_JSON, text)."""
        session = self._get_session()
        headers = {"Authorization": auth_header} if auth_header else None
        data = json.dumps(body, default=_json_default)
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.timeout)
        attempts = 2 if retry_stale else 1
        for attempt in range(attempts):
            try:
                async with session.post(self.operations_url, data=data, headers=headers,
                                        timeout=client_timeout) as resp:
                    text = await resp.text(errors="replace")
                    try:
                        parsed: Any = json.loads(text) if text else None
                    except json.JSONDecodeError:
                        parsed = _NOT_JSON
                    return resp.status, parsed, text
            except aiohttp.ClientSSLError as exc:
                raise TLSVerificationError(operation, None, f"TLS to the operations API failed: {exc}",
                                           url=self.operations_url) from None
            except aiohttp.ClientConnectorError as exc:
                raise TransientHarperError(operation, None, f"cannot connect: {exc.os_error or exc}",
                                           url=self.operations_url) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError, aiohttp.ClientOSError,
                    aiohttp.ClientPayloadError) as exc:
                # A pooled connection Harper had just closed (restart, idle timeout): reads retry once.
                if attempt + 1 < attempts:
                    log.debug("retrying %s after a dropped connection: %s", operation, exc)
                    continue
                raise TransientHarperError(operation, None, f"connection lost: {type(exc).__name__}: {exc}",
                                           url=self.operations_url, request_sent=True) from None
            except asyncio.TimeoutError:
                raise TransientHarperError(operation, None, f"no answer within {timeout or self.timeout:g}s",
                                           url=self.operations_url, request_sent=True) from None
            except aiohttp.InvalidURL as exc:
                raise UnexpectedAnswerError(operation, None, f"invalid URL: {exc}", url=self.operations_url) from None
            except aiohttp.ClientError as exc:
                raise TransientHarperError(operation, None, f"{type(exc).__name__}: {exc}",
                                           url=self.operations_url, request_sent=True) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _message(status: int, parsed: Any, text: str) -> str:
        if isinstance(parsed, dict):
            err, msg = parsed.get("error"), parsed.get("message")
            if isinstance(msg, str) and ("statusCode" in parsed or err in _HTTP_REASONS or err is None):
                return msg
            if isinstance(err, str):
                return err
            if err is not None:
                return json.dumps(err, default=str)
        if isinstance(parsed, str):
            return parsed
        return (text or "").strip()[:500] or f"HTTP {status}"

    def _error_for(self, operation: str, status: int, parsed: Any, text: str) -> HarperError:
        message = self._message(status, parsed, text)
        url = self.operations_url
        if status == 401:
            return AuthenticationError(operation, status, message, url=url)
        if status == 403:
            access = parsed.get("unauthorized_access") if isinstance(parsed, dict) else None
            detail = f"{message}: {'; '.join(map(str, access))}" if access else message
            return AuthorizationError(operation, status, detail, url=url,
                                      unauthorized_access=access if isinstance(access, list) else None)
        if status == 400:
            if message.startswith("Operation '") and message.endswith("' not found"):
                return OperationNotFoundError(operation, status, message, url=url)
            if operation == "remove_node" and message.endswith(" does not exist"):
                return UnknownNodeError(operation, status, message, url=url,
                                        node_name=message[: -len(" does not exist")])
            return RequestValidationError(operation, status, message, url=url)
        if status in (408, 429) or status >= 500:
            peer = parse_peer_failure(message)
            if peer is not None and peer.rejected:
                return PeerRejectedError(operation, status, message, url=url, peer=peer)
            if peer is not None:
                return PeerUnreachableError(operation, status, message, url=url, peer=peer)
            return TransientHarperError(operation, status, message, url=url, request_sent=True)
        return UnexpectedAnswerError(operation, status, message, url=url)

    # ------------------------------------------------------------------ tokens

    async def _auth_header(self) -> str:
        if not self.use_token:
            return self._basic
        tokens = await self._current_tokens()
        return "Bearer " + tokens.operation_token.get_secret_value()

    @staticmethod
    def _expiring(tokens: Tokens, refresh: bool = False) -> bool:
        expires = tokens.refresh_expires_at if refresh else tokens.operation_expires_at
        if expires is None:
            return False  # unknown lifetime: rely on the 401 path
        issued = tokens.refresh_issued_at if refresh else tokens.operation_issued_at
        margin = _TOKEN_RENEW_MARGIN
        if issued is not None:
            margin = min(margin, (expires - issued) / 5)
        return datetime.now(timezone.utc) >= expires - margin

    @staticmethod
    def _token_rejected(status: int, parsed: Any, text: str) -> bool:
        if status == 401:
            return True
        return status == 403 and "token" in HarperClient._message(status, parsed, text).lower()

    async def _current_tokens(self) -> Tokens:
        async with self._token_lock:
            if self._tokens is None or self._expiring(self._tokens):
                self._tokens = await self._obtain_tokens(self._tokens)
            return self._tokens

    async def _renew_tokens(self, stale_header: str | None) -> None:
        async with self._token_lock:
            current = self._tokens
            if current is not None and stale_header != "Bearer " + current.operation_token.get_secret_value():
                return  # another task renewed while this one waited for the lock
            self._tokens = await self._obtain_tokens(current)

    async def _obtain_tokens(self, current: Tokens | None) -> Tokens:
        """Refresh with the refresh token when it is still good, else log in with the password."""
        if current is not None and current.refresh_token is not None and not self._expiring(current, refresh=True):
            try:
                fresh = await self._refresh_operation_token(current.refresh_token)
                return Tokens(operation_token=fresh.operation_token, refresh_token=current.refresh_token)
            except (AuthenticationError, AuthorizationError, RequestValidationError) as exc:
                log.info("refreshing the operation token failed (%s); logging in again", type(exc).__name__)
        return await self._login()

    async def _login(self) -> Tokens:
        body = {"operation": "create_authentication_tokens", "username": self.username,
                "password": self._password.get_secret_value()}
        # Credentials go in the body: this operation needs no Authorization header.
        return await self._call("create_authentication_tokens", body, Tokens.model_validate, auth=False)

    async def _refresh_operation_token(self, refresh_token: SecretStr) -> Tokens:
        # Harper reads the refresh token from the Authorization header for this operation.
        secret = refresh_token.get_secret_value()
        return await self._call("refresh_operation_token", {"operation": "refresh_operation_token"},
                                Tokens.model_validate, auth="Bearer " + secret, secrets=[secret])

    async def create_authentication_tokens(self) -> Tokens:
        """New operation + refresh tokens for this client's user (installed when use_token is on)."""
        tokens = await self._login()
        if self.use_token:
            async with self._token_lock:
                self._tokens = tokens
        return tokens

    # ------------------------------------------------------------------ operations

    async def health(self) -> bool:
        """GET /health (no auth). False on any failure, never raises."""
        start = time.monotonic()
        healthy = False
        try:
            session = self._get_session()
            timeout = aiohttp.ClientTimeout(total=min(self.timeout, 5.0))
            async with session.get(self.health_url, timeout=timeout) as resp:
                await resp.read()
                healthy = resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ssl.SSLError) as exc:
            log.debug("health of %s failed: %s", self.health_url, exc)
        finally:
            self._observe("health", "ok" if healthy else "transient", time.monotonic() - start)
        return healthy

    async def operation(self, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Any operation, answer returned as parsed JSON (errors mapped like every other call)."""
        name = str(body.get("operation", "")) or "unknown"
        return await self._call(name, dict(body), lambda parsed: parsed, timeout=timeout)

    async def cluster_status(self) -> ClusterStatus:
        return await self._call("cluster_status", {"operation": "cluster_status"},
                                ClusterStatus.model_validate, retry_stale=True)

    async def get_configuration(self) -> dict[str, Any]:
        def interpret(parsed: Any) -> dict[str, Any]:
            if not isinstance(parsed, dict):
                raise UnexpectedAnswerError("get_configuration", 200, "configuration is not an object",
                                            url=self.operations_url)
            return parsed

        return await self._call("get_configuration", {"operation": "get_configuration"}, interpret,
                                retry_stale=True)

    def _node_write(self, operation: str, parsed: Any) -> NodeWriteResult:
        message = parsed.get("message") if isinstance(parsed, dict) else parsed
        if not isinstance(message, str):
            raise UnexpectedAnswerError(operation, 200, "answer has no message", url=self.operations_url)
        if FALSE_SUCCESS_MARKER in message or not message.startswith("Successfully"):
            raise FalseSuccessError(operation, 200, message, url=self.operations_url,
                                    peer=parse_peer_failure(message))
        return NodeWriteResult(message=message, url=_quoted(message))

    async def add_node(self, req: NodeRequest) -> NodeWriteResult:
        """Add (or re-add: Harper treats a repeat as an update) a peer, seen from this node."""
        return await self._call("add_node", req.to_wire("add_node"), lambda p: self._node_write("add_node", p),
                                timeout=self.write_timeout, secrets=req.secrets())

    # Harper documents set_node as an alias, but 4.7.29 answers 400 "Operation 'set_node' not found".
    set_node = add_node

    async def update_node(self, req: NodeRequest) -> NodeWriteResult:
        return await self._call("update_node", req.to_wire("update_node"),
                                lambda p: self._node_write("update_node", p),
                                timeout=self.write_timeout, secrets=req.secrets())

    async def remove_node(self, hostname: str) -> str:
        """Remove a peer by node name. Not idempotent: an unknown name raises UnknownNodeError."""
        def interpret(parsed: Any) -> str:
            message = parsed.get("message") if isinstance(parsed, dict) else parsed
            if not isinstance(message, str) or not message.startswith("Successfully removed"):
                raise FalseSuccessError("remove_node", 200, str(message), url=self.operations_url)
            return message

        # Harper tells the removed peer before answering, so this may wait on that peer.
        return await self._call("remove_node", {"operation": "remove_node", "hostname": hostname}, interpret,
                                timeout=self.write_timeout)

    async def configure_cluster(self, connections: Sequence[NodeRequest]) -> ConfigureClusterResult:
        """add_node for each connection, in one call. Never removes nodes missing from the list.

        Each entry also carries `node_name`, the only way Harper can name it in `failed_nodes`.
        Raises FalseSuccessError (with `.result`) when any entry failed, even on a 200.
        """
        wire = []
        secrets: list[str] = []
        for req in connections:
            entry = req.to_wire("add_node")
            entry.pop("operation")
            entry["node_name"] = req.node_name
            wire.append(entry)
            secrets.extend(req.secrets())

        def interpret(parsed: Any) -> ConfigureClusterResult:
            result = ConfigureClusterResult.model_validate(parsed)
            if not result.ok:
                failed = [str(n) for n in result.failed_nodes] + [
                    f"{c.node_name}: {c.message}" for c in result.connections if c.failed]
                raise FalseSuccessError("configure_cluster", 200, f"{result.message} failed: {'; '.join(failed)}",
                                        url=self.operations_url, result=result)
            return result

        return await self._call("configure_cluster", {"operation": "configure_cluster", "connections": wire},
                                interpret, timeout=self.write_timeout * max(1, len(wire)), secrets=secrets)

    # ------------------------------------------------------------------ routes

    @staticmethod
    def _routes(routes: Iterable[Route | str | dict[str, Any]]) -> list[Route]:
        return [r if isinstance(r, Route) else Route.model_validate(r) for r in routes]

    async def _configured_routes(self) -> list[Any]:
        config = await self.get_configuration()
        replication = config.get("replication")
        routes = replication.get("routes") if isinstance(replication, dict) else None
        return list(routes) if isinstance(routes, list) else []

    async def cluster_get_routes(self) -> list[Route]:
        """The routes in harperdb-config.yaml now, i.e. what the next start will use.

        Read through get_configuration: 4.7.29's own cluster_get_routes answers from the copy
        taken at start-up (see routes.py); loaded_routes() returns that copy.
        """
        return parse_routes(await self._configured_routes())

    async def cluster_set_routes(self, routes: Iterable[Route | str | dict[str, Any]]) -> RoutesResult:
        """Add routes to harperdb-config.yaml (they connect after restart()).

        Read-modify-write of the file (get_configuration + set_configuration), because Harper's
        cluster_set_routes can replace or resurrect routes (routes.py). No write when nothing is new.
        """
        current = await self._configured_routes()
        new, added, skipped = add_routes(current, self._routes(routes))
        if added:
            await self._write_routes(new)
        return RoutesResult(message=f"{len(added)} route(s) added", added=added, skipped=skipped)

    async def cluster_delete_routes(self, routes: Iterable[Route | str | dict[str, Any]]) -> RoutesResult:
        """Remove routes from harperdb-config.yaml, whichever spelling they were stored in.

        Read-modify-write like cluster_set_routes: Harper's cluster_delete_routes, on a node that
        started without routes, deletes none of the ones asked for and empties the list.
        """
        current = await self._configured_routes()
        new, deleted, skipped = remove_routes(current, self._routes(routes))
        if deleted:
            await self._write_routes(new)
        return RoutesResult(message=f"{len(deleted)} route(s) deleted", deleted=deleted, skipped=skipped)

    async def replace_routes(self, routes: Iterable[Route | str | dict[str, Any]]) -> str:
        """Write exactly these routes to the config file. Takes effect after restart()."""
        return await self._write_routes([r.to_wire() for r in self._routes(routes)])

    async def _write_routes(self, entries: list[Any]) -> str:
        def interpret(parsed: Any) -> str:
            message = parsed.get("message") if isinstance(parsed, dict) else parsed
            if not isinstance(message, str) or "successfully" not in message.lower():
                raise FalseSuccessError("set_configuration", 200, str(message), url=self.operations_url)
            return message

        return await self._call("set_configuration", {"operation": "set_configuration", "replication_routes": entries},
                                interpret)

    async def loaded_routes(self) -> list[Route]:
        """Harper's own cluster_get_routes answer: the routes read at start-up (plus any added by
        Harper's cluster_set_routes since), i.e. roughly what the running process dialled."""
        def interpret(parsed: Any) -> list[Route]:
            if isinstance(parsed, dict):  # NATS-era shape {"hub": [...], "leaf": [...]}
                return parse_routes(list(parsed.get("hub") or []) + list(parsed.get("leaf") or []))
            return parse_routes(parsed)

        return await self._call("cluster_get_routes", {"operation": "cluster_get_routes"}, interpret,
                                retry_stale=True)

    # ------------------------------------------------------------------ process

    async def restart(self) -> str:
        """Ask Harper to restart. Answers at once; the node is down for ~10 s a moment later.

        Seen on 4.7.29 (foreground `harperdb run`): the original process exits and a new detached
        process takes over the ports, so a supervisor watching the first PID sees it exit; with
        HARPER_EXIT_ON_RESTART=1 (what the e2e test bed sets) Harper just exits 0 for the
        supervisor (kubelet) to start it again. Poll health() until it answers.
        """
        def interpret(parsed: Any) -> str:
            message = parsed.get("message") if isinstance(parsed, dict) else parsed
            return str(message)

        return await self._call("restart", {"operation": "restart"}, interpret)
