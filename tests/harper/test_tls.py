"""decode_der_certificate: the `cryptography` package reads the certificate, the results keep getpeercert()'s shape."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import datetime, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from harper_operator.harper import tls
from harper_operator.harper.tls import CertificateInfo, decode_der_certificate

NOT_BEFORE = datetime(1999, 12, 31, 23, 59, 58, tzinfo=timezone.utc)  # UTCTime
NOT_AFTER = datetime(2061, 2, 3, 4, 5, 6, tzinfo=timezone.utc)  # GeneralizedTime


def _name(*attributes: tuple[ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def _der(subject: x509.Name, *, issuer: x509.Name | None = None, sans: list[x509.GeneralName] | None = None,
         serial: int = 0x0123456789ABCDEF) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


SUBJECT = _name((NameOID.COUNTRY_NAME, "US"), (NameOID.STATE_OR_PROVINCE_NAME, "CA"),
                (NameOID.LOCALITY_NAME, "SF"), (NameOID.ORGANIZATION_NAME, "Acme, Inc."),
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"), (NameOID.COMMON_NAME, "node-1.example.com"),
                (NameOID.EMAIL_ADDRESS, "ops@example.com"), (ObjectIdentifier("1.2.3.4.5"), "odd"))
ISSUER = _name((NameOID.ORGANIZATION_NAME, "Harper"), (NameOID.COMMON_NAME, "Test-Certificate-Authority"))


def test_every_field_in_getpeercerts_shape():
    der = _der(SUBJECT, issuer=ISSUER, sans=[
        x509.DNSName("node-1.example.com"), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")), x509.RFC822Name("ops@example.com"),
        x509.UniformResourceIdentifier("https://node-1.example.com/"),
        x509.DirectoryName(_name((NameOID.COMMON_NAME, "dir"), (NameOID.ORGANIZATION_NAME, "D"))),
        x509.RegisteredID(ObjectIdentifier("1.2.3.4")),
        x509.OtherName(ObjectIdentifier("1.2.3.5"), b"\x0c\x02hi")])
    assert decode_der_certificate(der) == CertificateInfo(
        # the certificate's own order and OpenSSL's attribute names, the usual six shortened, nothing escaped
        subject="C=US,ST=CA,L=SF,O=Acme, Inc.,OU=Ops,CN=node-1.example.com,emailAddress=ops@example.com,"
                "1.2.3.4.5=odd",
        issuer="O=Harper,CN=Test-Certificate-Authority",
        # IPv6 as OpenSSL writes it: eight uppercase groups, nothing left out
        sans=["node-1.example.com", "10.0.0.1", "2001:DB8:0:0:0:0:0:1", "ops@example.com",
              "https://node-1.example.com/", "CN=dir,O=D", "1.2.3.4", "<unsupported>"],
        not_before=NOT_BEFORE, not_after=NOT_AFTER, serial_number="0123456789ABCDEF")


def test_multi_valued_rdn_and_no_san_extension():
    subject = x509.Name([x509.RelativeDistinguishedName([
        x509.NameAttribute(NameOID.COMMON_NAME, "x"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "y")])])
    info = decode_der_certificate(_der(subject))
    assert info is not None and info.subject in ("CN=x,O=y", "O=y,CN=x")  # a SET: DER sorts its members
    assert info.sans == []


@pytest.mark.parametrize(("serial", "text"), [(1, "01"), (0xABC, "0ABC"), (2**64, "010000000000000000")])
def test_serial_number_is_uppercase_hex_in_whole_bytes(serial, text):
    assert decode_der_certificate(_der(ISSUER, serial=serial)).serial_number == text


def test_validity_is_aware_utc():
    info = decode_der_certificate(_der(ISSUER))
    assert info.not_before == NOT_BEFORE and info.not_after == NOT_AFTER
    assert info.not_after.utcoffset().total_seconds() == 0


def test_the_private_cpython_decoder_is_not_needed(monkeypatch):
    monkeypatch.delattr(ssl._ssl, "_test_decode_cert", raising=False)
    info = decode_der_certificate(_der(ISSUER, sans=[x509.DNSName("localhost")]))
    assert info is not None and info.subject == "O=Harper,CN=Test-Certificate-Authority" and info.sans == ["localhost"]


def test_the_module_names_no_private_ssl_api():
    source = open(tls.__file__, encoding="utf-8").read()
    assert "_test_decode_cert" not in source and "ssl._ssl" not in source


@pytest.mark.parametrize("der", [None, b"", b"not a certificate", b"\x30\x03\x02\x01\x01"])
def test_junk_is_none(der):
    assert decode_der_certificate(der) is None



def test_harpers_three_letter_country_is_read_without_a_warning():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography builds one only unvalidated, and warns
        country = x509.NameAttribute(NameOID.COUNTRY_NAME, "USA", _validate=False)
        der = _der(x509.Name([country, x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.11")]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = decode_der_certificate(der)
    assert info is not None and info.subject == "C=USA,CN=127.0.0.11"
