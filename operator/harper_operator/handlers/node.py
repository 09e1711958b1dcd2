"""HarperNode: changes wake the cluster's reconcile; deletion takes the node out of Harper per policy."""

from __future__ import annotations

import logging

import kopf
from pydantic import ValidationError

from .. import kube
from ..api import GROUP, VERSION, HarperClusterSpec
from ..controller.dissolve import remove_member
from ..controller.loop import RETAINED_PREFIX
from . import events, registry

log = logging.getLogger(__name__)


async def _orphan(namespace: str, name: str, generation, cluster: str) -> None:
    """No daemon will write this node's status, so say here why nothing happens."""
    await kube.patch_status("harpernodes", namespace, name, {
        "observedGeneration": generation,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ClusterNotFound", "observedGeneration": generation,
             "message": f"HarperCluster {cluster!r} does not exist in namespace {namespace}: create it or fix "
                        "spec.clusterRef.name"},
            {"type": "Stalled", "status": "True", "reason": "ClusterNotFound", "observedGeneration": generation,
             "message": f"waiting for HarperCluster {cluster!r}"},
            {"type": "Reconciling", "status": "False", "reason": "ClusterNotFound",
             "observedGeneration": generation, "message": ""}]})


@kopf.on.create(GROUP, VERSION, "harpernodes")
@kopf.on.update(GROUP, VERSION, "harpernodes")
@kopf.on.resume(GROUP, VERSION, "harpernodes")
async def changed(namespace, name, spec, meta, body, **_):
    cluster = (spec.get("clusterRef") or {}).get("name")
    if registry.poke(namespace, cluster):
        return
    if await kube.get_object("harperclusters", namespace, cluster) is None:
        await _orphan(namespace, name, meta.get("generation"), cluster)
        events.post(body, "Warning", "ClusterNotFound", f"HarperCluster {cluster!r} does not exist")


@kopf.on.delete(GROUP, VERSION, "harpernodes")
async def deleted(namespace, name, spec, body, retry, members: kopf.Index, **_):
    """The finalizer is always released: cluster, Secret or Harper gone means nothing is left to do."""
    cluster_name = (spec.get("clusterRef") or {}).get("name")
    hostname = spec.get("hostname")
    cluster = await kube.get_object("harperclusters", namespace, cluster_name)
    if cluster is None or cluster["metadata"].get("deletionTimestamp") or not hostname:
        return
    try:
        cluster_spec = HarperClusterSpec.model_validate(cluster.get("spec") or {})
    except ValidationError:
        return
    policy = spec.get("deletionPolicy") or cluster_spec.deletion_policy
    if policy == "Retain":
        # Remember it on the cluster, or the next reconcile would take it for a ghost record and remove it.
        await kube.annotate("harperclusters", namespace, cluster_name, {RETAINED_PREFIX + hostname: "true"})
        events.post(body, "Normal", "Retained", f"deletionPolicy Retain: {hostname} stays in Harper's cluster")
        return
    nodes = [n for n in members.get((namespace, cluster_name), [])]
    done, failures = await remove_member(cluster, cluster_spec, nodes, hostname)
    events.removals(body, done, failures, retry)
    registry.poke(namespace, cluster_name)
