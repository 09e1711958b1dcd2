"""Small helpers the operator scenarios share: manifests, waiting, and asking Harper directly."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any, Callable

GROUP_VERSION = "harperoperator.dev/v1alpha1"


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120, interval: float = 0.5,
               diagnose: Callable[[], str] | None = None) -> Any:
    """Poll until check() is truthy; fail with the last value seen (and what `diagnose` says), so a timeout says
    what was wrong."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as e:  # a Harper node restarting does not answer for a few seconds
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}"
                         + (f"\n{diagnose()}" if diagnose else ""))


def cluster(name: str, *, secret: str = "harper-admin", interval: int = 5, policy: str = "Delete",
            **spec: Any) -> dict:
    return {"apiVersion": GROUP_VERSION, "kind": "HarperCluster", "metadata": {"name": name},
            "spec": {"credentials": {"secretRef": {"name": secret}}, "tls": {"verify": False},
                     "deletionPolicy": policy, "reconcileIntervalSeconds": interval, **spec}}


def node(name: str, cluster_name: str, harper, **spec: Any) -> dict:
    return {"apiVersion": GROUP_VERSION, "kind": "HarperNode", "metadata": {"name": name},
            "spec": {"clusterRef": {"name": cluster_name}, "hostname": harper.name, "url": harper.replication_url,
                     "operationsUrl": harper.operations_url, **spec}}


READABLE = {"harperoperator.dev/readable": "true"}


def secret(name: str, username: str, password: str, *, readable: bool = True) -> dict:
    """A credentials Secret; `readable` puts on the label without which the operator never reads it."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": READABLE if readable else {}},
            "stringData": {"username": username, "password": password}}


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def ok(harper, body: dict) -> Any:
    status, answer = harper.operation(body)
    assert status == 200, f"{body['operation']} on {harper.name}: {status} {answer}"
    return answer


def peers(harper) -> dict[str, bool]:
    """Peer name -> connected on every database, from the node's own cluster_status."""
    answer = ok(harper, {"operation": "cluster_status"})
    out = {}
    for c in answer.get("connections", []):
        sockets = c.get("database_sockets") or []
        out[c.get("name")] = bool(sockets) and all(s.get("connected") for s in sockets)
    return out


def mesh_is(nodes: list, expected: dict[str, set[str]]) -> Callable[[], Any]:
    """A check: each node's connected peers are exactly `expected[node]` (by name)."""
    def check():
        seen = {n.name: {p for p, up in peers(n).items() if up} for n in nodes}
        return seen == expected or False
    return check


def full_mesh(nodes: list) -> dict[str, set[str]]:
    return {n.name: {m.name for m in nodes if m is not n} for n in nodes}


def ensure_table(nodes: list, database: str, table: str) -> None:
    for n in nodes:
        status, answer = n.operation({"operation": "describe_table", "database": database, "table": table})
        if status != 200:
            ok(n, {"operation": "create_table", "database": database, "table": table, "primary_key": "id"})


def write_record(harper, database: str, table: str) -> str:
    key = uuid.uuid4().hex
    ok(harper, {"operation": "insert", "database": database, "table": table,
                "records": [{"id": key, "from": harper.name}]})
    return key


def has_record(harper, database: str, table: str, key: str) -> bool:
    status, answer = harper.operation({"operation": "search_by_id", "database": database, "table": table,
                                        "ids": [key], "get_attributes": ["id"]})
    return status == 200 and any(r.get("id") == key for r in answer)


def dumps(obj: Any) -> str:
    return json.dumps(obj)


def ready_with(kube, kind: str, name: str, nodes: str, timeout: float = 120) -> dict:
    """Ready at the current generation AND with `nodes` ready ("3/3"): a cluster created together with its
    nodes may be Ready 1/1 for a moment, before the operator has seen the other nodes."""
    return wait_until(f"{kind} {name} Ready {nodes}",
                      lambda: (lambda o: o and o["status"].get("readyNodes") == nodes and o)(kube.ready(kind, name)),
                      timeout=timeout)


class Kube:
    """kubectl against the test bed, in one namespace; JSON in, JSON out."""

    def __init__(self, kubectl: str, kubeconfig: str, namespace: str):
        self.kubectl, self.kubeconfig, self.namespace = kubectl, kubeconfig, namespace

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.kubectl, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args]
        done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def apply(self, *objs: dict, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}),
                        check=check)

    def get(self, kind: str, name: str) -> dict | None:
        done = self.run("get", kind, name, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def delete(self, kind: str, name: str, wait: bool = True) -> None:
        self.run("delete", kind, name, f"--wait={'true' if wait else 'false'}", "--timeout=120s")

    def patch(self, kind: str, name: str, patch: dict) -> None:
        self.run("patch", kind, name, "--type=merge", "-p", json.dumps(patch))

    def events(self, name: str) -> list[dict]:
        done = self.run("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        return json.loads(done.stdout)["items"]

    def ready(self, kind: str, name: str) -> dict | bool:
        obj = self.get(kind, name)
        if not obj:
            return False
        generation = obj["metadata"].get("generation")
        c = condition(obj, "Ready")
        return obj if c.get("status") == "True" and obj["status"].get("observedGeneration") == generation else False
