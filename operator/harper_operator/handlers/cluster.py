"""HarperCluster: a daemon per cluster runs every reconcile; deletion dissolves it per deletionPolicy."""

from __future__ import annotations

import logging
import time

import kopf
from pydantic import ValidationError

from .. import metrics
from .. import settings as config
from ..api import GROUP, VERSION, HarperClusterSpec
from ..controller.dissolve import Removal, dissolve
from ..controller.loop import ClusterReconciler, Declared, declared_entry
from ..controller.provision import Provisioner, orphan
from ..provision.render import CLUSTER_LABEL
from . import events, registry

log = logging.getLogger(__name__)


@kopf.index(GROUP, VERSION, "harpernodes")
def members(namespace, spec, meta, body, **_):
    """HarperNodes by the cluster they name, kept in memory so a reconcile lists no API objects."""
    ref = (spec.get("clusterRef") or {}).get("name")
    if not ref:
        return None
    return {(namespace, ref): {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                               "metadata": dict(meta), "spec": dict(spec), "status": dict(body.get("status") or {})}}


@kopf.index(GROUP, VERSION, "harpernodes")
def declared(namespace, spec, **_):
    """Every HarperNode's (hostname, replication URL key) by namespace, whichever cluster it names: what no round
    may remove as a ghost, read in one pass over small tuples (see controller.loop.Declared)."""
    return {namespace: declared_entry(spec)}


def neighbours(index: kopf.Index, namespace: str, cluster: str) -> list:
    """The namespace's HarperNodes of other clusters (a provisioned cluster's pod names may be taken there)."""
    return [node for key in list(index) if key[0] == namespace and key[1] != cluster for node in index.get(key, [])]


PROGRESS_BACKOFF = 10.0  # seconds: the longest wait between rounds while a cluster is on its way
RESTART_DUE_MARGIN = 0.2  # seconds after a held-back restart's grace ends that the round which makes it comes


def _names(nodes) -> set[str]:
    return {n["metadata"]["name"] for n in nodes}


def _interval(body) -> float:
    seconds = (body.get("spec") or {}).get("reconcileIntervalSeconds") or 60
    return max(float(seconds), config.current.min_reconcile_interval)


@kopf.daemon(GROUP, VERSION, "harperclusters", cancellation_timeout=10.0)
async def run_cluster(namespace, name, body, stopped, members: kopf.Index, declared: kopf.Index, **_):
    """Every reconcile of this cluster runs here, one at a time: no two rounds ever race."""
    reconciler = ClusterReconciler(namespace, name, events=events.post, verify_timeout=config.current.verify_timeout,
                                   observer=metrics.observe_call, cluster_domain=config.current.cluster_domain)
    provisioner = Provisioner(namespace, name, events=events.post, domain=config.current.cluster_domain,
                              enabled=config.current.provisioning)
    converged, hurried = False, False
    proof: dict = {}  # the last round's word on leaving members: drained (proven) and waits (what each waits for)
    wake = registry.register(namespace, name)
    uid = body.get("metadata", {}).get("uid", "")
    backoff = 2.0

    def stopping() -> bool:
        return bool(stopped) or registry.closing(uid)

    try:
        while not stopping():
            if body.get("metadata", {}).get("deletionTimestamp"):
                return
            wait = _interval(body)
            try:
                async with registry.round_slot(config.current.max_concurrent_rounds), \
                        registry.exclusive(namespace, name, timeout=None):
                    if stopping():
                        return
                    began = time.monotonic()
                    nodes = list(members.get((namespace, name), []))
                    # Only a provisioned cluster looks at other clusters' HarperNodes (a walk of the namespace).
                    provisioned = (body.get("spec") or {}).get("instances") is not None
                    others = neighbours(members, namespace, name) if provisioned else []
                    pods = await provisioner.ensure(body, nodes, converged=converged, others=others,
                                                    confirmed=reconciler.confirmed, **proof)
                    result = await reconciler.reconcile(body, nodes, declared=Declared.of(declared.get(namespace, ())),
                                                        stopped=stopping, members_changed=lambda: _names(
                                                            members.get((namespace, name), [])) != _names(nodes),
                                                        pods=pods)
                    # The roll's gate is Harper's own picture: the cluster is not Ready while it rolls.
                    converged = result.meshed
                    proof = {"drained": result.drained, "waits": result.drain_waits}
                    registry.record_proof(namespace, name, registry.Proof(result.drained, result.drain_waits))
                metrics.RECONCILES.labels("converged" if result.converged else
                                          "stalled" if result.permanent else "progressing").inc()
                # A hibernated cluster declares no running member: the "not ready" alerts stay quiet by design.
                metrics.cluster_round(namespace, name, seconds=time.monotonic() - began,
                                      declared=0 if result.hibernated else len(nodes),
                                      ready=result.ready_nodes, max_lag_ms=result.max_lag_ms)
                if provisioner.first_expiry is not None:
                    metrics.certificates_expire(namespace, name, provisioner.first_expiry)
                if result.converged or result.permanent:
                    backoff = 2.0  # permanent problems wait for a change or the interval: no retry storm
                else:
                    # Work under way (pods starting, a member reconnecting, a restart's grace) ends in seconds, and
                    # nothing pokes the daemon when it does: a back-off grown to the interval made a provisioned
                    # cluster with the default 60 s take 3 minutes to Ready (bench/provision.py), so it stops at
                    # PROGRESS_BACKOFF.
                    wait, backoff = min(wait, backoff), min(backoff * 2, wait, PROGRESS_BACKOFF)
                    if result.again and not hurried:  # once in a row: a plan that keeps changing gets the back-off
                        wait = 0.0
                    if result.restart_due is not None:  # a restart's grace ends before the back-off does
                        wait = min(wait, result.restart_due + RESTART_DUE_MARGIN)
                hurried = result.again and wait == 0.0
            except Exception as e:  # the daemon must outlive any one round
                metrics.RECONCILES.labels("error").inc()
                log.exception("reconcile of %s/%s failed", namespace, name)
                events.post(body, "Warning", "ReconcileError", f"{type(e).__name__}: {str(e)[:500]}")
                wait, backoff = min(wait, backoff), min(backoff * 2, wait)
            await registry.sleep(namespace, name, wait, stopped)
    finally:
        registry.unregister(namespace, name, wake)
        registry.record_proof(namespace, name, None)
        metrics.forget_cluster(namespace, name)
        await reconciler.close()


@kopf.on.update(GROUP, VERSION, "harperclusters")
def changed(namespace, name, **_):
    registry.poke(namespace, name)


@kopf.on.delete(GROUP, VERSION, "harperclusters")
async def deleted(namespace, name, body, members: kopf.Index, retry, **_):
    """Retain: Harper untouched. Delete: every member forgets every peer. Never blocks deletion for long."""
    try:
        spec = HarperClusterSpec.model_validate(body.get("spec") or {})
    except ValidationError as e:
        events.post(body, "Warning", "RecordsLeft", f"the spec does not parse ({e.error_count()} problem(s)), so "
                                                     "Harper was left as it is")
        return
    if spec.deletion_policy == "Retain":
        released = await orphan(body)
        kept = f"; released {', '.join(released)} (Harper keeps running with its volumes)" if released else ""
        events.post(body, "Normal", "Retained", f"deletionPolicy Retain: Harper's cluster left as it is{kept}")
        return
    # The round in flight ends first, and no new one starts: nothing is added after the removals below.
    async with registry.exclusive(namespace, name, close=body["metadata"]["uid"]):
        removal: Removal = await dissolve(body, spec, list(members.get((namespace, name), [])),
                                          observer=metrics.observe_call, cluster_domain=config.current.cluster_domain)
    events.removals(body, removal, retry)


def pod_changed(namespace, labels, **_):
    """A provisioned pod started, became Ready or went: its cluster's next round need not wait for the interval."""
    registry.poke(namespace, labels.get(CLUSTER_LABEL))


def watch_pods() -> None:
    """Registered only with provisioning on: watching pods needs the rights rbac.provisioning grants."""
    kopf.on.event("", "v1", "pods", labels={CLUSTER_LABEL: kopf.PRESENT})(pod_changed)
