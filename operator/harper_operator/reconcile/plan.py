"""plan(): the shortest list of Harper operations that makes the observed topology equal the desired one.

Pure and deterministic: no I/O, no clock, stable order. Every rule here follows something seen on real
harperdb 4.7.29 nodes; docs/harper-semantics.md has the experiments. In short:

* Full mesh: records gossip among full members, so each new full member costs one add_node on ONE seed.
* Explicit subscriptions: the declaring node replicates no ``system`` data, so it gets no gossip; each of its pairs
  is one add_node called ON that node with the pair's list (its own point of view). The peer's record of it is
  written by Harper itself (add_node_back) and gossips among the full members.
* Changing an explicit list: remove_node + add_node of each pair (update_node merges lists and never drops an
  entry). The node keeps its old table filter until it restarts (seen), hence ``restart_for_subscriptions``.
* Switching a node between full and explicit in place is refused (Stalled): its old records replay into the mesh
  and split it (seen). A fresh node (no records) may switch.
* Routes change only the config file; they apply at the next start.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from .problems import Problem
from .topology import (DesiredCluster, DesiredNode, ObservedCluster, ObservedNode, PeerRecord, Route,
                       Subscriptions, normalize, pair_subscriptions, reverse, url_key)

# --- operations ---------------------------------------------------------------------------------------------------


def _subs_text(subs: Subscriptions | None) -> str:
    if subs is None:
        return "full replication"
    if not subs:
        return "no tables"
    parts = []
    for s in subs:
        way = "<->" if s.subscribe and s.publish else ("<-" if s.subscribe else "->")
        parts.append(f"{way}{s.database}.{s.table or '*'}")
    return "subscriptions " + " ".join(parts)


@dataclass(frozen=True)
class AddNode:
    """add_node on `on` for `target`. target.subscriptions is the list to SEND (from `on`'s point of view, pair
    specific), not necessarily what the target's HarperNode declares; None = full replication."""

    on: str
    target: DesiredNode
    restart_required: bool = False  # a re-created explicit pair: `on` applies the new list only after a restart
    mend: bool = False  # `on` lacks the record of a joined member that gossip never brought (see plan(), step 3)

    def describe(self) -> str:
        text = f"add_node on {self.on}: {self.target.name} at {self.target.url}, {_subs_text(self.target.subscriptions)}"
        if self.target.shard is not None:
            text += f", shard {self.target.shard}"
        if self.restart_required:
            text += f" (restart {self.on} afterwards so it applies the new list)"
        if self.mend:
            text += f" ({self.on} lacks this record: gossip never brought it)"
        return text


@dataclass(frozen=True)
class UpdateNode:
    """update_node on `on` for `target`: same request shape as AddNode."""

    on: str
    target: DesiredNode

    def describe(self) -> str:
        text = f"update_node on {self.on}: {self.target.name} at {self.target.url}, {_subs_text(self.target.subscriptions)}"
        if self.target.shard is not None:
            text += f", shard {self.target.shard}"
        if self.target.revoked_certificates:
            text += f", {len(self.target.revoked_certificates)} revoked certificate(s)"
        return text


@dataclass(frozen=True)
class RemoveNode:
    on: str
    hostname: str

    def describe(self) -> str:
        return f"remove_node on {self.on}: {self.hostname}"


@dataclass(frozen=True)
class SetRoutes:
    """cluster_set_routes on `on`.

    Send each route as its url string, never as {hostname, port}: Harper 4.7's duplicate check compares objects by
    ``(a.host === b.host || a.hostname === b.hostname) && a.port === b.port``, true for ANY two objects of the same
    key style and port (seen: set [{hostname:A,port:9933},{hostname:B,port:9933}] stored only A). Strings are
    compared exactly.
    """

    on: str
    routes: tuple[Route, ...]

    def describe(self) -> str:
        if not self.routes:
            return f"cluster_set_routes on {self.on}: [] (rewrites the config file with the loaded routes)"
        return f"cluster_set_routes on {self.on}: {', '.join(r.url for r in self.routes)}"


@dataclass(frozen=True)
class DeleteRoutes:
    on: str
    routes: tuple[Route, ...]

    def describe(self) -> str:
        return f"cluster_delete_routes on {self.on}: {', '.join(r.url for r in self.routes)}"


@dataclass(frozen=True)
class Restart:
    """restart on `on`. Whether it runs now is decided by the restart budget (restarts.admit), not here.

    settle: wanted because of something merely observed (reconnect, shard), which must persist for a grace period
    first, because a joining node shows the same picture for a moment. plan()'s own restarts (routes,
    subscriptions) follow a write of ours and need no grace.
    """

    on: str
    reason: str = ""
    settle: bool = False
    grace: float | None = None  # a settle restart's own grace period (seconds); None: the budget's default
    # a picture a member still joining shows for a while (reconnect, apart): it also waits for the last join to
    # settle (restarts.JOIN_GRACE)
    transient: bool = False

    def describe(self) -> str:
        return f"restart {self.on}" + (f" ({self.reason})" if self.reason else "")


ROUTES_RESTART = "load replication routes"
SUBSCRIPTIONS_RESTART = "apply the new subscription list"
CERTIFICATE_RESTART = "serve its renewed certificate"
AUTHORITY_RESTART = "trust the cluster's new certificate authority"
REJOIN_RESTART = "reconnect to its peers after it was removed and added back"


Operation = AddNode | UpdateNode | RemoveNode | SetRoutes | DeleteRoutes | Restart


# --- diagnose -----------------------------------------------------------------------------------------------------


def _host_is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _fresh(o: ObservedNode | None) -> bool:
    return bool(o and o.reachable and not o.peers)


def _removed(name: str, observed: ObservedCluster, up: Iterable[str]) -> bool:
    """Was `name` taken out of the mesh by a remove_node (by hand, say)? It still holds its records of the others,
    every one disconnected, and no member that answers holds one of it. Harper keeps such a node's own sockets closed
    even after it is added back, until it restarts (docs/harper-semantics.md section 3), so that restart follows the
    add_node at once rather than after the grace an observed `reconnect` gets. A joining node never looks like
    this: it holds no records before its add_node."""
    o = observed.nodes.get(name)
    if not o or not o.reachable or not o.peers or any(r.connected for r in o.peers.values()):
        return False
    return not any(name in observed.nodes[a].peers for a in up if a != name)  # `up` answered: it is observed


_FORGET_CA = "forget the old certificate authority of {}, which was wiped"


def forget_ca_reason(name: str) -> str:
    return _FORGET_CA.format(name)


def waiting_for_restarts(reasons: Iterable[str]) -> set[str]:
    """The wiped nodes whose peers still owe the restart that makes them forget its old CA (from the reasons of
    the owed restarts): their join waits, since a pair made before the peer restarted stays half-made (seen)."""
    prefix, suffix = _FORGET_CA.split("{}")
    return {r[len(prefix):len(r) - len(suffix)] for r in reasons if r.startswith(prefix) and r.endswith(suffix)}


def wiped(name: str, observed: ObservedCluster) -> bool:
    """A node that answers with no records while its peers' records of it name another CA: its data was wiped
    (a lost volume, a reinstall) and it came back under its old name with a new certificate authority. Harper
    keeps every CA it saw for that name in memory, the old one first, and fails the new certificates until it
    restarts (docs/harper-semantics.md, section 9). A new node (no record of it anywhere) or one whose peers show
    its current CA is not wiped."""
    o = observed.nodes.get(name)
    if o is None or not (_fresh(o) and o.ca_serial):
        return False
    return any(a != name and p.reachable and (r := p.peers.get(name)) is not None and r.ca_serial
               and r.ca_serial != o.ca_serial for a, p in observed.nodes.items())


def _actually_full(o: ObservedNode | None) -> bool:
    """Harper runs this node with full replication: it holds full records (its own record is not visible)."""
    return bool(o and o.reachable and any(r.replicates for r in o.peers.values()))


def _mode_switch(node: DesiredNode, desired: dict[str, DesiredNode], observed: ObservedCluster) -> bool:
    """Does Harper hold `node` in the other mode (full vs explicit) than declared?"""
    me = observed.nodes.get(node.name)
    others = [a for a in sorted(desired) if a != node.name and observed.reachable(a)]
    if node.full:
        for a in others:
            r = observed.nodes[a].peers.get(node.name)
            if desired[a].full and r is not None and not r.replicates and r.subscriptions:
                # a full pair held as explicit: the node that is not running full is the one that switched
                if _actually_full(observed.nodes[a]) or not _actually_full(me):
                    return True
        return bool(me and me.reachable and not _actually_full(me) and any(
            not r.replicates and r.subscriptions for p, r in me.peers.items() if p in desired and desired[p].full))
    for a in others:
        r = observed.nodes[a].peers.get(node.name)
        if r is not None and r.replicates and _actually_full(observed.nodes[a]):
            return True
    return bool(me and me.reachable and any(r.replicates for r in me.peers.values()))


def diagnose(desired: DesiredCluster, observed: ObservedCluster) -> list[Problem]:
    """Schema-valid specs that cannot (yet) be made true, found without writing to Harper. Sorted."""
    problems: list[Problem] = []
    names: dict[str, list[DesiredNode]] = {}
    urls: dict[str, list[DesiredNode]] = {}
    for n in desired.nodes:
        names.setdefault(n.name, []).append(n)
        urls.setdefault(url_key(n.url), []).append(n)
    for name, same in sorted(names.items()):
        if len(same) > 1:
            problems.append(Problem(
                "DuplicateHostname",
                f"{len(same)} HarperNodes ({', '.join(sorted(x.resource or x.name for x in same))}) declare hostname "
                f"{name!r}: Harper keeps one record per node name, so give each HarperNode its own spec.hostname"))
    for url, same in sorted(urls.items()):
        if len({x.name for x in same}) > 1:
            problems.append(Problem(
                "DuplicateUrl",
                f"HarperNodes {', '.join(sorted(x.resource or x.name for x in same))} all use url {url}: one Harper "
                "listens there, so all but one record would point at the wrong node; give each its own spec.url"))
    by_name = {n.name: n for n in desired.nodes}
    for n in sorted(by_name.values(), key=lambda n: n.name):
        host = urlsplit(n.url).hostname or ""
        if host and not _host_is_ip(host) and host.lower() != n.name.lower():
            problems.append(Problem(
                "HostnameUrlMismatch",
                f"{n.label}: url host {host!r} differs from hostname {n.name!r}; Harper's replication certificate "
                f"names the node, so TLS to {host} would fail. Set spec.url to wss://{n.name}:<port> or spec.hostname "
                f"to {host!r}", node=n.name))
        if not observed.reachable(n.name):
            problems.append(Problem(
                "Unreachable",
                f"{n.label}: Harper did not answer cluster_status; nothing is sent to it or about it until it does",
                node=n.name, permanent=False, blocking=False))
        elif _mode_switch(n, by_name, observed) and not _fresh(observed.nodes.get(n.name)):
            if n.full:
                msg = (f"{n.label} is declared with full replication but Harper holds it with explicit subscriptions. "
                       "Harper 4.7 cannot switch it in place: its old pair records would replay into the mesh and "
                       "split it. Remove the HarperNode (deletionPolicy: Delete), wipe that Harper's data (a fresh "
                       "ROOTPATH), then declare it again")
                problems.append(Problem("ExplicitToFullNeedsFreshNode", msg, node=n.name))
            else:
                msg = (f"{n.label} declares subscriptions but Harper holds it as a full-replication member. Harper 4.7 "
                       "cannot switch it in place (update_node keeps replicates:true, which overrides the list). "
                       "Remove the HarperNode (deletionPolicy: Delete), wipe that Harper's data (a fresh ROOTPATH), "
                       "then declare it again with subscriptions")
                problems.append(Problem("FullToExplicitNeedsFreshNode", msg, node=n.name))
    full = [n for n in by_name.values() if n.full]
    if len(full) >= 2 and not any(observed.reachable(n.name) for n in full):
        problems.append(Problem(
            "NoReachableSeed",
            "no full-replication member answers, so no add_node can be sent; the operator waits for one",
            permanent=False))
    return sorted(problems, key=lambda p: (p.node or "", p.reason, p.message))


# --- plan -----------------------------------------------------------------------------------------------------------


_WRITABLE = frozenset({"url", "shard", "revoked"})


def _mismatch(row: PeerRecord | None, target: DesiredNode, expected: Subscriptions | None) -> frozenset[str]:
    """How A's row for `target` differs from what A's record must hold."""
    if row is None:
        return frozenset({"missing"})
    kinds = set()
    if expected is None:
        if not row.replicates:
            kinds.add("mode")
    elif row.replicates:
        kinds.add("mode")
    elif (normalize(row.subscriptions) or ()) != expected:
        kinds.add("subscriptions")
    if url_key(row.url or "") != url_key(target.url):  # Harper may report the host lower-cased
        kinds.add("url")
    if target.shard is not None and row.shard != target.shard:
        kinds.add("shard")
    if target.shard is None and row.shard is not None:
        kinds.add("shard-clear")  # update_node cannot clear a shard (400 'shard' must be a number): restart does
    if not set(target.revoked_certificates) <= set(row.revoked_certificates):
        kinds.add("revoked")
    return frozenset(kinds)


def choose_seed(desired: DesiredCluster, observed: ObservedCluster, skip: Iterable[str] = ()) -> str | None:
    """The reachable full member with the most live links to the declared full peers, counted from both ends (its
    connected record of a peer, the peer's connected record of it); then the one holding records of the most of
    them; then the one most of them hold a record of; ties by name.

    Both ends, because right after a seed's add_node calls Harper shows the links coming up one end at a time (seen
    on 4.7.29, 0.24 s after the calls: the seed's three records all disconnected, one joined node's record of the
    seed connected). Scored on its own connected records alone, that joined node outscored the seed, and the next
    look planned add_node calls on it for the nodes the seed had just added (bench/converge.py). Records held of
    it last, because by then gossip has given that node as many records as the seed, while every joined node holds
    the seed's (add_node writes it back) and only the seed holds the joined node's."""
    skip = set(skip)
    full = [n.name for n in desired.nodes if n.full and n.name not in skip]

    def row(a: str, b: str) -> PeerRecord | None:
        o = observed.nodes.get(a)
        r = o.peers.get(b) if o and o.reachable else None
        return r if r is not None and r.replicates else None

    best: tuple[tuple[int, int, int], str] | None = None
    for name in sorted(set(full)):
        o = observed.nodes.get(name)
        if not (o and o.reachable):
            continue
        peers = [p for p in full if p != name]
        links = sum(bool((r := row(name, p)) and r.connected) + bool((r := row(p, name)) and r.connected)
                    for p in peers)
        score = (links, sum(row(name, p) is not None for p in peers), sum(row(p, name) is not None for p in peers))
        if best is None or score > best[0]:
            best = (score, name)
    return best[1] if best else None


def _forget(observed: ObservedCluster, name: str, among: Iterable[str]) -> ObservedCluster:
    """The observed cluster as it will be once `name`'s record is removed from the members `among`."""
    among = set(among)
    nodes = dict(observed.nodes)
    for a in among:
        o = nodes.get(a)
        if o and name in o.peers:
            nodes[a] = replace(o, peers={k: v for k, v in o.peers.items() if k != name})
    return ObservedCluster(nodes=nodes)


def _ghost(name: str, desired: DesiredCluster, observed: ObservedCluster) -> bool:
    """Is the record `name` one that no declared member needs?

    Not when a HarperNode declares the name, when the shell keeps it (desired.keep), or when any reachable node's
    record of it points at a declared URL: Harper names a node by its own replication.hostname, which can differ
    from spec.hostname, and removing that record would take a healthy member out of replication.
    """
    if name in desired.keep or any(n.name == name for n in desired.nodes):
        return False
    declared_urls = {url_key(u) for u in desired.keep_urls} | {url_key(n.url) for n in desired.nodes}
    for o in observed.nodes.values():
        row = o.peers.get(name) if o.reachable else None
        if row is not None and row.url and url_key(row.url) in declared_urls:
            return False
    return True


def mends(desired: DesiredCluster, observed: ObservedCluster, hold: Iterable[str] = ()) -> list[AddNode]:
    """add_node ON a joined full member for a joined full member whose record it lacks. Not part of plan(): while a
    mesh is on its way every look shows such holes for a moment, and plan() writes nothing then; the shell adds
    these once they have lasted a grace period (reconcile/ghosts.hold_mends).

    Seen on pods (4.7.29), after two add_node through one seed: ten minutes later one new member held no record of
    the other, which held its record, and nothing was planned (the seed's records were whole). A restart of it did
    not help; an add_node on it for the other mended it within 3 s. When both lack each other's record, the smaller
    name calls."""
    problems = diagnose(desired, observed)
    if any(p.blocking and p.node is None for p in problems):
        return []
    blocked = {p.node for p in problems if p.blocking and p.node}
    nodes = {n.name: n for n in desired.nodes if n.name not in blocked}
    seed = choose_seed(desired, observed, skip=blocked)
    if seed is None:
        return []

    def row(a: str, b: str) -> PeerRecord | None:
        o = observed.nodes.get(a)
        return o.peers.get(b) if o and o.reachable else None

    held = set(hold)
    joined = {n for n, d in nodes.items() if d.full and observed.reachable(n) and n not in held and (
        n == seed or (row(seed, n) is not None and row(n, seed) is not None))}
    out = []
    for a in sorted(joined - {seed}):
        for b in sorted(joined - {a, seed}):
            if row(a, b) is None and (row(b, a) is not None or a < b):
                out.append(AddNode(a, replace(nodes[b], subscriptions=None), mend=True))
    return out


def plan(desired: DesiredCluster, observed: ObservedCluster, *, restart_for_routes: bool = False,
         restart_for_subscriptions: bool = False, hold: Iterable[str] = ()) -> list[Operation]:
    """Operations, in the order to run them, that make Harper match `desired`. [] when it already does.

    Never sends anything to, or about, a node that did not answer (reachable=False). Nodes named by a blocking
    problem of diagnose() are left alone; a cluster-wide blocking problem (duplicate names) yields []. A record is
    removed as a ghost only when nothing declares or keeps it (see DesiredCluster.keep). Restart operations are
    wishes: the shell runs them through the restart budget (restarts.admit).
    """
    problems = diagnose(desired, observed)
    if any(p.blocking and p.node is None for p in problems):
        return []
    blocked = {p.node for p in problems if p.blocking and p.node}
    held = set(hold)  # wiped nodes not joined yet: their peers restart first (see wiped())
    nodes = {n.name: n for n in desired.nodes if n.name not in blocked}
    up = {name for name in nodes if observed.reachable(name)}
    full = sorted(n for n in nodes if nodes[n].full)
    explicit = sorted(n for n in nodes if not nodes[n].full)
    view = observed
    seed = choose_seed(desired, observed, skip=blocked)

    ghosts: list[Operation] = []
    switches: list[Operation] = []
    mesh: list[Operation] = []
    pair_removes: list[Operation] = []
    pair_adds: list[Operation] = []
    pair_updates: list[Operation] = []
    restarts: list[Operation] = []

    def row(a: str, b: str) -> PeerRecord | None:
        o = view.nodes.get(a)
        return o.peers.get(b) if o else None

    def _in_mesh(a: str, hub: str | None = None) -> bool:
        """Does `a` get `hub`'s gossip (default: the seed's)? Records written on the hub reach only members that
        pull from it, so a row elsewhere that differs is not something a write on the hub can fix."""
        hub = hub or seed
        if a == hub:
            return True
        r = row(a, hub) if hub else None
        return bool(r is not None and r.connected and r.replicates)

    # 1. Ghosts: records of names nobody declares. Full members share records, so one remove_node spreads;
    #    an explicit member's records are its own, so each of them removes its own.
    listed = [p for p in sorted({p for a in nodes if a in up for p in observed.nodes[a].peers})
              if _ghost(p, desired, observed)]
    for ghost in listed:
        listers = [a for a in sorted(up) if ghost in observed.nodes[a].peers]
        full_listers = [a for a in listers if nodes[a].full]
        if full_listers:
            first = seed if seed in full_listers else full_listers[0]
            ghosts.append(RemoveNode(first, ghost))
        ghosts.extend(RemoveNode(a, ghost) for a in listers if not nodes[a].full)
    for ghost in listed:
        view = _forget(view, ghost, nodes)

    # 2. Fresh nodes that Harper still holds in the other mode, or wiped ones: drop the old record from the mesh
    #    first. Every other member of a wiped node must restart to forget its old CA; the restart budget makes
    #    them one at a time, and a join that fails meanwhile is retried by the next rounds.
    # With a shared authority the records' CA does not matter (seen on loopback, 4.7.29: a node wiped after a
    # rollover, its peers' records naming the CA before it, re-added by one add_node, meshed in 1.2 s with no
    # restart): it joins again as a new node does.
    wiped_now = set() if desired.shared_authority else {name for name in nodes if name in up and wiped(name, observed)}
    for name in sorted(nodes):
        if name in wiped_now:
            held.add(name)
            # Every other member, also one down now: it may have come back before the old record went, and
            # then loaded the old CA again (seen); the restart budget makes it once it answers.
            for a in sorted(set(nodes) - wiped_now):
                restarts.append(Restart(a, forget_ca_reason(name)))
            listers = [a for a in sorted(up) if a != name and name in view.nodes[a].peers]
            full_listers = [a for a in listers if nodes[a].full]
            if full_listers:
                first = seed if seed in full_listers else full_listers[0]
                switches.append(RemoveNode(first, name))
                # A member that does not get `first`'s gossip (its link down, its own record removed) would restart
                # still holding the old record, and so trust the old CA again: it removes its own copy now, before
                # any restart (found by the model checker, tests/modelcheck).
                switches.extend(RemoveNode(a, name) for a in full_listers if a != first and not _in_mesh(a, first))
            switches.extend(RemoveNode(a, name) for a in listers if not nodes[a].full)
            view = _forget(view, name, listers)
            continue
        if name in up and _fresh(observed.nodes[name]) and _mode_switch(nodes[name], nodes, observed):
            full_listers = [a for a in full if a in up and a != name and name in view.nodes[a].peers]
            if full_listers:
                first = seed if seed in full_listers else full_listers[0]
                switches.append(RemoveNode(first, name))
                view = _forget(view, name, full)

    # 3. Full mesh: one seed adds every full member it lacks; gossip does the rest.
    if seed is not None:
        alt = choose_seed(desired, view, skip=blocked | {seed})
        for name in full:
            if name == seed:
                caller = alt
            else:
                caller = seed
            if caller is None or name not in up or name in held or caller in held:
                continue
            target = replace(nodes[name], subscriptions=None)
            joined = row(seed, name) is not None and row(name, seed) is not None if name != seed else True
            if not joined:
                mesh.append(AddNode(caller, target))
                if _removed(name, view, up):
                    restarts.append(Restart(name, REJOIN_RESTART))
                continue
            kinds: set[str] = set()
            for a in full:
                if a != name and a in up and _in_mesh(a, caller) and (r := row(a, name)) is not None:
                    kinds |= _mismatch(r, target, None)
            writable = kinds & _WRITABLE
            if writable:
                if name == seed and row(caller, name) is None:
                    continue
                mesh.append(UpdateNode(caller, target))


    # 4. Explicit pairs: each written by an add_node ON the explicit node (the smaller name when both are).
    mesh_record_fixed: set[str] = set()
    mesh_record_removed: set[str] = set()
    for x in explicit:
        if x not in up or x in held:
            continue
        removes: list[Operation] = []
        adds: list[Operation] = []
        updates: list[Operation] = []
        for p in sorted(nodes):
            if p == x or (not nodes[p].full and p < x) or p not in up or p in held:
                continue
            subs = pair_subscriptions(nodes[x], nodes[p])
            assert subs is not None  # x is explicit: its pair records carry lists
            xrow, prow = row(x, p), row(p, x)
            target = replace(nodes[p], subscriptions=subs)
            if subs == ():
                if xrow is not None:
                    removes.append(RemoveNode(x, p))
                elif prow is not None and (not nodes[p].full or x not in mesh_record_removed):
                    removes.append(RemoveNode(p, x))
                    if nodes[p].full:
                        mesh_record_removed.add(x)
                continue
            if xrow is None or prow is None:
                adds.append(AddNode(x, target))
                continue
            xk = _mismatch(xrow, nodes[p], subs)
            pk = _mismatch(prow, nodes[x], reverse(subs))
            if {"subscriptions", "shard-clear"} & (xk | pk):
                # update_node merges lists and cannot clear a shard: re-create the pair instead
                removes.append(RemoveNode(x, p))
                adds.append(AddNode(x, target, restart_required="subscriptions" in xk | pk))
                continue
            if xk & _WRITABLE:
                updates.append(UpdateNode(x, target))
            if pk & _WRITABLE:
                back = replace(nodes[x], subscriptions=reverse(subs))
                if nodes[p].full and _in_mesh(p):
                    # the full members share their record of x: one write on a member of the mesh fixes all
                    if x in mesh_record_fixed:
                        continue
                    mesh_record_fixed.add(x)
                    caller = seed if seed is not None and row(seed, x) is not None and seed in up else p
                    updates.append(UpdateNode(caller, replace(back, subscriptions=pair_subscriptions(nodes[caller], nodes[x]))))
                else:
                    updates.append(UpdateNode(p, back))
        pair_removes.extend(removes)
        pair_adds.extend(adds)
        pair_updates.extend(updates)
        if restart_for_subscriptions and any(getattr(a, "restart_required", False) for a in adds):
            restarts.append(Restart(x, SUBSCRIPTIONS_RESTART))

    # 5. Routes: make the config file equal the spec, then (when allowed) restart so the process loads it.
    route_ops: list[Operation] = []
    wanted = set(desired.routes)
    for name in sorted(nodes):
        if name not in up:
            continue
        o = observed.nodes[name]
        loaded = set(o.routes)
        on_disk = set(o.routes_on_disk) if o.routes_on_disk is not None else loaded
        running = set(o.routes_running) if o.routes_running is not None else loaded
        add, drop = sorted(wanted - loaded), sorted(loaded - wanted)
        wrote_change = False
        if on_disk != wanted:
            if add or not drop:
                route_ops.append(SetRoutes(name, tuple(add)))
            if drop:
                route_ops.append(DeleteRoutes(name, tuple(drop)))
            wrote_change = bool(add or drop)
        if restart_for_routes and (wrote_change or running != wanted):
            restarts.append(Restart(name, ROUTES_RESTART))

    return ghosts + switches + mesh + pair_removes + pair_adds + pair_updates + route_ops + restarts


def pending_restart(desired: DesiredCluster, observed: ObservedCluster) -> dict[str, str]:
    """Reachable members whose Harper has what it needs on disk/records but applies it only after a restart.

    name -> why. (Iterating the dict gives the names.) Reasons:
    * routes: the config file holds the declared routes, the running process does not use them yet;
    * shard: the spec clears the shard; update_node cannot, a restart resets the node's own record to its config;
    * reconnect: peers list it connected but its own sockets to them stay down (a node removed and added back
      keeps them down until it restarts, seen on 4.7.29; for an explicit node, per pair it holds).
    * apart: it and a peer, each connected to some other peer, hold each other's record and neither connects
      (seen on 4.7.29: two nodes added 0.1 s apart through the same seed stayed apart for six minutes, while a
      node joining normally takes up to ~20 s to reach every peer, so this one waits longer: APART_GRACE). The
      one with fewer connections restarts (the later name on a tie); `reconnect` covers the other side after.
      A member connected to nobody is not restarted for it: it is cut off, or still starting, and a restart
      does not mend a network.
    A changed explicit subscription list also needs a restart of that node, but nothing observable shows it:
    see AddNode.restart_required.
    """
    out: dict[str, str] = {}
    wanted = set(desired.routes)
    problems = diagnose(desired, observed)
    if any(p.blocking and p.node is None for p in problems):
        return out
    blocked = {p.node for p in problems if p.blocking and p.node}
    nodes = {n.name: n for n in desired.nodes}
    apart = _apart(nodes, observed, blocked)
    for name in sorted(nodes):
        o = observed.nodes.get(name)
        if not (o and o.reachable) or name in blocked:
            continue
        reasons = []
        loaded = set(o.routes)
        on_disk = set(o.routes_on_disk) if o.routes_on_disk is not None else loaded
        running = set(o.routes_running) if o.routes_running is not None else loaded
        if on_disk == wanted and running != wanted:
            reasons.append("routes")
        n = nodes[name]
        if n.full and n.shard is None and _actually_full(o):
            rows = [observed.nodes[a].peers[name] for a in nodes
                    if a != name and a not in blocked and nodes[a].full and _actually_full(observed.nodes.get(a))
                    and name in observed.nodes[a].peers]
            if o.shard is not None or any(r.shard is not None for r in rows):
                reasons.append("shard")
        for p in sorted(nodes):
            # A full member pairs with the full ones (by shared records); an explicit one with each peer it holds a
            # pair record of (seen: an explicit node joined while a peer still failed its certificate kept its own
            # sockets to that peer down after the peer restarted, while the peer showed it connected).
            if p == name or (n.full and not nodes[p].full) or not observed.reachable(p):
                continue
            mine, theirs = o.peers.get(p), observed.nodes[p].peers.get(name)
            if (mine is not None and theirs is not None and theirs.connected and not mine.connected
                    and (not n.full or (mine.replicates and theirs.replicates))):
                reasons.append("reconnect")
                break
        else:
            if name in apart:
                reasons.append("apart")
        if reasons:
            out[name] = ", ".join(reasons)
    return out


def _apart(nodes: Mapping[str, DesiredNode], observed: ObservedCluster, blocked: set[str]) -> set[str]:
    """Of each pair of reachable members that hold each other's record, neither connected, while both are connected
    to some other peer: the one to restart (fewer connections; on a tie the later name). Two full members hold
    full records of each other; a full and an explicit member, pair records (a pair held in the wrong mode is
    plan()'s to re-make: no restart mends it). A full and an explicit member apart were found by the model checker
    (tests/modelcheck), not seen: they waited for ever when only pairs of one kind were looked at."""
    connected = {n: sum(1 for r in observed.nodes[n].peers.values() if r.connected)
                 for n in nodes if n not in blocked and observed.reachable(n)}
    out = set()
    for a in sorted(connected):
        for b in sorted(connected):
            if b <= a or not (connected[a] and connected[b]):
                continue
            mine, theirs = observed.nodes[a].peers.get(b), observed.nodes[b].peers.get(a)
            if mine is None or theirs is None or mine.connected or theirs.connected:
                continue
            if nodes[a].full and nodes[b].full and not (mine.replicates and theirs.replicates):
                continue
            if nodes[a].full != nodes[b].full and (mine.replicates or theirs.replicates):
                continue
            out.add(a if connected[a] < connected[b] else b)
    return out
