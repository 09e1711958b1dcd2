"""`certificates`: what the operator issued a provisioned cluster's pods, read from its Secret NAME-tls. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

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
