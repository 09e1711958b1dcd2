"""How each member is reached: a ClientPool whose clients are either the operator's own HarperClient (called
from this machine: --direct only) or a ProxiedHarperClient (through the API server), chosen
per operationsUrl by routing.route; and `look`, which reads every managed member's sight through it."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from ..controller.clients import ClientPool
from ..controller.members import Access, Membership
from ..controller.observe import Sight, look_all
from ..harper import models as wire
from ..harper.client import HarperClient
from ..harper.errors import HarperError, InvalidTargetError
from ..harper.probe import ProbeResult
from .kubeapi import Kube
from .proxy import ProxiedHarperClient
from .routing import Refused, route

NOT_PROBED = "not probed through the API server"


def _digest(access: Access) -> str:
    """A key for the clients of one set of credentials and one target that holds no password in clear."""
    raw = "\0".join([access.operations_url, access.username, access.password])
    return hashlib.sha256(raw.encode()).hexdigest()


class RoutedPool(ClientPool):
    """A ClientPool that reaches each member the chosen way: directly (the pool's own clients), through the API
    server (ProxiedHarperClient), or not at all (InvalidTargetError, which becomes the member's problem)."""

    def __init__(self, api: Any, via: str, cluster_domain: str = "cluster.local", timeout: float = 10.0) -> None:
        super().__init__(timeout=timeout)
        self.api, self.via, self.cluster_domain = api, via, cluster_domain
        self._proxied: dict[str, ProxiedHarperClient] = {}  # by _digest(access)

    def route(self, operations_url: str) -> str | None:
        return route(operations_url, self.via, self.cluster_domain)

    def proxied(self, access: Access | None) -> bool:
        try:
            return access is not None and self.route(access.operations_url) is not None
        except Refused:
            return False

    def client(self, access: Access) -> HarperClient:
        try:
            path = self.route(access.operations_url)
        except Refused as e:
            raise InvalidTargetError("connect", None, str(e)) from None
        if path is None:
            return super().client(access)
        key = _digest(access)
        if key not in self._proxied:
            self._proxied[key] = ProxiedHarperClient(access, path, self.api, timeout=self._timeout)
        return self._proxied[key]

    async def close(self) -> None:
        for client in self._proxied.values():
            await client.close()
        self._proxied.clear()
        await super().close()


def unprobed(m: Membership, pool: RoutedPool) -> dict[str, Sight]:
    """For members reached through the API server: a last sight whose replication probe still holds, so look_all
    does not open a WebSocket to the replication URL from here. The operator probes it itself; its verdict is in
    the HarperNode's conditions."""
    now = time.monotonic()
    return {x.hostname: Sight(x, status=wire.ClusterStatus(), probe=ProbeResult(reachable=True, error=NOT_PROBED),
                              probed_at=now)
            for x in m.members if x.managed and pool.proxied(x.access)}


async def look(kube: Kube, m: Membership, via: str, cluster_domain: str) -> tuple[dict[str, Sight], dict[str, str]]:
    """Every managed member's sight, and how each was reached: "api-server", "direct" or "refused"."""
    pool = RoutedPool(kube.api, via, cluster_domain)
    ways = {}
    for x in m.members:
        if x.managed:
            try:
                ways[x.hostname] = "direct" if pool.route(x.access.operations_url) is None else "api-server"
            except Refused:
                ways[x.hostname] = "refused"
    try:
        sights = await look_all(m, pool, unprobed(m, pool))
    finally:
        await pool.close()
    return sights, ways


async def read_certificates(kube: Kube, m: Membership, via: str,
                            cluster_domain: str) -> dict[str, list[wire.Certificate] | str]:
    """Every managed member's list_certificates, reached as `look` reaches it; a member that could not be read maps
    to why (the error names no credential)."""
    pool = RoutedPool(kube.api, via, cluster_domain)

    async def one(x) -> list[wire.Certificate] | str:
        try:
            return await pool.client(x.access).list_certificates()
        except HarperError as e:
            return str(e)

    managed = [x for x in m.members if x.managed and x.access is not None]
    try:
        answers = await asyncio.gather(*(one(x) for x in managed))
    finally:
        await pool.close()
    return {x.hostname: a for x, a in zip(managed, answers)}
