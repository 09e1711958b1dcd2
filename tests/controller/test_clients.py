"""ClientPool, the shell's one HarperClient per node and credentials (with STAND-IN clients that only close)."""

from __future__ import annotations

import asyncio

from harper_operator.controller import clients
from harper_operator.controller.clients import ClientPool
from harper_operator.controller.members import Access


class Closing:
    """A stand-in for HarperClient: closing takes a moment."""

    def __init__(self, *_, **__):
        self.closed = False

    async def close(self) -> None:
        await asyncio.sleep(0.05)
        self.closed = True


async def test_a_pool_cancelled_while_closing_still_closes_every_client(monkeypatch):
    """Kopf cancels a daemon again while its `finally` closes the pool: every session must be closed anyway."""
    monkeypatch.setattr(clients, "HarperClient", Closing)
    pool = ClientPool()
    made = [pool.client(Access(f"http://127.0.0.{i}:9925", "admin", "secret", False, None)) for i in range(1, 4)]
    closing = asyncio.ensure_future(pool.close())
    await asyncio.sleep(0.01)
    closing.cancel()
    await asyncio.sleep(0.1)
    assert all(c.closed for c in made) and closing.cancelled()
