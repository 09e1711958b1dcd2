"""Taking nodes out of Harper when their resources are deleted with deletionPolicy Delete."""

from __future__ import annotations

from typing import Any, Mapping

from ..api import HarperClusterSpec
from ..harper.errors import HarperError, UnknownNodeError
from .clients import ClientPool
from .loop import read_membership


async def remove_member(cluster_body: Mapping[str, Any], spec: HarperClusterSpec,
                        nodes: list[Mapping[str, Any]], hostname: str) -> tuple[list[str], list[str]]:
    """remove_node(hostname) on the first other member that answers; gossip spreads it to the rest.

    Returns (what was done, what failed). Nothing to do when no other member lists the node.
    """
    m = await read_membership(cluster_body, spec, nodes)
    peers = [x for x in m.members if x.access is not None and x.hostname != hostname]
    failures = []
    async with _pool() as pool:
        for peer in peers:
            client = pool.client(peer.access)
            try:
                await client.remove_node(hostname)
                return [f"removed {hostname} on {peer.hostname}"], []
            except UnknownNodeError:
                return [], []  # no record of it: already out of the cluster
            except HarperError as e:
                failures.append(f"remove_node {hostname} on {peer.hostname}: {e}")
    return [], failures


async def dissolve(cluster_body: Mapping[str, Any], spec: HarperClusterSpec,
                   nodes: list[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """Every member forgets every peer it lists, so no record of the cluster is left behind."""
    m = await read_membership(cluster_body, spec, nodes)
    done, failures = [], []
    async with _pool() as pool:
        for member in [x for x in m.members if x.access is not None]:
            client = pool.client(member.access)
            try:
                status = await client.cluster_status()
            except HarperError as e:
                failures.append(f"cluster_status on {member.hostname}: {e}")
                continue
            for peer in sorted(c.name for c in status.connections if c.name):
                try:
                    await client.remove_node(peer)
                    done.append(f"removed {peer} on {member.hostname}")
                except UnknownNodeError:
                    pass  # an earlier removal already spread here
                except HarperError as e:
                    failures.append(f"remove_node {peer} on {member.hostname}: {e}")
    return done, failures


class _pool:
    async def __aenter__(self) -> ClientPool:
        self.pool = ClientPool()
        return self.pool

    async def __aexit__(self, *exc) -> None:
        await self.pool.close()
