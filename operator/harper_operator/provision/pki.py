"""A provisioned cluster's own certificate authority and the certificates it issues: pure, the clock passed in.

Why the operator signs: Harper nodes left to themselves make a self-signed CA each and sign each other's certificates
on the first join, so nothing can be verified and a wiped node's new CA (same name as the old one) breaks its peers
(docs/harper-semantics.md, section 9). With one CA per cluster, every pod's certificate and every call the operator
makes are verified against it, and a pod's identity survives the loss of its volume.

Keys are RSA 2048 (what Harper makes for itself; every TLS stack it uses reads them). A certificate is due for renewal
once less than a third of its lifetime is left, so a renewal has two thirds of a lifetime of retries before anything
expires; the authority itself rolls over the same way, the old one trusted beside the new until it expires.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

AUTHORITY_LIFETIME = timedelta(days=3650)
LEAF_LIFETIME = timedelta(days=365)
# Clocks of the node and the operator may differ a little: a certificate is valid from a minute before it is made.
BACKDATE = timedelta(minutes=1)
KEY_BITS = 2048


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM text."""

    certificate: str
    key: str


class BadCertificate(ValueError):
    """PEM text that is not a certificate (or key) this module can read; the text itself is never quoted."""


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _pem_key(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except (ValueError, TypeError):
        raise BadCertificate("not a PEM certificate") from None


def load_all(pem: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except (ValueError, TypeError):
        raise BadCertificate("not a PEM certificate bundle") from None


def _load_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise BadCertificate("not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadCertificate("not an RSA private key")
    return key


def new_authority(cluster: str, now: datetime, lifetime: timedelta = AUTHORITY_LIFETIME) -> KeyPair:
    """A self-signed CA for one cluster (`cluster` is namespace/name, in its subject for people reading chains)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "harper-operator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"harper-operator CA {cluster} {now:%Y%m%d%H%M%S}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return KeyPair(_pem(cert), _pem_key(key))


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue(authority: KeyPair, common_name: str, names: Iterable[str], now: datetime,
          lifetime: timedelta = LEAF_LIFETIME) -> KeyPair:
    """A certificate for a server that is also a client (Harper's replication is mutual TLS both ways), for
    `common_name` and every name in `names` (DNS names or IP addresses), never outliving its authority."""
    ca_cert, ca_key = load(authority.certificate), _load_key(authority.key)
    key = _key()
    sans = list(dict.fromkeys([common_name, *names]))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + lifetime, ca_cert.not_valid_after_utc.replace(tzinfo=now.tzinfo)))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in sans]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return KeyPair(_pem(cert), _pem_key(key))


def _utc(cert: x509.Certificate, now: datetime) -> tuple[datetime, datetime]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now.tzinfo is None:
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return start, end


def expires(pem: str) -> datetime:
    return load(pem).not_valid_after_utc


def serial_and_issued_at(pem: str) -> tuple[int, float]:
    """A certificate's serial number and when issue() made it (its start less the backdating), seconds since the
    epoch: a pod that started before then read another certificate at start-up."""
    cert = load(pem)
    return cert.serial_number, (cert.not_valid_before_utc + BACKDATE).timestamp()


def due(pem: str, now: datetime) -> bool:
    """Less than a third of its lifetime left (or already expired, or not yet valid)."""
    start, end = _utc(load(pem), now)
    return now < start or end - now < (end - start) / 3


def names(pem: str) -> frozenset[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        sans = load(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset([*sans.get_values_for_type(x509.DNSName),
                      *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))])


def signed_by(pem: str, authority_pem: str) -> bool:
    """Whether `authority_pem`'s key signed the certificate (its signature checks out), whatever the dates."""
    cert, ca = load(pem), load(authority_pem)
    if cert.issuer != ca.subject:
        return False
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey), "authorities made here are RSA"
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:  # a signature scheme without a separate hash: none made here
        return False
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


def matches(pair: KeyPair) -> bool:
    """Whether the key is the certificate's own."""
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return (_load_key(pair.key).public_key().public_bytes(der, spki)
            == load(pair.certificate).public_key().public_bytes(der, spki))


def split(bundle_pem: str) -> list[str]:
    """Each certificate of a PEM bundle on its own (none for empty text)."""
    return [_pem(cert) for cert in load_all(bundle_pem)] if bundle_pem.strip() else []


def bundle(*pems: str) -> str:
    """Certificates one after the other, each once, in the order given: what a peer trusts during a rollover."""
    seen: dict[str, None] = {}
    for pem in pems:
        for cert in load_all(pem) if pem.strip() else []:
            seen.setdefault(_pem(cert), None)
    return "".join(seen)


def good(pair: KeyPair, authority_pem: str, wanted: Iterable[str], now: datetime, accepted: Sequence[str] = ()) -> bool:
    """Whether a certificate found in the cluster may stay: readable, its own key, signed by the authority in force
    (or one of the `accepted` beside it during a rollover), valid for every wanted name, and not due for renewal."""
    try:
        return matches(pair) and any(signed_by(pair.certificate, ca) for ca in (authority_pem, *accepted)) and \
            set(wanted) <= names(pair.certificate) and not due(pair.certificate, now)
    except BadCertificate:
        return False


def certificates(authority: KeyPair, found: Mapping[str, KeyPair], wanted: Mapping[str, Sequence[str]],
                 now: datetime, accepted: Sequence[str] = ()) -> dict[str, KeyPair]:
    """Each wanted holder's certificate (holder -> its names, the first its subject): the one found when good(),
    else a new one signed by `authority`. Nothing that is not wanted is kept."""
    return {holder: found[holder] if holder in found and good(found[holder], authority.certificate, names_, now,
                                                              accepted)
            else issue(authority, names_[0], names_[1:], now)
            for holder, names_ in wanted.items()}


def serial(pem: str) -> int:
    return load(pem).serial_number


@dataclass(frozen=True)
class Authority:
    """A cluster's certificate authority as its Secret holds it: `signing`, the first certificate and its key; every
    certificate trusted, the signing one first (a bundle: a rollover's old authority, or the rest of a user's chain);
    and during a rollover the authority it replaces, with its key, which keeps signing the pods' certificates until
    every pod trusts the new one (a pod presenting a certificate its peers do not trust yet would be cut off)."""

    signing: KeyPair
    trusted: tuple[str, ...]
    previous: KeyPair | None = None

    @property
    def bundle(self) -> str:
        return bundle(*self.trusted)

    def signer(self, all_trust: bool) -> KeyPair:
        """Who signs new certificates: the new authority once every pod trusts it (or nothing is rolling over)."""
        return self.previous if self.previous is not None and not all_trust else self.signing

    def accepted(self, all_trust: bool) -> tuple[str, ...]:
        """Whose certificates may stay: while some pod does not trust the signing authority yet, every trusted one;
        then only the signing one's, so the pods move to it."""
        return self.trusted if not all_trust else (self.signing.certificate,)

    def rolling(self) -> bool:
        """More than one authority is trusted: the pods must be seen to trust the signing one before they move to it."""
        return len(self.trusted) > 1


def read_authority(trusted_pem: str, key: str, previous_key: str = "") -> Authority:
    """The authority from its Secret's text: the certificates (the signing one first), its key, and during a rollover
    the key of the authority it replaces (matched against the other certificates). Raises BadCertificate."""
    certs = split(trusted_pem)
    if not certs:
        raise BadCertificate("no certificate")
    previous = next((KeyPair(c, previous_key) for c in certs[1:] if previous_key and matches(KeyPair(c, previous_key))),
                    None)
    return Authority(KeyPair(certs[0], key), tuple(certs), previous)


def roll_over(authority: Authority, cluster: str, now: datetime) -> Authority:
    """A new authority to sign from now on, the current one trusted beside it and signing until every pod trusts the
    new one. Only two at a time: an older previous one is dropped."""
    new = new_authority(cluster, now)
    return Authority(new, (new.certificate, authority.signing.certificate), authority.signing)


def settled(authority: Authority) -> Authority:
    """The rollover done: the signing authority alone."""
    return Authority(authority.signing, (authority.signing.certificate,))
