"""TLS helpers shared by the operations client and the replication probe.

Verification is on by default. A CA bundle (PEM text) replaces the system trust store when
given, because Harper nodes usually present certificates from their own private CA.

Certificates are decoded with the standard library only (the `cryptography` package is not
installed): the DER bytes go through a temporary PEM file into `ssl._ssl._test_decode_cert`,
which is what `ssl.SSLSocket.getpeercert()` uses internally. That function is private to
CPython; if it ever disappears the probe still works, it just reports no certificate details.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import InvalidTargetError

# Said instead of OpenSSL's reason, which may quote part of the bundle.
BAD_CA_BUNDLE = "CA bundle is not a valid PEM certificate bundle"


def _trusting(ca_pem: str | bytes) -> ssl.SSLContext:
    """A verifying context that trusts exactly the certificates of a PEM bundle.

    Raises InvalidTargetError for anything OpenSSL cannot read as PEM certificates; its own
    reason is not kept because it may quote part of the bundle.
    """
    try:
        # OpenSSL reads bytes as DER, but the bundle is PEM text whatever its type.
        text = ca_pem.decode("ascii") if isinstance(ca_pem, bytes) else ca_pem
        return ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError, TypeError):
        raise InvalidTargetError("connect", None, BAD_CA_BUNDLE) from None


def client_ssl_context(verify_tls: bool = True, ca_pem: str | bytes | None = None) -> ssl.SSLContext:
    """A client context that verifies against `ca_pem` (else the system store), or verifies nothing.

    Raises InvalidTargetError when `ca_pem` is given but is not a PEM certificate bundle, even
    with verification off: a wrong setting is reported rather than ignored.
    """
    ctx = _trusting(ca_pem) if ca_pem else ssl.create_default_context()
    if not verify_tls:
        # The bundle stays loaded: harmless, and keeps the context usable if a caller flips
        # verify_mode back on.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class CertificateInfo:
    subject: str | None = None
    issuer: str | None = None
    sans: list[str] = field(default_factory=list)
    not_before: datetime | None = None
    not_after: datetime | None = None
    serial_number: str | None = None


def _rdn_text(rdns: Any) -> str | None:
    if not rdns:
        return None
    parts = []
    short = {"commonName": "CN", "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
             "organizationName": "O", "organizationalUnitName": "OU"}
    for rdn in rdns:
        for key, value in rdn:
            parts.append(f"{short.get(key, key)}={value}")
    return ",".join(parts)


def _cert_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromtimestamp(ssl.cert_time_to_seconds(text), tz=timezone.utc)
    except (ValueError, OverflowError):
        return None


def decode_der_certificate(der: bytes | None) -> CertificateInfo | None:
    """Subject, issuer, SANs and validity of a DER certificate, or None if it cannot be read."""
    if not der:
        return None
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(ssl.DER_cert_to_PEM_cert(der))
        raw = decode(path)
    except (ssl.SSLError, ValueError, OSError):
        return None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    sans = [value for _kind, value in raw.get("subjectAltName", ())]
    return CertificateInfo(
        subject=_rdn_text(raw.get("subject")),
        issuer=_rdn_text(raw.get("issuer")),
        sans=sans,
        not_before=_cert_time(raw.get("notBefore")),
        not_after=_cert_time(raw.get("notAfter")),
        serial_number=raw.get("serialNumber"),
    )
