"""What `status` and `plan` print: documents (the -o json/yaml output) built from resources and answers already
read, and the tables and lines made from them. Pure: no Kubernetes, no Harper, no project module; what it is
given (a Membership, sights, an intent) is read by its attributes."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping, TextIO

import yaml


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in ((obj.get("status") or {}).get("conditions") or [])
                 if isinstance(c, dict) and c.get("type") == type_), {})


def _age(obj: Mapping[str, Any], now: datetime | None = None) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cluster_row(cluster: Mapping[str, Any]) -> dict[str, Any]:
    ready = condition(cluster, "Ready")
    return {"namespace": cluster["metadata"].get("namespace"), "name": cluster["metadata"]["name"],
            "readyNodes": (cluster.get("status") or {}).get("readyNodes"), "ready": ready.get("status", "Unknown"),
            "reason": ready.get("reason", ""), "message": ready.get("message", ""), "age": _age(cluster)}


def status_document(cluster: Mapping[str, Any], nodes: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A cluster and its nodes as their .status says, as the operator last wrote it."""
    status = cluster.get("status") or {}
    members = {r.get("name"): r for r in status.get("members") or [] if isinstance(r, dict)}
    out = []
    for node in nodes:
        name, nstatus = node["metadata"]["name"], node.get("status") or {}
        row, ncond = members.get(name), condition(node, "Ready")
        ready = bool(row.get("ready")) if row else ncond.get("status") == "True"
        out.append({
            "name": name, "hostname": (node.get("spec") or {}).get("hostname") or nstatus.get("nodeName") or name,
            "ready": ready, "connectedPeers": nstatus.get("connectedPeers"),
            "message": "" if ready else ((row or {}).get("message") or ncond.get("message") or ""),
            # Never written by the operator (the CRD's default status holds only observedGeneration 0): unknown.
            "peers": None if not set(nstatus) - {"observedGeneration"} else [
                {"name": p.get("name"), "connected": bool(p.get("connected")),
                 "sockets": [{"database": s.get("database"), "connected": bool(s.get("connected"))}
                             for s in p.get("sockets") or []]}
                for p in nstatus.get("peers") or []]})
    return {**cluster_row(cluster), "source": "status", "observedGeneration": status.get("observedGeneration"),
            "generation": cluster["metadata"].get("generation"), "nodes": out}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _problem(x: Any, sights: Mapping[str, Any]) -> Any:
    """A member's own problem (its resource, its Secret), else the one its last sight found."""
    sight = sights.get(x.hostname)
    return x.problem or (sight.problem if sight is not None else None)


def live_document(cluster: Mapping[str, Any], m: Any, sights: Mapping[str, Any],
                  ways: Mapping[str, str]) -> dict[str, Any]:
    """A cluster and its nodes as Harper answers now (cluster_status of every member): m is a Membership, sights
    the Sight of each hostname, ways how each was reached ("api-server", "direct", "refused")."""
    out = []
    for x in m.members:
        sight = sights.get(x.hostname)
        problem = _problem(x, sights)
        peers = None
        if sight is not None and sight.status is not None:
            peers = [{"name": c.name, "connected": c.connected,
                      "sockets": [{"database": s.database, "connected": s.connected, "latencyMs": _ms(s.latency),
                                   "lagMs": _ms(s.lag_ms), "backPressurePercent": _ms(s.back_pressure_percent)}
                                  for s in c.database_sockets]}
                     for c in sorted(sight.status.connections, key=lambda c: c.name or "")]
        out.append({"name": x.resource, "hostname": x.hostname,
                    "via": ways.get(x.hostname),
                    "problem": {"reason": problem.reason, "message": problem.message} if problem else None,
                    "peers": peers})
    return {**cluster_row(cluster), "source": "harper", "nodes": out}


def plan_document(cluster: Mapping[str, Any], m: Any, sights: Mapping[str, Any], ways: Mapping[str, str],
                  now: Any) -> dict[str, Any]:
    """now: the controller's Intent for this cluster (operations, diagnosed, pending_restart)."""
    left = []
    for x in m.members:
        if problem := _problem(x, sights):
            left.append({"node": x.resource, "hostname": x.hostname, "reason": problem.reason,
                         "message": problem.message})
    return {"namespace": cluster["metadata"]["namespace"], "name": cluster["metadata"]["name"],
            "operations": [op.describe() for op in now.operations],
            "leftAlone": left,
            "diagnosed": [{"node": n, "reason": p.reason, "message": p.message}
                          for n, p in sorted(now.diagnosed.items())],
            "pendingRestart": [{"node": n, "why": why} for n, why in sorted(now.pending_restart.items())],
            "throughApiServer": sorted(h for h, way in ways.items() if way == "api-server")}


def table(rows: list[tuple], out: TextIO) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")


def dump(doc: Any, output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(yaml.safe_dump(doc, sort_keys=False))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _fmt(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def clusters_table(rows: list[Mapping[str, Any]], all_namespaces: bool) -> list[tuple]:
    """NAME READY-NODES READY REASON AGE, after NAMESPACE with all_namespaces: one row per cluster_row."""
    head = ("NAMESPACE",) if all_namespaces else ()
    return [(*head, "NAME", "READY-NODES", "READY", "REASON", "AGE")] + [
        ((r["namespace"],) if all_namespaces else ()) +
        (r["name"], r["readyNodes"] or "-", r["ready"], r["reason"] or "-", r["age"]) for r in rows]


def status_rows(doc: Mapping[str, Any]) -> list[tuple]:
    """One row per node, peer and database: NODE PEER DATABASE CONNECTED MESSAGE."""
    rows: list[tuple] = [("NODE", "PEER", "DATABASE", "CONNECTED", "MESSAGE")]
    for node in doc["nodes"]:
        mine: list[list] = []
        if node["peers"] is None:
            mine.append([node["hostname"], "-", "-", "unknown"])
        elif not node["peers"]:
            mine.append([node["hostname"], "-", "-", "none"])
        for peer in node["peers"] or []:
            for s in peer["sockets"] or [None]:
                mine.append([node["hostname"], peer["name"] or "?", s["database"] if s else "-",
                             _yes(s["connected"] if s else peer["connected"])])
        rows += [(*r, node["message"] if i == 0 else "") for i, r in enumerate(mine)]
    return rows


def live_rows(doc: Mapping[str, Any]) -> list[tuple]:
    """NODE PEER DATABASE CONNECTED LATENCY LAG BACKPRESSURE, as Harper answers now."""
    rows: list[tuple] = [("NODE", "PEER", "DATABASE", "CONNECTED", "LATENCY", "LAG", "BACKPRESSURE")]
    for node in doc["nodes"]:
        if node["peers"] is None:
            rows.append((node["hostname"], "-", "-", "unknown", "-", "-",
                         node["problem"]["reason"] if node["problem"] else "-"))
            continue
        if not node["peers"]:
            rows.append((node["hostname"], "-", "-", "no peers", "-", "-", "-"))
        for peer in node["peers"]:
            for s in peer["sockets"] or [None]:
                rows.append((node["hostname"], peer["name"] or "?", s["database"] if s else "-",
                             _yes(bool(s and s["connected"])), _fmt(s["latencyMs"] if s else None, "ms"),
                             _fmt(s["lagMs"] if s else None, "ms"), _fmt(s["backPressurePercent"] if s else None, "%")))
    return rows


def plan_lines(doc: Mapping[str, Any]) -> list[str]:
    lines = [f"# {x['node']} ({x['hostname']}) is left alone: {x['reason']}: {x['message']}" for x in doc["leftAlone"]]
    lines += [f"# {x['node']} is left alone: {x['reason']}: {x['message']}" for x in doc["diagnosed"]]
    lines += doc["operations"]
    lines += [f"# {x['node']}: waits for a restart ({x['why']})" for x in doc["pendingRestart"]]
    if doc["throughApiServer"]:
        lines.append(f"# read through the API server: {', '.join(doc['throughApiServer'])} (their replication "
                     "endpoints were not probed from here; the operator's verdict is in their conditions)")
    if not doc["operations"]:
        lines.append("nothing to do")
    return lines
