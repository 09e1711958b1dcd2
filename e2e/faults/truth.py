"""What is true after a fault, asked of Harper itself and of the resources; nothing here trusts the operator.

A member is reached through `Call`: (operation body) -> (HTTP status, answer). The loopback bed passes its
HarperNode.operation, the node layer a call to the pod's IP; the checks are the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

Call = Callable[[dict], tuple[int, Any]]
DATABASE, TABLE = "data", "shared"  # every member replicates it, the explicit one included


@dataclass(frozen=True)
class Expected:
    """The spec, as Harper should show it: node name -> True when the member uses explicit subscriptions, and the
    declared shards (a name absent: no shard)."""
    explicit: Mapping[str, bool]
    shards: Mapping[str, int] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set(self.explicit)

    def records_on(self, name: str) -> set[str]:
        # A full member holds every member's record, its own included; an explicit member holds only its peers'
        # (docs/harper-semantics.md, sections 1 and 2).
        return self.names - {name} if self.explicit[name] else self.names


@dataclass
class Truth:
    ghosts: list[str] = field(default_factory=list)         # a record of a node the spec does not have
    missing: list[str] = field(default_factory=list)        # a record the spec needs, absent
    disconnected: list[str] = field(default_factory=list)   # a declared pair not connected on every socket
    unanswered: list[str] = field(default_factory=list)     # a member whose operations API did not answer
    lost: list[str] = field(default_factory=list)           # a record written earlier, absent on a member
    shards: list[str] = field(default_factory=list)         # a member's record of a peer with another shard

    @property
    def healthy(self) -> bool:
        return not (self.ghosts or self.missing or self.disconnected or self.unanswered or self.lost or self.shards)

    def __str__(self) -> str:
        parts = [f"{k}: {v[:4]}" for k, v in vars(self).items() if v]
        return "; ".join(parts) or "healthy"


def _answer(call: Call, body: dict) -> Any:
    try:
        status, answer = call(body)
    except OSError as e:
        raise Unanswered(str(e)) from e
    if status != 200:
        raise Unanswered(f"{body['operation']}: {status} {str(answer)[:200]}")
    return answer


class Unanswered(Exception):
    pass


def records(call: Call) -> set[str]:
    rows = _answer(call, {"operation": "search_by_value", "database": "system", "table": "hdb_nodes",
                          "search_attribute": "name", "search_value": "*", "get_attributes": ["name"]})
    return {r["name"] for r in rows}


def rows(call: Call) -> dict[str, dict]:
    """Peer name -> the member's own cluster_status row for it."""
    return {c.get("name"): c for c in _answer(call, {"operation": "cluster_status"}).get("connections", [])}


def connected(row: dict) -> bool:
    sockets = row.get("database_sockets") or []
    return bool(sockets) and all(s.get("connected") for s in sockets)


def connected_peers(call: Call) -> dict[str, bool]:
    """Peer name -> connected on every database socket, from the member's own cluster_status."""
    return {name: connected(row) for name, row in rows(call).items()}


def has_record(call: Call, key: str) -> bool:
    try:
        rows = _answer(call, {"operation": "search_by_id", "database": DATABASE, "table": TABLE, "ids": [key],
                              "get_attributes": ["id"]})
    except Unanswered:
        return False
    return any(r.get("id") == key for r in rows)


def write_record(call: Call) -> str:
    key = uuid.uuid4().hex
    _answer(call, {"operation": "insert", "database": DATABASE, "table": TABLE, "records": [{"id": key}]})
    return key


def ensure_table(call: Call) -> None:
    status, _ = call({"operation": "describe_table", "database": DATABASE, "table": TABLE})
    if status != 200:
        status, answer = call({"operation": "create_table", "database": DATABASE, "table": TABLE,
                               "primary_key": "id"})
        if status != 200 and "already exists" not in str(answer):
            raise Unanswered(f"create_table: {status} {str(answer)[:200]}")


def harper(members: Mapping[str, Call], expected: Expected, keys: Mapping[str, set[str]] | None = None) -> Truth:
    """Records, sockets and (for `keys`: member -> record ids it must hold) data on every member."""
    truth = Truth()
    for name, call in sorted(members.items()):
        try:
            held = records(call)
            seen = rows(call)
        except Unanswered as e:
            truth.unanswered.append(f"{name}: {e}")
            continue
        want = expected.records_on(name)
        truth.ghosts += [f"on {name}: {g}" for g in sorted(held - want)]
        truth.missing += [f"on {name}: {m}" for m in sorted(want - held)]
        peers = sorted(expected.names - {name})
        truth.disconnected += [f"{name} -> {p}" for p in peers if not (p in seen and connected(seen[p]))]
        truth.shards += [f"on {name}: {p} shard {seen[p].get('shard')}, declared {expected.shards.get(p)}"
                         for p in peers if p in seen and not expected.explicit[name]
                         and seen[p].get("shard") != expected.shards.get(p)]
        truth.lost += [f"{k} on {name}" for k in sorted((keys or {}).get(name, ())) if not has_record(call, k)]
    return truth


def dissolved(members: Mapping[str, Call]) -> Truth:
    """After a cluster is deleted with the Delete policy: no former member keeps a connected peer or a record of
    another former member (a node removed keeps listing its old peers as disconnected until it restarts, seen;
    those rows are not records of a live pair and are not counted)."""
    truth = Truth()
    for name, call in sorted(members.items()):
        try:
            peers = connected_peers(call)
        except Unanswered as e:
            truth.unanswered.append(f"{name}: {e}")
            continue
        truth.ghosts += [f"on {name}: {p} still connected" for p, up in sorted(peers.items()) if up]
    return truth


def condition(obj: Mapping[str, Any] | None, type_: str) -> dict:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def ready_at_generation(obj: Mapping[str, Any] | None) -> bool:
    if not obj:
        return False
    status = obj.get("status") or {}
    return (condition(obj, "Ready").get("status") == "True"
            and status.get("observedGeneration") == obj["metadata"].get("generation"))


def status_lies(cluster: Mapping[str, Any] | None, nodes: Mapping[str, Mapping[str, Any] | None],
                truth: Truth, size: int) -> list[str]:
    """Where the resources contradict Harper: Ready while Harper is not meshed, or not Ready while it is.

    `nodes`: HarperNode name -> object. A status that is merely behind by less than a round is the caller's to
    tolerate (it samples twice); this function only compares one moment."""
    said_ready = ready_at_generation(cluster) and (cluster.get("status") or {}).get("readyNodes") == f"{size}/{size}"
    lies = []
    if said_ready and not truth.healthy:
        lies.append(f"cluster Ready {size}/{size} while Harper shows {truth}")
    if truth.healthy and not said_ready:
        ready = condition(cluster, "Ready")
        lies.append(f"cluster not Ready ({ready.get('reason')}: {str(ready.get('message'))[:160]}; "
                    f"readyNodes {((cluster or {}).get('status') or {}).get('readyNodes')}) while Harper is meshed")
    for name, node in sorted(nodes.items()):
        if truth.healthy and not ready_at_generation(node):
            lies.append(f"HarperNode {name} not Ready while Harper is meshed: {condition(node, 'Ready')}")
        for type_ in ("Stalled",):
            c = condition(node, type_)
            if truth.healthy and c.get("status") == "True":
                lies.append(f"HarperNode {name} {type_} ({c.get('reason')}) while Harper is meshed")
    return lies
