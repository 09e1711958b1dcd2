"""A FAKE Harper fleet and a FAKE Kubernetes for unit tests of the controller shell (loop, execute, dissolve).

Not Harper: each fake node answers the operations the controller uses from the reconcile test MODEL
(e2e/simulator/harper_model.py), translated into the client's wire types, so the shell's own logic (isolation,
ordering, budgets, status) is tested without a network. The real client and real Harper are tested elsewhere
(tests/harper against an HTTP fake, e2e/ against real Harper nodes).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "simulator"))

from harper_model import HarperModel, ModelError  # noqa: E402

from harper_operator.harper import models as wire  # noqa: E402
from harper_operator.harper.errors import (PeerUnreachableError, RequestValidationError,  # noqa: E402
                                           TransientHarperError, UnknownNodeError)
from harper_operator.harper.errors import PeerFailure  # noqa: E402
from harper_operator.harper.probe import ProbeResult  # noqa: E402
from harper_operator.reconcile.topology import DesiredNode, Route, Subscription  # noqa: E402

PASSWORD = "fleet-s3cret-password"


@dataclass
class Call:
    node: str
    operation: str
    detail: Any = None
    authorization: tuple[str, str] | None = None


@dataclass
class FakeFleet:
    """Fake Harper nodes reachable at http://<name>:9925 (operations) and wss://<name>:9933 (replication).

    `failures[(node, operation)]` -> an exception to raise instead of answering; `answers[node]` -> a callable
    raising whatever odd thing a broken node does; `reports[node]` -> the name a node gives itself."""

    model: HarperModel
    calls: list[Call] = field(default_factory=list)
    failures: dict[tuple[str, str], Exception] = field(default_factory=dict)
    answers: dict[str, Callable[[], Any]] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    not_harper: set[str] = field(default_factory=set)  # replication URL answered by something else
    # (node, peer) -> extra fields of the node's "data" socket to that peer (lastReceivedVersion, sendingMessage...)
    sockets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Records, for a leaving member's proof: node -> its audit log, entries (table, key, version, operation) of the
    # database "data" with the audit key equal to the version; (node, table, key) -> the version it holds.
    audit: dict[str, list[tuple[str, Any, float, str]]] = field(default_factory=dict)
    held: dict[tuple[str, str, str], float] = field(default_factory=dict)

    @classmethod
    def of(cls, *names: str) -> "FakeFleet":
        return cls(HarperModel(names))

    def node_at(self, operations_url: str) -> str:
        return operations_url.split("://", 1)[1].split(":")[0].strip("/")

    def refuse_joining(self, name: str, why: str = "certificate rejected") -> None:
        """Every add_node/update_node of `name` is refused for good (what a seed says of a bad peer)."""
        original = self.model.set_node

        def refuse(on, target):
            if target.name == name:
                raise ModelError(f"{name} refused: {why}")
            return original(on, target)

        self.model.set_node = refuse

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.operation not in ("cluster_status", "routes", "probe", "describe_database",
                                                            "read_audit_log", "search_by_id")]

    async def probe(self, url: str, **_: Any) -> ProbeResult:
        name = url.split("://", 1)[1].rsplit(":", 1)[0]
        self.calls.append(Call(name, "probe", url))
        node = self.model.nodes.get(name)
        if name in self.not_harper:
            return ProbeResult(reachable=False, http_status=404,
                               error=f"something answers at {url} (HTTP 404) but not Harper's replication protocol")
        if node is None or not node.up:
            return ProbeResult(reachable=False, error="ConnectionRefusedError: refused")
        return ProbeResult(reachable=True, subprotocol=wire.REPLICATION_SUBPROTOCOL)


class FakeClient:
    """Stands in for HarperClient on one fake node."""

    def __init__(self, fleet: FakeFleet, operations_url: str, username: str, password: str):
        self.fleet, self.name = fleet, fleet.node_at(operations_url)
        self.operations_url, self.credentials = operations_url, (username, password)

    def _enter(self, operation: str, detail: Any = None, authorization=None) -> None:
        self.fleet.calls.append(Call(self.name, operation, detail, authorization))
        if (self.name, operation) in self.fleet.failures:
            raise self.fleet.failures[(self.name, operation)]
        if self.name in self.fleet.answers:
            self.fleet.answers[self.name]()
        node = self.fleet.model.nodes.get(self.name)
        if node is None or not node.up:
            raise TransientHarperError(operation, None, "cannot connect: refused", url=self.operations_url)

    async def cluster_status(self) -> wire.ClusterStatus:
        self._enter("cluster_status")
        seen = self.fleet.model.observe_node(self.name)
        connections = []
        for peer in seen.peers.values():
            connections.append({
                "name": peer.name, "url": peer.url, "shard": peer.shard,
                "replicates": True if peer.replicates else None,
                "subscriptions": None if peer.subscriptions is None else [
                    {"database": s.database, "table": s.table, "subscribe": s.subscribe, "publish": s.publish}
                    for s in peer.subscriptions],
                "database_sockets": [{"database": "data", "connected": peer.connected,
                                      **self.fleet.sockets.get((self.name, peer.name), {})}],
                **({"ca_info": {"serialNumber": peer.ca_serial}} if peer.ca_serial else {})})
        return wire.ClusterStatus.model_validate({
            "node_name": self.fleet.reports.get(self.name, self.name), "shard": seen.shard,
            "connections": connections})

    async def loaded_routes(self) -> list[wire.Route]:
        self._enter("routes")
        node = self.fleet.model.nodes[self.name]
        return [wire.Route(hostname=r.hostname, port=r.port) for r in (node.routes_loaded or [])]

    async def list_certificates(self) -> list[wire.Certificate]:
        """The CA Harper made for itself, when the model tracks CAs (HarperModel(cas=True)); none otherwise, and
        then every node without records looks new, never wiped."""
        model = self.fleet.model
        if not model.cas:
            return []
        serial = f"{self.name}-ca{model.nodes[self.name].ca}"
        return [wire.Certificate.model_validate({
            "name": f"HarperDB-Certificate-Authority-{self.name}", "is_authority": True,
            "details": {"serial_number": serial, "subject": f"CN=HarperDB-Certificate-Authority-{self.name}"}})]

    async def cluster_get_routes(self) -> list[wire.Route]:
        self._enter("routes")
        node = self.fleet.model.nodes[self.name]
        return [wire.Route(hostname=r.hostname, port=r.port) for r in (node.routes_disk or [])]

    def _model(self, call: Callable[[], None], operation: str) -> None:
        try:
            call()
        except ModelError as e:
            text = str(e)
            if text.endswith("does not exist"):
                raise UnknownNodeError(operation, 400, text, url=self.operations_url) from None
            if text.startswith("Error returned from"):
                raise PeerUnreachableError(operation, 500, text, url=self.operations_url,
                                           peer=PeerFailure(None, text)) from None
            raise RequestValidationError(operation, 400, text, url=self.operations_url) from None

    def _target(self, req: wire.NodeRequest) -> DesiredNode:
        subs = None if req.subscriptions is None else tuple(
            Subscription(s.database, s.table, s.subscribe, s.publish) for s in req.subscriptions)
        return DesiredNode(name=req.hostname, url=req.url, shard=req.shard, subscriptions=subs,
                           revoked_certificates=tuple(req.revoked_certificates or ()))

    async def add_node(self, req: wire.NodeRequest):
        auth = req.authorization
        self._enter("add_node", req.hostname, (auth.username, auth.password.get_secret_value()) if auth else None)
        self._model(lambda: self.fleet.model.set_node(self.name, self._target(req)), "add_node")

    async def update_node(self, req: wire.NodeRequest):
        self._enter("update_node", req.hostname)
        self._model(lambda: self.fleet.model.set_node(self.name, self._target(req)), "update_node")

    async def remove_node(self, hostname: str):
        self._enter("remove_node", hostname)
        self._model(lambda: self.fleet.model.remove_node(self.name, hostname), "remove_node")

    async def cluster_set_routes(self, routes: list[wire.Route]):
        self._enter("cluster_set_routes", routes)
        self.fleet.model.set_routes(self.name, [Route(r.hostname, r.port) for r in routes])

    async def cluster_delete_routes(self, routes: list[wire.Route]):
        self._enter("cluster_delete_routes", routes)
        self.fleet.model.delete_routes(self.name, [Route(r.hostname, r.port) for r in routes])

    async def describe_database(self, database: str) -> dict[str, str]:
        self._enter("describe_database", database)
        return {"t": "id", "u": "id"} if database == "data" else {}

    async def read_audit_log(self, database: str, table: str, since: float, limit: int, until: float | None = None):
        from harper_operator.harper.records import AuditEntry
        self._enter("read_audit_log", (database, table, since))
        found = [AuditEntry(op, version, (key,)) for t, key, version, op in self.fleet.audit.get(self.name, [])
                 if database == "data" and t == table and version >= since and (until is None or version < until)]
        return sorted(found, key=lambda e: e.version)[:limit]

    async def record_versions(self, database: str, table: str, key: str, ids):
        self._enter("search_by_id", (database, table, tuple(ids)))
        return {str(i): self.fleet.held[(self.name, table, str(i))] for i in ids
                if (self.name, table, str(i)) in self.fleet.held}

    async def restart(self):
        self._enter("restart")
        self.fleet.model.restart(self.name)

    async def close(self) -> None:
        pass


class FakePool:
    """Stands in for ClientPool: one FakeClient per node and credentials."""

    def __init__(self, fleet: FakeFleet, *_: Any, **__: Any):
        self.fleet = fleet
        self.kept: list[str] | None = None  # the operations URLs the last retire() kept

    def client(self, access) -> FakeClient:
        return FakeClient(self.fleet, access.operations_url, access.username, access.password)

    async def __aenter__(self) -> "FakePool":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass

    async def retire(self, keep) -> None:
        self.kept = sorted(a.operations_url for a in keep)

    async def close(self) -> None:
        pass


@dataclass
class FakeKube:
    """Stands in for harper_operator.kube: Secrets by name, and every status patch kept."""

    secrets: dict[str, tuple[bool, dict[str, str | None]]] = field(default_factory=dict)
    patches: list[tuple[str, str, dict]] = field(default_factory=list)
    fail_secret: dict[str, Exception] = field(default_factory=dict)
    listed: dict[str, list[dict]] = field(default_factory=dict)
    lists: list[str] = field(default_factory=list)

    async def read_secret(self, namespace: str, name: str):
        if name in self.fail_secret:
            raise self.fail_secret[name]
        return self.secrets.get(name)

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict) -> bool:
        self.patches.append((plural, name, status))
        return True

    async def list_objects(self, plural: str, namespace: str) -> list[dict]:
        """What the API server lists (set `listed`): the authority a ghost removal checks, ahead of the index."""
        self.lists.append(plural)
        return list(self.listed.get(plural, []))

    def last(self, plural: str, name: str) -> dict:
        merged: dict = {}
        for p, n, status in self.patches:
            if p == plural and n == name:
                merged.update(status)
        return {k: v for k, v in merged.items() if v is not None}


def admin_secret(password: str = PASSWORD) -> tuple[bool, dict[str, str]]:
    return True, {"username": "admin", "password": password}


def cluster_body(name: str = "c", *, status: dict | None = None, annotations: dict | None = None, **spec: Any) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "generation": 1, "annotations": annotations or {}},
            "spec": {"credentials": {"secretRef": {"name": "admin"}}, "tls": {"verify": False}, **spec},
            "status": status or {}}


def node_body(resource: str, hostname: str, *, cluster: str = "c", host: str | None = None, **spec: Any) -> dict:
    host = host or hostname
    return {"metadata": {"name": resource, "namespace": "ns", "generation": 1,
                         "creationTimestamp": f"2026-01-01T00:00:{len(resource):02d}Z"},
            "spec": {"clusterRef": {"name": cluster}, "hostname": hostname, "url": f"wss://{host}:9933",
                     "operationsUrl": f"http://{host}:9925", **spec}}


import base64  # noqa: E402
import copy  # noqa: E402


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch: None removes a key, a dict merges, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _selects(obj: dict, selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in (term.split("=", 1) for term in selector.split(",") if term))


@dataclass
class FakeKubeObjects:
    """FAKE Kubernetes objects for the provisioning shell (controller/provision.py): not an API server.

    Objects live in `objects[(kind, name)]` (one namespace is enough here); every write call is recorded in
    `writes` as (call, kind, name, argument). `fail_apply` -> an exception apply raises instead of storing."""

    objects: dict[tuple[str, str], dict] = field(default_factory=dict)
    writes: list[tuple[str, str, str, Any]] = field(default_factory=list)
    fail_apply: Exception | None = None

    def put(self, obj: dict) -> dict:
        """Store an object as if someone else had written it (no write recorded)."""
        self.objects[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj)
        return obj

    def get(self, kind: str, name: str) -> dict | None:
        return self.objects.get((kind, name))

    def calls(self, call: str) -> list[tuple[str, str, str, Any]]:
        return [w for w in self.writes if w[0] == call]

    async def apply(self, obj: dict) -> dict:
        self.writes.append(("apply", obj["kind"], obj["metadata"]["name"], copy.deepcopy(obj)))
        if self.fail_apply is not None:
            raise self.fail_apply
        key = (obj["kind"], obj["metadata"]["name"])
        stored = copy.deepcopy(obj)
        if key in self.objects and "status" in self.objects[key] and "status" not in stored:
            stored["status"] = self.objects[key]["status"]  # applying the object leaves its status alone
        self.objects[key] = stored
        return copy.deepcopy(stored)

    async def merge_patch(self, kind: str, namespace: str, name: str, patch: dict) -> bool:
        self.writes.append(("merge_patch", kind, name, copy.deepcopy(patch)))
        if (kind, name) not in self.objects:
            return False
        _merge(self.objects[(kind, name)], patch)
        return True

    async def create_secret(self, obj: dict) -> bool:
        self.writes.append(("create_secret", "Secret", obj["metadata"]["name"], copy.deepcopy(obj)))
        if ("Secret", obj["metadata"]["name"]) in self.objects:
            return False
        self.objects[("Secret", obj["metadata"]["name"])] = copy.deepcopy(obj)
        return True

    async def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        self.writes.append(("delete", kind, name, uid))
        found = self.objects.get((kind, name))
        if found is None or (uid and found["metadata"].get("uid") != uid):
            return False
        del self.objects[(kind, name)]
        return True

    async def read_secret(self, namespace: str, name: str) -> tuple[bool, dict[str, str | None]] | None:
        """As kube.read_secret: None when absent, (False, {}) unless labelled readable, else its decoded data."""
        found = self.objects.get(("Secret", name))
        if found is None:
            return None
        if (found["metadata"].get("labels") or {}).get("harperoperator.dev/readable") != "true":
            return False, {}
        data = {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}
        return True, {**data, **(found.get("stringData") or {})}

    async def read_statefulset(self, namespace: str, name: str) -> dict | None:
        found = self.objects.get(("StatefulSet", name))
        return copy.deepcopy(found) if found is not None else None

    async def list_statefulsets(self, namespace: str, selector: str) -> list[dict]:
        return [copy.deepcopy(o) for (kind, _), o in sorted(self.objects.items())
                if kind == "StatefulSet" and _selects(o, selector)]

    async def list_pods(self, namespace: str, selector: str) -> list[dict]:
        return [copy.deepcopy(o) for (kind, _), o in sorted(self.objects.items())
                if kind == "Pod" and _selects(o, selector)]

    async def list_claims(self, namespace: str, selector: str) -> list[dict]:
        return [copy.deepcopy(o) for (kind, _), o in sorted(self.objects.items())
                if kind == "PersistentVolumeClaim" and _selects(o, selector)]
