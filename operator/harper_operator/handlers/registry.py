"""The running cluster daemons: a change to a member wakes its cluster's reconcile at once, and a deletion waits
for the round in flight, so no add_node lands after the deletion's remove_node."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

_wake: dict[tuple[str, str], asyncio.Event] = {}
_rounds: dict[tuple[str, str], asyncio.Lock] = {}
_closing: set[tuple[str, str]] = set()


def register(namespace: str, name: str) -> asyncio.Event:
    return _wake.setdefault((namespace, name), asyncio.Event())


def unregister(namespace: str, name: str) -> None:
    _wake.pop((namespace, name), None)
    _closing.discard((namespace, name))


def poke(namespace: str, name: str | None) -> bool:
    """Ask for a reconcile of that cluster now; False when no daemon runs for it."""
    event = _wake.get((namespace, name or ""))
    if event is None:
        return False
    event.set()
    return True


def closing(namespace: str, name: str) -> bool:
    """The cluster is being deleted: its daemon starts no new round and no new write."""
    return (namespace, name) in _closing


def _lock(namespace: str, name: str) -> asyncio.Lock:
    return _rounds.setdefault((namespace, name), asyncio.Lock())


@contextlib.asynccontextmanager
async def exclusive(namespace: str, name: str, *, close: bool = False,
                    timeout: float | None = 120.0) -> AsyncIterator[None]:
    """Wait for the round in flight (at most `timeout`), then keep the next one from starting. The daemon holds
    it for each round; deletion handlers hold it while they remove nodes.

    close=True: the cluster itself is going; its daemon stops writing at once and starts no other round.
    """
    if close:
        _closing.add((namespace, name))
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
