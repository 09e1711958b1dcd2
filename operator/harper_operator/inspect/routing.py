"""Which way each operationsUrl is reached: from this machine (None), or the API server path that proxies to the
Service or pod it names. Pure: it only reads URLs."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..api import hosts

DIRECT, LIVE = "direct", "live"  # how Harper is reached: see the package's docstring


class Refused(ValueError):
    """An operationsUrl that the chosen way of reaching Harper does not contact."""


def _label(value: str) -> bool:
    return 0 < len(value) <= 63 and value.replace("-", "a").isalnum() and value.isascii() and \
        value[0] != "-" and value[-1] != "-" and value == value.lower()


def proxy_path(operations_url: str, cluster_domain: str = "cluster.local") -> str:
    """The API server path that proxies to the Service or pod an operationsUrl names.

    * `<svc>.<ns>.svc[.<cluster domain>]` -> /api/v1/namespaces/<ns>/services/<scheme>:<svc>:<port>/proxy/
    * `<pod>.<svc>.<ns>.svc[.<cluster domain>]` (a pod of a headless Service, which cannot be proxied itself)
      -> /api/v1/namespaces/<ns>/pods/<scheme>:<pod>:<port>/proxy/ (the first label is the pod's name, as for
      the pods of a StatefulSet)

    Anything else raises Refused.
    """
    parts = urlsplit(operations_url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"operationsUrl {operations_url!r} has an invalid port") from None
    labels = host.split(".")
    suffixes = [["svc"], ["svc", *cluster_domain.strip(".").split(".")]]
    for suffix in suffixes:
        if labels[-len(suffix):] == suffix and len(labels) - len(suffix) in (2, 3):
            names = labels[:-len(suffix)]
            break
    else:
        raise Refused(f"{host or operations_url!r} is not the name of a Service or pod of the cluster "
                      f"(<service>.<namespace>.svc or <pod>.<service>.<namespace>.svc, optionally followed by "
                      f".{cluster_domain})")
    if parts.scheme not in ("http", "https") or not all(_label(n) for n in names):
        raise Refused(f"{host!r} does not name a Service or pod the API server can proxy to")
    path = (parts.path or "/").lstrip("/")
    if len(names) == 2:
        service, namespace = names
        return f"/api/v1/namespaces/{namespace}/services/{parts.scheme}:{service}:{port}/proxy/{path}"
    pod, _service, namespace = names
    return f"/api/v1/namespaces/{namespace}/pods/{parts.scheme}:{pod}:{port}/proxy/{path}"


def route(operations_url: str, via: str, cluster_domain: str = "cluster.local") -> str | None:
    """None: call the URL from this machine (only when asked to: DIRECT); else the API server's proxy path.
    Raises Refused for a URL the API server cannot proxy to: nothing, least of all Harper's credentials, is sent
    anywhere else."""
    if via == DIRECT:
        return None
    host = (urlsplit(operations_url).hostname or "").rstrip(".").lower()
    if hosts.is_loopback(host) or host == "localhost":
        # On this machine it is this machine's loopback, not the cluster's: whatever listens there would get the
        # super_user password (issue 21, `plan` used to call it).
        raise Refused(f"{host!r} is a loopback address: from this machine it is not the cluster's Harper, and this "
                      "command sends Harper's credentials only through the API server, so it sent nothing; run it "
                      "with --direct to call it from here (where that Harper really listens on this machine)")
    try:
        return proxy_path(operations_url, cluster_domain)
    except Refused as e:
        raise Refused(f"{e}: this command reaches Harper only through the API server and sent nothing there; "
                      "run it with --direct where that URL resolves") from None
