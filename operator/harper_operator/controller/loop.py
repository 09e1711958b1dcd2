"""One reconcile of one HarperCluster: read, plan, write, verify, report. The only imperative core path."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from .. import kube
from ..api import PAUSE_ANNOTATION, HarperClusterSpec
from ..harper.errors import FalseSuccessError, HarperError
from ..reconcile.plan import Operation, Restart, diagnose, pending_restart, plan
from ..reconcile.topology import DesiredCluster
from .clients import ClientPool
from .execute import execute
from .members import Membership, Problem, membership, secret_names
from .observe import look_all, observed
from .status import Round, cluster_status, member_problem, missing_peers, node_status

log = logging.getLogger(__name__)

RETAINED_PREFIX = "retained.harperoperator.dev/"
RESTART_GRACE = 10.0
RESTART_COOLDOWN = 120.0

# (body, type, reason, message) -> posts a Kubernetes Event; wired to kopf.event by the handlers.
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


def retained(cluster_body: Mapping[str, Any]) -> frozenset[str]:
    """Hostnames of nodes deleted with deletionPolicy Retain: left in Harper, never removed by us."""
    annotations = cluster_body.get("metadata", {}).get("annotations") or {}
    return frozenset(k[len(RETAINED_PREFIX):] for k in annotations if k.startswith(RETAINED_PREFIX))


def touches(op: Operation, names: frozenset[str]) -> bool:
    involved = {op.on, getattr(op, "hostname", None), getattr(getattr(op, "target", None), "name", None)}
    involved |= {t.name for t in getattr(op, "targets", ())}
    return bool(involved & names)


def is_paused(body: Mapping[str, Any]) -> bool:
    value = (body.get("metadata", {}).get("annotations") or {}).get(PAUSE_ANNOTATION, "")
    return value.lower() in ("true", "yes", "1")


@dataclass
class Result:
    """What a round did, for the caller's back-off, metrics and tests."""

    writes: int = 0
    converged: bool = False
    permanent: bool = False
    ready_nodes: int = 0
    max_lag_ms: float | None = None


async def read_membership(body: Mapping[str, Any], spec: HarperClusterSpec,
                          nodes: list[Mapping[str, Any]]) -> Membership:
    namespace = body["metadata"]["namespace"]
    names = secret_names(spec, nodes)
    found = await asyncio.gather(*(kube.read_secret(namespace, n) for n in sorted(names)))
    return membership(spec, nodes, dict(zip(sorted(names), found)))


@dataclass(frozen=True)
class Intent:
    """The plan of one moment, with why some of the spec cannot be carried out."""

    operations: list[Operation]
    pending_restart: dict[str, str]  # node -> what waits for its restart
    diagnosed: dict[str, Problem]  # node -> the planner's reason to leave it alone
    cluster_problem: Problem | None = None


def intent(m: Membership, sights, cluster_body: Mapping[str, Any], spec: HarperClusterSpec) -> Intent:
    seen = observed(sights)
    restart = spec.restart_policy == "Restart"
    ops = plan(m.desired, seen, restart_for_routes=restart, restart_for_subscriptions=restart)
    # Retained nodes are left alone until a HarperNode declares the hostname again.
    blocked = m.held | (retained(cluster_body) - {x.hostname for x in m.members})
    # Held members are declared but unmanageable: never add, update or remove them, nor ask them anything.
    ops = [op for op in ops if not touches(op, blocked)]
    diagnosed, whole = {}, None
    for p in diagnose(m.desired, seen):
        problem = Problem(p.reason, p.message, p.permanent)
        if p.node is None:
            whole = whole or problem
        else:
            diagnosed.setdefault(p.node, problem)
    return Intent(ops, pending_restart(m.desired, seen), diagnosed, whole)


class ClusterReconciler:
    """Owns one cluster's Harper clients; `reconcile()` is called by the cluster's daemon."""

    def __init__(self, namespace: str, name: str, *, events: EventSink, verify_timeout: float = 30.0,
                 observer: Callable[[str, str, float], None] | None = None):
        self.namespace, self.name = namespace, name
        self.pool = ClientPool(observer=observer)
        self.events = events
        self.verify_timeout = verify_timeout
        self._last_reasons: dict[str, str] = {}
        self._waiting_since: dict[str, float] = {}  # node -> when a restart first looked needed
        self._restarted_at: dict[str, float] = {}

    def _restarts_due(self, pending: dict[str, str], m: Membership) -> list[Operation]:
        """Restarts the planner leaves to us: a node that will not reconnect, or must drop a cleared shard.

        Only when the need outlasts RESTART_GRACE (a node joining shows the same picture for a moment), and at
        most once per RESTART_COOLDOWN per node, so a Harper that never reconnects is not restarted in a loop.
        """
        now = time.monotonic()
        due = []
        for name in list(self._waiting_since):
            if name not in pending:
                del self._waiting_since[name]
        for name, why in sorted(pending.items()):
            if not ({"reconnect", "shard"} & {w.strip() for w in why.split(",")}) or name in m.held:
                continue
            since = self._waiting_since.setdefault(name, now)
            if now - since >= RESTART_GRACE and now - self._restarted_at.get(name, -RESTART_COOLDOWN) >= RESTART_COOLDOWN:
                due.append(Restart(name, f"apply at start-up: {why}"))
                self._restarted_at[name] = now
                del self._waiting_since[name]
        return due

    async def close(self) -> None:
        await self.pool.close()

    def _warn_once(self, body: Mapping[str, Any], key: str, problem: Problem | None) -> None:
        """An Event per new problem, not per round: a stuck node must not flood the namespace."""
        reason = problem.reason if problem else ""
        if self._last_reasons.get(key) != reason and problem is not None:
            self.events(body, "Warning", problem.reason, problem.message)
        self._last_reasons[key] = reason

    async def reconcile(self, body: Mapping[str, Any], nodes: list[Mapping[str, Any]]) -> Result:
        generation = body["metadata"].get("generation")
        try:
            spec = HarperClusterSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            first = e.errors()[0]
            problem = Problem("InvalidSpec", f"spec.{'.'.join(map(str, first['loc']))}: {first['msg']}")
            rnd = Round(Membership((), DesiredCluster(nodes=())), {}, cluster_problem=problem)
            await self._write_cluster(body, rnd, generation, _now())
            return Result(permanent=True)

        m = await read_membership(body, spec, nodes)
        paused = is_paused(body)
        sights = await look_all(m, self.pool)
        now_intent = intent(m, sights, body, spec)
        result = Result()
        failure = None
        ops = now_intent.operations
        if not ops and spec.restart_policy == "Restart" and not paused:
            ops = self._restarts_due(now_intent.pending_restart, m)
        if ops and not paused:
            outcomes = await execute(ops, m, self.pool, self._reporter(body))
            result.writes = len(outcomes)
            failed = [o for o in outcomes if o.error]
            if failed:
                failure = _failure(failed[0].operation, failed[0].error)
            sights, now_intent = await self._verify(body, spec, m)
        cluster_problem = now_intent.cluster_problem or (None if m.members else Problem(
            "NoMembers", f"no HarperNode names this cluster: create HarperNodes with spec.clusterRef.name={self.name}",
            permanent=False))
        rnd = Round(m, sights, pending=len(now_intent.operations), failure=failure, paused=paused,
                    pending_restart=tuple(f"{k} ({v})" for k, v in sorted(now_intent.pending_restart.items())),
                    cluster_problem=cluster_problem,
                    diagnosed=now_intent.diagnosed)
        stamp = _now()
        for member in m.members:
            self._warn_once(member.body, member.resource, member_problem(member, rnd))
            previous = member.body.get("status")
            await kube.patch_status("harpernodes", self.namespace, member.resource,
                                    node_status(member, rnd, previous, stamp))
        written = await self._write_cluster(body, rnd, generation, stamp)
        result.ready_nodes = sum(1 for r in written.get("members", []) if r.get("ready"))
        lags = [r["maxLagMs"] for r in written.get("members", []) if r.get("maxLagMs") is not None]
        result.max_lag_ms = max(lags) if lags else None
        ready = next((c for c in written.get("conditions", []) if c["type"] == "Ready"), {})
        stalled = next((c for c in written.get("conditions", []) if c["type"] == "Stalled"), {})
        result.converged = ready.get("status") == "True"
        result.permanent = stalled.get("status") == "True"
        return result

    async def _write_cluster(self, body, rnd: Round, generation, stamp) -> dict[str, Any]:
        status = cluster_status(rnd, generation, body.get("status"), stamp)
        problem = next((c for c in status["conditions"] if c["type"] in ("Stalled",) and c["status"] == "True"), None)
        self._warn_once(body, "", Problem(problem["reason"], problem["message"]) if problem else None)
        await kube.patch_status("harperclusters", self.namespace, self.name, status)
        return status

    def _reporter(self, body):
        async def report(op: Operation, error: HarperError | None) -> None:
            if error is None:
                self.events(body, "Normal", type(op).__name__, op.describe())
                log.info("%s/%s: %s", self.namespace, self.name, op.describe())
            else:
                self.events(body, "Warning", f"{type(op).__name__}Failed", f"{op.describe()}: {error}")
                log.warning("%s/%s: %s failed: %s", self.namespace, self.name, op.describe(), error)
        return report

    async def _verify(self, body, spec: HarperClusterSpec, m: Membership):
        """A 200 from Harper is not proof: re-read until cluster_status shows the plan done, or time runs out."""
        deadline = time.monotonic() + self.verify_timeout
        delay = 0.25
        while True:
            sights = await look_all(m, self.pool)
            now_intent = intent(m, sights, body, spec)
            # A node that waits for a restart will not connect by waiting: stop verifying it.
            settled = not now_intent.operations and all(
                not missing_peers(x, sights.get(x.hostname), m) or x.hostname in now_intent.pending_restart
                for x in m.members if x.managed)
            if settled or time.monotonic() >= deadline:
                return sights, now_intent
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _failure(op: Operation, error: HarperError) -> Problem:
    if isinstance(error, FalseSuccessError):
        return Problem("HarperFalseSuccess", f"{op.describe()}: Harper answered success but {error}",
                       permanent=False)
    return Problem(f"{type(op).__name__}Failed", f"{op.describe()}: {error}", permanent=False)


def _now() -> datetime:
    """The shell reads the clock; the pure status functions take the time as an argument."""
    return datetime.now(timezone.utc)
