"""Is something Harper-shaped listening on a replication URL?

A 200 from add_node does not prove the peer exists (4.7.29 answered 200 for an address where
nothing listened), so writes are verified by opening the replication WebSocket ourselves, with
Harper's subprotocol, and looking at what answers:

- handshake completes, or the server rejects us (HTTP 401/403, close 1008 Unauthorized):
  reachable. We carry no client certificate, so a rejection is expected and still proves a
  replication listener is there.
- refused, timeout, DNS failure, TLS failure, not HTTP at all: not reachable, with the reason.

The peer certificate (subject, SANs, expiry) is read even when verification is off, and after a
verification failure a second, unverified handshake fetches it so the reason can name the
mismatch (e.g. a URL host missing from the SANs).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .models import REPLICATION_SUBPROTOCOL
from .tls import CertificateInfo, client_ssl_context, decode_der_certificate

__all__ = ["ProbeResult", "probe_replication"]


@dataclass
class ProbeResult:
    reachable: bool
    error: str | None = None
    handshake_seconds: float | None = None
    subject: str | None = None
    sans: list[str] = field(default_factory=list)
    not_after: datetime | None = None
    issuer: str | None = None
    subprotocol: str | None = None  # "harperdb-replication-v1" when Harper accepted the upgrade
    http_status: int | None = None  # set when the upgrade was refused with an HTTP answer
    close_code: int | None = None  # set when the socket was closed on us (1008 = Unauthorized)
    tls_verified: bool = False

    @property
    def harper(self) -> bool:
        """Harper's replication endpoint positively answered (upgrade accepted with its subprotocol)."""
        return self.subprotocol == REPLICATION_SUBPROTOCOL or self.close_code == 1008

    def _with_cert(self, cert: CertificateInfo | None) -> "ProbeResult":
        if cert is not None:
            self.subject, self.issuer, self.sans, self.not_after = cert.subject, cert.issuer, list(cert.sans), cert.not_after
        return self


def _peer_der(transport: object) -> bytes | None:
    get_extra = getattr(transport, "get_extra_info", None)
    ssl_object = get_extra("ssl_object") if get_extra else None
    if ssl_object is None:
        return None
    try:
        return ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None


async def _fetch_certificate(host: str, port: int, server_name: str | None, timeout: float) -> CertificateInfo | None:
    """Unverified TLS handshake, only to read the certificate for a diagnostic."""
    ctx = client_ssl_context(verify_tls=False)
    writer = None
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name or host), timeout)
        return decode_der_certificate(_peer_der(writer.transport))
    except (OSError, asyncio.TimeoutError, ssl.SSLError):
        return None
    finally:
        if writer is not None:
            writer.close()


async def _add_certificate(result: ProbeResult, host: str, port: int | None, secure: bool,
                           timeout: float) -> ProbeResult:
    # The rejected handshake's socket is gone; a second bare TLS handshake reads the certificate.
    if not secure:
        return result
    return result._with_cert(await _fetch_certificate(host, port or 443, host, timeout))


async def probe_replication(url: str, *, verify_tls: bool = True, ca_pem: str | None = None,
                            timeout: float = 5.0) -> ProbeResult:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return ProbeResult(reachable=False, error=f"not a replication URL: {url!r}")
    secure = parts.scheme == "wss"
    ctx = client_ssl_context(verify_tls, ca_pem) if secure else None
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with connect(url, ssl=ctx, subprotocols=[REPLICATION_SUBPROTOCOL], open_timeout=timeout,
                               close_timeout=1, max_size=2**16, compression=None,
                               user_agent_header="harper-operator-probe") as ws:
                elapsed = time.monotonic() - start
                cert = decode_der_certificate(_peer_der(ws.transport)) if secure else None
                return ProbeResult(reachable=True, handshake_seconds=elapsed, subprotocol=ws.subprotocol,
                                   tls_verified=secure and verify_tls)._with_cert(cert)
    except InvalidStatus as exc:  # HTTP answer instead of an upgrade: a server is there
        status = exc.response.status_code
        result = ProbeResult(reachable=True, error=f"upgrade refused with HTTP {status}", http_status=status,
                             handshake_seconds=time.monotonic() - start, tls_verified=secure and verify_tls)
        return await _add_certificate(result, parts.hostname, parts.port, secure, timeout)
    except ConnectionClosed as exc:  # closed during/just after the upgrade, e.g. 1008 Unauthorized
        code = exc.rcvd.code if exc.rcvd else None
        result = ProbeResult(reachable=True, error=f"closed by peer: {exc}", close_code=code,
                             handshake_seconds=time.monotonic() - start, tls_verified=secure and verify_tls)
        return await _add_certificate(result, parts.hostname, parts.port, secure, timeout)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        cert = await _fetch_certificate(parts.hostname, parts.port or 443, parts.hostname, timeout)
        return ProbeResult(reachable=False, error=f"TLS verification failed: {reason}")._with_cert(cert)
    except ssl.SSLError as exc:
        return ProbeResult(reachable=False, error=f"TLS failed: {exc.reason or exc}")
    except (TimeoutError, asyncio.TimeoutError):
        return ProbeResult(reachable=False, error=f"no answer within {timeout:g}s")
    except InvalidURI as exc:
        return ProbeResult(reachable=False, error=f"invalid URL: {exc}")
    except InvalidHandshake as exc:  # answered, but not with HTTP/WebSocket: not Harper's endpoint
        return ProbeResult(reachable=False, error=f"not a WebSocket endpoint: {exc}")
    except OSError as exc:  # refused, unreachable, DNS
        return ProbeResult(reachable=False, error=f"{type(exc).__name__}: {exc.strerror or exc}")
