"""Proof that a leaving member's records are on the members that stay (docs/safety.md, S1). Pure: `now` is passed in.

A member leaves (scale-down) only once this module says its data is safe elsewhere. No rule on cluster_status alone
can say so: with one write unsent behind a cut link, every field looks exactly like a drained link (connected,
nothing being sent, versions still; docs/harper-semantics.md, section 12). What proves it:
1. `received`: from the survivors' cluster_status, for each database, the smallest version any of them has received
   from the leaving member L (its `lastReceivedVersion`: an audit key of L's, set as L's own writes arrive);
2. `Write`s: every entry of L's audit log after that version, of every table (the shell reads them with
   read_audit_log; entries L received from others are there too);
3. `held`: each survivor's version of each of those records (search_by_id): a write is confirmed on a survivor that
   holds the record at that version or newer (or, for a delete, holds it no more).
A look passes when every write is confirmed on every survivor and the audit log was read to its end. L is proven
drained after two passing looks at least QUIET seconds apart, both made after L left the client Service: a write
still in flight at the first look shows in the second. Anything else is a wait, with the words a person reads in
the cluster's Reconciling condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

# Seconds between the two passing looks: a client request that reached L just before it left the client Service has
# committed by then, and shows in the second look's audit log if it was not sent.
QUIET = 2.0
# Audit entries per read_audit_log, and reads per table and look: a range that holds AUDIT_LIMIT entries is split in
# two by audit key (the entries say no key of their own), up to AUDIT_PAGES reads; past that the look cannot pass
# (writes keep arriving faster than they are confirmed), and the cluster says so and waits.
AUDIT_LIMIT = 1000
AUDIT_PAGES = 64


@dataclass(frozen=True)
class Socket:
    """One replication socket of one member to one peer, for one database, as that member reports it."""

    connected: bool
    received: float | None = None  # lastReceivedVersion: the newest version received from the peer


# (member, peer) -> database -> the member's socket to that peer, for every member that answered this round.
Links = Mapping[tuple[str, str], Mapping[str, Socket]]


@dataclass(frozen=True)
class Write:
    """One entry of the leaving member's audit log: a record written (or deleted) at a version."""

    database: str
    table: str
    key: str  # the record's primary key, as text
    version: float  # the record version (audit entry `timestamp`)
    deleted: bool = False


# (survivor, database, table, key) -> that survivor's version of the record; None: it holds no such record.
Held = Mapping[tuple[str, str, str, str], float | None]


@dataclass(frozen=True)
class Drain:
    """Where one leaving member's proof stands: `proven`, or what it waits for."""

    proven: bool
    waits_for: str = ""
    passed_at: float | None = None  # when the first of the two passing looks was made
    due: float | None = None  # seconds until the second look may prove it
    survivors: frozenset[str] = frozenset()  # the members that stay the proof covered


def survivors_of(leaving: str, staying: Collection[str], links: Links, explicit: bool) -> list[str]:
    """The members that should hold the leaving member's data: every other member (those leaving too: a scale-down
    reverted keeps them, and Harper would never bring them what only the leaving member had) for a fully
    replicating member, the ones it holds a pair with for explicit subscriptions."""
    if not explicit:
        return sorted(staying)
    return sorted(s for s in staying if (leaving, s) in links)


def stranger(leaving: str, staying: Collection[str], links: Links, answered: Collection[str]) -> bool:
    """No member that stays lists the leaving member, and every one of them answered (`staying`: those that can be
    asked): it never joined (or was removed by hand), so no record of the cluster's is on it alone and its leaving needs no proof. Only for a member whose
    data the operator does not delete (an external node keeps its disk): a provisioned pod took client writes through
    the client Service whether it joined or not."""
    return all(s in answered for s in staying) and not any((s, leaving) in links for s in staying)


def unlisted(leaving: str, staying: Collection[str], askable: Collection[str], links: Links,
             answered: Collection[str], why: Mapping[str, str]) -> bool | str | None:
    """A leaving member that no member that stays and answered lists. True: every one that can be asked (`askable`)
    answered, so it never joined and needs no proof (see `stranger`). A wait, in words: one that could not be asked
    might list it, and it cannot be read itself to tell. None: another rule applies (a member lists it, or it
    answers and the usual proof runs). `why`: why each member that did not answer was not read, in words."""
    if stranger(leaving, askable, links, answered):
        return True
    unasked = [x for x in askable if x not in answered]
    if not unasked or leaving in answered or any((x, leaving) in links for x in staying):
        return None
    plural = len(unasked) > 1
    return (f"{', '.join(unasked)} to be asked whether {'they list' if plural else 'it lists'} {leaving} "
            f"({'; '.join(why.get(x, 'it does not answer') for x in unasked)}): no member that answered lists "
            f"{leaving}, which cannot itself be read ({why.get(leaving, 'it does not answer')})")


def received(leaving: str, survivors: list[str], links: Links, answered: Collection[str]) -> dict[str, float] | str:
    """database -> the smallest version any survivor received from the leaving member (0: nothing yet); or why the
    look cannot be made."""
    if leaving not in answered:
        return f"{leaving} does not answer, so its records cannot be confirmed elsewhere"
    if not survivors:
        return f"no member that stays replicates from {leaving}"
    out: dict[str, float] = {}
    for s in survivors:
        if s not in answered:
            return f"{s} does not answer, so it cannot confirm {leaving}'s records"
        theirs, mine = links.get((s, leaving)), links.get((leaving, s))
        if not theirs or not mine:
            return f"{s} and {leaving} hold no replication link to each other yet"
        for database in mine:
            socket = theirs.get(database)
            if socket is None:
                return f"{s} holds no {database} socket from {leaving}"
            out[database] = min(out.get(database, float("inf")), socket.received or 0.0)
    return out


def unconfirmed(writes: list[Write], survivors: list[str], held: Held) -> tuple[Write, str] | None:
    """The first write some survivor does not hold yet, and that survivor. Only the newest write of each record
    counts: a record written and then deleted is absent on the survivors, as it should be."""
    newest: dict[tuple[str, str, str], Write] = {}
    for w in writes:
        key = (w.database, w.table, w.key)
        if key not in newest or w.version >= newest[key].version:
            newest[key] = w
    for w in sorted(newest.values(), key=lambda w: (w.version, w.database, w.table, w.key)):
        for s in survivors:
            version = held.get((s, w.database, w.table, w.key))
            ok = (version is None or version >= w.version) if w.deleted else (version is not None
                                                                              and version >= w.version)
            if not ok:
                return w, s
    return None


def look(leaving: str, survivors: list[str], writes: list[Write] | str, held: Held, truncated: bool) -> str:
    """'' when this look passes; else what it waits for. `writes`: L's audit entries after what the survivors
    received (or why they could not be read); `truncated`: a table had AUDIT_LIMIT entries or more."""
    if isinstance(writes, str):
        return writes
    missing = unconfirmed(writes, survivors, held)
    if missing is not None:
        w, s = missing
        what = "the deletion of" if w.deleted else "the write of"
        return (f"{s} does not hold {what} {w.database}.{w.table} {w.key!r} (version {w.version:.3f}) "
                f"that {leaving} has")
    if truncated:
        return (f"{leaving} has more writes in a table after what the members that stay received from it than "
                f"{AUDIT_PAGES} reads of its audit log hold: waiting for them to be confirmed")
    return ""


def still_proven(drained: Mapping[str, Collection[str]], members: Collection[str]) -> frozenset[str]:
    """The leaving members whose proof covered every other member there is now: a proof made before a member came
    (back) says nothing of it (found by the model-level tests: a member that missed a record the leaving member
    alone had sent never gets it once that member is gone, since Harper does not relay another member's writes)."""
    return frozenset(h for h, covered in drained.items() if set(members) - {h} <= set(covered))


def drain(leaving: str, waits: str, previous: float | None, now: float, quiet: float = QUIET) -> Drain:
    """The proof after one look (`waits`: '' when it passed); `previous`: when the passing looks began."""
    if waits:
        return Drain(False, waits)
    if previous is None or now < previous:
        return Drain(False, f"{leaving}'s writes are all on the members that stay; confirming again in "
                            f"{quiet:.0f} s", passed_at=now, due=quiet)
    if now - previous < quiet:
        return Drain(False, f"{leaving}'s writes are all on the members that stay; confirming again in "
                            f"{quiet:.0f} s", passed_at=previous, due=quiet - (now - previous))
    return Drain(True, passed_at=previous)
