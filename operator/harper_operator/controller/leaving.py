"""A leaving member's proof read from Harper: the imperative half of reconcile/drain.py (docs/safety.md, S1).

One look reads, on the leaving member, its audit log after what the members that stay received from it (every
table of every database it replicates), and on each member that stays the version of every record those entries
wrote. Whatever fails is what the proof waits for, in words: a look that cannot be made never passes.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..harper.errors import HarperError
from ..harper.records import AuditEntry, key_text
from ..reconcile.drain import AUDIT_LIMIT, AUDIT_PAGES, Write, look
from .clients import ClientPool
from .members import Member

IDS_PER_READ = 500  # records asked of a survivor in one search_by_id


@dataclass
class Table:
    """One table of the leaving member, and what its audit log holds after what the survivors received."""

    database: str
    name: str
    key: str  # the primary key attribute
    entries: list[AuditEntry] = field(default_factory=list)
    complete: bool = True  # every entry after the start was read (within AUDIT_PAGES reads)

    def writes(self) -> list[Write]:
        return [Write(self.database, self.name, key_text(i), e.version, deleted=e.operation == "delete")
                for e in self.entries for i in e.ids]

    def ids(self) -> list[Any]:
        unique = {key_text(i): i for e in self.entries for i in e.ids}
        return [unique[k] for k in sorted(unique)]


# How far ahead of the operator's clock a member's audit keys (its own clock, ms) may be, for a split of an open range.
CLOCK_SKEW_MS = 600_000.0


async def _entries(client, table: Table, start: float) -> None:
    """Every entry of the table from audit key `start`. A range that answers AUDIT_LIMIT entries may hold more (found
    by the model-level tests: a member that had received 1,000 writes since its own last one could never leave), so
    it is split in two by audit key and both halves are read, in key order, up to AUDIT_PAGES reads. Any split point
    inside the range is correct; the last entry's version (just below its audit key: the transaction's start time)
    makes the first half hold about one answer's worth, so a page costs about two reads."""
    ranges: list[tuple[float, float | None]] = [(start, None)]
    reads = 0
    while ranges:
        low, high = ranges.pop(0)
        got = await client.read_audit_log(table.database, table.name, low, AUDIT_LIMIT, until=high)
        reads += 1
        if len(got) < AUDIT_LIMIT:
            table.entries.extend(got)
            continue
        top = math.inf if high is None else high
        middle = got[-1].version
        if not low < middle < top:
            middle = (low + (time.time() * 1000 + CLOCK_SKEW_MS if high is None else high)) / 2
        if reads >= AUDIT_PAGES or not low < middle < top:
            table.complete = False
            return
        ranges[:0] = [(low, middle), (middle, high)]


async def _tables(client, database: str, since: float) -> list[Table]:
    found = [Table(database, name, key) for name, key in sorted((await client.describe_database(database)).items())]
    start = math.nextafter(since, math.inf)  # read_audit_log's start is inclusive: what the survivors have is not
    await asyncio.gather(*(_entries(client, t, start) for t in found))
    return found


async def _versions(client, survivor: str, table: Table) -> dict[tuple[str, str, str, str], float | None]:
    ids, out = table.ids(), {}
    for i in range(0, len(ids), IDS_PER_READ):
        chunk = ids[i:i + IDS_PER_READ]
        versions = await client.record_versions(table.database, table.name, table.key, chunk)
        out.update(((survivor, table.database, table.name, key_text(x)), versions.get(key_text(x))) for x in chunk)
    return out


async def proof_look(leaving: Member, survivors: list[Member], pool: ClientPool, received: Mapping[str, float]) -> str:
    """'' when every write of the leaving member after what the survivors received from it is held by every
    survivor; else what the proof waits for."""
    try:
        client = pool.client(leaving.access)
        found = await asyncio.gather(*(_tables(client, d, v) for d, v in sorted(received.items())))
    except HarperError as e:
        return f"reading {leaving.hostname}'s audit log failed ({e}); trying again"
    tables = [t for part in found for t in part]
    written = [t for t in tables if t.entries]
    held: dict[tuple[str, str, str, str], float | None] = {}
    try:
        for s in survivors:
            peer = pool.client(s.access)
            for part in await asyncio.gather(*(_versions(peer, s.hostname, t) for t in written)):
                held.update(part)
    except HarperError as e:
        return f"reading on {s.hostname} the records {leaving.hostname} wrote failed ({e}); trying again"
    return look(leaving.hostname, [s.hostname for s in survivors], [w for t in tables for w in t.writes()], held,
                truncated=not all(t.complete for t in tables))
