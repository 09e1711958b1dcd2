"""HarperNode: one Harper instance and how it takes part in its cluster."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from .common import (DELETION_POLICY_DOC, GROUP, Conditions, Credentials, DeletionPolicy, LocalObjectReference,
                     Model, TLS, rules)
from .urls import url_pattern, url_rules, why_not

# Set "true" on a HarperNode by a person who accepts that writes only it holds may be lost: its deletion then
# removes it from Harper without waiting for the proof that its records are on the members that stay (a node gone for
# good can never give that proof). docs/safety.md, S1.
LEAVE_WITHOUT_PROOF_ANNOTATION = f"{GROUP}/leave-without-proof"

# Harper's node name: a host name or an IP address (v4, or v6 without brackets).
NODE_NAME = r"^[A-Za-z0-9]([A-Za-z0-9.\-:]*[A-Za-z0-9])?$"
REPLICATION_URL = url_pattern("wss", "ws")
OPERATIONS_URL = url_pattern("https", "http")
REPLICATION_EXAMPLE = "wss://10.0.0.1:9933"
OPERATIONS_EXAMPLE = "https://10.0.0.1:9925"
DATABASE = r"^[A-Za-z0-9_\-]+$"


def _url(schemes: tuple[str, ...], example: str) -> AfterValidator:
    """The URL rule in Python too: the message names the mistake and the fix, where a regular expression would not
    (and an object stored before the CRD's pattern was tightened is read with it)."""
    def check(value: str) -> str:
        if (why := why_not(value, schemes, example)) is not None:
            raise ValueError(why)
        return value
    return AfterValidator(check)


class Subscription(Model):
    """What this node replicates with each peer: a database, or one table of it, in one or both directions."""

    model_config = {**Model.model_config, "json_schema_extra": rules(
        ("self.subscribe || self.publish", "a subscription must subscribe, publish or both"))}

    database: Annotated[str, Field(description="Database to replicate.", min_length=1, max_length=128,
                                   pattern=DATABASE)]
    table: Annotated[str | None, Field(description="One table of the database; all tables when absent.",
                                       min_length=1, max_length=128, pattern=DATABASE)] = None
    subscribe: Annotated[bool, Field(description="This node receives changes from its peers.")] = True
    publish: Annotated[bool, Field(description="This node sends its changes to its peers.")] = True


class HarperNodeSpec(Model):
    """Desired state of one Harper instance in its cluster."""

    cluster_ref: Annotated[LocalObjectReference, Field(
        description="The HarperCluster (same namespace) this node belongs to. Immutable.",
        json_schema_extra=rules(("self == oldSelf",
                                 "clusterRef is immutable: delete this HarperNode and create a new one")))]
    hostname: Annotated[str, Field(
        description="Harper's replication node name (replication.hostname). Immutable: Harper keys every "
                    "peer record by it.", min_length=1, max_length=253, pattern=NODE_NAME,
        json_schema_extra=rules(("self == oldSelf",
                                 "hostname is immutable: delete this HarperNode and create a new one")))]
    url: Annotated[str, Field(
        description="Replication URL peers connect to, wss://host:port (ws:// only where the HarperCluster "
                    "allows plaintext). Give the port: Harper otherwise assumes the caller's own port. The host "
                    "must be one the HarperCluster's allowedHosts admits.",
        max_length=512, json_schema_extra={"pattern": REPLICATION_URL, **rules(
            ("self.startsWith('wss://') || self.startsWith('ws://')", "url must start with wss:// or ws://"),
            *url_rules(REPLICATION_EXAMPLE))}), _url(("wss", "ws"), REPLICATION_EXAMPLE)]
    operations_url: Annotated[str, Field(
        description="Where this node's operations API answers, https://host:port (http:// only where the "
                    "HarperCluster allows plaintext). The operator sends the super_user credentials here, so the "
                    "host must be one the HarperCluster's allowedHosts admits.", max_length=512,
        json_schema_extra={"pattern": OPERATIONS_URL, **rules(*url_rules(OPERATIONS_EXAMPLE))}),
        _url(("https", "http"), OPERATIONS_EXAMPLE)]
    shard: Annotated[int | None, Field(description="Shard number of this node; absent for none.", ge=0,
                                       le=65535)] = None
    subscriptions: Annotated[list[Subscription] | None, Field(
        description="Explicit subscriptions with every peer. Absent: full replication of every database "
                    "(the default mesh).", max_length=64, json_schema_extra=rules((
            "self.all(s, self.filter(t, t.database == s.database && "
            "(has(t.table) ? t.table : '') == (has(s.table) ? s.table : '')).size() == 1)",
            "subscriptions must name each database (and table) once"))), ] = None
    start_time: Annotated[datetime | None, Field(
        description="Replicate changes from this time on (RFC 3339, UTC) when the node first joins.")] = None
    revoked_certificates: Annotated[list[str], Field(
        description="Serial numbers of certificates this node must no longer accept.", max_length=1024)] = []
    retain_authorization: Annotated[bool, Field(
        description="Store the credentials on the peer records so peers authenticate with them later.")] = False
    credentials: Annotated[Credentials | None, Field(
        description="Override the cluster's credentials for this node.")] = None
    tls: Annotated[TLS | None, Field(description="Override the cluster's TLS settings for this node.")] = None
    deletion_policy: Annotated[DeletionPolicy | None, Field(
        description=DELETION_POLICY_DOC + " Absent: the cluster's policy.")] = None


class SocketStatus(Model):
    """One database socket to a peer, as cluster_status reports it. Only what a person acts on: latency, lag and
    last-received times change on every look and live in metrics and `harper-operator status` (a status that changed
    every round was a write per node per interval and an event for every watcher)."""

    database: Annotated[str, Field(description="Database this socket replicates.")]
    connected: Annotated[bool, Field(description="The socket is open.")] = False


class PeerStatus(Model):
    """One peer of this node, as cluster_status reports it."""

    name: Annotated[str, Field(description="Peer node name.")]
    url: Annotated[str | None, Field(description="Peer replication URL.")] = None
    shard: Annotated[int | None, Field(description="Peer shard.")] = None
    connected: Annotated[bool, Field(description="Connected on every database.")] = False
    sockets: Annotated[list[SocketStatus], Field(description="One row per database socket.")] = []


class Certificate(Model):
    """The certificate the node's replication endpoint presents."""

    subject: Annotated[str | None, Field(description="Replication certificate subject.")] = None
    sans: Annotated[list[str], Field(description="Subject alternative names.")] = []
    not_after: Annotated[str | None, Field(description="Expiry (RFC 3339).")] = None


class HarperNodeStatus(Model):
    """What the operator last saw of this node."""

    observed_generation: Annotated[int | None, Field(description="The generation last reconciled (on every attempt).")] = None
    conditions: Conditions = []
    node_name: Annotated[str | None, Field(description="Node name as Harper reports it.")] = None
    shard: Annotated[int | None, Field(description="Shard as Harper reports it.")] = None
    connected_peers: Annotated[str | None, Field(description="Connected peers / expected peers, e.g. 2/2.")] = None
    peers: Annotated[list[PeerStatus], Field(description="One row per peer, from cluster_status.")] = []
    certificate: Annotated[Certificate | None, Field(description="What the replication endpoint presents.")] = None


class HarperNode(Model):
    """One Harper instance; it joins the HarperCluster named by clusterRef."""

    spec: HarperNodeSpec
    status: HarperNodeStatus | None = None
