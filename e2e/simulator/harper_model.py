"""A MODEL of Harper 4.7 replication topology: a fake, in memory, for testing the pure planner.

It lives next to the scale-benchmark SIMULATOR (server.py), which answers Harper's wire from it; the planner's
tests (tests/reconcile) and the controller's fake fleet (tests/controller/fake_fleet.py) import it from here.

This is not Harper. It reproduces the behaviour seen on real harperdb 4.7.29 nodes (docs/harper-semantics.md) and
read in its source (server/replication/setNode.ts, subscriptionManager.ts, knownNodes.ts), at the level the planner
sees: records in system.hdb_nodes, how they gossip, and what cluster_status shows. It does not model data rows,
certificates, timing or the per-table filters of a replication socket.

What it models:
* Each node has its own hdb_nodes table: name -> (timestamp, record | tombstone).
* Gossip: node D pulls table entries from node S when D fully replicates (its own record has replicates), D holds a
  record of S with replicates, S holds a record of D (so S accepts D), both are up, and D is not waiting for a
  restart after having been removed. Entries merge last-writer-wins, tombstones included (seen: a node's local
  deletions replay into the mesh once it replicates again).
* add_node / update_node (one code path) and remove_node follow setNode.ts, including its quirks: the target's
  add_node_back writes the caller's record with the reversed list; a patch never clears ``replicates``; lists of
  subscriptions merge; revoked certificates only grow; the target's configured shard wins over the requested one;
  remove_node asks the target to delete the CALLER's record when the removed record has subscriptions, else the
  target's own record.
* A node whose own record is deleted while it runs keeps its sockets to full peers down until it restarts (seen).
* Routes: set appends to the loaded list (mutating it in memory when one was loaded) and writes loaded+new to the
  file; delete writes loaded-minus-deleted; restart loads the file; the running process uses what it loaded.
* Restart resets the node's own record shard to its configured shard (seen: a shard set by update_node is cleared).
* Lost gossip (`lose_gossip`): a record that gossip never brings to one node (seen on pods after two add_node
  through one seed: one member held no record of another for ten minutes, a restart did not help); only a write
  of that record on the node itself (an add_node ON it) brings it.
* A pair apart (`set_apart`): two nodes that hold each other's record and stay disconnected, each connected to
  its other peers (seen after two add_node 0.1 s apart through one seed: six minutes apart), until one of them
  restarts. No gossip flows between the two meanwhile.
* An interrupted add_node (`set_node(..., only_target=True)`): the target wrote its side (add_node_back) and the
  caller's own writes never happened, leaving a one-sided record.
* Certificate authorities, only with HarperModel(..., cas=True) (docs/findings-wiped-node.md): every node has its
  own CA (a serial); a wipe makes a new one under the same name. A record carries the CA of the node it names;
  each node trusts, in memory, every CA of every record it has held, the first one per name winning, and forgets
  them only when it restarts (then it trusts what its records hold). A pair whose either end trusts an old CA of
  the other never connects (nor gossips); an add_node whose target trusts an old CA of the caller is refused with
  "connection was required to sign certificate" and writes nothing. cluster_status shows a row's CA serial, and a
  node without records shows its own (what the operator reads with list_certificates). Not modelled: a wiped
  node's CA that had signed a peer's certificate (stale certificates on disk).

For exhaustive exploration (tests/modelcheck): `clone()` copies a model, and `key()` is a canonical, hashable
snapshot of what decides its future (write timestamps by their order only, not their values).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

from harper_operator.reconcile.plan import (AddNode, DeleteRoutes, Operation, RemoveNode, Restart, SetRoutes,
                                            UpdateNode)
from harper_operator.reconcile.topology import (DesiredNode, ObservedCluster, ObservedNode, PeerRecord, Route,
                                                Subscription)


class ModelError(Exception):
    """What Harper would answer with an error status."""


@dataclass(frozen=True)
class Rec:
    url: str | None = None
    replicates: bool | None = None
    subscriptions: tuple[Subscription, ...] | None = None
    shard: int | None = None
    revoked: tuple[str, ...] = ()
    ca: int | None = None  # the CA serial of the node the record names (only with cas=True)


@dataclass(frozen=True)
class Entry:
    ts: int
    rec: Rec | None  # None: tombstone


@dataclass
class ModelNode:
    name: str
    url: str
    up: bool = True
    config_shard: int | None = None
    table: dict[str, Entry] = field(default_factory=dict)
    needs_reconnect: bool = False
    routes_loaded: list[Route] | None = None
    routes_disk: list[Route] | None = None
    routes_running: list[Route] = field(default_factory=list)
    ca: int = 1  # its own CA's serial (cas=True); a wipe makes a new one
    trusted: dict[str, tuple[int, ...]] = field(default_factory=dict)  # name -> CA serials held in memory, first wins


def _merge_subs(old: tuple[Subscription, ...], new: tuple[Subscription, ...]) -> tuple[Subscription, ...]:
    """ensureNode: entries with the same (database, table) are updated in place, new ones appended."""
    out = list(old)
    for n in new:
        for i, o in enumerate(out):
            if o.key == n.key:
                out[i] = replace(o, subscribe=n.subscribe, publish=n.publish)
                break
        else:
            out.append(n)
    return tuple(out)


class HarperModel:
    def __init__(self, names: Iterable[str], urls: dict[str, str] | None = None, *, cas: bool = False):
        self.clock = 0
        self.cas = cas
        self.nodes: dict[str, ModelNode] = {}
        for n in names:
            self.nodes[n] = ModelNode(n, (urls or {}).get(n, f"wss://{n}:9933"))
        self.writes: list[Operation] = []
        self.lost: set[tuple[str, str]] = set()  # (node, record name): gossip never brings it there
        self.apart: set[frozenset[str]] = set()  # pairs whose connection stays down until one of them restarts

    # --- snapshots (exhaustive exploration) ---
    def clone(self) -> "HarperModel":
        """An independent copy (the log of writes starts empty). Records and entries are immutable: shared."""
        other = HarperModel((), cas=self.cas)
        other.clock = self.clock
        other.nodes = {name: replace(n, table=dict(n.table),
                                     routes_loaded=None if n.routes_loaded is None else list(n.routes_loaded),
                                     routes_disk=None if n.routes_disk is None else list(n.routes_disk),
                                     routes_running=list(n.routes_running), trusted=dict(n.trusted))
                       for name, n in self.nodes.items()}
        other.lost = set(self.lost)
        other.apart = set(self.apart)
        return other

    def key(self) -> tuple:
        """Everything that decides what the model does next, hashable and canonical: two models with equal keys
        answer every operation and observation alike. Timestamps enter by their rank (last-writer-wins compares
        them only with each other, and a new write always gets a later one), so the ever-growing clock does not
        make every state new. The log of writes is history, not state: left out."""
        stamps = sorted({e.ts for n in self.nodes.values() for e in n.table.values()})
        rank = {t: i for i, t in enumerate(stamps)}
        nodes = tuple(
            (name, n.url, n.up, n.config_shard, n.needs_reconnect,
             tuple((k, rank[e.ts], e.rec) for k, e in sorted(n.table.items())),
             None if n.routes_loaded is None else tuple(n.routes_loaded),
             None if n.routes_disk is None else tuple(n.routes_disk),
             tuple(n.routes_running), n.ca, tuple(sorted(n.trusted.items())))
            for name, n in sorted(self.nodes.items()))
        return nodes, tuple(sorted(self.lost)), tuple(sorted(tuple(sorted(p)) for p in self.apart))

    # --- records ---
    def rec(self, node: str, key: str) -> Rec | None:
        e = self.nodes[node].table.get(key)
        return e.rec if e else None

    def full(self, node: str) -> bool:
        r = self.rec(node, node)
        return bool(r and r.replicates)

    def _write(self, node: str, key: str, rec: Rec | None) -> None:
        self.lost.discard((node, key))  # written there directly: gossip is not needed
        self.clock += 1
        n = self.nodes[node]
        if key == node and rec is None and n.up and self.rec(node, node) is not None:
            n.needs_reconnect = True
        n.table[key] = Entry(self.clock, rec)
        self._trust(node, key, rec)

    # --- certificate authorities (cas=True) ---
    def _trust(self, node: str, key: str, rec: Rec | None) -> None:
        """`node` has held `rec`: its CA is trusted from now on, behind any older one of that name."""
        if self.cas and rec is not None and rec.ca is not None and key != node:
            n = self.nodes[node]
            held = n.trusted.get(key, ())
            if rec.ca not in held:
                n.trusted[key] = held + (rec.ca,)

    def _trusts(self, a: str, b: str) -> bool:
        """Does `a` verify `b`'s certificate? Not when the first CA it holds under b's name is not b's own."""
        held = self.nodes[a].trusted.get(b)
        return not held or held[0] == self.nodes[b].ca

    def _link(self, a: str, b: str) -> bool:
        return not self.cas or (self._trusts(a, b) and self._trusts(b, a))

    def _ensure(self, node: str, key: str, patch: dict) -> None:
        existing = self.rec(node, key)
        patch = dict(patch)
        if existing is None:
            self._write(node, key, Rec(**{k: v for k, v in patch.items()}))
            return
        if patch.get("replicates"):
            patch["subscriptions"] = None  # fully replicating without NATS: the list is dropped
        elif patch.get("subscriptions") and existing.subscriptions:
            patch["subscriptions"] = _merge_subs(existing.subscriptions, patch["subscriptions"])
        if "revoked" in patch:
            patch["revoked"] = tuple(dict.fromkeys(existing.revoked + patch["revoked"]))
        self._write(node, key, replace(existing, **patch))

    def _flows(self, src: str, dst: str) -> bool:
        s, d = self.nodes[src], self.nodes[dst]
        if (not (s.up and d.up) or d.needs_reconnect or not self.full(dst) or frozenset((src, dst)) in self.apart
                or not self._link(src, dst)):
            return False
        r = self.rec(dst, src)
        return bool(r and r.replicates) and self.rec(src, dst) is not None

    def sync(self) -> None:
        changed = True
        while changed:
            changed = False
            for src in sorted(self.nodes):
                for dst in sorted(self.nodes):
                    if src == dst or not self._flows(src, dst):
                        continue
                    for key, e in sorted(self.nodes[src].table.items()):
                        if (dst, key) in self.lost:
                            continue
                        mine = self.nodes[dst].table.get(key)
                        if mine is None or mine.ts < e.ts:
                            if key == dst and e.rec is None and self.rec(dst, dst) is not None:
                                self.nodes[dst].needs_reconnect = True
                            self.nodes[dst].table[key] = e
                            self._trust(dst, key, e.rec)
                            changed = True

    # --- operations API ---
    def _need_up(self, name: str) -> ModelNode:
        n = self.nodes.get(name)
        if n is None or not n.up:
            raise ModelError(f"{name} does not answer")
        return n

    def set_node(self, on: str, target: DesiredNode, *, only_target: bool = False) -> None:
        """add_node / update_node. only_target: the call is cut off after the target's writes (add_node_back),
        before the caller's own: a one-sided record."""
        caller = self._need_up(on)
        tnode = next((n for n in self.nodes.values() if n.url == target.url), None)
        if tnode is None or not tnode.up:
            raise ModelError(f"Error returned from {target.url}: connection refused")
        if tnode.name != target.name:
            raise ModelError(f"{target.url} is {tnode.name}, not {target.name}")
        if self.cas and not self._trusts(tnode.name, on):
            raise ModelError(f"Error returned from {target.url}: Connection closed 1006 and connection was required "
                             "to sign certificate")
        cas = {"ca": caller.ca} if self.cas else {}
        tcas = {"ca": tnode.ca} if self.cas else {}
        subs = tuple(target.subscriptions) if target.subscriptions is not None else None
        # add_node_back on the target
        back: dict = {"url": caller.url, **cas}
        if subs:
            back["subscriptions"] = tuple(s.reversed() for s in subs)
        else:
            back.update(replicates=True, subscriptions=None)
        if caller.config_shard is not None:
            back["shard"] = caller.config_shard
        if not subs:
            me: dict = {"url": tnode.url, "replicates": True, "subscriptions": None, **tcas}
            if tnode.config_shard is not None:
                me["shard"] = tnode.config_shard
            self._ensure(tnode.name, tnode.name, me)
        self._ensure(tnode.name, on, back)
        if only_target:
            self.sync()
            return
        # then the caller's own writes
        rec: dict = {"url": target.url, **tcas}
        if subs:
            rec["subscriptions"] = subs
        else:
            rec["replicates"] = True
        if target.revoked_certificates:
            rec["revoked"] = tuple(target.revoked_certificates)
        if tnode.config_shard is not None:
            rec["shard"] = tnode.config_shard
        elif target.shard is not None:
            rec["shard"] = target.shard
        if not subs:
            me = {"url": caller.url, "replicates": True, "subscriptions": None, **cas}
            if caller.config_shard is not None:
                me["shard"] = caller.config_shard
            self._ensure(on, on, me)
        self._ensure(on, target.name, rec)
        self.sync()

    def remove_node(self, on: str, hostname: str) -> None:
        self._need_up(on)
        rec = self.rec(on, hostname)
        if rec is None:
            raise ModelError(f"{hostname} does not exist")
        other = next((n for n in self.nodes.values() if n.url == rec.url), None)
        if other is not None and other.up:
            name = on if rec.subscriptions else hostname
            if self.rec(other.name, name) is not None:
                self._write(other.name, name, None)
        self._write(on, hostname, None)
        self.sync()

    def set_routes(self, on: str, routes: Iterable[Route]) -> None:
        n = self._need_up(on)
        existing = n.routes_loaded if n.routes_loaded is not None else []
        for r in routes:
            if r not in existing:
                existing.append(r)
        n.routes_disk = list(existing)

    def delete_routes(self, on: str, routes: Iterable[Route]) -> None:
        n = self._need_up(on)
        routes = set(routes)
        n.routes_disk = [r for r in (n.routes_loaded or []) if r not in routes]

    def restart(self, on: str) -> None:
        n = self.nodes[on]
        n.up = True
        n.needs_reconnect = False
        self.apart = {p for p in self.apart if on not in p}
        if self.cas:  # a new process: it trusts the CAs of the records it holds, nothing older
            n.trusted = {k: (e.rec.ca,) for k, e in n.table.items() if k != on and e.rec and e.rec.ca is not None}
        n.routes_loaded = list(n.routes_disk) if n.routes_disk is not None else None
        n.routes_running = list(n.routes_disk or [])
        own = self.rec(on, on)
        if own is not None and (own.url != n.url or own.shard != n.config_shard):
            self._write(on, on, replace(own, url=n.url, shard=n.config_shard, replicates=True))
        self.sync()

    def apply(self, op: Operation) -> None:
        self.writes.append(op)
        if isinstance(op, (AddNode, UpdateNode)):
            self.set_node(op.on, op.target)
        elif isinstance(op, RemoveNode):
            self.remove_node(op.on, op.hostname)
        elif isinstance(op, SetRoutes):
            self.set_routes(op.on, op.routes)
        elif isinstance(op, DeleteRoutes):
            self.delete_routes(op.on, op.routes)
        elif isinstance(op, Restart):
            self._need_up(op.on)
            self.restart(op.on)
        else:  # pragma: no cover
            raise TypeError(op)

    # --- drift: things people and failures do ---
    def stop(self, name: str) -> None:
        self.nodes[name].up = False

    def start(self, name: str) -> None:
        self.restart(name)

    def wipe(self, name: str) -> None:
        """A fresh install under the same name: empty hdb_nodes, no routes."""
        n = self.nodes[name]
        self.nodes[name] = ModelNode(name, n.url, up=n.up, config_shard=n.config_shard, ca=n.ca + 1)
        self.apart = {p for p in self.apart if name not in p}  # a new process: no socket of the old one is left

    def set_apart(self, a: str, b: str) -> None:
        """`a` and `b` stay disconnected from each other (both ends) until one of them restarts."""
        self.apart.add(frozenset((a, b)))

    def lose_gossip(self, on: str, name: str) -> None:
        """`on` loses its record of `name`, and gossip never brings it back."""
        self.nodes[on].table.pop(name, None)
        self.lost.add((on, name))

    def inject(self, on: str, name: str, url: str, *, replicates: bool = True,
               subscriptions: tuple[Subscription, ...] | None = None) -> None:
        """A record written by hand or by a bad add_node (a ghost)."""
        self._write(on, name, Rec(url=url, replicates=replicates or None, subscriptions=subscriptions))
        self.sync()

    # --- what cluster_status shows ---
    def _connected(self, a: str, b: str, rec: Rec) -> bool:
        na, nb = self.nodes[a], self.nodes.get(b)
        if (nb is None or nb.url != rec.url or not (na.up and nb.up) or self.rec(b, a) is None
                or frozenset((a, b)) in self.apart or not self._link(a, b)):
            return False
        if rec.replicates:
            return self.full(a) and not na.needs_reconnect
        return True

    def observe_node(self, name: str) -> ObservedNode:
        n = self.nodes[name]
        if not n.up:
            return ObservedNode(name=name, reachable=False)
        peers = {}
        for key, e in sorted(n.table.items()):
            r = e.rec
            if key == name or r is None or not (r.replicates or r.subscriptions):
                continue
            peers[key] = PeerRecord(
                name=key, url=r.url, shard=r.shard,
                subscriptions=None if r.replicates else r.subscriptions,
                replicates=bool(r.replicates), connected=self._connected(name, key, r),
                revoked_certificates=r.revoked, ca_serial=f"{key}-ca{r.ca}" if self.cas and r.ca else None)
        own = self.rec(name, name)
        return ObservedNode(
            name=name, reachable=True, peers=peers,
            shard=own.shard if own is not None else n.config_shard,
            routes=tuple(sorted(n.routes_loaded or [])),
            routes_on_disk=tuple(sorted(n.routes_disk or [])),
            routes_running=tuple(sorted(n.routes_running)),
            ca_serial=f"{name}-ca{n.ca}" if self.cas and not peers else None)

    def observe(self, names: Iterable[str] | None = None) -> ObservedCluster:
        names = sorted(self.nodes) if names is None else list(names)
        return ObservedCluster(nodes={n: self.observe_node(n) if n in self.nodes else
                                      ObservedNode(name=n, reachable=False) for n in names})


# --- the operator's loop against the model (test harness) ---


def desired_names(desired) -> list[str]:
    return sorted({n.name for n in desired.nodes})


def run_operator(model: HarperModel, desired, *, rounds: int = 8, restart_pending: bool = True,
                 restart_for_routes: bool = False, restart_for_subscriptions: bool = False,
                 names: Iterable[str] | None = None):
    """plan -> apply -> (restart what pending_restart names, as a person or the policy would) until plan is [].

    Returns (rounds used, list of plans). Raises AssertionError if it does not converge, or if a plan targets a
    node that did not answer, or if Harper (the model) rejects an operation.
    """
    from harper_operator.reconcile.plan import mends, pending_restart, plan

    names = sorted(set(names or ()) | set(desired_names(desired)))
    plans = []
    for i in range(rounds):
        observed = model.observe(names)
        ops = plan(desired, observed, restart_for_routes=restart_for_routes,
                   restart_for_subscriptions=restart_for_subscriptions)
        assert ops == plan(desired, observed, restart_for_routes=restart_for_routes,
                           restart_for_subscriptions=restart_for_subscriptions), "plan is not deterministic"
        # The shell adds the mends after a grace; here every round lasts longer than that.
        ops += mends(desired, observed) if not ops else []
        check_targets(ops, observed)
        pending = pending_restart(desired, observed)
        if not ops and (not pending or not restart_pending):
            return i, plans
        plans.append(ops)
        for op in ops:
            model.apply(op)
        if not ops and restart_pending:
            for name in pending:
                model.restart(name)
    raise AssertionError(f"no convergence after {rounds} rounds; last plans: {plans[-3:]}")


def check_targets(ops, observed: ObservedCluster) -> None:
    for op in ops:
        assert observed.reachable(op.on), f"{op.describe()} is sent to a node that did not answer"
        target = getattr(op, "target", None)
        if isinstance(op, (AddNode, UpdateNode)):
            assert observed.reachable(target.name), f"{op.describe()} targets a node that did not answer"


def verify(model: HarperModel, desired, *, skip: Iterable[str] = ()) -> list[str]:
    """Independent check of the end state: every pair of running declared nodes holds the declared relationship,
    connected. Returns what is wrong (empty: converged)."""
    from harper_operator.reconcile.topology import normalize, pair_subscriptions, url_key

    skip = set(skip)
    nodes = {n.name: n for n in desired.nodes if n.name not in skip and model.nodes[n.name].up}
    wrong = []
    for a in sorted(nodes):
        obs = model.observe_node(a)
        for b in sorted(nodes):
            if a == b:
                continue
            want = pair_subscriptions(nodes[a], nodes[b])
            row = obs.peers.get(b)
            if want == ():
                if row is not None:
                    wrong.append(f"{a} lists {b} but they share no table")
                continue
            if row is None:
                wrong.append(f"{a} does not list {b}")
                continue
            if want is None and not row.replicates:
                wrong.append(f"{a} holds {b} without full replication")
            if want is not None and (row.replicates or normalize(row.subscriptions) != want):
                wrong.append(f"{a} holds {b} with {row.subscriptions}, want {want}")
            if row.url != nodes[b].url:
                wrong.append(f"{a} holds {b} at {row.url}")
            if row.shard != nodes[b].shard:
                wrong.append(f"{a} holds {b} in shard {row.shard}, want {nodes[b].shard}")
            if not set(nodes[b].revoked_certificates) <= set(row.revoked_certificates):
                wrong.append(f"{a} lacks revoked certificates of {b}")
            if not row.connected:
                wrong.append(f"{a} is not connected to {b}")
        declared_urls = {url_key(u) for u in desired.keep_urls} | {url_key(n.url) for n in desired.nodes}
        for ghost in sorted(set(obs.peers) - {n.name for n in desired.nodes} - desired.keep):
            if url_key(obs.peers[ghost].url or "") not in declared_urls:
                wrong.append(f"{a} still lists {ghost}")
        if set(desired.routes) != set(obs.routes_running or ()):
            wrong.append(f"{a} runs routes {obs.routes_running}, want {sorted(desired.routes)}")
    return wrong
