"""Where a HarperCluster's members may live: the owner's allow-list of hosts, and when plaintext is allowed.

Creating a HarperNode makes the operator send the super_user credentials to its operationsUrl and ask the
other members to replicate every record to its url. So both hosts must be ones the cluster's owner allowed.

Entries of `allowedHosts`: an exact DNS name (`harper-0.harper.db.svc.cluster.local`), a wildcard for every
name under a domain (`*.harper.db.svc.cluster.local`), an IP address, or a CIDR (`10.20.0.0/16`). Names are
never resolved to check a CIDR: a DNS answer can change after the check, a literal cannot.

Without entries the cluster admits the Services of its own namespace (`*.<ns>.svc`, `*.<ns>.svc.<domain>`) and
loopback addresses, which never leave the operator's own pod or machine. `<domain>` is the operator's cluster
domain (its --cluster-domain, the chart's clusterDomain), the one it names provisioned pods with: callers pass it
in, so a cluster provisioned under another domain admits its own HarperNodes. Plain http:// and ws:// are accepted for
loopback hosts, and for other hosts only with `allowPlaintext: true`.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

# Either an IP/CIDR or a DNS name, optionally with a leading "*." (checked again in `parse_entry`).
ENTRY_PATTERN = (r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*$"
                 r"|^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$")

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_address(host: str) -> bool:
    """An IP address (v4 or v6, bracketed or not), not a DNS name."""
    return _ip(host) is not None


def _name(host: str) -> str:
    return host.strip().rstrip(".").lower()


def is_loopback(host: str) -> bool:
    ip = _ip(host)
    return ip is not None and ip.is_loopback


DEFAULT_CLUSTER_DOMAIN = "cluster.local"


def default_entries(namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> tuple[str, ...]:
    """The allow-list of a cluster without allowedHosts: its namespace's Services under the operator's cluster
    domain, and loopback."""
    domain = _name(cluster_domain) or DEFAULT_CLUSTER_DOMAIN
    return (f"*.{namespace}.svc", f"*.{namespace}.svc.{domain}", "127.0.0.0/8", "::1")


def admits(entries: Iterable[str], host: str) -> bool:
    """Does any entry admit `host` (a URL's host: a DNS name or an IP literal, brackets allowed)?"""
    ip = _ip(host)
    name = _name(host)
    for entry in entries:
        entry = entry.strip()
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif entry.startswith("*."):
            if name.endswith(_name(entry[1:])) and len(name) > len(entry) - 1:
                return True
        elif name == _name(entry):
            return True
    return False
