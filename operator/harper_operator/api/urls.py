"""The URLs and hosts a HarperNode or HarperCluster may name: one definition for the CRD and for the code.

The CRD's `pattern` is built here, and `why_not` is the same rule as code: the pydantic models run it, so an object
stored before the pattern was tightened (or anything a pattern lets through) is refused with a message a person can
act on, before any urllib.parse call could raise on it. Accepted: scheme://host[:port][/] where host is a DNS name
(labels of 1-63 characters), an IPv4 address, or an IPv6 address in brackets (RFC 3986, no zone); port 1-65535.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable
from urllib.parse import urlsplit

H16 = r"[0-9A-Fa-f]{1,4}"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # no leading zeros: Python reads none, WHATWG reads octal
IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_LS32 = rf"({H16}:{H16}|{IPV4})"


def _ipv6() -> str:
    """RFC 3986 section 3.2.2's IPv6address, one alternative per line of its grammar (RE2 has no look-ahead)."""
    def head(groups: int) -> str:  # [ *n( h16 ":" ) h16 ]
        return f"(({H16}:){{0,{groups}}}{H16})?" if groups else f"({H16})?"
    forms = [rf"({H16}:){{6}}{_LS32}", rf"::({H16}:){{5}}{_LS32}"]
    forms += [rf"{head(n)}::({H16}:){{{4 - n}}}{_LS32}" for n in range(4)]
    forms += [rf"{head(4)}::{_LS32}", rf"{head(5)}::{H16}", rf"{head(6)}::"]
    return "(" + "|".join(forms) + ")"


IPV6 = _ipv6()
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
DNS_NAME = rf"{_LABEL}(\.{_LABEL})*"  # an IPv4 address has this shape too
HOST = rf"({DNS_NAME}|\[{IPV6}\])"
PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# A route's host as Harper reads it in replication.routes: an IPv6 address with or without brackets.
ROUTE_HOST = rf"^({DNS_NAME}|{IPV6}|\[{IPV6}\])$"

# Ports the CRD refuses, for a message of its own: 0, leading zeros, above 65535.
_BAD_PORT = r":(0[0-9]*|6553[6-9]|655[4-9][0-9]|65[6-9][0-9]{2}|6[6-9][0-9]{3}|[7-9][0-9]{4}|[1-9][0-9]{5,})/?$"


def url_pattern(*schemes: str) -> str:
    return rf"^({'|'.join(schemes)})://{HOST}(:{PORT})?/?$"


def _ipv6_example(example: str) -> str:
    scheme, _, rest = example.partition("://")
    return f"{scheme}://[fd00::1]:{rest.rsplit(':', 1)[-1]}"


def url_rules(example: str) -> list[tuple[str, str]]:
    """CEL rules that say in words what the pattern refuses, for the mistakes people make (see e2e's
    test_invalid_manifests): the API server reports them next to the pattern's regular expression. Raw CEL strings
    (r'...'), so the expressions are the same text as the pattern's."""
    return [
        ("!self.contains('@')", "no user info (user@ or user:password@) in the URL: the operator sends the "
                                "credentials of the Secret"),
        (rf"!self.contains('[') || self.matches(r'^[a-z]+://\[{IPV6}\](:[0-9]+)?/?$')",
         f"a host in brackets must be an IPv6 address, e.g. {_ipv6_example(example)}; an IPv4 address or a name "
         f"goes without brackets, e.g. {example}"),
        (f"!self.matches(r'{_BAD_PORT}')", "the port must be a number from 1 to 65535 without leading zeros"),
    ]


# Lenient on purpose: it only finds the parts to name in a message; `url_pattern` decides.
_PARTS = re.compile(r"(?P<scheme>[^:/?#]*)://(?P<user>[^/?#@]*@)?(?P<host>\[[^\]/?#]*\]?|[^:/?#]*)"
                    r"(:(?P<port>[^/?#]*))?(?P<rest>.*)", re.DOTALL)


def why_not(value: Any, schemes: Iterable[str], example: str) -> str | None:
    """None when `value` is a URL the operator handles; else what is wrong and how to write it. Never raises."""
    schemes = tuple(schemes)
    if not isinstance(value, str):
        return f"must be a string such as {example}"
    if re.fullmatch(url_pattern(*schemes), value) and _splits(value):
        return None
    parts = _PARTS.fullmatch(value)
    if parts is None or parts["scheme"] not in schemes:
        return f"must start with {' or '.join(s + '://' for s in schemes)}, e.g. {example}"
    if parts["user"]:
        return "must not carry user info (user@ or user:password@): the operator sends the credentials of the Secret"
    host = parts["host"]
    if host.startswith("["):
        if not _is_ipv6_literal(host):
            return (f"host {host} is in brackets but is not an IPv6 address: brackets are for IPv6 only, e.g. "
                    f"{_ipv6_example(example)}; write an IPv4 address or a name without them, e.g. {example}")
    elif not re.fullmatch(DNS_NAME, host):
        return (f"host {host!r} is not a DNS name (labels of letters, digits and '-', at most 63 characters each, "
                "no trailing dot) or an IPv4 address")
    if parts["port"] is not None and not re.fullmatch(PORT, parts["port"]):
        return f"port {parts['port']!r} is not a number from 1 to 65535 (without leading zeros)"
    if parts["rest"] not in ("", "/"):
        return f"must be {schemes[0]}://host:port with no path, query or fragment, e.g. {example}"
    return f"is not {schemes[0]}://host:port with a DNS name, an IPv4 address or an [IPv6] address, e.g. {example}"


def _is_ipv6_literal(bracketed: str) -> bool:
    return bool(re.fullmatch(rf"\[{IPV6}\]", bracketed))


def _splits(value: str) -> bool:
    """urllib.parse reads it without raising: the check behind every urlsplit the operator makes."""
    try:
        parts = urlsplit(value)
        parts.port
        if parts.hostname and ":" in parts.hostname:
            ipaddress.IPv6Address(parts.hostname)
    except ValueError:
        return False
    return bool(parts.hostname)


def split(value: Any) -> tuple[str, str] | None:
    """(scheme, host) of a URL `why_not` accepts, the host lower-cased and without brackets; None for anything
    else. Never raises: what the code asks of a URL it reads from an object."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value)
        parts.port
    except ValueError:
        return None
    return (parts.scheme, parts.hostname) if parts.hostname else None


def why_not_route_host(value: Any) -> str | None:
    if isinstance(value, str) and re.fullmatch(ROUTE_HOST, value):
        return None
    return "must be a DNS name, an IPv4 address or an IPv6 address (brackets optional), e.g. harper-1.example"
