"""`certificates`: what the operator issued a provisioned cluster's pods, read from its Secret NAME-tls; for an
external cluster, what each member's Harper lists as its own certificate and the authority that signed it. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from ..harper.models import Certificate, own_authority
from ..provision import pki
from ..provision.render import CA_KEY


def _own_key(pem: str, key: str | None) -> bool:
    try:
        return bool(key) and pki.matches(pki.KeyPair(pem, key or ""))
    except pki.BadCertificate:  # a key that is not PEM is not its own either
        return False


def certificate_rows(files: Mapping[str, str | None], now: datetime) -> list[dict[str, Any]]:
    """One row per pod certificate in the Secret's files (<pod>.crt, <pod>.key, ca.crt): its names, issuer, expiry,
    whether the bundle the pods trust verifies it and whether its key is its own. Nothing of a key is shown."""
    try:
        authorities = pki.split(files.get(CA_KEY) or "")  # once: every row is checked against the same bundle
    except pki.BadCertificate:
        authorities = []  # nothing verifies against a bundle that is not PEM
    rows = []
    for key in sorted(k for k in files if k.endswith(".crt") and k != CA_KEY):
        pod, pem = key[:-4], files[key] or ""
        try:
            cert = pki.load(pem)
        except pki.BadCertificate:
            rows.append({"pod": pod, "problem": "not a PEM certificate"})
            continue
        signed = any(pki.signed_by(pem, authority) for authority in authorities)
        own = _own_key(pem, files.get(f"{pod}.key"))
        expires = cert.not_valid_after_utc
        rows.append({"pod": pod, "subject": cert.subject.rfc4514_string(), "names": sorted(pki.names(pem)),
                     "issuer": cert.issuer.rfc4514_string(), "notAfter": expires.isoformat(),
                     "daysLeft": int((expires - now).total_seconds() // 86400),
                     "renewDue": pki.due(pem, now), "signedByTrustedCA": signed, "keyMatches": own})
    return rows


def certificate_table(rows: list[Mapping[str, Any]]) -> list[tuple]:
    head = ("POD", "SUBJECT", "ISSUER", "NOT-AFTER", "DAYS-LEFT", "VERIFIED", "KEY")
    return [head] + [(r["pod"], r.get("subject", "-"), r.get("issuer", r.get("problem", "-")),
                      r.get("notAfter", "-"), r.get("daysLeft", "-"),
                      "yes" if r.get("signedByTrustedCA") else "no", "ok" if r.get("keyMatches") else "wrong")
                     for r in rows]


def _verified(pem: str, trusted: str | None) -> bool:
    try:
        return any(pki.signed_by(pem, ca) for ca in pki.split(trusted or ""))
    except pki.BadCertificate:
        return False


def member_rows(found: Mapping[str, Sequence[Certificate] | str], names: Mapping[str, str],
                trusted: Mapping[str, str | None], now: datetime) -> list[dict[str, Any]]:
    """One row per member read (hostname -> its list_certificates, or why it could not be read): the certificate
    its Harper lists under its node name (`names`, the hostname when unknown), the authority that signed it, its
    expiry, and whether the CA bundle the operator trusts for that member (`trusted`: spec.tls.caSecretRef, None
    when none is given) verifies it."""
    rows = []
    for host in sorted(found):
        answer, name = found[host], names.get(host) or host
        if isinstance(answer, str):
            rows.append({"member": host, "problem": answer})
            continue
        own = next((c for c in answer if not c.is_authority and c.name == name and c.certificate), None)
        authority = own_authority(list(answer), name)
        if own is None:
            rows.append({"member": host, "problem": f"Harper lists no certificate named {name}"})
            continue
        try:
            cert = pki.load(own.certificate or "")
        except pki.BadCertificate:
            rows.append({"member": host, "problem": f"the certificate named {name} is not PEM"})
            continue
        expires = cert.not_valid_after_utc
        rows.append({"member": host, "subject": cert.subject.rfc4514_string(), "names": sorted(pki.names(own.certificate)),
                     "issuer": cert.issuer.rfc4514_string(), "authority": authority.name if authority else None,
                     "notAfter": expires.isoformat(), "daysLeft": int((expires - now).total_seconds() // 86400),
                     "verifiedByTrustedCA": _verified(own.certificate, trusted.get(host))})
    return rows


def member_table(rows: list[Mapping[str, Any]]) -> list[tuple]:
    head = ("MEMBER", "SUBJECT", "ISSUER", "NOT-AFTER", "DAYS-LEFT", "VERIFIED")
    return [head] + [(r["member"], r.get("subject", "-"), r.get("issuer", r.get("problem", "-")),
                      r.get("notAfter", "-"), r.get("daysLeft", "-"), "yes" if r.get("verifiedByTrustedCA") else "no")
                     for r in rows]


def authority_bundle(found: Mapping[str, Sequence[Certificate] | str], names: Mapping[str, str]) -> str:
    """The PEMs of the authorities that signed each member's own certificate, each once: what the operator must
    trust for these members (a Secret named by spec.tls.caSecretRef)."""
    pems = []
    for host in sorted(found):
        answer = found[host]
        if isinstance(answer, str):
            continue
        authority = own_authority(list(answer), names.get(host) or host)
        if authority is not None and authority.certificate and _readable(authority.certificate):
            pems.append(authority.certificate)
    return pki.bundle(*pems)


def _readable(pem: str) -> bool:
    try:
        return bool(pki.split(pem))
    except pki.BadCertificate:
        return False
