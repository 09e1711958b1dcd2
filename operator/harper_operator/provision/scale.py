"""What one round does to a provisioned cluster's pods, HarperNodes and volumes: pure, from what the shell read.

The rules, in order of precedence (docs/safety.md says which invariant each one keeps):
* Hibernate at replicas 0: the pods go, every HarperNode, volume and Harper record stays (S2); replicas > 0 again
  brings the same pods back on the same volumes.
* Scale up at once: the StatefulSet gets the new replicas and every new ordinal its HarperNode (the Harper
  reconcile joins them with one add_node each).
* Scale down only with the data safe elsewhere (S1): a leaving pod is first taken out of the client Service; its
  HarperNode is deleted (its finalizer runs remove_node) only once the Harper round proved that the members that
  stay hold everything it holds (`drained`); the StatefulSet's replicas drop only when none of them is left; its
  volume is deleted only after that, only when the cluster's deletionPolicy is Delete, and only if it was marked
  when its data was proven safe. A scale-down that would drop the last members of a shard is refused.
* Roll one pod at a time (updateStrategy OnDelete): a pod of an older revision is deleted only when every pod is
  Ready, the cluster's last round found every member connected to every peer, and nothing else is under way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, TypedDict


@dataclass(frozen=True)
class Pod:
    ordinal: int
    name: str
    ready: bool
    revision: str | None  # controller-revision-hash label
    deleting: bool = False
    serving: bool | None = None  # the SERVING_LABEL: in the client Service (True), taken out (False), unset (None)


@dataclass(frozen=True)
class Seen:
    """The Kubernetes side of one provisioned cluster, as the shell read it, and what the last Harper round proved."""

    desired: int  # spec.instances.replicas
    statefulset_replicas: int | None  # None: no StatefulSet yet
    update_revision: str | None = None  # the StatefulSet's status.updateRevision
    node_ordinals: frozenset[int] = frozenset()  # provisioned HarperNodes that exist and are not being deleted
    deleting_ordinals: frozenset[int] = frozenset()  # provisioned HarperNodes being deleted (finalizer running)
    pods: tuple[Pod, ...] = ()
    converged: bool = False  # the cluster's last round: Ready, every member connected
    drained: frozenset[int] = frozenset()  # leaving ordinals whose records the last round found on the others
    waits: Mapping[int, str] = field(default_factory=dict)  # leaving ordinal -> what its proof still waits for
    shards: Mapping[int, int] = field(default_factory=dict)  # ordinal -> its shard (spec.instances.ordinals)
    claims: frozenset[int] = frozenset()  # ordinals whose volume claim exists
    released: frozenset[int] = frozenset()  # claims marked when their data was proven safe elsewhere
    volumes_go: bool = True  # deletionPolicy Delete: a released volume is deleted once its pod is gone


@dataclass(frozen=True)
class Steps:
    """The writes of this round, and what a person reads about the ones that wait."""

    replicas: int
    create_nodes: tuple[int, ...] = ()
    delete_nodes: tuple[int, ...] = ()
    delete_pod: str | None = None
    progress: str = ""  # non-empty: the cluster is still on its way (Reconciling), and why
    ready_pods: frozenset[int] = field(default_factory=frozenset)
    serve: tuple[int, ...] = ()  # pods to put (back) into the client Service
    unserve: tuple[int, ...] = ()  # leaving pods to take out of it before their data is confirmed elsewhere
    release_claims: tuple[int, ...] = ()  # volumes whose data was just proven safe elsewhere: mark them
    keep_claims: tuple[int, ...] = ()  # marked volumes of ordinals wanted again: unmark them
    delete_claims: tuple[int, ...] = ()
    leaving: frozenset[int] = frozenset()  # ordinals whose records are being confirmed elsewhere before they go
    refused: str = ""  # why the scale-down waits for a person (Stalled)
    hibernated: bool = False  # replicas 0 and no pod left


def _ready(seen: Seen) -> frozenset[int]:
    return frozenset(p.ordinal for p in seen.pods if p.ready and not p.deleting)


class _Marks(TypedDict):
    keep_claims: tuple[int, ...]
    delete_claims: tuple[int, ...]


def _claims(seen: Seen, replicas: int) -> _Marks:
    """Volume marks: a marked volume of an ordinal wanted again is unmarked; one whose pod is gone for good (above
    the StatefulSet's replicas) is deleted when the policy says so."""
    running = {p.ordinal for p in seen.pods}
    return {"keep_claims": tuple(sorted(o for o in seen.released if o < seen.desired)),
            "delete_claims": tuple(sorted(o for o in seen.released & seen.claims
                                          if seen.volumes_go and o >= max(replicas, seen.desired)
                                          and o not in running))}


def _hibernate(seen: Seen) -> Steps:
    left = sorted(p.name for p in seen.pods)
    if left:
        return Steps(0, progress=f"hibernating (replicas 0): waiting for {len(left)} pod(s) to stop ({', '.join(left)});"
                                 " volumes, HarperNodes and Harper's records stay", ready_pods=_ready(seen))
    return Steps(0, hibernated=True)


def _lost_shards(seen: Seen, leaving: list[int]) -> list[int]:
    """Shards whose every member is leaving: their records would have no copy left."""
    staying = {s for o, s in seen.shards.items() if o < seen.desired}
    return sorted({seen.shards[o] for o in leaving if o in seen.shards} - staying)


def _scale_down(seen: Seen, leaving: list[int], create: tuple[int, ...]) -> Steps:
    ready = _ready(seen)
    # The leaving pods keep running until their data is confirmed elsewhere (after hibernation they start again).
    replicas = max(seen.statefulset_replicas or 0, max(leaving) + 1, seen.desired)
    serve = tuple(p.ordinal for p in seen.pods if p.ordinal < seen.desired and p.serving is not True
                  and not p.deleting and p.ordinal not in seen.deleting_ordinals)
    lost = _lost_shards(seen, [o for o in leaving if o in seen.node_ordinals])
    if lost:
        holders = ", ".join(str(o) for o in leaving if seen.shards.get(o) in lost)
        return Steps(replicas, create, serve=serve, ready_pods=ready, refused=(
            f"replicas {seen.desired} would remove the last member(s) of shard(s) {', '.join(map(str, lost))} "
            f"(ordinal(s) {holders}), and their records with them: keep replicas at {max(leaving) + 1}, or give "
            "another ordinal that shard in spec.instances.ordinals first"))
    unserve = tuple(p.ordinal for p in seen.pods if p.ordinal in leaving and p.serving is not False)
    proven = tuple(o for o in leaving if o in seen.node_ordinals and o in seen.drained)
    waiting = [o for o in leaving if o in seen.node_ordinals and o not in seen.drained]
    if waiting:
        why = "; ".join(f"ordinal {o}: {seen.waits.get(o) or 'its records are not yet confirmed on the members that stay'}"
                        for o in waiting)
        progress = f"scaling down to {seen.desired}: waiting for the leaving members' records to be safe elsewhere ({why})"
    else:
        progress = (f"scaling down to {seen.desired}: removing ordinal(s) {', '.join(map(str, leaving))} from Harper "
                    "before their pods are deleted")
    return Steps(replicas, create, delete_nodes=proven, progress=progress, ready_pods=ready, serve=serve,
                 unserve=unserve, release_claims=tuple(o for o in proven if o in seen.claims),
                 leaving=frozenset(leaving), **_claims(seen, replicas))


def steps(seen: Seen) -> Steps:
    """A HarperNode deleted by hand leaves as a scale-down's member does (docs/safety.md, S1): its pod goes out of
    the client Service, and its finalizer waits for the proof before Harper forgets it."""
    out = _steps(seen)
    if not seen.deleting_ordinals:
        return out
    going = out.leaving | seen.deleting_ordinals
    unserve = sorted(set(out.unserve) | {p.ordinal for p in seen.pods if p.ordinal in seen.deleting_ordinals
                                         and p.serving is not False and not p.deleting})
    return replace(out, unserve=tuple(unserve), leaving=frozenset(going))


def _steps(seen: Seen) -> Steps:
    current = seen.statefulset_replicas
    if seen.desired == 0 and current is not None:
        return _hibernate(seen)
    ready = _ready(seen)
    members = seen.node_ordinals | seen.deleting_ordinals
    leaving = sorted(o for o in members if o >= seen.desired)
    create = tuple(o for o in range(seen.desired) if o not in members)
    if leaving:
        return _scale_down(seen, leaving, create)
    serve = tuple(p.ordinal for p in seen.pods if p.ordinal < seen.desired and p.serving is not True
                  and not p.deleting and p.ordinal not in seen.deleting_ordinals)
    marks = _claims(seen, seen.desired)
    if current is not None and seen.desired < current:
        return Steps(seen.desired, create, progress=f"scaling down to {seen.desired}: Harper has forgotten the "
                                                    "leaving nodes; lowering the StatefulSet's replicas",
                     ready_pods=ready, serve=serve, **marks)
    # Ordinals of a scale-down the user reverted mid-way keep their HarperNodes (not leaving any more).
    present = {p.ordinal: p for p in seen.pods if not p.deleting}
    missing = [o for o in range(seen.desired) if o not in ready]
    if current is None or current != seen.desired:
        return Steps(seen.desired, create, progress=f"scaling to {seen.desired} pods", ready_pods=ready, serve=serve,
                     **marks)
    if missing:
        return Steps(seen.desired, create, progress=f"waiting for pods: {len(ready & set(range(seen.desired)))}/"
                                                    f"{seen.desired} Ready (not yet: ordinal(s) "
                                                    f"{', '.join(map(str, missing))})", ready_pods=ready,
                     serve=serve, **marks)
    outdated = sorted((p for p in present.values() if seen.update_revision and p.revision != seen.update_revision),
                      key=lambda p: -p.ordinal)
    if outdated:
        if create or not seen.converged:
            return Steps(seen.desired, create, progress=f"rolling out revision {seen.update_revision}: waiting for "
                                                        "every member to be connected before the next pod",
                         ready_pods=ready, serve=serve, **marks)
        left = len(outdated)
        return Steps(seen.desired, create, delete_pod=outdated[0].name,
                     progress=f"rolling out revision {seen.update_revision}: restarting {outdated[0].name} "
                              f"({left} pod(s) left)", ready_pods=ready - {outdated[0].ordinal}, serve=serve,
                     **marks)
    return Steps(seen.desired, create, ready_pods=ready, serve=serve, **marks)
