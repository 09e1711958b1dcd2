"""Who is in a cluster and how to reach each member: pure, from resource bodies and Secrets.

A member that cannot be managed (its Secret is missing, its hostname is taken twice, ...) is *held*:
the operator writes nothing about it to Harper, neither adding nor removing it, and its status says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import ValidationError

from ..api import READABLE_LABEL, HarperClusterSpec, HarperNodeSpec, hosts, urls
from ..api.common import TLS, Credentials
from ..reconcile.problems import Problem
from ..reconcile.topology import DesiredCluster, DesiredNode, Route, Subscription

__all__ = ["Access", "Member", "Membership", "Problem", "SecretData", "Secrets", "membership", "secret_names"]


@dataclass(frozen=True)
class SecretData:
    """A Secret as the operator may see it: content only when it carries READABLE_LABEL."""

    readable: bool
    data: Mapping[str, str | None] = field(default_factory=dict, repr=False)  # None: a binary value
    error: str | None = None  # reading it failed (RBAC, API server); the members that need it wait


Secrets = Mapping[str, SecretData | None]  # Secret name -> what was read, None when it does not exist


@dataclass(frozen=True)
class Access:
    """How to reach one node's operations API. Credentials stay out of repr and logs."""

    operations_url: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    verify_tls: bool = True
    ca_pem: str | None = field(default=None, repr=False)


# Problems of a member's own spec: the operator sends it nothing until a person changes the spec, so it can never
# confirm anything (a Secret that cannot be read is not one of them: that member may well be a peer).
SPEC_REASONS = frozenset({"InvalidSpec", "InvalidURL", "HostNotAllowed", "PlaintextNotAllowed", "DuplicateHostname"})


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

    def managed_member(self, hostname: str) -> Member | None:
        """The one managed member with this hostname (a duplicate claimant is never managed)."""
        return next((m for m in self.members if m.managed and m.hostname == hostname), None)

    def readable_member(self, hostname: str) -> Member | None:
        """The member with this hostname that can be read, managed or leaving (its HarperNode being deleted: its
        records are proven on the others before Harper forgets it, docs/safety.md S1)."""
        return next((m for m in self.members if m.problem is None and m.access is not None
                     and m.hostname == hostname), None)

    @property
    def refused(self) -> frozenset[str]:
        """Hostnames of members the operator sends nothing to for a problem of their own spec (SPEC_REASONS)."""
        askable = {m.hostname for m in self.members if m.problem is None or m.problem.reason not in SPEC_REASONS}
        return frozenset(m.hostname for m in self.members if m.hostname not in askable)

    @property
    def deleting(self) -> frozenset[str]:
        """Hostnames of members whose HarperNode is being deleted (the finalizer waits for their proof)."""
        return frozenset(m.hostname for m in self.members if m.deleting)


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


def _not_readable(name: str) -> Problem:
    return Problem("SecretNotReadable", f"Secret {name!r} is not labelled {READABLE_LABEL}=true: the operator reads "
                                        f"only Secrets that opt in; label it (kubectl label secret {name} "
                                        f"{READABLE_LABEL}=true) or name another Secret")


URL_FIELDS = ("operationsUrl", "url")


def _invalid_url(field_name: str, why: str) -> Problem:
    return Problem("InvalidURL", f"spec.{field_name} {why}. Until spec.{field_name} is fixed the operator sends this "
                                 "node nothing and leaves Harper's records of it as they are")


def _host_problem(spec: HarperNodeSpec, cluster: HarperClusterSpec, namespace: str,
                  cluster_domain: str) -> Problem | None:
    """The cluster's owner decides where credentials and replication may go: check both URLs before any call."""
    for field_name, url in (("operationsUrl", spec.operations_url), ("url", spec.url)):
        parts = urls.split(url)
        if parts is None:  # the model admitted what urllib cannot read: a gap between the two, held here
            return _invalid_url(field_name, "cannot be read as scheme://host:port")
        scheme, host = parts
        if not cluster.admits(host, namespace, cluster_domain):
            return Problem("HostNotAllowed", f"spec.{field_name} host {host!r} is not in the HarperCluster's "
                                             f"allowedHosts ({', '.join(cluster.host_entries(namespace, cluster_domain))}): the "
                                             "operator sends nothing there; fix the URL, or have the cluster's "
                                             "owner add the host to spec.allowedHosts")
        if scheme in ("http", "ws") and not cluster.admits_plaintext(host):
            return Problem("PlaintextNotAllowed", f"spec.{field_name} is {scheme}:// to {host!r}, which would "
                                                  "send credentials or records unencrypted: use "
                                                  f"{scheme}s://, or set allowPlaintext: true on the "
                                                  "HarperCluster")
    return None


def _spec_problem(e: ValidationError) -> Problem:
    """What a spec the model refuses becomes: a URL's own reason when a URL is at fault (the schema of an object
    stored before the CRD's pattern was tightened), else the first error."""
    errors = e.errors()
    bad_url = next((err for err in errors if err["loc"][:1] and err["loc"][0] in URL_FIELDS), None)
    if bad_url is not None:
        return _invalid_url(bad_url["loc"][0], bad_url["msg"].removeprefix("Value error, "))
    first = errors[0]
    return Problem("InvalidSpec", f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def _access(url: str, credentials: Credentials, tls: TLS, secrets: Secrets) -> Access | Problem:
    name = credentials.secret_ref.name
    secret = secrets.get(name)
    if secret is None:
        return Problem("SecretNotFound", f"Secret {name!r} does not exist: create it with keys 'username' and "
                                         f"'password' of a Harper super_user and the label {READABLE_LABEL}=true")
    if secret.error:
        return Problem("SecretReadFailed", f"reading Secret {name!r} failed: {secret.error}", permanent=False)
    if not secret.readable:
        return _not_readable(name)
    missing = [k for k in ("username", "password") if not secret.data.get(k)]
    if missing:
        return Problem("SecretInvalid", f"Secret {name!r} lacks key(s) {', '.join(missing)} as text: add them "
                                        "(a Harper super_user's username and password)")
    ca_pem = None
    if tls.ca_secret_ref:
        ref = tls.ca_secret_ref
        ca_secret = secrets.get(ref.name)
        if ca_secret is not None and ca_secret.error:
            return Problem("SecretReadFailed", f"reading Secret {ref.name!r} failed: {ca_secret.error}",
                           permanent=False)
        if ca_secret is not None and not ca_secret.readable:
            return _not_readable(ref.name)
        ca = (ca_secret.data if ca_secret else {}).get(ref.key)
        if ca_secret is None or ref.key not in ca_secret.data:
            return Problem("CASecretNotFound", f"CA bundle {ref.name}/{ref.key} is missing: create the Secret "
                                               "with that key, or remove tls.caSecretRef")
        if not ca or "-----BEGIN CERTIFICATE-----" not in ca:
            return Problem("CASecretInvalid", f"CA bundle {ref.name}/{ref.key} holds no PEM certificate: put the "
                                              "CA's certificate(s) there in PEM form, or name another key")
        ca_pem = ca
    return Access(url, secret.data["username"], secret.data["password"], tls.verify, ca_pem)


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


def membership(cluster: HarperClusterSpec, nodes: list[Mapping[str, Any]], secrets: Secrets, *,
               namespace: str, cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN) -> Membership:
    """Members of the cluster from the HarperNodes that claim it, with what stops any of them. `cluster_domain` is
    the operator's (settings): the default allowedHosts are the namespace's Services under it."""
    parsed: list[tuple[Mapping[str, Any], HarperNodeSpec | Problem]] = []
    for body in sorted(nodes, key=lambda b: b["metadata"]["name"]):
        try:
            parsed.append((body, HarperNodeSpec.model_validate(body.get("spec") or {})))
        except ValidationError as e:
            # The CRD schema rejects most of this at apply time; this catches what it cannot.
            parsed.append((body, _spec_problem(e)))

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
            # The schema did not hold: keep what can be shown, never a value of the wrong type.
            declared = (body.get("spec") or {}).get("hostname") if isinstance(body.get("spec"), Mapping) else None
            members.append(Member(name, declared if isinstance(declared, str) and declared else name, None, body,
                                  deleting, problem=spec))
            continue
        problem = access = None
        if owner[spec.hostname] is not body:
            first = owner[spec.hostname]["metadata"]["name"]
            problem = Problem("DuplicateHostname", f"hostname {spec.hostname!r} is already declared by HarperNode "
                                                   f"{first}: each node needs its own hostname; fix spec.hostname "
                                                   "(delete and recreate this HarperNode, hostname is immutable)")
        elif (problem := _host_problem(spec, cluster, namespace, cluster_domain)) is None:
            found = _access(spec.operations_url, spec.credentials or cluster.credentials, spec.tls or cluster.tls,
                            secrets)
            problem, access = (found, None) if isinstance(found, Problem) else (None, found)
        members.append(Member(name, spec.hostname, spec, body, deleting, access, problem))

    desired = DesiredCluster(
        nodes=tuple(_desired_node(m) for m in members if m.managed),
        routes=tuple(Route(r.hostname, r.port) for r in cluster.routes),
        shared_authority=cluster.issues_certificates)
    return Membership(tuple(members), desired)
