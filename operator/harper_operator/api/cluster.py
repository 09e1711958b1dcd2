"""HarperCluster: one Harper replication cluster."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from . import hosts, urls
from .instances import Instances
from .common import (DELETION_POLICY_DOC, GROUP, ClusterTLS, Conditions, Credentials, DeletionPolicy,
                     LocalObjectReference, Model, SecretKeySelector, rules)

PAUSE_ANNOTATION = f"{GROUP}/paused"
# Hostnames of nodes deleted with deletionPolicy Retain, as a JSON list: an annotation *value* fits any hostname
# (IPv6, 253 characters), where an annotation key per node does not.
RETAINED_ANNOTATION = f"{GROUP}/retained-nodes"


def _route_host(value: str) -> str:
    if (why := urls.why_not_route_host(value)) is not None:
        raise ValueError(why)
    return value


class Route(Model):
    """A replication peer that a member connects to at start-up (replication.routes)."""

    hostname: Annotated[str, Field(description="Host of a replication peer to connect to at start-up: a DNS name, an "
                                               "IPv4 address or an IPv6 address (brackets optional).",
                                   min_length=1, max_length=253, json_schema_extra={"pattern": urls.ROUTE_HOST}),
                        AfterValidator(_route_host)]
    port: Annotated[int, Field(description="Replication port of that peer.", ge=1, le=65535)]


RestartPolicy = Literal["Never", "Restart"]


def generated_ca_secret_name(cluster: str) -> str:
    """The certificate authority the operator makes for a provisioned cluster (its ca.crt is what calls trust)."""
    return f"{cluster}-ca"


def generated_secret_name(cluster: str) -> str:
    """The admin Secret the operator writes for a provisioned cluster whose spec names none."""
    return f"{cluster}-admin"


ISSUER_FOR_PROVISIONED = ("spec.tls.issuerRef is for a provisioned cluster whose pods the operator renders "
                          "(spec.instances without adopt): it mounts what cert-manager issues into them")


def generated_tls_secret_name(cluster: str) -> str:
    """The Secret a provisioned cluster's pods mount: each pod's certificate and key, and the authorities to trust."""
    return f"{cluster}-tls"


class HarperClusterSpec(Model):
    """Desired state of a Harper replication cluster."""

    model_config = {**Model.model_config, "json_schema_extra": rules(
        ("has(self.credentials) || has(self.instances)",
         "credentials are required unless spec.instances is set (the operator then writes an admin Secret)"),
        ("has(self.credentials) || !has(self.instances) || !has(self.instances.adopt)",
         "adopting a StatefulSet needs spec.credentials: the Secret its pods' admin user was created with"),
        ("!has(self.tls) || !has(self.tls.issuerRef) || (has(self.instances) && !has(self.instances.adopt))",
         ISSUER_FOR_PROVISIONED))}

    credentials: Annotated[Credentials | None, Field(
        description="Super_user credentials for every member, unless a HarperNode overrides them. With "
                    "spec.instances and no credentials, the operator generates the Secret NAME-admin once.")] = None
    instances: Annotated[Instances | None, Field(
        description="Run Harper here: the operator owns a StatefulSet, its Services, a PodDisruptionBudget and one "
                    "HarperNode per pod. Absent: Harper runs elsewhere and you write the HarperNodes.")] = None
    tls: Annotated[ClusterTLS, Field(description="TLS settings for every member, unless a HarperNode overrides "
                                                 "them.")] = ClusterTLS()
    routes: Annotated[list[Route], Field(
        description="Replication routes written into every member's configuration (cluster_set_routes). "
                    "Harper 4.7 connects new routes only after a restart; see restartPolicy.",
        max_length=64, json_schema_extra=rules((
            "self.all(r, self.filter(s, s.hostname == r.hostname && s.port == r.port).size() == 1)",
            "routes must be unique")))] = []
    restart_policy: Annotated[RestartPolicy, Field(
        description="Harper 4.7 applies some changes only at start-up: new routes, a changed subscription list, "
                    "and a node removed and added back reconnects only then. `Restart`: the operator restarts such "
                    "a member with Harper's restart operation. `Never`: it only lists them in "
                    "status.pendingRestart for you to restart.")] = "Restart"
    deletion_policy: Annotated[DeletionPolicy, Field(description=DELETION_POLICY_DOC + " A HarperNode may "
                                                     "override it for itself.")] = "Delete"
    allowed_hosts: Annotated[list[Annotated[str, Field(min_length=1, max_length=253, pattern=hosts.ENTRY_PATTERN)]], Field(
        description="Hosts the members may live on; the operator sends credentials and replication peers only there. "
                    "Each entry is a DNS name, `*.` and a domain (every name under it), an IP address or a CIDR "
                    "(matched against IP literals only; names are never resolved for it). Empty: the Services of "
                    "this cluster's namespace (*.<namespace>.svc and *.<namespace>.svc.<domain>, the operator's "
                    "cluster domain: cluster.local unless set otherwise) and loopback. "
                    "A HarperNode whose url or operationsUrl is elsewhere is Stalled and receives nothing.",
        max_length=64, json_schema_extra=rules(("self.all(h, !h.contains('/') || isCIDR(h))",
                                                "an entry with / must be a CIDR such as 10.20.0.0/16")))] = []
    allow_plaintext: Annotated[bool, Field(
        description="Allow http:// operationsUrl and ws:// url for hosts other than loopback. Off: credentials and "
                    "replication cross a network only over TLS.")] = False
    reconcile_interval_seconds: Annotated[int, Field(
        description="How often the operator compares Harper with the spec when nothing changed (drift repair).",
        ge=5, le=86400)] = 60


    @model_validator(mode="after")
    def _credentials_or_instances(self) -> "HarperClusterSpec":
        if self.credentials is None and self.instances is None:
            raise ValueError("credentials are required unless spec.instances is set")
        if self.credentials is None and self.instances is not None and self.instances.adopt is not None:
            raise ValueError("adopting a StatefulSet needs spec.credentials")
        if self.tls.issuer_ref is not None and (self.instances is None or self.instances.adopt is not None):
            raise ValueError(ISSUER_FOR_PROVISIONED)
        return self

    def secret_name(self, cluster: str) -> str:
        """The admin Secret in force: the spec's, or the one the operator generates."""
        return self.credentials.secret_ref.name if self.credentials else generated_secret_name(cluster)

    @property
    def issues_certificates(self) -> bool:
        """The operator runs this cluster's certificate authority: it renders the pods (not an adopted StatefulSet,
        whose pods keep the certificates they have)."""
        return self.instances is not None and self.instances.adopt is None

    def with_credentials(self, cluster: str) -> "HarperClusterSpec":
        """This spec with what is in force filled in, what every path past the API edge reads: the credentials, and
        for a cluster whose certificates the operator issues, its authority as the CA every call trusts (unless the
        spec names another)."""
        update: dict[str, Any] = {}
        if self.credentials is None:
            update["credentials"] = Credentials(secret_ref=LocalObjectReference(name=generated_secret_name(cluster)))
        if self.issues_certificates and self.tls.ca_secret_ref is None:
            # cert-manager's issuers: the authorities the pods trust, which the operator gathers from its Secrets
            trusted = generated_tls_secret_name(cluster) if self.tls.issuer_ref else generated_ca_secret_name(cluster)
            update["tls"] = self.tls.model_copy(update={"ca_secret_ref": SecretKeySelector(name=trusted, key="ca.crt")})
        return self.model_copy(update=update) if update else self

    def host_entries(self, namespace: str, cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN) -> tuple[str, ...]:
        """The allow-list in force: the spec's, or the namespace's Services (under the operator's cluster domain,
        the one it names provisioned pods with) and loopback."""
        return tuple(self.allowed_hosts) or hosts.default_entries(namespace, cluster_domain)

    def admits(self, host: str, namespace: str, cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN) -> bool:
        return hosts.admits(self.host_entries(namespace, cluster_domain), host)

    def admits_plaintext(self, host: str) -> bool:
        return self.allow_plaintext or hosts.is_loopback(host)


class OwedRestart(Model):
    """A restart the operator decided on and has not done yet."""

    node: Annotated[str, Field(description="Replication node name.")]
    reason: Annotated[str, Field(description="What the restart applies.")]


class RestartRecord(Model):
    """The last restart the operator made of a member (its cooldown outlives an operator restart)."""

    node: Annotated[str, Field(description="Replication node name.")]
    reason: Annotated[str, Field(description="What the restart applied.")]
    at: Annotated[float, Field(description="When, in seconds since the epoch.")]


class MemberStatus(Model):
    """One member of the cluster, summarised from its cluster_status."""

    name: Annotated[str, Field(description="HarperNode resource name.")]
    hostname: Annotated[str, Field(description="Replication node name.")]
    ready: Annotated[bool, Field(description="Connected to every expected peer on every database.")] = False
    connected_peers: Annotated[int, Field(description="Peers connected on every database.")] = 0
    expected_peers: Annotated[int, Field(description="Peers the spec asks for.")] = 0
    shard: Annotated[int | None, Field(description="Shard as cluster_status reports it.")] = None
    message: Annotated[str, Field(description="Why the member is not ready.")] = ""


class HarperClusterStatus(Model):
    """What the operator last saw of the cluster."""

    observed_generation: Annotated[int | None, Field(description="The generation last reconciled (on every attempt).")] = None
    conditions: Conditions = []
    ready_nodes: Annotated[str | None, Field(description="Ready members / declared members, e.g. 3/3.")] = None
    members: Annotated[list[MemberStatus], Field(description="One row per member, from cluster_status.")] = []
    pending_restart: Annotated[list[str], Field(description="Members whose routes apply after a restart.")] = []
    owed_restarts: Annotated[list[OwedRestart], Field(
        description="Restarts the operator owes: recorded before the writes that need them, so an interrupted "
                    "round does not forget them.")] = []
    last_restarts: Annotated[list[RestartRecord], Field(description="The last restart of each member.")] = []
    replicas: Annotated[int | None, Field(description="Harper pods of spec.instances that exist (scale subresource).")] = None
    selector: Annotated[str | None, Field(description="Label selector of those pods (scale subresource).")] = None


class HarperCluster(Model):
    """A Harper replication cluster. Members are the HarperNodes whose clusterRef names it."""

    spec: HarperClusterSpec
    status: HarperClusterStatus | None = None

