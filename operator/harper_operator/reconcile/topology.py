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

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Iterable
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
        assert base is not None  # the key came from one of the two
        sub = bool(m and m.subscribe and t and t.publish)
        pub = bool(m and m.publish and t and t.subscribe)
        out.append(Subscription(base.database, base.table, sub, pub))
    return normalize(out) or ()


def _host(text: str) -> str:
    """One spelling per host: how Harper itself reads a hostname back out of a URL.

    Harper parses route and record URLs, which lower-cases the host; DNS ignores a trailing dot; an IPv6 literal
    has many spellings. Compared as written, "Harper-1" and the "harper-1" Harper reports looked like two routes
    and every round restarted every member.
    """
    host = text.strip().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.lower()
    try:
        return ipaddress.IPv6Address(host).compressed
    except ValueError:
        return host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def url_key(url: object) -> str:
    """The form two replication URLs are compared in: equal keys, same endpoint, however each was spelled.

    For a URL that reads as scheme://host[:port] (urllib.parse reads it without error and finds a host), these
    spellings give the same key:

    * surrounding whitespace, and the case of the scheme and of the host (``WSS://Harper-1`` is ``wss://harper-1``);
    * trailing dots of a DNS name (``harper-1.example.`` is ``harper-1.example``);
    * every spelling of one IPv6 address: upper or lower case, leading zeros, ``::`` or zero groups, an embedded
      IPv4 tail (``[::1]``, ``[0:0:0:0:0:0:0:1]`` and ``[0000::0001]`` are one key, written ``[::1]``);
    * a port with leading zeros (``:09933`` is ``:9933``) and an empty port (``h:`` is ``h``);
    * user info, path, query and fragment, all dropped (``wss://u:p@h:1/x?y#z`` is ``wss://h:1``), a trailing slash
      with them.

    Not equal, because they can be different endpoints: another scheme (``ws`` and ``wss``), another port, no port
    and an explicit one (Harper takes a missing port for the caller's own, so ``wss://h`` is not ``wss://h:9933``),
    an IPv4 address and its IPv4-mapped IPv6 form (``1.2.3.4``, ``[::ffff:1.2.3.4]``), a name and the address it
    resolves to (names are never resolved), IPv4 in other notations (``127.1``, octal; Harper's URL parser reads
    them, Python's does not).

    Anything else (no ``://``, no host, a bracketed host that is no IPv6 address, a port that is not a number
    from 0 to 65535, not a string at all) is compared as its text: stripped, lower-cased, without a trailing slash.
    Never raises, and a key is its own key: url_key(url_key(u)) == url_key(u).
    """
    return _url_key(url if isinstance(url, str) else "" if url is None else str(url))


@functools.lru_cache(maxsize=16384)  # every round compares each HarperNode of the namespace (bench/scale.py)
def _url_key(url: str) -> str:
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return _as_text(text)
    host = _host(parts.hostname or "")
    if "://" not in text or not parts.scheme or not host:
        return _as_text(text)
    return f"{parts.scheme.lower()}://{_url_host(host)}" + (f":{port}" if port is not None else "")


def _as_text(text: str) -> str:
    return text.lower().rstrip("/").strip()


@dataclass(frozen=True, order=True)
class Route:
    """A replication route of replication.routes. Harper applies routes only at start-up.

    The hostname is normalised on construction (see _host), so equality, hashing and order compare what Harper
    compares; reading Harper's wire forms is the controller's job, this is the only core route.
    """

    hostname: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "hostname", _host(self.hostname))

    @property
    def url(self) -> str:
        return f"wss://{_url_host(self.hostname)}:{self.port}"


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
    """What the spec declares, plus what plan() must never take for a ghost record.

    A record whose name nobody declares is normally a ghost and is removed. But Harper names a node by its own
    replication.hostname, which may differ from the HarperNode's spec.hostname, and other clusters or retained
    nodes share the namespace: removing such a record takes a healthy node out of replication. So:

    * keep: record names never removed as ghosts (names declared by any HarperNode in the namespace, the names
      declared members report for themselves, names retained by deletionPolicy Retain, names of held members);
    * keep_urls: replication URLs of every declared HarperNode; a record pointing at one is not a ghost, whatever
      its name.

    shared_authority: every member trusts the authorities of a file it was given (a provisioned cluster's
    certificates: the operator's CA, the user's, or cert-manager's). Harper then checks a peer against that file,
    not against the CA its record of the peer names, so a node that comes back wiped with a certificate of another
    authority (after a rollover) needs no peer to forget anything (see plan.wiped()).
    """

    nodes: tuple[DesiredNode, ...]
    routes: tuple[Route, ...] = ()
    keep: frozenset[str] = frozenset()
    keep_urls: frozenset[str] = frozenset()
    shared_authority: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", frozenset(self.keep))
        object.__setattr__(self, "keep_urls", frozenset(self.keep_urls))

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
    ca_serial: str | None = None  # serial number of the CA this node trusts for that peer (ca_info), when shown


@dataclass(frozen=True)
class ObservedNode:
    name: str
    reachable: bool
    peers: dict[str, PeerRecord] = field(default_factory=dict)  # keyed by peer name
    shard: int | None = None  # cluster_status top-level shard: this node's own record
    routes: tuple[Route, ...] = ()  # cluster_get_routes: loaded at start-up PLUS any set since (4.7 appends in memory)
    routes_on_disk: tuple[Route, ...] | None = None  # get_configuration().replication.routes; None: not read
    routes_running: tuple[Route, ...] | None = None  # what the running process connects to, when known
    ca_serial: str | None = None  # serial number of the node's own CA; read only while it holds no records


@dataclass(frozen=True)
class ObservedCluster:
    nodes: dict[str, ObservedNode]

    def reachable(self, name: str) -> bool:
        node = self.nodes.get(name)
        return bool(node and node.reachable)
