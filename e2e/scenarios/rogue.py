"""A server of the test's own that a hostile HarperNode points at: it answers HTTP (and refuses WebSocket
upgrades) on an operations port and a "replication" port, and records everything it receives, so a test can
assert that no credential and no Secret's content ever reached it. Not a fake Harper: it is the attacker's box.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from aiohttp import web

from ..testbed.harper import claim_addresses

OPS_PORT, REPLICATION_PORT = 9925, 9933


@dataclass
class Received:
    port: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Rogue:
    ip: str = ""
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._locks: list = []

    @property
    def operations_url(self) -> str:
        return f"http://{self.ip}:{OPS_PORT}"

    @property
    def replication_url(self) -> str:
        return f"ws://{self.ip}:{REPLICATION_PORT}"  # plain: the probe reaches its HTTP answer

    async def _record(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.url.port or 0, request.method, request.path, dict(request.headers),
                                      await request.read()))
        # Looks like an operations API that says no, and like nothing on the replication port.
        return web.json_response({"error": "nope"}, status=404)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        for port in (OPS_PORT, REPLICATION_PORT):
            await web.TCPSite(self._runner, self.ip, port).start()

    def start(self) -> "Rogue":
        (self.ip,), self._locks = claim_addresses(1, (OPS_PORT, REPLICATION_PORT))
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        for lock in self._locks:
            lock.close()

    def leaked(self, *secrets: str) -> list[str]:
        """What of `secrets` (or any Authorization header) this server received."""
        found = []
        for r in self.received:
            if "Authorization" in r.headers or "authorization" in {k.lower() for k in r.headers}:
                found.append(f"Authorization header on {r.method} {r.path} (port {r.port})")
            text = r.body.decode("utf-8", "replace") + " ".join(r.headers.values())
            found += [f"a secret in {r.method} {r.path} (port {r.port})" for s in secrets if s and s in text]
        return found
