"""The running cluster daemons, so a change to a member can wake its cluster's reconcile at once."""

from __future__ import annotations

import asyncio

_wake: dict[tuple[str, str], asyncio.Event] = {}


def register(namespace: str, name: str) -> asyncio.Event:
    return _wake.setdefault((namespace, name), asyncio.Event())


def unregister(namespace: str, name: str) -> None:
    _wake.pop((namespace, name), None)


def poke(namespace: str, name: str | None) -> bool:
    """Ask for a reconcile of that cluster now; False when no daemon runs for it."""
    event = _wake.get((namespace, name or ""))
    if event is None:
        return False
    event.set()
    return True


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
