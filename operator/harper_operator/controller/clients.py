"""One HarperClient (one connection pool) per node and set of credentials, reused across reconciles."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Callable

from ..harper.client import HarperClient
from .members import Access


def _key(access: Access) -> str:
    # A digest, so the pool's keys never hold a password in clear.
    raw = "\0".join([access.operations_url, access.username, access.password, str(access.verify_tls),
                     access.ca_pem or ""])
    return hashlib.sha256(raw.encode()).hexdigest()


class ClientPool:
    """The current client of each node (by operations URL). A client whose credentials, TLS settings or CA bundle
    changed is replaced, and the replaced one is retired: closed once no call is under way on it. Without that,
    every password rotation left a session behind (60 rotations of two members: 122 clients, +98 MB)."""

    def __init__(self, observer: Callable[[str, str, float], None] | None = None, timeout: float = 10.0):
        self._clients: dict[str, HarperClient] = {}  # by _key(access)
        self._current: dict[str, str] = {}  # operations URL -> the _key of its client
        self._retiring: set[asyncio.Task[None]] = set()
        self._observer = observer
        self._timeout = timeout

    def __len__(self) -> int:
        return len(self._clients)

    def client(self, access: Access) -> HarperClient:
        key = _key(access)
        found = self._clients.get(key)
        if found is None:
            self._replace(access.operations_url)
            found = self._clients[key] = HarperClient(
                access.operations_url, username=access.username, password=access.password,
                verify_tls=access.verify_tls, ca_pem=access.ca_pem, timeout=self._timeout, observer=self._observer)
            self._current[access.operations_url] = key
        return found

    def _replace(self, operations_url: str) -> None:
        """Retire the node's client of other credentials, if any (in the background: client() is not async)."""
        old = self._clients.pop(self._current.pop(operations_url, ""), None)
        if old is not None:
            task = asyncio.ensure_future(old.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def retire(self, keep: list[Access]) -> None:
        """Retire clients whose credentials or URL are no longer in use (a node left)."""
        wanted = {_key(a) for a in keep}
        self._current = {url: key for url, key in self._current.items() if key in wanted}
        for key in [k for k in self._clients if k not in wanted]:
            await self._clients.pop(key).retire()

    async def __aenter__(self) -> "ClientPool":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every client at once, shielded: Kopf cancels a daemon more than once when it stops it by force, and
        closing one client after another left the rest open ("Unclosed client session" errors on every cluster
        deletion)."""
        clients, self._clients, self._current = list(self._clients.values()), {}, {}
        waits = [c.close() for c in clients] + list(self._retiring)
        if waits:
            await asyncio.shield(asyncio.gather(*waits, return_exceptions=True))
