"""TLS helpers shared by the operations client and the replication probe.

Verification is on by default. A CA bundle (PEM text) replaces the system trust store when
given, because Harper nodes usually present certificates from their own private CA.

Certificates are decoded with the `cryptography` package. The results keep the shape that
`ssl.SSLSocket.getpeercert()` gives (OpenSSL's attribute names, its IP address and serial
number formats), so what the status shows does not depend on the decoder.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

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


# OpenSSL's names for the attributes of a distinguished name (what getpeercert() reports), by OID; the
# usual six are shortened. Any other attribute is named by its dotted OID.
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O", "2.5.4.11": "OU",
    "2.5.4.4": "surname", "2.5.4.5": "serialNumber", "2.5.4.9": "streetAddress", "2.5.4.12": "title",
    "2.5.4.15": "businessCategory", "2.5.4.16": "postalAddress", "2.5.4.17": "postalCode",
    "2.5.4.42": "givenName", "2.5.4.43": "initials", "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "1.2.840.113549.1.9.1": "emailAddress", "1.2.840.113549.1.9.2": "unstructuredName",
    "0.9.2342.19200300.100.1.1": "userId", "0.9.2342.19200300.100.1.25": "domainComponent",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionLocalityName",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionStateOrProvinceName",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionCountryName",
    "1.2.643.3.131.1.1": "INN", "1.2.643.100.1": "OGRN", "1.2.643.100.3": "SNILS",
}


def _rdn_text(name: x509.Name) -> str | None:
    """`CN=x,O=y` in the certificate's own order (not RFC 4514's reversed one), unescaped."""
    parts = []
    for rdn in name.rdns:
        for attribute in rdn:
            value = attribute.value
            text = value.hex() if isinstance(value, bytes) else value
            oid = attribute.oid.dotted_string
            parts.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={text}")
    return ",".join(parts) or None


def _san_text(name: x509.GeneralName) -> str:
    if isinstance(name, x509.IPAddress):
        address = name.value
        if isinstance(address, ipaddress.IPv6Address):  # OpenSSL writes all eight groups, uppercase
            packed = address.packed
            return ":".join(f"{int.from_bytes(packed[i:i + 2], 'big'):X}" for i in range(0, 16, 2))
        return str(address)
    if isinstance(name, x509.DirectoryName):
        return _rdn_text(name.value) or ""
    if isinstance(name, x509.RegisteredID):
        return name.value.dotted_string
    if isinstance(name, x509.OtherName):
        return "<unsupported>"
    return str(name.value)  # DNS name, e-mail address, URI


def _sans(cert: x509.Certificate) -> list[str]:
    """Subject alternative names in certificate order; none when the extension is absent or unreadable."""
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, x509.UnsupportedGeneralNameType, ValueError):
        return []
    return [_san_text(name) for name in extension.value]


def _serial_text(serial: int) -> str:
    """OpenSSL's form: uppercase hex in whole bytes, `-` before a negative one (e.g. `00`, `0F`, `-05`)."""
    digits = f"{abs(serial):X}"
    digits = digits.zfill(len(digits) + len(digits) % 2)
    return ("-" if serial < 0 else "") + digits


def decode_der_certificate(der: bytes | None) -> CertificateInfo | None:
    """Subject, issuer, SANs and validity of a DER certificate, or None if it cannot be read."""
    if not der:
        return None
    try:
        # Harper's self-made certificates name a three-letter country ("USA"): cryptography reads it and warns
        # on every read; the name is shown as it is.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cert = x509.load_der_x509_certificate(bytes(der))
            return CertificateInfo(
                subject=_rdn_text(cert.subject),
                issuer=_rdn_text(cert.issuer),
                sans=_sans(cert),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                serial_number=_serial_text(cert.serial_number),
            )
    except (ValueError, TypeError):
        return None


def peer_der(transport: object) -> bytes | None:
    """The DER certificate the other end of a TLS transport presented, or None."""
    get_extra = getattr(transport, "get_extra_info", None)
    ssl_object = get_extra("ssl_object") if get_extra else None
    if ssl_object is None:
        return None
    try:
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der
    except (ValueError, ssl.SSLError):
        return None


async def fetch_certificate(host: str, port: int, server_name: str | None, timeout: float) -> CertificateInfo | None:
    """Unverified TLS handshake, only to read the certificate for a diagnostic. Sends nothing else."""
    ctx = client_ssl_context(verify_tls=False)
    writer = None
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name or host), timeout)
        return decode_der_certificate(peer_der(writer.transport))
    except (OSError, asyncio.TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()


def verification_reason(error: BaseException | None) -> str | None:
    """OpenSSL's verify message (e.g. `certificate has expired`) when `error`, or what it wraps (aiohttp keeps it
    as certificate_error), is a refused certificate; None for any other failure."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        wrapped = getattr(error, "certificate_error", None)  # aiohttp's error is an ssl.CertificateError itself
        if wrapped is None and isinstance(error, ssl.SSLCertVerificationError):
            return str(getattr(error, "verify_message", None) or getattr(error, "reason", None)
                       or "certificate verify failed")
        error = wrapped or error.__cause__ or error.__context__
    return None


def describe_certificate(cert: CertificateInfo | None) -> str:
    """`subject CN=x, issued by CN=y, valid until 2027-01-01T00:00:00+00:00`: which certificate a message means."""
    if cert is None:
        return "a certificate the operator could not read"
    until = f", valid until {cert.not_after.isoformat()}" if cert.not_after else ""
    return f"subject {cert.subject or '(none)'}, issued by {cert.issuer or '(none)'}{until}"
