"""What one round does to a provisioned cluster's pods and HarperNodes: pure, from what the shell read.

The rules, in order of precedence:
* Scale up at once: the StatefulSet gets the new replicas and every new ordinal its HarperNode (the Harper
  reconcile joins them with one add_node each).
* Scale down safely: the leaving ordinals' HarperNodes are deleted first (their finalizer runs remove_node, so
  no peer keeps a record of them); the StatefulSet's replicas drop only once none of them is left.
* Roll one pod at a time (updateStrategy OnDelete): a pod of an older revision is deleted only when every pod is
  Ready, the cluster's last round found every member connected to every peer, and nothing else is under way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pod:
    ordinal: int
    name: str
    ready: bool
    revision: str | None  # controller-revision-hash label
    deleting: bool = False


@dataclass(frozen=True)
class Seen:
    """The Kubernetes side of one provisioned cluster, as the shell read it."""

    desired: int  # spec.instances.replicas
    statefulset_replicas: int | None  # None: no StatefulSet yet
    update_revision: str | None = None  # the StatefulSet's status.updateRevision
    node_ordinals: frozenset[int] = frozenset()  # provisioned HarperNodes that exist and are not being deleted
    deleting_ordinals: frozenset[int] = frozenset()  # provisioned HarperNodes being deleted (finalizer running)
    pods: tuple[Pod, ...] = ()
    converged: bool = False  # the cluster's last round: Ready, every member connected


@dataclass(frozen=True)
class Steps:
    """The writes of this round, and what a person reads about the ones that wait."""

    replicas: int
    create_nodes: tuple[int, ...] = ()
    delete_nodes: tuple[int, ...] = ()
    delete_pod: str | None = None
    progress: str = ""  # non-empty: the cluster is still on its way (Reconciling), and why
    ready_pods: frozenset[int] = field(default_factory=frozenset)


def steps(seen: Seen) -> Steps:
    current = seen.statefulset_replicas
    ready = frozenset(p.ordinal for p in seen.pods if p.ready and not p.deleting)
    leaving = sorted(o for o in seen.node_ordinals | seen.deleting_ordinals if o >= seen.desired)
    create = tuple(o for o in range(seen.desired) if o not in seen.node_ordinals | seen.deleting_ordinals)
    if current is not None and seen.desired < current:
        if leaving:
            names = ", ".join(str(o) for o in leaving)
            return Steps(current, create, tuple(o for o in leaving if o in seen.node_ordinals),
                         progress=f"scaling down to {seen.desired}: removing ordinal(s) {names} from Harper before "
                                  "their pods are deleted", ready_pods=ready)
        return Steps(seen.desired, create, progress=f"scaling down to {seen.desired}: Harper has forgotten the "
                                                    "leaving nodes; lowering the StatefulSet's replicas",
                     ready_pods=ready)
    # Ordinals of a scale-down the user reverted mid-way keep their HarperNodes (not leaving any more).
    present = {p.ordinal: p for p in seen.pods if not p.deleting}
    missing = [o for o in range(seen.desired) if o not in ready]
    if current is None or current != seen.desired:
        return Steps(seen.desired, create, progress=f"scaling to {seen.desired} pods", ready_pods=ready)
    if missing:
        return Steps(seen.desired, create, progress=f"waiting for pods: {len(ready & set(range(seen.desired)))}/"
                                                    f"{seen.desired} Ready (not yet: ordinal(s) "
                                                    f"{', '.join(map(str, missing))})", ready_pods=ready)
    outdated = sorted((p for p in present.values() if seen.update_revision and p.revision != seen.update_revision),
                      key=lambda p: -p.ordinal)
    if outdated:
        if create or not seen.converged:
            return Steps(seen.desired, create, progress=f"rolling out revision {seen.update_revision}: waiting for "
                                                        "every member to be connected before the next pod",
                         ready_pods=ready)
        left = len(outdated)
        return Steps(seen.desired, create, delete_pod=outdated[0].name,
                     progress=f"rolling out revision {seen.update_revision}: restarting {outdated[0].name} "
                              f"({left} pod(s) left)", ready_pods=ready)
    return Steps(seen.desired, create, ready_pods=ready)
