"""Read every member at once: cluster_status, the replication endpoint probe and the routes.

This is the one wire -> core translation of what Harper shows (peer records, subscriptions, routes), and the
place where anything that goes wrong with one member becomes that member's Problem: one bad Secret, URL or
answer never stops the round for the others.

A member's first look in this process reads everything below at once, in one round trip. At steady state a member
costs one Harper read a round (cluster_status). The rest is read only when it can tell something new (`previous` is
the member's last sight in this process):
* the replication probe: when the last one did not find Harper there, its URL or TLS settings changed, it is
  older than PROBE_FRESH and a peer is not connected, or it is older than PROBE_MAX_AGE (the certificate in the
  status is refreshed that often);
* the routes (loaded and on disk): on a member's first look, and while routes are declared or were seen;
* its certificates: only for a member without records in a cluster of more than one (is it wiped?).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from ..harper import models as wire
from ..harper.errors import (AuthenticationError, AuthorizationError, HarperError, InvalidTargetError,
                             PermanentHarperError, TLSVerificationError)
from ..harper.probe import ProbeResult, probe_replication
from ..harper.tls import describe_certificate, fetch_certificate
from ..reconcile.drain import Links, Socket
from ..reconcile.problems import Problem
from ..reconcile.topology import ObservedCluster, ObservedNode, PeerRecord, Route, Subscription
from .clients import ClientPool
from .members import Member, Membership

log = logging.getLogger(__name__)

PROBE_MAX_AGE = 300.0  # seconds a healthy member's probe is reused
PROBE_FRESH = 10.0  # seconds any probe that found Harper is reused (a verify loop looks every fraction of a second)


@dataclass(frozen=True)
class Sight:
    """What one member showed us this round."""

    member: Member
    status: wire.ClusterStatus | None = None
    probe: ProbeResult | None = None
    routes: tuple[Route, ...] = ()
    routes_on_disk: tuple[Route, ...] | None = None
    ca_serial: str | None = None
    problem: Problem | None = None
    probed_at: float = 0.0  # time.monotonic() of the probe
    # Set only on a remembered() sight, whose parsed cluster_status was dropped: was every peer connected then?
    meshed: bool | None = None

    def remembered(self) -> "Sight":
        """What the next round reuses of this look (the probe, the routes, the CA serial), without the parsed
        cluster_status: the next round reads that anyway, and at 1,000 members the kept answers were the largest
        part of the operator's heap (bench/scale.py)."""
        if self.status is None:
            return self
        return replace(self, status=None, meshed=all(c.connected for c in self.status.connections))

    def _answered(self) -> bool:
        return self.problem is None and (self.status is not None or self.meshed is not None)

    def _meshed(self) -> bool:
        return all(c.connected for c in self.status.connections) if self.status is not None else bool(self.meshed)

    def probe_still_holds(self, member: Member, now: float) -> bool:
        """This sight's probe answers for `member` now: it found Harper at the same URL with the same TLS settings,
        every peer was connected (a socket down is when the endpoint matters), and it is recent."""
        age = now - self.probed_at
        return (self.probe is not None and self.probe.reachable and self._answered()
                and self.member.spec.url == member.spec.url and self.member.access == member.access
                and (age < PROBE_FRESH or self._meshed() and age < PROBE_MAX_AGE))

    def saw_no_routes(self) -> bool:
        """Routes were read here and there were none, loaded or on disk."""
        return self._answered() and not self.routes and self.routes_on_disk == ()

    @property
    def reported_name(self) -> str | None:
        """The name Harper gives itself there, whatever the HarperNode declares."""
        return self.status.node_name if self.status else None


def _problem(error: HarperError, member: Member) -> Problem:
    url = member.spec.operations_url
    if isinstance(error, AuthenticationError):
        return Problem("WrongCredentials", f"Harper at {url} refused the credentials: fix the username/password "
                                           "in the Secret (the operator rereads it on the next reconcile)")
    if isinstance(error, AuthorizationError):
        return Problem("NotSuperUser", f"the user in the Secret is not a super_user on {url}: clustering "
                                       "operations need one")
    if isinstance(error, InvalidTargetError):
        if "CA bundle" in error.message:
            return Problem("CASecretInvalid", "the CA bundle in tls.caSecretRef is not a valid PEM certificate "
                                              "bundle: put the CA's certificate(s) there in PEM form")
        return Problem("InvalidTarget", f"cannot call {url}: {error.message}")
    if isinstance(error, TLSVerificationError) and error.reason:
        return Problem("CertificateInvalid", (
            f"{member.resource} ({url}) presents a certificate the operator does not trust: {error.reason}; it is "
            f"{describe_certificate(error.certificate)}: the operator calls it again each round but writes nothing "
            "there until it verifies. A provisioned pod's certificate is in Secret <cluster>-tls (kubectl harper "
            "certificates <cluster> shows it); for another node, put the CA that signed it in spec.tls.caSecretRef "
            "or renew the node's certificate"))
    if isinstance(error, PermanentHarperError):
        return Problem("HarperRejected", f"{url} answered {error.operation}: {error}")
    return Problem("Unreachable", f"cannot reach the operations API at {url}: {error}", permanent=False)


def route_from_wire(route: wire.Route) -> Route:
    # A route without a port means Harper's replication port; the core value always carries one.
    return Route(route.hostname, route.port or wire.DEFAULT_REPLICATION_PORT)


def _routes(raw: list[wire.Route]) -> tuple[Route, ...]:
    return tuple(sorted({route_from_wire(r) for r in raw}))


def _member_problem(sight: Sight) -> Problem | None:
    """What the member's own answers show to be wrong with it: Harper there under another name, or no Harper at
    its replication URL."""
    member, status, probe = sight.member, sight.status, sight.probe
    if status.node_name and status.node_name != member.hostname:
        return Problem(
            "HostnameMismatch", f"Harper at {member.spec.operations_url} calls itself {status.node_name!r}, "
                                f"but spec.hostname is {member.hostname!r}: the operator leaves both records alone; "
                                "recreate the HarperNode with spec.hostname set to the node's replication.hostname, "
                                "or fix operationsUrl")
    if not probe.reachable and (probe.http_status is not None or probe.close_code is not None):
        # Something answers there, and it is not Harper: a wrong port or host, which waiting will not fix.
        return Problem("NotHarper", f"{probe.error}: no peer record is written for it; fix spec.url (Harper's "
                                    "replication port, 9933 by default)")
    if not probe.reachable:
        return Problem("ReplicationUnreachable", f"Harper's replication protocol does not answer at {member.spec.url} "
                                                 f"({probe.error}): fix spec.url or the node's replication port",
                       permanent=False)
    return None


def _needs_ca(status: wire.ClusterStatus, alone: bool) -> bool:
    """No records: new, or wiped. Its own CA tells which, against the one its peers' records show."""
    return not status.connections and bool(status.node_name) and not alone


async def _certificates(client) -> list[wire.Certificate] | None:
    try:
        return await client.list_certificates()
    except HarperError:  # unknown: the node is then taken for a new one, as before this check existed
        return None


def _with_ca(sight: Sight, certificates: list[wire.Certificate] | None) -> Sight:
    own = wire.own_authority(certificates, sight.status.node_name) if certificates is not None else None
    return replace(sight, ca_serial=own.serial_number if own else None)


def _probe(member: Member):
    return probe_replication(member.spec.url, verify_tls=member.access.verify_tls, ca_pem=member.access.ca_pem)


def _raise_any(*answers) -> None:
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer


async def _first_look(member: Member, client, alone: bool) -> Sight:
    """A member's first look in this process asks everything at once: one round trip, not three in a row, before
    a new cluster's first write (bench/converge.py). The routes and certificates are read whatever cluster_status
    says; its answer decides whether they count."""
    now = time.monotonic()
    status, probe, loaded, on_disk, certificates = await asyncio.gather(
        client.cluster_status(), _probe(member), client.loaded_routes(), client.cluster_get_routes(),
        _certificates(client) if not alone else asyncio.sleep(0), return_exceptions=True)
    _raise_any(status, probe)  # cluster_status's failure first: it names the cause
    sight = Sight(member, status=status, probe=probe, probed_at=now)
    if problem := _member_problem(sight):  # before the routes' failures, as when they were read after it
        return replace(sight, problem=problem)
    _raise_any(loaded, on_disk, certificates)
    # 4.7 connects the routes it loaded at start-up; the file (what the next start uses) may differ.
    sight = replace(sight, routes=_routes(loaded), routes_on_disk=_routes(on_disk))
    return _with_ca(sight, certificates) if _needs_ca(status, alone) else sight


async def _look_again(member: Member, client, previous: Sight, routes_declared: bool, alone: bool) -> Sight:
    """A later look reads only what can tell something new (see the module's docstring)."""
    now = time.monotonic()
    if previous.probe_still_holds(member, now):
        status, probe, probed_at = await client.cluster_status(), previous.probe, previous.probed_at
    else:
        status, probe = await asyncio.gather(client.cluster_status(), _probe(member))
        probed_at = now
    sight = Sight(member, status=status, probe=probe, probed_at=probed_at)
    if problem := _member_problem(sight):
        return replace(sight, problem=problem)
    if routes_declared or not previous.saw_no_routes():
        loaded, on_disk = await asyncio.gather(client.loaded_routes(), client.cluster_get_routes())
        sight = replace(sight, routes=_routes(loaded), routes_on_disk=_routes(on_disk))
    else:
        sight = replace(sight, routes=(), routes_on_disk=())
    return _with_ca(sight, await _certificates(client)) if _needs_ca(status, alone) else sight


async def _look(member: Member, pool: ClientPool, previous: Sight | None, routes_declared: bool,
                alone: bool) -> Sight:
    client = pool.client(member.access)
    if previous is None:
        return await _first_look(member, client, alone)
    return await _look_again(member, client, previous, routes_declared, alone)


async def look(member: Member, pool: ClientPool, previous: Sight | None = None, *, routes_declared: bool = True,
               alone: bool = False) -> Sight:
    try:
        return await _look(member, pool, previous, routes_declared, alone)
    except HarperError as e:
        return Sight(member, problem=_problem(e, member))
    except Exception as e:  # noqa: BLE001 - whatever one member does, the round goes on for the others
        log.warning("reading HarperNode %s failed: %s", member.resource, type(e).__name__, exc_info=True)
        return Sight(member, problem=Problem(
            "MemberError", f"reading {member.spec.operations_url} failed ({type(e).__name__}: {str(e)[:300]}); "
                           "the operator retries on the next round", permanent=False))


async def look_all(membership: Membership, pool: ClientPool,
                   previous: Mapping[str, Sight] | None = None) -> dict[str, Sight]:
    """hostname -> Sight for every member that has access; held members are not asked. `previous`: the last
    look_all() of this cluster in this process (None reads everything)."""
    members = [m for m in membership.members if m.managed]
    routes_declared = bool(membership.desired.routes)
    alone = len(membership.members) < 2
    sights = await asyncio.gather(*(look(m, pool, (previous or {}).get(m.hostname), routes_declared=routes_declared,
                                         alone=alone) for m in members))
    return {s.member.hostname: s for s in sights}


def subscriptions_from_wire(subs: list[wire.Subscription] | None) -> tuple[Subscription, ...] | None:
    if not subs:
        return None
    return tuple(Subscription(s.database, s.table, bool(s.subscribe), bool(s.publish)) for s in subs)


def _peer(connection: wire.Connection) -> PeerRecord:
    replicates = connection.replicates is True or isinstance(connection.replicates, dict)
    return PeerRecord(
        name=connection.name, url=connection.url, shard=connection.shard,
        # Harper ignores the list of a fully replicating record
        subscriptions=None if replicates else subscriptions_from_wire(connection.subscriptions),
        replicates=replicates, connected=connection.connected,
        revoked_certificates=tuple(connection.revoked_certificates or ()),
        ca_serial=connection.ca_info.serial_number if connection.ca_info else None)


def observed(sights: dict[str, Sight]) -> ObservedCluster:
    nodes = {}
    for name, sight in sights.items():
        if sight.status is None or sight.problem is not None:
            nodes[name] = ObservedNode(name=name, reachable=False, peers={}, shard=None)
            continue
        nodes[name] = ObservedNode(
            name=name, reachable=True,
            peers={c.name: _peer(c) for c in sight.status.connections if c.name and c.name != name},
            shard=sight.status.shard, routes=sight.routes, routes_on_disk=sight.routes_on_disk,
            ca_serial=sight.ca_serial)
    return ObservedCluster(nodes=nodes)


def links(sights: Mapping[str, Sight]) -> Links:
    """Every answering member's replication sockets, by (member, peer) and database: what a leaving member's proof
    reads (reconcile/drain.py)."""
    out: dict[tuple[str, str], dict[str, Socket]] = {}
    for name, sight in sights.items():
        if sight.status is None or sight.problem is not None:
            continue
        for c in sight.status.connections:
            if not c.name or c.name == name:
                continue
            out[(name, c.name)] = {s.database: Socket(connected=s.connected, received=s.last_received_version)
                                   for s in c.database_sockets if s.database}
    return out


async def presented_serials(membership: Membership, hosts: Mapping[str, int], timeout: float = 5.0) -> dict[str, int]:
    """host -> the serial number of the certificate each managed member's operations API presents, for the `hosts`
    asked (a provisioned pod's renewed certificate: does Harper serve it yet?). One handshake each, not verified and
    sending nothing: only the certificate is read. A member that does not answer is left out."""
    async def one(member: Member) -> tuple[str, int | None]:
        url = urlsplit(member.access.operations_url)
        cert = await fetch_certificate(url.hostname or "", url.port or 443, url.hostname, timeout)
        return member.hostname, None if cert is None else int(cert.serial_number, 16)

    asked = [m for host in sorted(hosts) if (m := membership.managed_member(host)) is not None and m.access]
    return {host: serial for host, serial in await asyncio.gather(*(one(m) for m in asked)) if serial is not None}


async def listed_authorities(membership: Membership, pool: ClientPool, hosts: Iterable[str]) -> dict[str, frozenset[int]]:
    """host -> the serial numbers of the authorities each managed member's Harper lists (list_certificates), for the
    `hosts` asked (a rollover: does it trust the cluster's new authority yet?). Harper imports the trusted file when
    it starts and when the file is rewritten. A member that does not answer is left out."""
    async def one(member: Member) -> tuple[str, frozenset[int] | None]:
        listed = await _certificates(pool.client(member.access))
        if listed is None:
            return member.hostname, None
        return member.hostname, frozenset(n for c in listed if c.is_authority and (n := _serial(c.serial_number))
                                          is not None)

    asked = [m for host in sorted(set(hosts)) if (m := membership.managed_member(host)) is not None and m.access]
    return {host: serials for host, serials in await asyncio.gather(*(one(m) for m in asked)) if serials is not None}


def _serial(text: str | None) -> int | None:
    """Harper writes a serial number in hex (Node's X509Certificate.serialNumber)."""
    try:
        return int((text or "").replace(":", ""), 16)
    except ValueError:
        return None
