"""HarperNode: changes wake the cluster's reconcile; deletion takes the node out of Harper per policy."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import kopf
from pydantic import ValidationError

from .. import kube, metrics
from .. import settings as config
from ..api import GROUP, LEAVE_WITHOUT_PROOF_ANNOTATION, RETAINED_ANNOTATION, VERSION, HarperClusterSpec
from ..controller.dissolve import remove_member
from ..controller.loop import retained
from ..reconcile.conditions import READY, RECONCILING, STALLED, condition
from ..reconcile.drain import still_proven
from . import events, registry

log = logging.getLogger(__name__)


async def _orphan(namespace: str, name: str, generation, cluster: str, previous=()) -> None:
    """No daemon will write this node's status, so say here why nothing happens. `previous`: the node's
    current conditions, whose lastTransitionTime is kept while a condition's status does not change."""
    now = datetime.now(timezone.utc)

    def c(type_: str, status: bool, message: str) -> dict:
        return condition(type_, status, "ClusterNotFound", message, generation=generation, previous=previous or (),
                         now=now)

    await kube.patch_status("harpernodes", namespace, name, {
        "observedGeneration": generation,
        "conditions": [
            c(READY, False, f"HarperCluster {cluster!r} does not exist in namespace {namespace}: create it or fix "
                            "spec.clusterRef.name"),
            c(STALLED, True, f"waiting for HarperCluster {cluster!r}"),
            c(RECONCILING, False, "")]})


@kopf.on.create(GROUP, VERSION, "harpernodes")
@kopf.on.update(GROUP, VERSION, "harpernodes")
@kopf.on.resume(GROUP, VERSION, "harpernodes")
async def changed(namespace, name, spec, meta, body, **_):
    cluster = (spec.get("clusterRef") or {}).get("name")
    if registry.poke(namespace, cluster):
        return
    if await kube.get_object("harperclusters", namespace, cluster) is None:
        await _orphan(namespace, name, meta.get("generation"), cluster,
                      previous=(body.get("status") or {}).get("conditions"))
        events.post(body, "Warning", "ClusterNotFound", f"HarperCluster {cluster!r} does not exist")


async def _remember_retained(namespace: str, cluster: dict, hostname: str) -> None:
    """Add the hostname to the cluster's retained list; the resourceVersion makes two deletions at once safe."""
    names = sorted(retained(cluster) | {hostname})
    try:
        await kube.patch_metadata("harperclusters", namespace, cluster["metadata"]["name"], {
            "resourceVersion": cluster["metadata"]["resourceVersion"],
            "annotations": {RETAINED_ANNOTATION: json.dumps(names)}})
    except kube.ApiException as e:
        if e.status == 409:  # someone else changed the cluster meanwhile: read it again and retry
            raise kopf.TemporaryError("the HarperCluster changed while recording a retained node", delay=1)
        raise


def _provisioned(body) -> bool:
    return any(ref.get("kind") == "HarperCluster" and ref.get("controller")
               for ref in body.get("metadata", {}).get("ownerReferences") or [])


PROOF_RETRY_DELAY = 3.0  # seconds between the finalizer's looks at its cluster's proof
PROOF_EVENT_EVERY = 10  # tries: a WaitingForReplication Event about every 30 s, not one per try


def _wait_for_proof(body, namespace: str, cluster_name: str, hostname: str, nodes: list) -> None:
    """Harper forgets a member only once its records are confirmed on every member that stays (docs/safety.md, S1):
    the cluster's rounds look (controller/loop._drains); this raises a retry until their proof covers every member
    there is now, or a person has set LEAVE_WITHOUT_PROOF_ANNOTATION."""
    if (body["metadata"].get("annotations") or {}).get(LEAVE_WITHOUT_PROOF_ANNOTATION) == "true":
        events.post(body, "Warning", "LeavingWithoutProof", f"{LEAVE_WITHOUT_PROOF_ANNOTATION} is set: {hostname} is "
                                                            "removed from Harper without proof that its records are on "
                                                            "the members that stay; writes only it held are lost to "
                                                            "the cluster")
        return
    stay = [(n.get("spec") or {}).get("hostname") for n in nodes
            if not (n.get("metadata") or {}).get("deletionTimestamp")]
    proof = registry.proof(namespace, cluster_name)
    if hostname in still_proven(proof.drained, [h for h in stay if h and h != hostname]):
        return
    registry.poke(namespace, cluster_name)
    why = proof.waits.get(hostname) or ("the cluster's next round, which checks that its records are on the members "
                                        "that stay")
    raise kopf.TemporaryError(f"{hostname} stays in Harper until its records are confirmed on the members that stay: "
                              f"waiting for {why}. To remove it anyway, accepting that writes only it holds are lost "
                              f"to the cluster, annotate this HarperNode {LEAVE_WITHOUT_PROOF_ANNOTATION}=true",
                              delay=PROOF_RETRY_DELAY)


@kopf.on.delete(GROUP, VERSION, "harpernodes")
async def deleted(namespace, name, spec, body, retry, members: kopf.Index, **_):
    """The finalizer is always released, with a Warning naming what Harper may still hold when nothing could
    be removed (cluster, Secret or Harper gone)."""
    cluster_name = (spec.get("clusterRef") or {}).get("name")
    hostname = spec.get("hostname")
    if not hostname:
        return
    cluster = await kube.get_object("harperclusters", namespace, cluster_name)
    if cluster is None and _provisioned(body):
        return  # its HarperCluster's deletion decided for every node it owned, per its deletionPolicy
    if cluster is None:
        events.post(body, "Warning", "RecordsLeft", f"HarperCluster {cluster_name!r} is gone, so nothing removed "
                                                    f"{hostname} from Harper: peers that still list it keep its "
                                                    f"record; run remove_node {hostname} on one of them")
        return
    if cluster["metadata"].get("deletionTimestamp"):
        return  # the cluster's own deletion handles every member, per its deletionPolicy
    try:
        cluster_spec = HarperClusterSpec.model_validate(cluster.get("spec") or {})
    except ValidationError:
        events.post(body, "Warning", "RecordsLeft", f"HarperCluster {cluster_name!r} has a spec that does not "
                                                    f"parse, so {hostname} was left in Harper")
        return
    policy = spec.get("deletionPolicy") or cluster_spec.deletion_policy
    if policy == "Retain":
        # Remember it on the cluster, or the next reconcile would take it for a ghost record and remove it.
        await _remember_retained(namespace, cluster, hostname)
        events.post(body, "Normal", "Retained", f"deletionPolicy Retain: {hostname} stays in Harper's cluster")
        return
    nodes = list(members.get((namespace, cluster_name), []))
    try:
        _wait_for_proof(body, namespace, cluster_name, hostname, nodes)
    except kopf.TemporaryError as e:
        if retry % PROOF_EVENT_EVERY == 0:
            events.post(body, "Normal", "WaitingForReplication", str(e))
        raise
    async with registry.exclusive(namespace, cluster_name):
        removal = await remove_member(cluster, cluster_spec, nodes, hostname, observer=metrics.observe_call,
                                      cluster_domain=config.current.cluster_domain)
    # A provisioned member's finalizer is what holds its pod and volume: it is released only once Harper forgot it.
    events.removals(body, removal, retry, retries=None if _provisioned(body) else 3)
    registry.poke(namespace, cluster_name)
