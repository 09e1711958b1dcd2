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
    def __init__(self, observer: Callable[[str, str, float], None] | None = None, timeout: float = 10.0):
        self._clients: dict[str, HarperClient] = {}
        self._observer = observer
        self._timeout = timeout

    def client(self, access: Access) -> HarperClient:
        key = _key(access)
        if key not in self._clients:
            self._clients[key] = HarperClient(
                access.operations_url, username=access.username, password=access.password,
                verify_tls=access.verify_tls, ca_pem=access.ca_pem, timeout=self._timeout, observer=self._observer)
        return self._clients[key]

    async def retire(self, keep: list[Access]) -> None:
        """Close clients whose credentials or URL are no longer in use (a Secret changed, a node left)."""
        wanted = {_key(a) for a in keep}
        for key in [k for k in self._clients if k not in wanted]:
            await self._clients.pop(key).close()

    async def __aenter__(self) -> "ClientPool":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every client at once, shielded: Kopf cancels a daemon more than once when it stops it by force, and
        closing one client after another left the rest open ("Unclosed client session" errors on every cluster
        deletion)."""
        clients, self._clients = list(self._clients.values()), {}
        if clients:
            await asyncio.shield(asyncio.gather(*(c.close() for c in clients), return_exceptions=True))
