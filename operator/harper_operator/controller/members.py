"""Who is in a cluster and how to reach each member: pure, from resource bodies and Secrets.

A member that cannot be managed (its Secret is missing, its hostname is taken twice, ...) is *held*:
the operator writes nothing about it to Harper, neither adding nor removing it, and its status says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import ValidationError

from ..api import HarperClusterSpec, HarperNodeSpec
from ..api.common import TLS, Credentials
from ..reconcile.topology import DesiredCluster, DesiredNode, Route, Subscription

Secrets = Mapping[str, Mapping[str, str] | None]  # Secret name -> data, None when it does not exist


@dataclass(frozen=True)
class Problem:
    reason: str  # stable CamelCase, used as condition reason
    message: str  # what is wrong and how to fix it; never a credential
    permanent: bool = True  # permanent -> Stalled (no retry storm); transient -> Reconciling


@dataclass(frozen=True)
class Access:
    """How to reach one node's operations API. Credentials stay out of repr and logs."""

    operations_url: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    verify_tls: bool = True
    ca_pem: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Member:
    resource: str  # HarperNode name
    hostname: str
    spec: HarperNodeSpec | None
    body: Mapping[str, Any] = field(repr=False, compare=False)
    deleting: bool = False
    access: Access | None = None
    problem: Problem | None = None

    @property
    def managed(self) -> bool:
        return self.problem is None and not self.deleting and self.access is not None


@dataclass(frozen=True)
class Membership:
    members: tuple[Member, ...]
    desired: DesiredCluster  # managed members only

    @property
    def held(self) -> frozenset[str]:
        """Hostnames that are declared but not managed: Harper keeps whatever it has for them."""
        managed = {m.hostname for m in self.members if m.managed}  # a later duplicate does not hold the owner
        return frozenset(m.hostname for m in self.members if not m.managed and m.hostname not in managed)


def secret_names(cluster: HarperClusterSpec, nodes: list[Mapping[str, Any]]) -> set[str]:
    """Every Secret a reconcile needs to read."""
    names = {cluster.credentials.secret_ref.name}
    if cluster.tls.ca_secret_ref:
        names.add(cluster.tls.ca_secret_ref.name)
    for body in nodes:
        spec = body.get("spec") or {}
        if name := ((spec.get("credentials") or {}).get("secretRef") or {}).get("name"):
            names.add(name)
        if name := ((spec.get("tls") or {}).get("caSecretRef") or {}).get("name"):
            names.add(name)
    return names


def _access(url: str, credentials: Credentials, tls: TLS, secrets: Secrets) -> Access | Problem:
    name = credentials.secret_ref.name
    data = secrets.get(name)
    if data is None:
        return Problem("SecretNotFound", f"Secret {name!r} does not exist: create it with keys "
                                         "'username' and 'password' of a Harper super_user")
    missing = [k for k in ("username", "password") if not data.get(k)]
    if missing:
        return Problem("SecretInvalid", f"Secret {name!r} lacks key(s) {', '.join(missing)}: add them "
                                        "(a Harper super_user's username and password)")
    ca_pem = None
    if tls.ca_secret_ref:
        ref = tls.ca_secret_ref
        ca = (secrets.get(ref.name) or {}).get(ref.key)
        if not ca:
            return Problem("CASecretNotFound", f"CA bundle {ref.name}/{ref.key} is missing: create the Secret "
                                               "with that key, or remove tls.caSecretRef")
        ca_pem = ca
    return Access(url, data["username"], data["password"], tls.verify, ca_pem)


def _desired_node(member: Member) -> DesiredNode:
    spec = member.spec
    subscriptions = None
    if spec.subscriptions is not None:
        subscriptions = tuple(Subscription(s.database, s.table, s.subscribe, s.publish) for s in spec.subscriptions)
    return DesiredNode(
        name=spec.hostname, url=spec.url.rstrip("/"), shard=spec.shard, subscriptions=subscriptions,
        revoked_certificates=tuple(spec.revoked_certificates),
        start_time=spec.start_time.isoformat() if spec.start_time else None,
        retain_authorization=spec.retain_authorization, resource=member.resource)


def membership(cluster: HarperClusterSpec, nodes: list[Mapping[str, Any]], secrets: Secrets) -> Membership:
    """Members of the cluster from the HarperNodes that claim it, with what stops any of them."""
    parsed: list[tuple[Mapping[str, Any], HarperNodeSpec | Problem]] = []
    for body in sorted(nodes, key=lambda b: b["metadata"]["name"]):
        try:
            parsed.append((body, HarperNodeSpec.model_validate(body.get("spec") or {})))
        except ValidationError as e:
            # The CRD schema rejects most of this at apply time; this catches what it cannot.
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            parsed.append((body, Problem("InvalidSpec", f"spec.{where}: {first['msg']}")))

    # The first HarperNode to claim a hostname keeps it; a later claimant must not disturb a working node.
    owner: dict[str, Mapping[str, Any]] = {}
    for body, spec in sorted(parsed, key=lambda p: (p[0]["metadata"].get("creationTimestamp") or "",
                                                    p[0]["metadata"]["name"])):
        if isinstance(spec, HarperNodeSpec):
            owner.setdefault(spec.hostname, body)
    members = []
    for body, spec in parsed:
        name = body["metadata"]["name"]
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        if isinstance(spec, Problem):
            members.append(Member(name, (body.get("spec") or {}).get("hostname", name), None, body, deleting,
                                  problem=spec))
            continue
        problem = access = None
        if owner[spec.hostname] is not body:
            first = owner[spec.hostname]["metadata"]["name"]
            problem = Problem("DuplicateHostname", f"hostname {spec.hostname!r} is already declared by HarperNode "
                                                   f"{first}: each node needs its own hostname; fix spec.hostname "
                                                   "(delete and recreate this HarperNode, hostname is immutable)")
        else:
            found = _access(spec.operations_url, spec.credentials or cluster.credentials, spec.tls or cluster.tls,
                            secrets)
            problem, access = (found, None) if isinstance(found, Problem) else (None, found)
        members.append(Member(name, spec.hostname, spec, body, deleting, access, problem))

    desired = DesiredCluster(
        nodes=tuple(_desired_node(m) for m in members if m.managed),
        routes=tuple(Route(r.hostname, r.port) for r in cluster.routes))
    return Membership(tuple(members), desired)
