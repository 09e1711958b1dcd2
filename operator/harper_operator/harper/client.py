"""Async client for one Harper node's operations API.

One HarperClient per node: it owns one aiohttp session (one connection pool). Every call has a
timeout, TLS is verified unless told otherwise, and every call ends with one observer callback
`observer(operation, outcome, seconds)` where outcome is ok / transient / permanent /
false_success; the operator feeds its metrics (and its count of writes) from there.

What the client does NOT do: retry failed writes, or treat a 200 as proof. Harper 4.7 answers
200 to writes that half-failed (FalseSuccessError here) and even to some that silently did
nothing; verifying through cluster_status and probe_replication is the caller's job.

Only HarperError leaves the client, so a caller can treat any failure as that node's problem:
a bad setting is an InvalidTargetError from the constructor, and an answer the client cannot
read (junk, too deep, too large) is an UnexpectedAnswerError. Answers are read with a byte cap
and every error message is redacted, then clipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import ssl
import time
from dataclasses import dataclass, replace
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

import aiohttp
from pydantic import SecretStr, ValidationError

from .errors import (
    AuthenticationError,
    AuthorizationError,
    FalseSuccessError,
    HarperError,
    InvalidTargetError,
    OperationNotFoundError,
    PeerFailure,
    PeerRejectedError,
    PeerUnreachableError,
    RequestValidationError,
    TLSVerificationError,
    TransientHarperError,
    UnexpectedAnswerError,
    UnknownNodeError,
    clip_message,
    parse_peer_failure,
)
from . import records
from .models import (
    FALSE_SUCCESS_MARKER,
    Certificate,
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
from .tls import client_ssl_context, fetch_certificate, verification_reason

log = logging.getLogger(__name__)

# Seconds without an answer after which cluster_status is sent again beside the request still waiting
# (see HarperClient.cluster_status).
STATUS_FIRST_TRY = 2.0
_status_locks: dict[tuple[int, str], asyncio.Lock] = {}


def _status_lock(operations_url: str) -> asyncio.Lock:
    """One cluster_status at a time to one node from this process (every cluster's client of it), per event loop."""
    key = (id(asyncio.get_running_loop()), operations_url)
    lock = _status_locks.get(key)
    if lock is None:
        lock = _status_locks[key] = asyncio.Lock()
    return lock

Observer = Callable[[str, str, float], None]
T = TypeVar("T")


async def _first_to_finish(operation: str, send: Callable[[float], Awaitable[T]], total: float, resend_after: float,
                           url: str) -> T:
    """The outcome of whichever of several identical requests finishes first, within `total` seconds.

    `send(seconds)` is started at once, then again every `resend_after` seconds while none has finished; a request
    already sent keeps waiting (a slow but healthy node answers it), and every request ends at the same deadline.
    The first to finish wins, answer or error; the others are cancelled (their connections closed).
    """
    deadline = time.monotonic() + total
    pending: set[asyncio.Future[T]] = set()
    try:
        while True:
            left = deadline - time.monotonic()
            if not pending or left > 0:
                pending.add(asyncio.ensure_future(send(max(left, 0.001))))
            wait = resend_after if left > resend_after else None  # None: until the requests' own deadline
            done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if done:
                return _winner(operation, done, total, url)
    finally:
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.wait(pending)


def _winner(operation: str, done: set[asyncio.Future[T]], total: float, url: str) -> T:
    """An answer among requests that finished together, else the first one's error."""
    answered = [f for f in done if f.exception() is None]
    if answered:
        return answered[0].result()
    error = next(iter(done)).exception()
    if isinstance(error, TransientHarperError) and error.timed_out:
        # Each request had what was left of the whole read: the read as a whole went unanswered.
        raise TransientHarperError(operation, None, f"no answer within {total:g}s", url=url, request_sent=True,
                                   timed_out=True) from None
    assert error is not None
    raise error

# aiohttp drops idle pooled sockets after this many seconds; Harper closes idle keep-alive
# sockets after 30 s, so staying below that avoids writing into a socket Harper is closing.
_KEEPALIVE_SECONDS = 15.0
# Renew an operation token this long before it expires (capped at a fifth of its lifetime).
_TOKEN_RENEW_MARGIN = timedelta(seconds=60)
# fastify answers malformed bodies itself: {"statusCode":400,"error":"Bad Request","message":...}
_HTTP_REASONS = {"Bad Request", "Unauthorized", "Forbidden", "Not Found", "Internal Server Error",
                 "Service Unavailable", "Method Not Allowed", "Payload Too Large", "Request Timeout"}


# No answer is read past this many bytes (the constructor's max_answer_bytes); each operation's AnswerBudget
# may allow fewer.
DEFAULT_MAX_ANSWER_BYTES = 32 * 1024 * 1024
_READ_CHUNK_BYTES = 64 * 1024
_MIB = 1024 * 1024


@dataclass(frozen=True)
class AnswerBudget:
    """What one answer may hold before it is parsed: bytes, objects and arrays, commas.

    Bytes alone do not bound memory: each `{}` of 3 bytes becomes a dict or a pydantic model of ~1 KB (4 MiB of
    `{"connections":[{},{},...]}` grew the process by 1 GB), each `"a",` of 4 bytes a 50-byte string. Counting
    `{`, `[` and `,` (a C-speed scan; ones inside strings count too, which only errs on the safe side) bounds both
    before json.loads or pydantic runs."""

    max_bytes: int
    containers: int  # `{` and `[`: each a dict, list or model once parsed
    commas: int  # an upper bound of every other value


# cluster_status, sized from real answers (tests/harper/recorded): per peer ~1 KiB, 3 containers and ~30 commas,
# plus per database socket ~600 B, 2 containers and ~20 commas; room here for 128 peers (the CRD allows 100
# replicas) of 32 databases each, with up to 64 subscriptions apiece. Worst case parsed: ~40 MB.
_STATUS_PEERS, _STATUS_DATABASES = 128, 32
STATUS_BUDGET = AnswerBudget(max_bytes=_STATUS_PEERS * (4 + _STATUS_DATABASES) * 1024,
                             containers=_STATUS_PEERS * (72 + 2 * _STATUS_DATABASES),
                             commas=_STATUS_PEERS * (300 + 32 * _STATUS_DATABASES))
# A leaving member's proof reads user records (read_audit_log entries carry them): the largest answers.
RECORDS_BUDGET = AnswerBudget(max_bytes=DEFAULT_MAX_ANSWER_BYTES, containers=128 * 1024, commas=_MIB)
# Everything else (configuration, certificates, routes, tokens, writes' messages) is a few KiB.
SMALL_BUDGET = AnswerBudget(max_bytes=4 * _MIB, containers=8 * 1024, commas=64 * 1024)
_BUDGETS = {"cluster_status": STATUS_BUDGET, "read_audit_log": RECORDS_BUDGET, "search_by_id": RECORDS_BUDGET,
            "describe_database": RECORDS_BUDGET}


def answer_budget(operation: str, max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> AnswerBudget:
    """The budget of one operation's answer, its bytes capped by the client's max_answer_bytes too."""
    budget = _BUDGETS.get(operation, SMALL_BUDGET)
    return replace(budget, max_bytes=min(budget.max_bytes, max_answer_bytes))


def over_budget(raw: bytes, budget: AnswerBudget) -> str | None:
    """Why an answer body is too costly to parse, None when it is not."""
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > budget.containers:
        return f"answer holds more than {budget.containers} objects and arrays"
    if raw.count(b",") > budget.commas:
        return f"answer holds more than {budget.commas} values"
    return None
# Longest part of a non-JSON answer quoted in an error (after redaction).
_QUOTED_ANSWER_CHARS = 200
# Characters that cannot be part of a host name; urlsplit lets them through, aiohttp does not.
_BAD_HOST_CHARS = frozenset(' <>"{}|\\^`')


class _Unreadable:
    """Marker for an answer body that could not be decoded, with the reason why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _decode(raw: bytes, charset: str | None) -> tuple[Any, str]:
    """(parsed JSON, or an _Unreadable saying why not; the text) of an answer body."""
    try:
        text = raw.decode(charset or "utf-8", errors="replace")
    except (LookupError, ValueError):  # a charset Python does not know (or cannot replace in)
        text = raw.decode("utf-8", errors="replace")
    if not text:
        return None, text
    try:
        return json.loads(text), text
    except json.JSONDecodeError:
        return _Unreadable("answer is not JSON"), text
    except RecursionError:
        return _Unreadable("answer is nested too deeply to read"), text
    except ValueError:  # valid JSON Python refuses, e.g. an integer of more than 4300 digits
        return _Unreadable("answer holds a value too large to read"), text


def _invalid(message: str) -> InvalidTargetError:
    return InvalidTargetError("connect", None, message)


def _split_target(operations_url: Any) -> SplitResult:
    """operations_url split into parts, or InvalidTargetError.

    The messages never quote the URL: whatever is wrong with it, it may hold credentials.
    """
    expected = "expected http(s)://host[:port]"
    if not isinstance(operations_url, str):
        raise _invalid(f"operations_url is not a string: {expected}")
    try:
        parts = urlsplit(operations_url.strip())
    except ValueError:  # e.g. an unclosed or invalid [IPv6] literal
        raise _invalid(f"operations_url cannot be parsed: {expected}") from None
    if "@" in parts.netloc:
        raise _invalid("operations_url must not carry user info (user@ or user:password@): "
                       "give credentials as username/password")
    if parts.scheme not in ("http", "https"):
        raise _invalid(f"operations_url must use http or https: {expected}")
    if not parts.hostname:
        raise _invalid(f"operations_url has no host: {expected}")
    if any(c in _BAD_HOST_CHARS or not c.isprintable() for c in parts.hostname):
        raise _invalid(f"operations_url has an invalid host: {expected}")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise _invalid("operations_url has an invalid port: expected a number from 1 to 65535")
    return parts


def _positive_seconds(name: str, value: Any) -> float:
    """A finite, positive number of seconds, or InvalidTargetError."""
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise _invalid(f"{name} must be a positive number of seconds")
    return seconds


def _shape_problem(exc: ValidationError) -> str:
    """A short account of a pydantic error that never quotes the answer (it may hold tokens)."""
    first = exc.errors(include_input=False)[0] if exc.error_count() else {"loc": (), "msg": "invalid"}
    where = ".".join(str(part) for part in first.get("loc", ()))[:100]
    at = f" at {where}" if where else ""
    return f"answer has an unexpected shape: {exc.error_count()} problem(s), first{at}: {first.get('msg')}"


def _usable_token(value: str) -> bool:
    # A token travels in an HTTP header: anything else would fail on the next call, far from here.
    return bool(value) and value.isascii() and value.isprintable() and " " not in value


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
                 write_timeout: float | None = None, max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> None:
        """Raises InvalidTargetError (operation "connect") for a URL, CA bundle, timeout or size
        limit it cannot use; no request is sent before the first operation."""
        parts = _split_target(operations_url)
        self.timeout = _positive_seconds("timeout", timeout)
        # Writes may wait on the peer (a first join signs a certificate there, ~2 s on loopback).
        self.write_timeout = (_positive_seconds("write_timeout", write_timeout) if write_timeout is not None
                              else self.timeout)
        if isinstance(max_answer_bytes, bool) or not isinstance(max_answer_bytes, int) or max_answer_bytes < 1:
            raise _invalid("max_answer_bytes must be a positive number of bytes")
        self.max_answer_bytes = max_answer_bytes
        base_path = parts.path.rstrip("/")
        self.operations_url = urlunsplit((parts.scheme, parts.netloc, base_path + "/", "", ""))
        self.health_url = urlunsplit((parts.scheme, parts.netloc, base_path + "/health", "", ""))
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self.verify_tls = verify_tls
        self.use_token = use_token
        self._observer = observer
        # A CA bundle is checked even for http://, so a wrong one is reported where it was set.
        context = client_ssl_context(verify_tls, ca_pem) if parts.scheme == "https" or ca_pem else None
        self._ssl: ssl.SSLContext | bool = context if parts.scheme == "https" and context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._tokens: Tokens | None = None
        self._token_lock = asyncio.Lock()
        self._in_flight = 0  # calls under way (see retire)
        self._retired = False
        self._closing = False

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

    @property
    def open(self) -> bool:
        """Whether this client holds a session (sockets) now."""
        return self._session is not None and not self._session.closed

    async def retire(self) -> None:
        """Close this client once no call is under way on it: now when idle, else when the last call ends.

        For a client replaced by another (new credentials): a call that started on it finishes, and a call made
        on it later still works, its session being closed again after it, so nothing stays open."""
        self._retired = True
        await self._close_if_idle()

    async def _close_if_idle(self) -> None:
        if self._retired and not self._in_flight and not self._closing:
            self._closing = True  # close() itself may call (a proxied client's logout)
            try:
                await asyncio.shield(self.close())  # a cancelled call still closes its session
            finally:
                self._closing = False

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
        # A secret may come back quoted inside JSON or a Python repr, with its characters escaped.
        spellings = {form for s in found if s for form in (s, json.dumps(s)[1:-1], repr(s)[1:-1])}
        # Longest first so a secret containing another is replaced whole; tiny strings are skipped
        # because replacing "a" everywhere would only make messages unreadable.
        return sorted({s for s in spellings if len(s) >= 3}, key=len, reverse=True)

    def _redact(self, text: str, extra: Iterable[str] = ()) -> str:
        for secret in self._secrets(extra):
            text = text.replace(secret, "***")
        return text

    def _scrub(self, exc: HarperError, extra: Iterable[str] = ()) -> None:
        """Redact every known secret from the texts an error carries, then clip them.

        Redaction runs on the full text: clipped first, a secret cut in half would survive.
        """
        extra = list(extra)
        exc.message = clip_message(self._redact(exc.message, extra))
        exc.args = (exc.operation, exc.status, exc.message)
        peer = getattr(exc, "peer", None)
        if isinstance(peer, PeerFailure):
            peer.reason = clip_message(self._redact(peer.reason, extra))
            if peer.peer_url is not None:
                peer.peer_url = clip_message(self._redact(peer.peer_url, extra), 500)
        if isinstance(exc, UnknownNodeError) and exc.node_name is not None:
            exc.node_name = clip_message(self._redact(exc.node_name, extra), 500)

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
                    secrets: Sequence[str] = (), auth: bool | str = True, resend_after: float | None = None) -> T:
        """One observed operation: send (renewing a token once if needed), map errors, interpret.

        `auth`: True = this client's credentials (Basic, or a Bearer token it renews), False = no
        header, a string = that exact header (used for the refresh token); `resend_after`: see _exchange.
        Raises HarperError only.
        """
        start = time.monotonic()
        outcome = "transient"  # also what a cancelled call reports: its effect is unknown
        self._in_flight += 1
        try:
            result = await self._interpreted(operation, body, interpret, timeout=timeout, retry_stale=retry_stale,
                                             secrets=secrets, auth=auth, resend_after=resend_after)
            outcome = "ok"
            return result
        except HarperError as exc:
            outcome = exc.outcome
            self._scrub(exc, secrets)
            raise
        finally:
            seconds = time.monotonic() - start
            log.debug("harper %s %s -> %s in %.3fs", self.operations_url, operation, outcome, seconds)
            self._observe(operation, outcome, seconds)
            self._in_flight -= 1
            await self._close_if_idle()

    async def _interpreted(self, operation: str, body: dict[str, Any], interpret: Callable[[Any], T], *,
                           timeout: float | None, retry_stale: bool, secrets: Sequence[str],
                           auth: bool | str, resend_after: float | None) -> T:
        """Send, map the status, interpret. Whatever breaks while reading or interpreting the
        answer becomes an UnexpectedAnswerError: a junk answer is the node's problem."""
        status: int | None = None
        try:
            status, parsed, text = await self._send_authorized(operation, body, timeout=timeout,
                                                               retry_stale=retry_stale, auth=auth,
                                                               resend_after=resend_after)
            if not 200 <= status < 300:
                raise self._error_for(operation, status, parsed, text)
            if isinstance(parsed, _Unreadable):
                # Redacted before it is cut, so no secret can survive in part.
                quoted = clip_message(self._redact(text, secrets), _QUOTED_ANSWER_CHARS)
                raise UnexpectedAnswerError(operation, status, f"{parsed.reason}: {quoted!r}", url=self.operations_url)
            return interpret(parsed)
        except HarperError:
            raise
        except ValidationError as exc:
            raise UnexpectedAnswerError(operation, status, _shape_problem(exc), url=self.operations_url) from None
        except RecursionError:
            raise UnexpectedAnswerError(operation, status, "answer is nested too deeply to read",
                                        url=self.operations_url) from None
        except Exception as exc:
            # The answer broke an assumption (a field of the wrong type, ...). Only the exception's
            # type is kept: its text may quote the answer, and a login answer holds fresh tokens.
            log.warning("harper %s %s: answer could not be interpreted (%s)", self.operations_url, operation,
                        type(exc).__name__)
            raise UnexpectedAnswerError(operation, status, f"answer could not be interpreted ({type(exc).__name__})",
                                        url=self.operations_url) from None

    async def _send_authorized(self, operation: str, body: dict[str, Any], *, timeout: float | None,
                               retry_stale: bool, auth: bool | str,
                               resend_after: float | None = None) -> tuple[int, Any, str]:
        if isinstance(auth, str):
            header: str | None = auth
        else:
            header = await self._auth_header() if auth else None
        status, parsed, text = await self._exchange(operation, body, header, timeout, retry_stale, resend_after)
        if auth is True and self.use_token and self._token_rejected(status, parsed, text):
            # An expired or revoked operation token: renew once (refresh, else log in) and resend.
            await self._renew_tokens(stale_header=header)
            header = await self._auth_header()
            status, parsed, text = await self._exchange(operation, body, header, timeout, retry_stale, resend_after)
        return status, parsed, text

    async def _exchange(self, operation: str, body: dict[str, Any], auth_header: str | None,
                        timeout: float | None, retry_stale: bool,
                        resend_after: float | None = None) -> tuple[int, Any, str]:
        """POST one body; transport failures become HarperErrors. Returns (status, json|_Unreadable, text).

        With `resend_after`, the body is sent again each time that many seconds pass without an answer, the
        earlier requests still waiting: the first to finish wins (see _first_to_finish)."""
        headers = {"Authorization": auth_header} if auth_header else None
        try:
            data = json.dumps(body, default=_json_default)
        except (TypeError, ValueError, RecursionError) as exc:
            raise RequestValidationError(operation, None, f"request cannot be sent as JSON ({type(exc).__name__})",
                                         url=self.operations_url) from None
        total = timeout or self.timeout

        async def post(seconds: float) -> tuple[int, Any, str]:
            return await self._post_once(operation, data, headers, seconds, retry_stale)

        if resend_after is None or resend_after >= total:
            return await post(total)
        return await _first_to_finish(operation, post, total, resend_after, self.operations_url)

    async def _post_once(self, operation: str, data: str, headers: dict[str, str] | None, timeout: float,
                         retry_stale: bool) -> tuple[int, Any, str]:
        """One request (sent twice when a pooled connection turns out dead and retry_stale is on)."""
        session = self._get_session()
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        attempts = 2 if retry_stale else 1
        for attempt in range(attempts):
            try:
                async with session.post(self.operations_url, data=data, headers=headers,
                                        timeout=client_timeout) as resp:
                    raw = await self._read_capped(operation, resp)
                    self._check_budget(operation, resp.status, raw)
                    parsed, text = _decode(raw, resp.charset)
                    return resp.status, parsed, text
            except aiohttp.ClientSSLError as exc:
                raise await self._tls_failure(operation, exc, timeout) from None
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
                raise TransientHarperError(operation, None, f"no answer within {timeout:g}s",
                                           url=self.operations_url, request_sent=True, timed_out=True) from None
            except aiohttp.InvalidURL:
                raise InvalidTargetError(operation, None, "aiohttp cannot use operations_url",
                                         url=self.operations_url) from None
            except aiohttp.ClientError as exc:
                raise TransientHarperError(operation, None, f"{type(exc).__name__}: {exc}",
                                           url=self.operations_url, request_sent=True) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _budget(self, operation: str) -> AnswerBudget:
        return answer_budget(operation, self.max_answer_bytes)

    def _check_budget(self, operation: str, status: int, raw: bytes) -> None:
        """UnexpectedAnswerError for an answer that would cost too much memory to parse (see AnswerBudget)."""
        reason = over_budget(raw, self._budget(operation))
        if reason is not None:
            raise UnexpectedAnswerError(operation, status, f"{reason}: refused unparsed", url=self.operations_url)

    async def _tls_failure(self, operation: str, error: aiohttp.ClientSSLError,
                           timeout: float) -> TLSVerificationError:
        """The error for a failed TLS handshake. A refused certificate is read again without verification, so the
        problem can name it (which subject, which issuer, until when)."""
        reason = verification_reason(error)
        parts = urlsplit(self.operations_url)
        certificate = None
        if reason and parts.hostname:
            certificate = await fetch_certificate(parts.hostname, parts.port or 443, parts.hostname, min(timeout, 5.0))
        return TLSVerificationError(operation, None, f"TLS to the operations API failed: {reason or error}",
                                    url=self.operations_url, reason=reason, certificate=certificate)

    async def _read_capped(self, operation: str, resp: aiohttp.ClientResponse) -> bytes:
        """The answer body, or UnexpectedAnswerError once it is known to pass the operation's byte cap.

        Never reads more than that cap + 1 bytes: a node (or whatever sits at its URL) must not be
        able to make the operator hold an answer of any size.
        """
        cap = self._budget(operation).max_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise self._too_large(operation, resp, cap)
        body = bytearray()
        while len(body) <= cap:
            chunk = await resp.content.read(min(_READ_CHUNK_BYTES, cap + 1 - len(body)))
            if not chunk:
                return bytes(body)
            body += chunk
        raise self._too_large(operation, resp, cap)

    def _too_large(self, operation: str, resp: aiohttp.ClientResponse, cap: int) -> UnexpectedAnswerError:
        # close(), not release(): the unread rest is still on the socket, which must not go back
        # to the pool for the next request to read.
        resp.close()
        return UnexpectedAnswerError(operation, resp.status, f"answer larger than {cap} bytes",
                                     url=self.operations_url)

    @staticmethod
    def _message(status: int, parsed: Any, text: str) -> str:
        """Harper's reason in an error answer, in full (redacted and clipped by the caller)."""
        fallback = (text or "").strip() or f"HTTP {status}"
        if isinstance(parsed, dict):
            err, msg = parsed.get("error"), parsed.get("message")
            if isinstance(msg, str) and ("statusCode" in parsed or err in _HTTP_REASONS or err is None):
                return msg
            if isinstance(err, str):
                return err
            if err is not None:
                try:
                    return json.dumps(err, default=str)
                except (ValueError, RecursionError):  # nested too deeply to write back out
                    return fallback
        if isinstance(parsed, str):
            return parsed
        return fallback

    @staticmethod
    def _access_detail(message: str, access: Any) -> str:
        """403 message plus the permissions Harper listed as missing, when it listed readable ones."""
        if not isinstance(access, list) or not access:
            return message
        try:
            return f"{message}: {'; '.join(map(str, access))}"
        except (ValueError, RecursionError):
            return message

    def _error_for(self, operation: str, status: int, parsed: Any, text: str) -> HarperError:
        message = self._message(status, parsed, text)
        url = self.operations_url
        if status == 401:
            return AuthenticationError(operation, status, message, url=url)
        if status == 403:
            access = parsed.get("unauthorized_access") if isinstance(parsed, dict) else None
            return AuthorizationError(operation, status, self._access_detail(message, access), url=url,
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
        now = datetime.now(timezone.utc)
        try:
            return now >= expires - margin
        except OverflowError:  # a claim at the edge of the calendar (year 1 or 9999): skip the margin
            return now >= expires

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
        return await self._call("create_authentication_tokens", body,
                                lambda p: self._tokens_from("create_authentication_tokens", p), auth=False)

    async def _refresh_operation_token(self, refresh_token: SecretStr) -> Tokens:
        # Harper reads the refresh token from the Authorization header for this operation.
        secret = refresh_token.get_secret_value()
        return await self._call("refresh_operation_token", {"operation": "refresh_operation_token"},
                                lambda p: self._tokens_from("refresh_operation_token", p),
                                auth="Bearer " + secret, secrets=[secret])

    def _tokens_from(self, operation: str, parsed: Any) -> Tokens:
        """A token answer whose tokens can be sent back in a header (checked now, not on next use)."""
        tokens = Tokens.model_validate(parsed)
        for token in (tokens.operation_token, tokens.refresh_token):
            if token is not None and not _usable_token(token.get_secret_value()):
                raise UnexpectedAnswerError(operation, 200, "answer holds a token that cannot be sent in a header",
                                            url=self.operations_url)
        return tokens

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
        self._in_flight += 1
        try:
            session = self._get_session()
            timeout = aiohttp.ClientTimeout(total=min(self.timeout, 5.0))
            async with session.get(self.health_url, timeout=timeout) as resp:
                # The body is not needed (and not bounded); leaving it unread only costs the pooled connection.
                healthy = resp.status == 200
        except Exception as exc:  # health is a yes/no question: any failure is a no
            log.debug("health of %s failed: %s", self.health_url, type(exc).__name__)
        finally:
            self._observe("health", "ok" if healthy else "transient", time.monotonic() - start)
            self._in_flight -= 1
            await self._close_if_idle()
        return healthy

    async def operation(self, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Any operation, answer returned as parsed JSON (errors mapped like every other call)."""
        if not isinstance(body, Mapping):
            raise RequestValidationError("unknown", None, "an operation body must be an object",
                                         url=self.operations_url)
        name = clip_message(str(body.get("operation", "")), 100) or "unknown"
        return await self._call(name, dict(body), lambda parsed: parsed, timeout=timeout)

    async def cluster_status(self) -> ClusterStatus:
        """Harper 4.7.29 answers only one of the cluster_status requests one of its worker threads holds at once;
        the others never get an answer (docs/harper-semantics.md, section 10; seen: 10 s lost in the verify loop
        while a poller read the same node). This process sends one read at a time to a node; within it, a request
        unanswered after STATUS_FIRST_TRY seconds (an answer takes milliseconds) is sent again beside it, every
        STATUS_FIRST_TRY seconds, and the first answer of any of them is the read's (a node that answers in 2.5 s
        is read, not timed out on every try). The whole read is bounded by the client's timeout."""
        async with _status_lock(self.operations_url):
            return await self._call("cluster_status", {"operation": "cluster_status"}, ClusterStatus.model_validate,
                                    retry_stale=True, resend_after=STATUS_FIRST_TRY)

    async def list_certificates(self) -> list[Certificate]:
        """The node's certificates (names, authority flag, serial numbers); read for a node that holds no records,
        to tell a wiped node from a new one."""
        def interpret(parsed: Any) -> list[Certificate]:
            if not isinstance(parsed, list):
                raise UnexpectedAnswerError("list_certificates", 200, "not a list", url=self.operations_url)
            return [Certificate.model_validate(c) for c in parsed if isinstance(c, dict)]
        return await self._call("list_certificates", {"operation": "list_certificates"}, interpret, retry_stale=True)

    async def get_configuration(self) -> dict[str, Any]:
        """harperdb-config.yaml as Harper reads it now; `replication`, when present, is an object."""
        return await self._call("get_configuration", {"operation": "get_configuration"}, self._configuration,
                                retry_stale=True)

    def _configuration(self, parsed: Any) -> dict[str, Any]:
        if not isinstance(parsed, dict):
            raise UnexpectedAnswerError("get_configuration", 200, "configuration is not an object",
                                        url=self.operations_url)
        replication = parsed.get("replication")
        if replication is not None and not isinstance(replication, dict):
            raise UnexpectedAnswerError("get_configuration", 200, "configuration's replication is not an object",
                                        url=self.operations_url)
        return parsed

    def _answer_message(self, operation: str, parsed: Any) -> str:
        """The `message` of a write's answer (or the answer itself when it is a bare string)."""
        message = parsed.get("message") if isinstance(parsed, dict) else parsed
        if not isinstance(message, str):
            raise UnexpectedAnswerError(operation, 200, "answer has no message", url=self.operations_url)
        return message

    def _node_write(self, operation: str, parsed: Any) -> NodeWriteResult:
        message = self._answer_message(operation, parsed)
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
            message = self._answer_message("remove_node", parsed)
            if not message.startswith("Successfully removed"):
                raise FalseSuccessError("remove_node", 200, message, url=self.operations_url)
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

    def _routes(self, operation: str, routes: Iterable[Route | str | dict[str, Any]]) -> list[Route]:
        """The caller's routes as Route values; one that cannot be read is refused before any request."""
        try:
            return [r if isinstance(r, Route) else Route.model_validate(r) for r in routes]
        except ValidationError as exc:
            first = exc.errors(include_input=False)[0]["msg"] if exc.error_count() else "invalid"
            raise RequestValidationError(operation, None, f"not a route: {first}", url=self.operations_url) from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise RequestValidationError(operation, None, f"routes must be a list of routes ({type(exc).__name__})",
                                         url=self.operations_url) from None

    def _file_routes(self, parsed: Any) -> list[Any]:
        """`replication.routes` of a get_configuration answer, entries verbatim."""
        replication = self._configuration(parsed).get("replication") or {}
        routes = replication.get("routes")
        if routes is None:
            return []
        if not isinstance(routes, list):
            raise UnexpectedAnswerError("get_configuration", 200, "configuration's replication.routes is not a list",
                                        url=self.operations_url)
        return list(routes)

    async def _configured_routes(self) -> list[Any]:
        return await self._call("get_configuration", {"operation": "get_configuration"}, self._file_routes,
                                retry_stale=True)

    async def cluster_get_routes(self) -> list[Route]:
        """The routes in harperdb-config.yaml now, i.e. what the next start will use.

        Read through get_configuration: 4.7.29's own cluster_get_routes answers from the copy
        taken at start-up (see routes.py); loaded_routes() returns that copy.
        """
        return await self._call("get_configuration", {"operation": "get_configuration"},
                                lambda parsed: parse_routes(self._file_routes(parsed)), retry_stale=True)

    async def cluster_set_routes(self, routes: Iterable[Route | str | dict[str, Any]]) -> RoutesResult:
        """Add routes to harperdb-config.yaml (they connect after restart()).

        Read-modify-write of the file (get_configuration + set_configuration), because Harper's
        cluster_set_routes can replace or resurrect routes (routes.py). No write when nothing is new.
        """
        wanted = self._routes("cluster_set_routes", routes)
        new, added, skipped = add_routes(await self._configured_routes(), wanted)
        if added:
            await self._write_routes(new)
        return RoutesResult(message=f"{len(added)} route(s) added", added=added, skipped=skipped)

    async def cluster_delete_routes(self, routes: Iterable[Route | str | dict[str, Any]]) -> RoutesResult:
        """Remove routes from harperdb-config.yaml, whichever spelling they were stored in.

        Read-modify-write like cluster_set_routes: Harper's cluster_delete_routes, on a node that
        started without routes, deletes none of the ones asked for and empties the list.
        """
        unwanted = self._routes("cluster_delete_routes", routes)
        new, deleted, skipped = remove_routes(await self._configured_routes(), unwanted)
        if deleted:
            await self._write_routes(new)
        return RoutesResult(message=f"{len(deleted)} route(s) deleted", deleted=deleted, skipped=skipped)

    async def replace_routes(self, routes: Iterable[Route | str | dict[str, Any]]) -> str:
        """Write exactly these routes to the config file. Takes effect after restart()."""
        return await self._write_routes([r.to_wire() for r in self._routes("replace_routes", routes)])

    async def _write_routes(self, entries: list[Any]) -> str:
        def interpret(parsed: Any) -> str:
            message = self._answer_message("set_configuration", parsed)
            if "successfully" not in message.lower():
                raise FalseSuccessError("set_configuration", 200, message, url=self.operations_url)
            return message

        return await self._call("set_configuration", {"operation": "set_configuration", "replication_routes": entries},
                                interpret)

    async def loaded_routes(self) -> list[Route]:
        """Harper's own cluster_get_routes answer: the routes read at start-up (plus any added by
        Harper's cluster_set_routes since), i.e. roughly what the running process dialled."""
        def interpret(parsed: Any) -> list[Route]:
            if isinstance(parsed, dict):  # NATS-era shape {"hub": [...], "leaf": [...]}
                hub, leaf = parsed.get("hub"), parsed.get("leaf")
                if not all(part is None or isinstance(part, list) for part in (hub, leaf)):
                    raise UnexpectedAnswerError("cluster_get_routes", 200, "hub/leaf routes are not lists",
                                                url=self.operations_url)
                return parse_routes((hub or []) + (leaf or []))
            if not isinstance(parsed, list):
                # Not "no routes": an answer that says nothing must not look like an empty list.
                raise UnexpectedAnswerError("cluster_get_routes", 200, "answer is not a list of routes",
                                            url=self.operations_url)
            return parse_routes(parsed)

        return await self._call("cluster_get_routes", {"operation": "cluster_get_routes"}, interpret,
                                retry_stale=True)

    # ------------------------------------------------------------------ records (a leaving member's proof)

    async def _records(self, operation: str, body: dict[str, Any], read: Callable[[Any], T]) -> T:
        def interpret(parsed: Any) -> T:
            try:
                return read(parsed)
            except records.UnreadableAnswer as e:
                raise UnexpectedAnswerError(operation, 200, str(e), url=self.operations_url) from None
        return await self._call(operation, body, interpret, retry_stale=True)

    async def describe_database(self, database: str) -> dict[str, str]:
        """Table name -> primary key attribute, of one database on this node."""
        return await self._records("describe_database", {"operation": "describe_database", "database": database},
                                   records.tables)

    async def read_audit_log(self, database: str, table: str, since: float, limit: int,
                             until: float | None = None) -> list[records.AuditEntry]:
        """This node's audit log entries of one table from audit key `since` (inclusive) to `until` (exclusive; None:
        to the end), oldest first."""
        bounds = [since] if until is None else [since, until]
        return await self._records("read_audit_log", {
            "operation": "read_audit_log", "schema": database, "table": table, "search_type": "timestamp",
            "search_values": bounds, "limit": limit}, records.audit_entries)

    async def record_versions(self, database: str, table: str, key: str, ids: Sequence[Any]) -> dict[str, float]:
        """The version (__updatedtime__) of each of these records this node holds, by key as text."""
        return await self._records("search_by_id", {
            "operation": "search_by_id", "database": database, "table": table, "ids": list(ids),
            "get_attributes": [key, "__updatedtime__"]}, lambda parsed: records.versions(parsed, key))

    # ------------------------------------------------------------------ process

    async def restart(self) -> str:
        """Ask Harper to restart. Answers at once; the node is down for ~10 s a moment later.

        Seen on 4.7.29 (foreground `harperdb run`): the original process exits and a new detached
        process takes over the ports, so a supervisor watching the first PID sees it exit; with
        HARPER_EXIT_ON_RESTART=1 (what the e2e test bed sets) Harper just exits 0 for the
        supervisor (kubelet) to start it again. Poll health() until it answers.
        """
        def interpret(parsed: Any) -> str:
            return self._answer_message("restart", parsed)

        return await self._call("restart", {"operation": "restart"}, interpret)
