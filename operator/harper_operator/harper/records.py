"""What the operator reads of Harper's records, for a leaving member's proof (docs/harper-semantics.md, 12 and 13):
tables and their primary keys, audit log entries, a record's version. Tolerant parsing: an entry or record that
cannot be read is reported, never guessed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AuditEntry:
    """One transaction's entry for one table in a node's audit log."""

    operation: str  # insert, upsert, update, delete, ...
    version: float  # the entry's `timestamp`: the version of the records it wrote
    ids: tuple[Any, ...]  # the records' primary keys (hash_values), as Harper typed them (search_by_id takes them)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key_text(i) for i in self.ids)


class UnreadableAnswer(ValueError):
    """An answer whose shape is not what Harper 4.7 answers: the look waits rather than guess."""


def key_text(value: Any) -> str:
    """A primary key as text, the same for the audit entry and the record (numbers and strings alike)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def tables(parsed: Any) -> dict[str, str]:
    """describe_database's answer -> table name -> its primary key attribute, for the tables that replicate: a table
    with `replicate: false` (system.hdb_analytics, hdb_info, ...) or `audit: false` never reaches another node, so
    nothing of it can be confirmed elsewhere (section 13)."""
    if not isinstance(parsed, dict):
        raise UnreadableAnswer("describe_database did not answer an object")
    out = {}
    for name, table in parsed.items():
        key = table.get("hash_attribute") if isinstance(table, dict) else None
        if not isinstance(name, str) or not isinstance(key, str):
            raise UnreadableAnswer("describe_database: a table without a name or hash_attribute")
        if table.get("replicate") is False or table.get("audit") is False:
            continue
        out[name] = key
    return out


def audit_entries(parsed: Any) -> list[AuditEntry]:
    """read_audit_log's answer (search_type timestamp) -> its entries, oldest first."""
    if not isinstance(parsed, list):
        raise UnreadableAnswer("read_audit_log did not answer a list")
    out = []
    for entry in parsed:
        stamp = entry.get("timestamp") if isinstance(entry, dict) else None
        keys = entry.get("hash_values") if isinstance(entry, dict) else None
        if not isinstance(stamp, (int, float)) or isinstance(stamp, bool) or not math.isfinite(stamp) \
                or not isinstance(keys, list):
            raise UnreadableAnswer("read_audit_log: an entry without a timestamp or hash_values")
        if not all(isinstance(k, (str, int, float)) and not isinstance(k, bool) for k in keys):
            raise UnreadableAnswer("read_audit_log: a primary key that is not a string or a number")
        out.append(AuditEntry(str(entry.get("operation") or ""), float(stamp), tuple(keys)))
    return out


def versions(parsed: Any, key: str) -> dict[str, float]:
    """search_by_id's answer (get_attributes: the key and __updatedtime__) -> key -> the record's version."""
    if not isinstance(parsed, list):
        raise UnreadableAnswer("search_by_id did not answer a list")
    out = {}
    for record in parsed:
        stamp = record.get("__updatedtime__") if isinstance(record, dict) else None
        if not isinstance(record, dict) or key not in record or not isinstance(stamp, (int, float)) \
                or isinstance(stamp, bool):
            shape = f"fields {sorted(map(str, record))}" if isinstance(record, dict) else type(record).__name__
            raise UnreadableAnswer(f"search_by_id: a record without its key or __updatedtime__ ({shape})")
        out[key_text(record[key])] = float(stamp)
    return out
