"""ClientPool, the shell's one HarperClient per node and credentials (with STAND-IN clients that only close)."""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
import weakref
from pathlib import Path

import pytest

from harper_operator.controller import clients
from harper_operator.controller.clients import ClientPool
from harper_operator.controller.members import Access
from harper_operator.harper import HarperClient


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


# --------------------------------------------------------------------------- replaced clients (issue 21)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harper"))
from harper_fakes import Reply, recording, start_fake  # noqa: E402

STATUS = recording("cluster_status_no_peers")["body"]


@pytest.fixture
async def two_members():
    """Two FAKE Harper nodes (tests/harper/harper_fakes.py) answering cluster_status."""
    started = [await start_fake() for _ in range(2)]
    for fake, _ in started:
        fake.on("cluster_status", Reply(200, STATUS))
    yield [fake for fake, _ in started]
    for _, runner in started:
        await runner.cleanup()


def rotated(fake, n: int) -> Access:
    return Access(fake.url, "admin", f"rotated-password-{n}", False, None)


async def rotate(pool: ClientPool, members, rounds: range, made: weakref.WeakSet) -> int:
    """Each round: a new password for every member, then a read of each with it. Returns the requests served
    (forgotten by the fakes as they go, so only the pool's memory is measured)."""
    served = 0
    for n in rounds:
        clients_now = [pool.client(rotated(fake, n)) for fake in members]
        made.update(clients_now)
        await asyncio.gather(*(c.cluster_status() for c in clients_now))
        for fake in members:
            served += len(fake.seen)
            fake.seen.clear()
    await asyncio.sleep(0)  # let the retirements scheduled by the last round run
    return served


async def test_a_thousand_rotations_leave_one_client_per_member_and_memory_flat(two_members, monkeypatch):
    """60 password rotations of two members left 122 clients open (+98 MB). Replaced clients are closed now, and
    dropped: of the 2,000 clients made, only the pool's two are still alive, and memory stays flat."""
    made: weakref.WeakSet = weakref.WeakSet()
    closed = []
    close = HarperClient.close

    async def counted(self):
        closed.append(self.open)
        await close(self)

    monkeypatch.setattr(HarperClient, "close", counted)
    async with ClientPool() as pool:
        await rotate(pool, two_members, range(100), made)  # warm up: aiohttp's caches
        gc.collect()
        tracemalloc.start()
        try:
            first = tracemalloc.get_traced_memory()[0]
            served = await rotate(pool, two_members, range(100, 1100), made)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - first
        finally:
            tracemalloc.stop()
        assert served == 2000 and len(pool) == 2
        alive = list(made)
        assert len(alive) == 2 and all(c.open for c in alive), "replaced clients are kept"
        assert grown < 512 * 1024, f"{grown / 1024:.0f} KiB more after 1,000 rotations"
        assert closed.count(True) == 2 * 1100 - 2  # each replaced client's session closed, not just dropped


async def test_a_replaced_client_is_closed_only_when_its_call_ends(two_members):
    fake = two_members[0]
    fake.on("cluster_status", Reply(200, STATUS, delay=0.3))
    async with ClientPool() as pool:
        old = pool.client(rotated(fake, 1))
        reading = asyncio.ensure_future(old.cluster_status())
        await asyncio.sleep(0.1)
        new = pool.client(rotated(fake, 2))  # the password rotated while the read is under way
        await asyncio.sleep(0.05)
        assert new is not old and old.open, "closed under a call in flight"
        assert (await reading).node_name == "127.0.0.31"
        assert not old.open and len(pool) == 1
        # A late call on the replaced client (a caller still holding it) works and leaves nothing open either.
        fake.on("cluster_status", Reply(200, STATUS))
        await old.cluster_status()
        assert not old.open


async def test_a_client_of_the_same_credentials_is_reused(two_members):
    async with ClientPool() as pool:
        access = rotated(two_members[0], 1)
        assert pool.client(access) is pool.client(Access(access.operations_url, "admin", access.password, False))
        assert len(pool) == 1
