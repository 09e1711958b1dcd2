"""Desired and observed replication topology: plain frozen values, no I/O.

Vocabulary (see docs/harper-semantics.md for the experiments behind it):

* Harper keeps one record per node name in ``system.hdb_nodes``. Among fully replicating members that table is
  itself replicated, so a record is cluster-wide, not per pair: what one member writes about node B, every full
  member soon lists about B.
* ``cluster_status`` on node A shows one row per record A holds (``PeerRecord``). A row with ``replicates`` true
  means full replication; a row with ``subscriptions`` means an explicit relationship, written from A's point of
  view: ``subscribe`` = A receives that table from the peer, ``publish`` = A sends it.
* A node that declares explicit subscriptions does not replicate ``system``, so it gets no gossip: it is joined
  pair by pair, and each of its pairs is written by an add_node on that node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit


@dataclass(frozen=True, order=True)
class Subscription:
    """One table a node exchanges: from the point of view of the node that declares (or lists) it."""

    database: str
    table: str | None
    subscribe: bool  # this node receives the table from the peer
    publish: bool  # this node sends the table to the peer

    @property
    def key(self) -> tuple[str, str]:
        return (self.database, self.table or "")

    def reversed(self) -> "Subscription":
        """The same relationship seen from the other end (Harper's reverseSubscription)."""
        return Subscription(self.database, self.table, subscribe=self.publish, publish=self.subscribe)

    def to_harper(self) -> dict[str, Any]:
        return {"database": self.database, "table": self.table, "subscribe": self.subscribe, "publish": self.publish}


Subscriptions = tuple[Subscription, ...]


def normalize(subs: Iterable[Subscription] | None) -> Subscriptions | None:
    """Canonical form for comparison: one entry per (database, table), sorted, entries that move nothing dropped.

    Harper keeps an entry whose subscribe and publish are both false (update_node merges lists and can only turn an
    entry off, never delete it), and such an entry moves no data, so it is the same as no entry.
    Duplicates are merged with OR. None (full replication) stays None.
    """
    if subs is None:
        return None
    merged: dict[tuple[str, str], Subscription] = {}
    for s in subs:
        old = merged.get(s.key)
        if old is not None:
            s = Subscription(s.database, s.table, old.subscribe or s.subscribe, old.publish or s.publish)
        merged[s.key] = s
    return tuple(sorted((s for s in merged.values() if s.subscribe or s.publish), key=lambda s: s.key))


def reverse(subs: Iterable[Subscription]) -> Subscriptions:
    return normalize(s.reversed() for s in subs) or ()


def pair_subscriptions(a: "DesiredNode", b: "DesiredNode") -> Subscriptions | None:
    """What A's record of B must hold, from A's point of view. None: full replication; (): no relationship.

    * both full: None.
    * A explicit, B full: A's own list (the full node exchanges whatever A asks for).
    * A full, B explicit: B's list reversed.
    * both explicit: a table moves from one to the other only when the sender publishes it AND the receiver
      subscribes to it; entries that end up moving nothing are dropped.
    """
    if a.subscriptions is None and b.subscriptions is None:
        return None
    if b.subscriptions is None:
        return normalize(a.subscriptions) or ()
    if a.subscriptions is None:
        return reverse(b.subscriptions)
    mine = {s.key: s for s in normalize(a.subscriptions) or ()}
    theirs = {s.key: s for s in normalize(b.subscriptions) or ()}
    out = []
    for key in sorted(set(mine) | set(theirs)):
        m, t = mine.get(key), theirs.get(key)
        base = m or t
        sub = bool(m and m.subscribe and t and t.publish)
        pub = bool(m and m.publish and t and t.subscribe)
        out.append(Subscription(base.database, base.table, sub, pub))
    return normalize(out) or ()


@dataclass(frozen=True, order=True)
class Route:
    """A replication route of replication.routes. Harper applies routes only at start-up."""

    hostname: str
    port: int

    @property
    def url(self) -> str:
        return f"wss://{self.hostname}:{self.port}"

    def to_harper(self) -> str:
        """The wire form to send in cluster_set_routes / cluster_delete_routes.

        Use the URL string, not {hostname, port}: Harper 4.7's duplicate check compares objects by
        ``(a.host === b.host || a.hostname === b.hostname) && a.port === b.port``, which is true for ANY two
        objects of the same key style and port (undefined === undefined). Seen: set [{hostname:A,port:9933},
        {hostname:B,port:9933}] stored only A; a later set of C was skipped as a duplicate; a delete of one object
        deletes every object route with that port. Strings are compared exactly.
        """
        return self.url

    @classmethod
    def from_harper(cls, value: Any) -> "Route":
        """Parse a route as Harper stores it: "wss://host:port", "host:port", or {host|hostname, port}."""
        if isinstance(value, str):
            if "://" in value:
                parts = urlsplit(value)
                return cls(parts.hostname or "", parts.port or 9933)
            host, _, port = value.rpartition(":")
            return cls(host, int(port)) if host and port.isdigit() else cls(value, 9933)
        if isinstance(value, Mapping):
            return cls(str(value.get("hostname") or value.get("host") or ""), int(value.get("port") or 9933))
        raise ValueError(f"not a route: {value!r}")


@dataclass(frozen=True)
class DesiredNode:
    name: str  # Harper replication node name == HarperNode.spec.hostname
    url: str  # wss://host:port of its replication endpoint
    shard: int | None = None
    subscriptions: Subscriptions | None = None  # None = full replication (replicates: true)
    revoked_certificates: tuple[str, ...] = ()
    start_time: str | None = None
    retain_authorization: bool = False
    resource: str = ""  # the HarperNode's Kubernetes name, for messages

    @property
    def full(self) -> bool:
        return self.subscriptions is None

    @property
    def label(self) -> str:
        return f"{self.name} (HarperNode {self.resource})" if self.resource and self.resource != self.name else self.name


@dataclass(frozen=True)
class DesiredCluster:
    nodes: tuple[DesiredNode, ...]
    routes: tuple[Route, ...] = ()

    def by_name(self) -> dict[str, DesiredNode]:
        return {n.name: n for n in self.nodes}


@dataclass(frozen=True)
class PeerRecord:
    """One row of a node's cluster_status ``connections``: that node's record of one peer."""

    name: str
    url: str | None
    shard: int | None
    subscriptions: Subscriptions | None  # None when the row has none, or when replicates hides them
    replicates: bool
    connected: bool  # every database socket of the row connected (False when it has no socket)
    revoked_certificates: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObservedNode:
    name: str
    reachable: bool
    peers: dict[str, PeerRecord] = field(default_factory=dict)  # keyed by peer name
    shard: int | None = None  # cluster_status top-level shard: this node's own record
    routes: tuple[Route, ...] = ()  # cluster_get_routes: loaded at start-up PLUS any set since (4.7 appends in memory)
    routes_on_disk: tuple[Route, ...] | None = None  # get_configuration().replication.routes; None: not read
    routes_running: tuple[Route, ...] | None = None  # what the running process connects to, when known


@dataclass(frozen=True)
class ObservedCluster:
    nodes: dict[str, ObservedNode]

    def reachable(self, name: str) -> bool:
        node = self.nodes.get(name)
        return bool(node and node.reachable)


# --- building the observed side from Harper's JSON (pure; the shell passes the parsed bodies) ---


def subscriptions_from_harper(raw: Any) -> Subscriptions | None:
    if not raw:
        return None
    return tuple(Subscription(str(s.get("database") or s.get("schema") or ""), s.get("table"),
                              bool(s.get("subscribe")), bool(s.get("publish"))) for s in raw)


def peer_record_from_harper(connection: Mapping[str, Any]) -> PeerRecord:
    """One element of cluster_status ``connections``.

    * ``replicates``: true for full replication; absent/null for an explicit relationship.
    * ``subscriptions``: Harper reports null when ``replicates`` is true (it ignores subscriptions then).
    * ``connected``: we call a row connected when it has database sockets and all of them say connected:true.
    """
    sockets = connection.get("database_sockets") or []
    replicates = connection.get("replicates") is True
    return PeerRecord(
        name=str(connection.get("name") or ""),
        url=connection.get("url"),
        shard=connection.get("shard"),
        subscriptions=None if replicates else subscriptions_from_harper(connection.get("subscriptions")),
        replicates=replicates,
        connected=bool(sockets) and all(s.get("connected") is True for s in sockets),
        revoked_certificates=tuple(connection.get("revoked_certificates") or ()),
    )


def observed_node_from_harper(name: str, cluster_status: Mapping[str, Any] | None, *,
                              routes: Iterable[Any] = (), routes_on_disk: Iterable[Any] | None = None,
                              routes_running: Iterable[Any] | None = None) -> ObservedNode:
    """ObservedNode from a cluster_status answer (None: the node could not be asked -> unreachable)."""
    if cluster_status is None:
        return ObservedNode(name=name, reachable=False)
    peers = {}
    for c in cluster_status.get("connections") or []:
        rec = peer_record_from_harper(c)
        if rec.name and rec.name != name:
            peers[rec.name] = rec
    return ObservedNode(
        name=name, reachable=True, peers=peers, shard=cluster_status.get("shard"),
        routes=tuple(sorted(Route.from_harper(r) for r in routes)),
        routes_on_disk=None if routes_on_disk is None else tuple(sorted(Route.from_harper(r) for r in routes_on_disk)),
        routes_running=None if routes_running is None else tuple(sorted(Route.from_harper(r) for r in routes_running)),
    )
