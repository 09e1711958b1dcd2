"""The running cluster daemons: a change to a member wakes its cluster's reconcile at once, and a deletion waits
for the round in flight, so no add_node lands after the deletion's remove_node."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping

_wake: dict[tuple[str, str], asyncio.Event] = {}
_rounds: dict[tuple[str, str], asyncio.Lock] = {}
# By uid, not by name: a cluster deleted and created again under its name is another object, and its daemon must
# not inherit the old one's "closing" (seen: the new daemon ended at once and the cluster was never reconciled).
_closing: set[str] = set()


# Pokes for a cluster whose daemon had not registered yet. A `kubectl apply` of a cluster and its HarperNodes at
# once may run a node's create handler before Kopf started the cluster's daemon; the daemon's first round can then
# still miss the node, and without the poke it waited out its back-off (bench/converge.py: 3 to 4 s before the
# first write, against 0.3 to 0.7 s otherwise).
_early: set[tuple[str, str]] = set()


def register(namespace: str, name: str) -> asyncio.Event:
    event = _wake.setdefault((namespace, name), asyncio.Event())
    if (namespace, name) in _early:
        _early.discard((namespace, name))
        event.set()
    return event


def unregister(namespace: str, name: str, event: asyncio.Event | None = None) -> None:
    """Forget the daemon's wake-up event; with `event`, only if it is still that one (a newer daemon of a cluster
    created again under the same name may have registered its own)."""
    if event is None or _wake.get((namespace, name)) is event:
        _wake.pop((namespace, name), None)


def poke(namespace: str, name: str | None) -> bool:
    """Ask for a reconcile of that cluster now; False when no daemon runs for it (the wish is kept for a daemon
    that registers later)."""
    event = _wake.get((namespace, name or ""))
    if event is None:
        if name:
            _early.add((namespace, name))
        return False
    event.set()
    return True


@dataclass(frozen=True)
class Proof:
    """A cluster's last round on its leaving members (docs/safety.md, S1)."""

    drained: Mapping[str, frozenset[str]] = field(default_factory=dict)  # proven member -> the members it covered
    waits: Mapping[str, str] = field(default_factory=dict)  # member -> what its proof still waits for


# Written by each cluster's daemon after its round; read by HarperNode finalizers, which wait for it.
_proofs: dict[tuple[str, str], Proof] = {}


def record_proof(namespace: str, name: str, proof: Proof | None) -> None:
    if proof is None:
        _proofs.pop((namespace, name), None)
    else:
        _proofs[(namespace, name)] = proof


def proof(namespace: str, name: str) -> Proof:
    """The last round's proof; empty while the cluster's daemon has not finished a round (nothing is proven)."""
    return _proofs.get((namespace, name), Proof())


def closing(uid: str) -> bool:
    """The cluster object with this uid is being deleted: its daemon starts no new round and no new write."""
    return uid in _closing


def _lock(namespace: str, name: str) -> asyncio.Lock:
    return _rounds.setdefault((namespace, name), asyncio.Lock())


@contextlib.asynccontextmanager
async def exclusive(namespace: str, name: str, *, close: str | None = None,
                    timeout: float | None = 120.0) -> AsyncIterator[None]:
    """Wait for the round in flight (at most `timeout`), then keep the next one from starting. The daemon holds
    it for each round; deletion handlers hold it while they remove nodes.

    close=<uid>: that cluster object is going; its daemon stops writing at once and starts no other round.
    """
    if close:
        _closing.add(close)
        poke(namespace, name)
    lock = _lock(namespace, name)
    try:
        await asyncio.wait_for(lock.acquire(), timeout)
        acquired = True
    except asyncio.TimeoutError:
        acquired = False  # a round stuck past every client timeout: go on rather than block the deletion
    try:
        yield
    finally:
        if acquired:
            lock.release()
        if close:  # its daemon sees the deletionTimestamp from now on; the uid is never reused
            _closing.discard(close)


_slots: dict[int, asyncio.Semaphore] = {}  # by limit: the process has one, from its settings


@contextlib.asynccontextmanager
async def round_slot(limit: int) -> AsyncIterator[None]:
    """One of `limit` rounds at once over every cluster (0: no limit). Rounds hold memory while they look and verify:
    with hundreds of clusters starting together the peak is their number times that, unless bounded."""
    if limit <= 0:
        yield
        return
    async with _slots.setdefault(limit, asyncio.Semaphore(limit)):
        yield


async def sleep(namespace: str, name: str, seconds: float, stopped) -> None:
    """Until the interval passes, someone pokes the cluster, or Kopf stops the daemon."""
    event = register(namespace, name)
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        event.clear()
