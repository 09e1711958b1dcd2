"""The node layer's world: Harper as a StatefulSet of pods, the operator installed by the chart, a real kubelet.

Its lifecycle is short (the pods are fixed until the operator provisions them itself): create the cluster on the
pods (adopting the mesh a previous lifecycle left, with the Retain policy), set a shard on one member, clear it
(Harper needs that member restarted), delete the cluster (Retain: Harper keeps replicating). Its own faults: a
Harper pod deleted, the kubelet restarted, the operator's pod deleted.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error

from ..pods import harper as pods_harper
from ..pods.conftest import GROUP_VERSION, READABLE, harper_call
from . import truth
from .lifecycle import Step, World

WRITE_REASONS = {"AddNode", "UpdateNode", "RemoveNode", "SetRoutes", "DeleteRoutes", "Restart"}
OPERATOR_SELECTOR = "app.kubernetes.io/name=harper-operator"


class NodeWorld(World):
    cluster = "faults"

    def __init__(self, bed, pods, operator_namespace: str, interval: int = 5):
        super().__init__(interval)
        self.bed, self.pods, self.operator_namespace = bed, pods, operator_namespace
        self.namespace = pods.namespace

    def name_of(self, ordinal: int) -> str:
        return self.pods.dns(ordinal)

    def resource_of(self, ordinal: int) -> str:
        return f"{self.cluster}-{ordinal}"

    def get(self, kind: str, name: str) -> dict | None:
        return self.bed.get(kind, name, self.namespace)

    def events(self, name: str) -> list[dict]:
        return self.bed.json("get", "events", "-n", self.namespace, "--field-selector",
                             f"involvedObject.name={name}")["items"]

    def calls(self, names: list[str] | None = None) -> dict[str, truth.Call]:
        by_name = {self.name_of(i): i for i in range(self.pods.replicas)}

        def call_for(ordinal: int) -> truth.Call:
            def call(body: dict):
                try:
                    return harper_call(self.bed, self.pods, ordinal, body)
                except (TypeError, KeyError, urllib.error.URLError, ValueError) as e:  # pod gone or no IP yet
                    raise OSError(f"pod {ordinal}: {e}") from e
            return call
        return {n: call_for(by_name[n]) for n in (self.member_names() if names is None else names)}

    # --- what the operator did: its Events (its log goes with its pod) --------------------------------------

    def log_mark(self) -> set[str]:
        return {e["metadata"]["uid"] for e in self.events(self.cluster)}

    def writes_since(self, mark: set[str]) -> list[str]:
        return [f"{e['reason']}: {e['message'][:120]}" for e in self.events(self.cluster)
                if e["reason"] in WRITE_REASONS and e["metadata"]["uid"] not in mark]

    def operator_metrics(self) -> str:
        """The operator pods' metrics through the API server's pod proxy (the chart's default metrics port)."""
        pods = self.bed.json("get", "pods", "-n", self.operator_namespace, "-l", OPERATOR_SELECTOR)["items"]
        out = [self.bed.kubectl("get", "--raw", f"/api/v1/namespaces/{self.operator_namespace}/pods/"
                                f"{p['metadata']['name']}:8080/proxy/metrics", check=False).stdout for p in pods]
        return "\n".join(out)  # with two replicas only the leader reconciles; the latest time wins

    def log_since(self, mark, limit: int = 6000) -> str:
        pods = self.bed.json("get", "pods", "-n", self.operator_namespace, "-l", OPERATOR_SELECTOR)["items"]
        return "\n".join(self.bed.kubectl("logs", p["metadata"]["name"], "-n", self.operator_namespace,
                                          "--tail=80", check=False).stdout for p in pods)[-limit:]

    def after_deletion(self, former: list[str]) -> truth.Truth:
        # Retain: Harper must still be meshed exactly as it was.
        return truth.harper(self.calls(former), truth.Expected({n: False for n in former}))

    # --- the lifecycle ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        for call in self.calls([self.name_of(i) for i in range(self.pods.replicas)]).values():
            truth.ensure_table(call)
        self.reset_records(range(self.pods.replicas))

    def _node(self, ordinal: int, **spec) -> dict:
        dns = self.pods.dns(ordinal)
        return {"apiVersion": GROUP_VERSION, "kind": "HarperNode", "metadata": {"name": self.resource_of(ordinal)},
                "spec": {"clusterRef": {"name": self.cluster}, "hostname": dns,
                         "url": f"wss://{dns}:{pods_harper.REPLICATION_PORT}",
                         "operationsUrl": f"https://{dns}:{pods_harper.OPS_PORT}", **spec}}

    def create(self) -> None:
        self.spec = {i: False for i in range(self.pods.replicas)}
        self.bed.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "harper-admin", "labels": READABLE},
                        "stringData": {"username": self.pods.username, "password": self.pods.password}},
                       {"apiVersion": GROUP_VERSION, "kind": "HarperCluster", "metadata": {"name": self.cluster},
                        "spec": {"credentials": {"secretRef": {"name": "harper-admin"}}, "tls": {"verify": False},
                                 "deletionPolicy": "Retain", "reconcileIntervalSeconds": self.interval}},
                       *(self._node(i) for i in sorted(self.spec)), namespace=self.namespace)

    def shard(self) -> None:
        self._patch(self.resource_of(self.pods.replicas - 1), [{"op": "add", "path": "/spec/shard", "value": 1}])
        self.shards[self.pods.replicas - 1] = 1

    def unshard(self) -> None:
        self._patch(self.resource_of(self.pods.replicas - 1), [{"op": "remove", "path": "/spec/shard"}])
        self.shards.pop(self.pods.replicas - 1, None)

    def delete(self) -> None:
        self.bed.kubectl("delete", "harpercluster", self.cluster, "-n", self.namespace, "--wait=false")

    def _patch(self, name: str, ops: list[dict]) -> None:
        self.bed.kubectl("patch", "harpernode", name, "-n", self.namespace, "--type=json", "-p", json.dumps(ops))

    def finish(self) -> None:
        self.bed.kubectl("delete", "harpercluster,harpernode", "--all", "-n", self.namespace, "--wait=true",
                         "--timeout=90s", check=False)
        self.spec = {}

    # --- primitives of the node layer's faults ------------------------------------------------------------

    def delete_harper_pod(self, rng: random.Random) -> str:
        ordinal = rng.randrange(self.pods.replicas)
        self.bed.kubectl("delete", "pod", f"{pods_harper.SERVICE}-{ordinal}", "-n", self.namespace, "--wait=false")
        return f"pod {pods_harper.SERVICE}-{ordinal} deleted"

    def delete_operator_pod(self) -> str:
        pods = self.bed.json("get", "pods", "-n", self.operator_namespace, "-l", OPERATOR_SELECTOR)["items"]
        for p in pods:
            self.bed.kubectl("delete", "pod", p["metadata"]["name"], "-n", self.operator_namespace, "--wait=false")
        return f"operator pod(s) {', '.join(p['metadata']['name'] for p in pods)} deleted"

    def restart_kubelet(self, rng: random.Random) -> str:
        down = rng.uniform(0, 10)
        started = time.monotonic()
        self.bed.node.restart_kubelet(down)
        return f"kubelet stopped for {down:.1f}s, Ready again after {time.monotonic() - started:.1f}s"


STEPS = (Step("create", NodeWorld.create), Step("shard", NodeWorld.shard), Step("unshard", NodeWorld.unshard),
         Step("delete", NodeWorld.delete, deletes_cluster=True))
