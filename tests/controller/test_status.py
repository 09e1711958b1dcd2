"""Status from one round, built on recorded real cluster_status answers (pure; no Kubernetes, no Harper)."""

import json
from datetime import datetime, timezone
from pathlib import Path

from harper_operator.api import HarperClusterSpec, HarperClusterStatus, HarperNodeStatus
from harper_operator.controller.members import SecretData
from harper_operator.controller.members import membership as _membership
from harper_operator.reconcile.problems import Problem
from harper_operator.controller.observe import Sight, observed
from harper_operator.controller.status import Round, cluster_status, node_status, unchanged
from harper_operator.harper.models import ClusterStatus
from harper_operator.harper.probe import ProbeResult

RECORDED = Path(__file__).resolve().parents[1] / "harper" / "recorded"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
CLUSTER = HarperClusterSpec.model_validate({"credentials": {"secretRef": {"name": "admin"}}})
SECRETS = {"admin": SecretData(True, {"username": "hdb", "password": "pw"})}


def membership(cluster, nodes, secrets):
    return _membership(cluster, nodes, secrets, namespace="ns")


def recorded(name: str) -> ClusterStatus:
    return ClusterStatus.model_validate(json.loads((RECORDED / f"{name}.json").read_text())["body"])


def body(name, hostname):
    return {"metadata": {"name": name, "generation": 3},
            "spec": {"clusterRef": {"name": "c"}, "hostname": hostname, "url": f"wss://{hostname}:9933",
                     "operationsUrl": f"http://{hostname}:9925"}}


def members(*hosts):
    return membership(CLUSTER, [body(f"n{h[-1]}", h) for h in hosts], SECRETS)


def up():
    return ProbeResult(reachable=True, error=None, handshake_seconds=0.01, subject="CN=x", sans=["x"], not_after=None)


def cond(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_one_stopped_peer_is_reported_not_ready():
    m = members("127.0.0.31", "127.0.0.32", "127.0.0.33")
    first = m.members[0]
    sights = {"127.0.0.31": Sight(first, status=recorded("cluster_status_2_peers_one_stopped"), probe=up())}
    status = node_status(first, Round(m, sights), None, NOW)
    HarperNodeStatus.model_validate(status)  # the status we write fits our own schema
    assert status["observedGeneration"] == 3
    assert status["connectedPeers"] == "1/2"
    assert cond(status, "Ready")["status"] == "False" and "127.0.0.33" in cond(status, "Ready")["message"]
    assert cond(status, "Reconciling")["status"] == "True"
    sockets = {p["name"]: p["sockets"] for p in status["peers"]}
    assert all(s["connected"] for s in sockets["127.0.0.32"])
    # Only what a person acts on: figures that change on every look are metrics, not a status write per round.
    assert set(sockets["127.0.0.32"][0]) == {"database", "connected"}


def test_connected_everywhere_is_ready_and_keeps_transition_time():
    m = members("127.0.0.31", "127.0.0.32", "127.0.0.33")
    first = m.members[0]
    sights = {"127.0.0.31": Sight(first, status=recorded("cluster_status_2_peers_connected"), probe=up())}
    status = node_status(first, Round(m, sights), None, NOW)
    assert cond(status, "Ready")["status"] == "True" and status["connectedPeers"] == "2/2"
    later = node_status(first, Round(m, sights), status, datetime(2026, 11, 26, tzinfo=timezone.utc))
    assert cond(later, "Ready")["lastTransitionTime"] == cond(status, "Ready")["lastTransitionTime"]


def test_a_provisioned_member_whose_pod_is_not_ready_is_not_ready_itself():
    """Connected in Harper, but Kubernetes does not call its pod Ready (a failing probe, a restart): both the
    HarperNode and the cluster's row say so."""
    m = members("127.0.0.31", "127.0.0.32", "127.0.0.33")
    first = m.members[0]
    sights = {"127.0.0.31": Sight(first, status=recorded("cluster_status_2_peers_connected"), probe=up())}
    status = node_status(first, Round(m, sights, pod_not_ready=frozenset({"127.0.0.31"})), None, NOW)
    assert cond(status, "Ready")["status"] == "False" and cond(status, "Ready")["reason"] == "PodNotReady"
    assert cond(status, "Reconciling")["status"] == "True" and status["connectedPeers"] == "2/2"


def test_permanent_problem_stalls_cluster_and_names_the_node():
    m = membership(CLUSTER, [body("n1", "127.0.0.31")], {"admin": None})
    status = cluster_status(Round(m, {}), 7, None, NOW)
    HarperClusterStatus.model_validate(status)
    stalled = cond(status, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "SecretNotFound"
    assert "HarperNode n1" in stalled["message"] and status["observedGeneration"] == 7
    assert status["readyNodes"] == "0/1"


def test_transient_problem_keeps_reconciling_and_paused_says_so():
    m = members("127.0.0.31")
    sight = Sight(m.members[0], problem=Problem("Unreachable", "cannot reach", permanent=False))
    status = cluster_status(Round(m, {"127.0.0.31": sight}), 1, None, NOW)
    assert cond(status, "Reconciling")["status"] == "True" and cond(status, "Stalled")["status"] == "False"
    paused = cluster_status(Round(m, {"127.0.0.31": sight}, pending=2, paused=True), 1, None, NOW)
    assert cond(paused, "Ready")["reason"] == "Paused"


def test_observed_cluster_from_recorded_answers():
    m = members("127.0.0.31", "127.0.0.32", "127.0.0.33")
    seen = observed({"127.0.0.31": Sight(m.members[0], status=recorded("cluster_status_2_peers_one_stopped"),
                                         probe=up())})
    node = seen.nodes["127.0.0.31"]
    assert node.reachable and node.peers["127.0.0.32"].connected and not node.peers["127.0.0.33"].connected
    assert node.peers["127.0.0.32"].replicates and node.peers["127.0.0.32"].subscriptions is None


def test_a_round_that_sees_nothing_new_computes_the_status_there_is():
    """The loop writes a status only when it changes: the same picture a minute later must compute the same dict
    (no timestamps, no volatile figures), and a change of one peer must not."""
    m = members("127.0.0.31", "127.0.0.32", "127.0.0.33")
    first = m.members[0]
    sights = {"127.0.0.31": Sight(first, status=recorded("cluster_status_2_peers_connected"), probe=up())}
    status = node_status(first, Round(m, sights), None, NOW)
    stored = {k: v for k, v in status.items() if v is not None}  # what the API server keeps of a merge patch
    later = datetime(2026, 11, 26, 0, 1, tzinfo=timezone.utc)
    assert unchanged(node_status(first, Round(m, sights), stored, later), stored)
    whole = cluster_status(Round(m, sights), 3, None, NOW)
    kept = {k: v for k, v in whole.items() if v is not None}
    assert unchanged(cluster_status(Round(m, sights), 3, kept, later), kept)
    assert not unchanged(cluster_status(Round(m, sights), 4, kept, later), kept)  # a new generation is news
    stopped = {"127.0.0.31": Sight(first, status=recorded("cluster_status_2_peers_one_stopped"), probe=up())}
    assert not unchanged(node_status(first, Round(m, stopped), stored, later), stored)
    assert not unchanged(status, None)


def test_a_member_whose_own_record_lacks_its_spec_shard_is_not_ready_yet():
    """update_node sets the shard on the peers' records of a node; the node's own record gets it by gossip, later
    (seen in CI under load). The node applies its own record's shard: not Ready until it shows the spec's."""
    hosts = ("127.0.0.31", "127.0.0.32", "127.0.0.33")
    bodies = [body(f"n{h[-1]}", h) for h in hosts]
    bodies[0]["spec"]["shard"] = 2
    m = membership(CLUSTER, bodies, SECRETS)
    first = m.members[0]
    seen = recorded("cluster_status_2_peers_connected")
    sights = {hosts[0]: Sight(first, status=seen, probe=up())}
    status = node_status(first, Round(m, sights), None, NOW)
    assert cond(status, "Ready")["status"] == "False" and cond(status, "Ready")["reason"] == "ShardPending"
    assert "no shard" in cond(status, "Ready")["message"] and "shard 2" in cond(status, "Ready")["message"]
    row = next(r for r in cluster_status(Round(m, sights), 1, None, NOW)["members"] if r["hostname"] == hosts[0])
    assert not row["ready"]
    sights = {hosts[0]: Sight(first, status=seen.model_copy(update={"shard": 2}), probe=up())}
    status = node_status(first, Round(m, sights), None, NOW)
    assert cond(status, "Ready")["status"] == "True" and status["shard"] == 2
