"""Proof that a leaving member's records are on the members that stay (docs/safety.md, S1). Pure: `now` is passed in.

A member leaves (scale-down) only once this module says its data is safe elsewhere. What proves it, from Harper's
own replication state (docs/harper-semantics.md, section 12):
* the leaving member L answers, and so does every member S that stays and should hold L's data (every member for a
  fully replicating L; for an L with explicit subscriptions, the members it holds a pair record of);
* for every database L replicates, L's socket to S and S's socket to L are connected, and L is sending nothing to S
  (no message in flight, no back-pressure);
* what each S has received from L (lastReceivedVersion, per database) has not moved for QUIET seconds, looked at
  after L left the client Service: L has no new writes, and the last one it had reached S.
Anything else is a wait, with the words a person reads in the cluster's Reconciling condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Mapping

# Seconds the survivors' received versions must stay still. Long enough to see a writer that writes every second or
# faster; a slower one shows as versions that move from one look to the next, and the wait goes on.
QUIET = 2.0


@dataclass(frozen=True)
class Socket:
    """One replication socket of one member to one peer, for one database, as that member reports it."""

    connected: bool
    sending: bool = False  # a message in flight or back-pressure: data still on its way
    received: float | None = None  # lastReceivedVersion: the newest version received from the peer


# (member, peer) -> database -> the member's socket to that peer, for every member that answered this round.
Links = Mapping[tuple[str, str], Mapping[str, Socket]]


@dataclass(frozen=True)
class Mark:
    """What the members that stay had received from a leaving member at one look."""

    at: float
    received: Mapping[tuple[str, str], float | None] = field(default_factory=dict)  # (survivor, database) -> version


@dataclass(frozen=True)
class Drain:
    """The state of one leaving member's proof: `proven`, or what it waits for."""

    proven: bool
    waits_for: str = ""
    mark: Mark | None = None  # this look, for the next one to compare with
    due: float | None = None  # seconds until the quiet window could end


def survivors_of(leaving: str, staying: Collection[str], links: Links, explicit: bool) -> list[str]:
    """The members that stay and should hold the leaving member's data."""
    if not explicit:
        return sorted(staying)
    return sorted(s for s in staying if (leaving, s) in links)


def _look(leaving: str, survivors: list[str], links: Links, answered: Collection[str]) -> Mapping | str:
    """(survivor, database) -> version received from the leaving member; or why it cannot be read now."""
    if leaving not in answered:
        return f"{leaving} does not answer, so its records cannot be confirmed elsewhere"
    if not survivors:
        return f"no member that stays replicates from {leaving}"
    received = {}
    for s in survivors:
        if s not in answered:
            return f"{s} does not answer, so it cannot confirm {leaving}'s records"
        out, back = links.get((leaving, s)), links.get((s, leaving))
        if not out:
            return f"{leaving} holds no replication socket to {s}"
        if not back:
            return f"{s} holds no replication socket from {leaving}"
        for database, socket in sorted(out.items()):
            theirs = back.get(database)
            if not socket.connected or theirs is None or not theirs.connected:
                return f"{leaving} and {s} are not connected on database {database}"
            if socket.sending:
                return f"{leaving} is still sending database {database} to {s}"
            received[(s, database)] = theirs.received
    return received


def drain(leaving: str, survivors: list[str], links: Links, answered: Collection[str], previous: Mark | None,
          now: float, quiet: float = QUIET) -> Drain:
    """One look at a leaving member that is out of the client Service. `previous`: the last look's mark (None
    starts the quiet window)."""
    seen = _look(leaving, survivors, links, answered)
    if isinstance(seen, str):
        return Drain(False, seen)
    mark = Mark(now, dict(seen))
    if previous is None or previous.received != mark.received:
        return Drain(False, f"waiting {quiet:.0f} s for {', '.join(survivors)} to confirm {leaving}'s last writes",
                     mark, due=quiet)
    if now - previous.at < quiet:
        return Drain(False, f"waiting {quiet:.0f} s for {', '.join(survivors)} to confirm {leaving}'s last writes",
                     previous, due=quiet - (now - previous.at))
    return Drain(True, mark=previous)
