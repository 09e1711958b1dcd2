"""Taking nodes out of Harper when their resources are deleted with deletionPolicy Delete.

Both functions never raise for what one member does: every failure comes back as text for an Event, and
what could not be done is named, so a finalizer can always be released with a clear account of what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..api import HarperClusterSpec, hosts
from ..harper.errors import HarperError, UnknownNodeError
from .clients import ClientPool
from .loop import read_membership
from .members import Member


@dataclass
class Removal:
    """What a deletion did to Harper, for Events: done, failed (worth a retry), and left behind."""

    done: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def _retains(member: Member, spec: HarperClusterSpec) -> bool:
    own = member.spec.deletion_policy if member.spec is not None else None
    return (own or spec.deletion_policy) == "Retain"


def _why_not(member: Member) -> str:
    return member.problem.message if member.problem else "being deleted"


async def _attempt(what: str, call) -> str | None:
    """None when done; else why not, as text (never raises)."""
    try:
        await call
    except UnknownNodeError:
        return None  # no record of it: already out of the cluster
    except HarperError as e:
        return f"{what}: {e}"
    except Exception as e:  # noqa: BLE001 - a deletion handler must end, whatever one node answers
        return f"{what}: {type(e).__name__}: {str(e)[:300]}"
    return None


Observer = Callable[[str, str, float], None]


async def remove_member(cluster_body: Mapping[str, Any], spec: HarperClusterSpec,
                        nodes: list[Mapping[str, Any]], hostname: str, observer: Observer | None = None,
                        cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN) -> Removal:
    """remove_node(hostname) on the first other member that answers; gossip spreads it to the rest."""
    m = await read_membership(cluster_body, spec, nodes, cluster_domain)
    out = Removal()
    peers = [x for x in m.members if x.access is not None and x.hostname != hostname and not x.deleting]
    async with ClientPool(observer=observer) as pool:
        for peer in peers:
            try:
                client = pool.client(peer.access)
            except HarperError as e:
                out.failures.append(f"remove_node {hostname} on {peer.hostname}: {e}")
                continue
            why = await _attempt(f"remove_node {hostname} on {peer.hostname}", client.remove_node(hostname))
            if why is None:
                # Gossip takes the removal to the peers that did not answer: their failures need no retry (a retry
                # only repeated the remove_node, seen as 9 calls for 2 removals with one member down).
                out.done.append(f"removed {hostname} on {peer.hostname}")
                out.failures.clear()
                return out
            out.failures.append(why)
    held = [x for x in m.members if x.access is None and x.hostname != hostname]
    unasked = ", ".join(f"{x.hostname} ({_why_not(x)})" for x in held)
    if not peers:
        out.left.append(f"no other member could be asked to remove {hostname}"
                        + (f": {unasked}" if unasked else "") + f"; peers that still list {hostname} keep its "
                        f"record: run remove_node {hostname} on one of them")
    return out


async def dissolve(cluster_body: Mapping[str, Any], spec: HarperClusterSpec,
                   nodes: list[Mapping[str, Any]], observer: Observer | None = None,
                   cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN) -> Removal:
    """Every member forgets every peer it lists, so no record of the cluster is left behind.

    Members whose own deletionPolicy is Retain are left as they are: nothing is asked of them, and no other
    member removes them."""
    m = await read_membership(cluster_body, spec, nodes, cluster_domain)
    out = Removal()
    kept = {x.hostname for x in m.members if x.spec is not None and _retains(x, spec)}
    if kept:
        out.left.append(f"kept by deletionPolicy Retain: {', '.join(sorted(kept))}")
    async with ClientPool(observer=observer) as pool:
        for member in m.members:
            if member.hostname in kept:
                continue
            if member.access is None:
                out.left.append(f"{member.hostname} was not asked ({_why_not(member)}): its records of its peers "
                                "stay until someone runs remove_node there")
                continue
            try:
                client = pool.client(member.access)
                status = await client.cluster_status()
            except HarperError as e:
                out.failures.append(f"cluster_status on {member.hostname}: {e}")
                continue
            except Exception as e:  # noqa: BLE001
                out.failures.append(f"cluster_status on {member.hostname}: {type(e).__name__}: {str(e)[:300]}")
                continue
            for peer in sorted(c.name for c in status.connections if c.name and c.name not in kept):
                why = await _attempt(f"remove_node {peer} on {member.hostname}", client.remove_node(peer))
                if why is None:
                    out.done.append(f"removed {peer} on {member.hostname}")
                else:
                    out.failures.append(why)
    return out
