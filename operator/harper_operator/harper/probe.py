"""Does Harper's replication protocol answer on a replication URL?

A 200 from add_node does not prove the peer exists (4.7.29 answered 200 for an address where
nothing listened), so writes are verified by opening the replication WebSocket ourselves, with
Harper's subprotocol, and looking at what answers. Reachable means Harper, not "some server":
a wrong URL that happens to hit another HTTP server would otherwise become a peer record that
spreads through the cluster.

- upgrade accepted with subprotocol `harperdb-replication-v1`, or the socket closed on us with
  1008 (what Harper 4.7 does to a client it cannot authenticate: we carry no certificate and no
  credentials): reachable.
- an HTTP answer to the upgrade (any status), a WebSocket server without Harper's subprotocol or
  closing with another code, something that is not HTTP: not reachable, and the error says what
  answered.
- refused, timeout, DNS failure, TLS failure, a URL or CA bundle that cannot be used: not
  reachable, with the reason. probe_replication never raises.

The peer certificate (subject, SANs, expiry) is read even when verification is off, and after a
verification failure a second, unverified handshake fetches it so the reason can name the
mismatch (e.g. a URL host missing from the SANs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from .errors import InvalidTargetError, clip_message
from .models import REPLICATION_SUBPROTOCOL
from .tls import CertificateInfo, client_ssl_context, decode_der_certificate, fetch_certificate, peer_der

__all__ = ["ProbeResult", "probe_replication"]

log = logging.getLogger(__name__)

# Harper closes an unauthenticated replication socket with this code (policy violation).
HARPER_UNAUTHORIZED_CLOSE = 1008
# After an upgrade without Harper's subprotocol, how long to wait for a 1008 close.
_CLOSE_GRACE_SECONDS = 1.0
# Longest piece of the URL or of a library's reason quoted in an error.
_QUOTED_CHARS = 200


@dataclass
class ProbeResult:
    """What answered at a replication URL. `reachable` is True only when it was Harper (`harper`);
    otherwise `error` says what answered instead, or why nothing did."""

    reachable: bool
    error: str | None = None
    handshake_seconds: float | None = None
    subject: str | None = None
    sans: list[str] = field(default_factory=list)
    not_after: datetime | None = None
    issuer: str | None = None
    subprotocol: str | None = None  # "harperdb-replication-v1" when Harper accepted the upgrade
    http_status: int | None = None  # set when the upgrade was answered with HTTP (never Harper)
    close_code: int | None = None  # set when the socket was closed on us (1008 = Unauthorized)
    tls_verified: bool = False

    @property
    def harper(self) -> bool:
        """Harper's replication endpoint positively answered: the upgrade was accepted with its
        subprotocol, or the socket was closed with Harper's 1008 for an unauthenticated peer."""
        return self.subprotocol == REPLICATION_SUBPROTOCOL or self.close_code == HARPER_UNAUTHORIZED_CLOSE

    def _with_cert(self, cert: CertificateInfo | None) -> "ProbeResult":
        if cert is not None:
            self.subject, self.issuer, self.sans, self.not_after = cert.subject, cert.issuer, list(cert.sans), cert.not_after
        return self


async def _add_certificate(result: ProbeResult, parts: SplitResult, timeout: float) -> ProbeResult:
    # The rejected handshake's socket is gone; a second bare TLS handshake reads the certificate.
    if parts.scheme != "wss" or not parts.hostname:
        return result
    return result._with_cert(await fetch_certificate(parts.hostname, parts.port or 443, parts.hostname, timeout))


def _target(url: Any) -> tuple[SplitResult | None, str | None]:
    """(parts, None) for a URL the probe can dial, else (None, why not).

    A URL with user info is refused without being quoted: it would make the WebSocket library
    send those credentials, and the probe never sends any.
    """
    if not isinstance(url, str):
        return None, "not a replication URL: expected wss://host:port"
    if "@" in url:
        return None, "not a replication URL: user info (user@ or user:password@) is not allowed"
    quoted = repr(clip_message(url, _QUOTED_CHARS))
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed or invalid [IPv6] literal
        return None, f"not a replication URL: {quoted}"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return None, f"not a replication URL: {quoted}"
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        return None, f"not a replication URL: invalid port in {quoted}"
    return parts, None


def _not_harper(url: str, what: str) -> str:
    return f"something answers at {clip_message(url, _QUOTED_CHARS)} ({what}) but not Harper's replication protocol"


def _judged(result: ProbeResult, url: str) -> ProbeResult:
    """Reachable only if Harper's protocol answered; otherwise say what did answer."""
    if result.harper:
        result.reachable, result.error = True, None
        return result
    result.reachable = False
    if result.http_status is not None:
        result.error = _not_harper(url, f"HTTP {result.http_status}")
    elif result.close_code is not None:
        result.error = _not_harper(url, f"WebSocket closed with code {result.close_code}")
    else:
        subprotocol = f"subprotocol {result.subprotocol!r}" if result.subprotocol else "no subprotocol"
        result.error = _not_harper(url, f"WebSocket with {subprotocol}, not {REPLICATION_SUBPROTOCOL}")
    return result


async def _close_code(ws: ClientConnection, grace: float) -> int | None:
    """The code the server closes with within `grace` seconds; None if it stays open or talks."""
    try:
        await asyncio.wait_for(ws.recv(), grace)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except (TimeoutError, asyncio.TimeoutError):
        return None
    return None


async def _open(url: str, ctx: ssl.SSLContext | None, timeout: float) -> ClientConnection:
    # No proxy (the operator dials nodes directly, like its operations client) and no
    # credentials: the URL has no user info and no Authorization header is added.
    async with asyncio.timeout(timeout):
        return await connect(url, ssl=ctx, subprotocols=[Subprotocol(REPLICATION_SUBPROTOCOL)], open_timeout=timeout,
                             close_timeout=1, max_size=2**16, compression=None, proxy=None,
                             user_agent_header="harper-operator-probe")


async def probe_replication(url: str, *, verify_tls: bool = True, ca_pem: str | None = None,
                            timeout: float = 5.0) -> ProbeResult:
    """Open the replication WebSocket at `url` and report whether Harper answered. Never raises."""
    try:
        return await _probe(url, verify_tls, ca_pem, timeout)
    except Exception as exc:  # the last net: a probe is a question, it must not break a reconcile
        log.warning("replication probe failed unexpectedly (%s)", type(exc).__name__)
        return ProbeResult(reachable=False, error=f"probe failed ({type(exc).__name__})")


async def _probe(url: str, verify_tls: bool, ca_pem: str | None, timeout: float) -> ProbeResult:
    parts, problem = _target(url)
    if parts is None:
        return ProbeResult(reachable=False, error=problem)
    secure = parts.scheme == "wss"
    try:
        ctx = client_ssl_context(verify_tls, ca_pem) if secure else None
    except InvalidTargetError as exc:
        return ProbeResult(reachable=False, error=exc.message)
    tls_verified = secure and verify_tls
    start = time.monotonic()
    try:
        ws = await _open(url, ctx, timeout)
    except InvalidStatus as exc:  # an HTTP answer instead of an upgrade: a server, but not Harper's endpoint
        result = ProbeResult(reachable=False, http_status=exc.response.status_code,
                             handshake_seconds=time.monotonic() - start, tls_verified=tls_verified)
        return _judged(await _add_certificate(result, parts, timeout), url)
    except ConnectionClosed as exc:  # closed during the upgrade
        result = ProbeResult(reachable=False, close_code=exc.rcvd.code if exc.rcvd else None,
                             handshake_seconds=time.monotonic() - start, tls_verified=tls_verified)
        return _judged(await _add_certificate(result, parts, timeout), url)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        host = parts.hostname or ""  # never empty: _target refuses a URL without a host
        cert = await fetch_certificate(host, parts.port or 443, host, timeout)
        return ProbeResult(reachable=False, error=f"TLS verification failed: {reason}")._with_cert(cert)
    except ssl.SSLError as exc:
        return ProbeResult(reachable=False, error=f"TLS failed: {exc.reason or exc}")
    except (TimeoutError, asyncio.TimeoutError):
        return ProbeResult(reachable=False, error=f"no answer within {timeout:g}s")
    except InvalidURI as exc:
        return ProbeResult(reachable=False, error=f"invalid URL: {clip_message(str(exc), _QUOTED_CHARS)}")
    except InvalidHandshake as exc:  # answered, but not with an HTTP upgrade (or a broken one)
        return ProbeResult(reachable=False, error=_not_harper(url, clip_message(str(exc) or type(exc).__name__,
                                                                                _QUOTED_CHARS)))
    except OSError as exc:  # refused, unreachable, DNS
        return ProbeResult(reachable=False, error=f"{type(exc).__name__}: {exc.strerror or exc}")
    except ValueError as exc:  # a host the libraries cannot encode (IDNA), ...
        return ProbeResult(reachable=False, error=f"invalid URL ({type(exc).__name__})")
    try:
        elapsed = time.monotonic() - start
        cert = decode_der_certificate(peer_der(ws.transport)) if secure else None
        result = ProbeResult(reachable=False, handshake_seconds=elapsed, subprotocol=ws.subprotocol,
                             tls_verified=tls_verified)._with_cert(cert)
        if ws.subprotocol != REPLICATION_SUBPROTOCOL:
            # Some WebSocket server took the upgrade; Harper would close an unauthenticated peer with 1008.
            result.close_code = await _close_code(ws, min(_CLOSE_GRACE_SECONDS, timeout))
        return _judged(result, url)
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
