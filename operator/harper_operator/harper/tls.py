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


def client_ssl_context(verify_tls: bool = True, ca_pem: str | None = None) -> ssl.SSLContext:
    if verify_tls:
        ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
        return ctx
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ca_pem:  # harmless, and keeps the context usable if a caller flips verify_mode back on
        ctx.load_verify_locations(cadata=ca_pem)
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
