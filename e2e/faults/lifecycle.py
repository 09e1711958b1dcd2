"""The lifecycle the matrix drives, on the loopback test bed: five real Harper nodes a-e, one HarperCluster.

create a, b, c -> grow to five -> shard 2 on b -> e, made fresh, switched to explicit subscriptions ->
remove d and e -> delete the cluster (Delete policy). Each step only applies its change and returns; the matrix
injects the fault while the operator works on it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..scenarios import kit
from . import truth

CLUSTER = "fm"
LETTERS = "abcde"
SUBSCRIPTIONS = [{"database": truth.DATABASE, "table": truth.TABLE}]


@dataclass(frozen=True)
class Step:
    name: str
    apply: Callable[["LoopbackWorld"], None]
    deletes_cluster: bool = False


def _resource(letter: str) -> str:
    return f"{CLUSTER}-{letter}"


class World:
    """What the matrix and the faults need of any test bed; subclasses say how to reach Kubernetes and Harper.

    `spec`: member key -> True when it uses explicit subscriptions, as applied so far."""
    cluster = CLUSTER

    def __init__(self, interval: int = 5):
        self.interval = interval
        self.spec: dict[str, bool] = {}
        self.shards: dict = {}  # member key -> declared shard
        self.during: list[str | None] = []
        self.keys: dict[str, int] = {}      # record id -> when it was written (a sequence number)
        self.joined: dict[str, int] = {}    # Harper name -> when its current data began
        self.seq = 0
        self.writers: dict[str, str] = {}   # record id -> the member it was written on

    # subclasses: get(kind, name), events(name), name_of(key), resource_of(key), calls(names)

    def member_names(self) -> list[str]:
        return [self.name_of(k) for k in sorted(self.spec)]

    def expected(self) -> truth.Expected:
        return truth.Expected({self.name_of(k): explicit for k, explicit in self.spec.items()},
                              {self.name_of(k): v for k, v in self.shards.items() if k in self.spec})

    def resources(self) -> list[str]:
        return [self.resource_of(k) for k in sorted(self.spec)]

    def reconciled_since(self, since: float) -> bool:
        """Did the operator end a round of the cluster after `since` (epoch seconds)? Its status is written only
        when it changes, so the round's end is read from its metric harper_operator_cluster_last_reconcile_..."""
        try:
            return _last_reconcile(self.operator_metrics(), self.namespace, self.cluster) >= since
        except (OSError, ValueError):  # the operator is down or restarting: no round yet
            return False

    def statuses(self) -> tuple[dict | None, dict[str, dict | None]]:
        return self.get("harpercluster", self.cluster), {r: self.get("harpernode", r) for r in self.resources()}

    def cluster_gone(self) -> bool:
        return self.get("harpercluster", self.cluster) is None

    def records_left_events(self) -> list[str]:
        return [e["message"] for e in self.events(self.cluster) if e["reason"] == "RecordsLeft"]

    def describe(self) -> str:
        """The statuses, then what each member's Harper itself shows: its links (peer -> connected) and the records
        it holds, so a cluster that never converged says which side of which pair is missing."""
        cluster, nodes = self.statuses()
        text = json.dumps({"cluster": (cluster or {}).get("status"),
                           "nodes": {k: (v or {}).get("status", {}).get("conditions") for k, v in nodes.items()}},
                          default=str)[:4000]
        harper = {}
        for name, call in self.calls().items():
            try:
                harper[name] = {"links": truth.connected_peers(call), "records": sorted(truth.records(call))}
            except (truth.Unanswered, OSError) as e:
                harper[name] = f"no answer: {e}"[:200]
        return f"{text}\nHarper's own view: {json.dumps(harper, default=str)[:3000]}"

    def wait_for_reason(self, reason: str, timeout: float) -> bool:
        """True once the cluster or one of its nodes is Stalled (or not Ready) with `reason`."""
        def said():
            cluster, nodes = self.statuses()
            return any(truth.condition(o, t).get("reason") == reason
                       for o in (cluster, *nodes.values()) if o for t in ("Stalled", "Ready"))
        try:
            kit.wait_until(reason, said, timeout=timeout, interval=0.5)
            return True
        except AssertionError:
            return False

    # --- records written through Harper, to find any lost ------------------------------------------------

    def write_key(self, rng: random.Random) -> str:
        """A record written on a random member (another one if that one does not answer at the moment)."""
        self.seq += 1
        names = self.member_names()
        rng.shuffle(names)
        calls = self.calls()
        for writer in names:
            try:
                key = truth.write_record(calls[writer])
            except truth.Unanswered:
                continue
            self.keys[key], self.writers[key] = self.seq, writer
            return key
        raise truth.Unanswered(f"no member took a write: {names}")

    def keys_for(self, names: list[str]) -> dict[str, set[str]]:
        return {n: {k for k, at in self.keys.items() if at > self.joined.get(n, 0)} for n in names}

    def fresh(self, key) -> None:
        """That member's data starts now: records written before are not expected on it."""
        self.joined[self.name_of(key)] = self.seq

    def reset_records(self, keys) -> None:
        self.spec, self.keys, self.joined, self.during, self.shards = {}, {}, {}, [], {}
        for k in keys:
            self.fresh(k)


def _last_reconcile(text: str, namespace: str, cluster: str) -> float:
    """The latest round's end in Prometheus text (of one or more operator replicas); 0 when none is there."""
    name = "harper_operator_cluster_last_reconcile_timestamp_seconds{"
    return max((float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(name) and f'namespace="{namespace}"' in line and f'cluster="{cluster}"' in line),
               default=0.0)


class LoopbackWorld(World):
    """The loopback test bed: real kube-apiserver, Harper processes a-e, the operator as a process."""

    def __init__(self, kube: kit.Kube, operator, fleet, control_plane, interval: int = 5):
        super().__init__(interval)
        self.kube, self.operator, self.fleet, self.control_plane = kube, operator, fleet, control_plane
        self.switched = False  # e replicated explicitly in this lifecycle

    @property
    def nodes(self) -> dict[str, object]:
        return dict(zip(LETTERS, self.fleet.nodes))

    def harper(self, name: str):
        return next(n for n in self.fleet.nodes if n.name == name)

    def name_of(self, letter: str) -> str:
        return self.nodes[letter].name

    def resource_of(self, letter: str) -> str:
        return _resource(letter)

    def get(self, kind: str, name: str) -> dict | None:
        return self.kube.get(kind, name)

    def events(self, name: str) -> list[dict]:
        return self.kube.events(name)

    def calls(self, names: list[str] | None = None) -> dict[str, truth.Call]:
        return {n: self.harper(n).operation for n in (self.member_names() if names is None else names)}

    @property
    def namespace(self) -> str:
        return self.kube.namespace

    def operator_metrics(self) -> str:
        return self.operator.metrics()

    def write_secret(self, password: str) -> None:
        self.kube.apply(kit.secret("harper-admin", self.fleet.username, password))

    # --- the lifecycle ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Every node running, no peers, no test data; the probe table on each (before any mesh exists)."""
        self.fleet.reset(drop_data=False)
        for node in self.fleet.nodes:
            truth.ensure_table(node.operation)
        self.reset_records(LETTERS)

    def _node(self, letter: str, **spec) -> dict:
        return kit.node(_resource(letter), CLUSTER, self.nodes[letter], **spec)

    def create(self) -> None:
        self.spec = {letter: False for letter in "abc"}
        self.kube.apply(kit.secret("harper-admin", self.fleet.username, self.fleet.password),
                        kit.cluster(CLUSTER, interval=self.interval, policy="Delete"),
                        *(self._node(letter) for letter in "abc"))

    def grow(self) -> None:
        self.spec.update(d=False, e=False)
        self.kube.apply(self._node("d"), self._node("e"))

    def shard(self) -> None:
        self.kube.patch("harpernode", _resource("b"), {"spec": {"shard": 2}})
        self.shards["b"] = 2

    def explicit(self) -> None:
        """e was a full member: only a fresh node can switch (docs/harper-semantics.md, section 2). Paused, so the
        operator does not rejoin e as a full member while it is being wiped; the switch starts at the resume."""
        self.kube.run("annotate", "harpercluster", CLUSTER, "harperoperator.dev/paused=true", "--overwrite")
        try:
            self.kube.patch("harpernode", _resource("e"), {"spec": {"subscriptions": SUBSCRIPTIONS}})
            e = self.nodes["e"]
            e.reinstall()
            truth.ensure_table(e.operation)
            self.fresh("e")
            self.spec["e"] = self.switched = True
        finally:
            self.kube.run("annotate", "harpercluster", CLUSTER, "harperoperator.dev/paused-")

    def remove(self) -> None:
        for letter in "de":
            self.spec.pop(letter)
            self.kube.run("delete", "harpernode", _resource(letter), "--wait=false")

    def delete(self) -> None:
        self.kube.run("delete", "harpercluster", CLUSTER, "--wait=false")

    def finish(self) -> None:
        """After the cluster is gone (or a lifecycle was abandoned): no resource left, e full-capable again."""
        self.kube.run("delete", "harpercluster,harpernode", "--all", "--wait=true", "--timeout=90s", check=False)
        for name in self.kube.run("get", "harpercluster,harpernode", "-o", "name", check=False).stdout.split():
            self.kube.run("patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
        if self.switched:  # it replicated explicitly: it cannot go back to full in place
            self.nodes["e"].reinstall()
            # Nothing holds e's record any more, so the operator cannot tell it was wiped; the others still trust
            # its old CA in memory until they restart (docs/harper-semantics.md, section 9). What a user does:
            self.fleet.forget_wiped(self.nodes["e"])
        self.spec, self.switched = {}, False

    # --- what the operator did ----------------------------------------------------------------------------

    def log_mark(self) -> int:
        try:
            return Path(self.operator.log_path).stat().st_size
        except OSError:
            return 0

    def writes_since(self, mark: int) -> list[str]:
        with open(self.operator.log_path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return [line.split("Harper write: ", 1)[1] for line in text.splitlines() if "Harper write: " in line]

    def log_since(self, mark: int, limit: int = 6000) -> str:
        with open(self.operator.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")[-limit:]

    def after_deletion(self, former: list[str]) -> truth.Truth:
        return truth.dissolved(self.calls(former))  # the Delete policy


STEPS = (Step("create", LoopbackWorld.create), Step("grow", LoopbackWorld.grow), Step("shard", LoopbackWorld.shard),
         Step("explicit", LoopbackWorld.explicit), Step("remove", LoopbackWorld.remove),
         Step("delete", LoopbackWorld.delete, deletes_cluster=True))

