"""`certificates`: what the operator issued a provisioned cluster's pods, read from its Secret NAME-tls. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from ..provision import pki


def _issuer(cert) -> str:
    return cert.issuer.rfc4514_string()


def certificate_rows(files: Mapping[str, str | None], now: datetime) -> list[dict[str, Any]]:
    """One row per pod certificate in the Secret's files (<pod>.crt, <pod>.key, ca.crt): its names, issuer, expiry,
    whether the bundle the pods trust verifies it and whether its key is its own. Nothing of a key is shown."""
    trusted = files.get("ca.crt") or ""
    rows = []
    for key in sorted(k for k in files if k.endswith(".crt") and k != "ca.crt"):
        pod, pem = key[:-4], files[key] or ""
        try:
            cert = pki.load(pem)
        except pki.BadCertificate:
            rows.append({"pod": pod, "problem": "not a PEM certificate"})
            continue
        signed = any(pki.signed_by(pem, authority) for authority in pki.split(trusted))
        own = bool(files.get(f"{pod}.key")) and pki.matches(pki.KeyPair(pem, files[f"{pod}.key"] or ""))
        expires = cert.not_valid_after_utc
        rows.append({"pod": pod, "subject": cert.subject.rfc4514_string(), "names": sorted(pki.names(pem)),
                     "issuer": _issuer(cert), "notAfter": expires.isoformat(),
                     "daysLeft": int((expires - now).total_seconds() // 86400),
                     "renewDue": pki.due(pem, now), "signedByTrustedCA": signed, "keyMatches": own})
    return rows


def certificate_table(rows: list[Mapping[str, Any]]) -> list[tuple]:
    head = ("POD", "SUBJECT", "ISSUER", "NOT-AFTER", "DAYS-LEFT", "VERIFIED", "KEY")
    return [head] + [(r["pod"], r.get("subject", "-"), r.get("issuer", r.get("problem", "-")),
                      r.get("notAfter", "-"), r.get("daysLeft", "-"),
                      "yes" if r.get("signedByTrustedCA") else "no", "ok" if r.get("keyMatches") else "wrong")
                     for r in rows]
