"""The HarperNode finalizer's gate (handlers/node._wait_for_proof): Harper forgets a member only with its cluster's
proof that the member's records are on every member that stays, or a person's explicit annotation (docs/safety.md,
S1). The registry here is the real one; only Kubernetes Events are caught in a list."""

from __future__ import annotations

import kopf
import pytest

from harper_operator.api import LEAVE_WITHOUT_PROOF_ANNOTATION
from harper_operator.handlers import node, registry


def body(host: str, *, deleting: bool = False, annotations: dict | None = None) -> dict:
    meta = {"name": f"hn-{host}", "namespace": "ns", "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"hostname": host, "clusterRef": {"name": "c"}}}


@pytest.fixture
def posted(monkeypatch):
    out: list[tuple[str, str, str]] = []
    monkeypatch.setattr(node.events, "post", lambda b, t, reason, msg: out.append((t, reason, msg)))
    yield out
    registry.record_proof("ns", "c", None)


NODES = [body("a"), body("b"), body("c", deleting=True)]


def test_without_a_proof_the_finalizer_retries_naming_what_it_waits_for(posted):
    with pytest.raises(kopf.TemporaryError, match="c stays in Harper .* waiting for the cluster's next round"):
        node._wait_for_proof(NODES[2], "ns", "c", "c", NODES)
    registry.record_proof("ns", "c", registry.Proof({}, {"c": "a does not hold the write of data.t 'k'"}))
    with pytest.raises(kopf.TemporaryError, match=f"waiting for a does not hold .*{LEAVE_WITHOUT_PROOF_ANNOTATION}"):
        node._wait_for_proof(NODES[2], "ns", "c", "c", NODES)
    assert posted == []


def test_a_proof_that_covers_every_member_that_stays_lets_it_go(posted):
    registry.record_proof("ns", "c", registry.Proof({"c": frozenset({"a", "b"})}, {}))
    node._wait_for_proof(NODES[2], "ns", "c", "c", NODES)


def test_a_proof_made_before_a_member_joined_does_not(posted):
    registry.record_proof("ns", "c", registry.Proof({"c": frozenset({"a"})}, {}))
    with pytest.raises(kopf.TemporaryError):
        node._wait_for_proof(NODES[2], "ns", "c", "c", NODES)


def test_the_annotation_lets_it_go_without_proof_and_says_so(posted):
    forced = body("c", deleting=True, annotations={LEAVE_WITHOUT_PROOF_ANNOTATION: "true"})
    node._wait_for_proof(forced, "ns", "c", "c", NODES)
    assert [(t, reason) for t, reason, _ in posted] == [("Warning", "LeavingWithoutProof")]
    assert "lost to the cluster" in posted[0][2]
    other = body("c", deleting=True, annotations={LEAVE_WITHOUT_PROOF_ANNOTATION: "yes"})
    with pytest.raises(kopf.TemporaryError):
        node._wait_for_proof(other, "ns", "c", "c", NODES)
