"""ClusterReconciler.reconcile on the FAKE fleet: one round's isolation, ordering, budgets and status.

Each test names the guarantee of the "Harden" issue it protects."""

from __future__ import annotations

import asyncio
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from fake_fleet import PASSWORD, FakeFleet, FakeKube, FakePool, admin_secret, cluster_body, node_body

from harper_operator import kube
from harper_operator.controller import observe
from harper_operator.controller.loop import ClusterReconciler, Declared, declared_entry, retained
from harper_operator.harper.errors import (AuthenticationError, RequestValidationError, TransientHarperError,
                                           UnexpectedAnswerError)

A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"


class Clock:
    """`tick`: seconds each reading moves it on, as a real clock does between two readings in one round."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick = 1_000_000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def reconciler(fleet: FakeFleet, clock: Clock | None = None, ghost_grace: float = 0) -> tuple[ClusterReconciler, list]:
    events: list = []
    r = ClusterReconciler("ns", "c", events=lambda body, t, reason, msg: events.append((t, reason, msg)),
                          verify_timeout=0, clock=clock or Clock(), restart_grace=0, restart_cooldown=120,
                          ghost_grace=ghost_grace)
    r.pool = FakePool(fleet)
    return r, events


def nodes(*hosts: str, **spec) -> list[dict]:
    return [node_body(f"n{h[-1]}", h, **spec) for h in hosts]


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


async def converge(r: ClusterReconciler, body: dict, members: list[dict], fake_kube, rounds: int = 6, **kw):
    for _ in range(rounds):
        result = await r.reconcile(body, members, **kw)
        body["status"] = fake_kube.last("harperclusters", "c")
        for m in members:
            m["status"] = fake_kube.last("harpernodes", m["metadata"]["name"])
        if result.converged:
            return result
    return result


async def test_three_nodes_converge_and_every_status_is_written(fleet, fake_kube):
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    result = await converge(r, body, members, fake_kube)
    assert result.converged and result.ready_nodes == 3
    assert fake_kube.last("harperclusters", "c")["readyNodes"] == "3/3"
    for m in members:
        assert condition(fake_kube.last("harpernodes", m["metadata"]["name"]), "Ready")["status"] == "True"


async def test_a_steady_cluster_writes_no_status_and_a_change_writes_it_again(fleet, fake_kube):
    """Quiet at steady state: once the statuses the watch shows are what a round computes, the round patches
    nothing; a status the watch has not caught up with yet is written again rather than trusted; a change is."""
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    body["status"] = fake_kube.last("harperclusters", "c")  # what the watch delivers after our writes
    for m in members:
        m["status"] = fake_kube.last("harpernodes", m["metadata"]["name"])
    before = len(fake_kube.patches)
    for _ in range(3):
        await r.reconcile(body, members)
    assert len(fake_kube.patches) == before, "a steady round wrote a status"
    fleet.model.stop(C)
    await r.reconcile(body, members)
    written = {name for _, name, _ in fake_kube.patches[before:]}
    assert {"c", members[2]["metadata"]["name"]} <= written
    before = len(fake_kube.patches)
    await r.reconcile(body, members)  # the watch still shows the old statuses: they are written again
    assert len(fake_kube.patches) > before


async def test_a_steady_round_reads_cluster_status_once_per_member_and_nothing_else(fleet, fake_kube, monkeypatch):
    """At steady state one Harper read per member a round: the probe of a healthy member and routes that were never
    declared nor seen are not read again. Declared routes, or a peer down (past PROBE_FRESH), bring them back."""
    monkeypatch.setattr(observe, "PROBE_FRESH", 0.0)
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    before = len(fleet.calls)
    await r.reconcile(body, members)
    assert sorted((c.node, c.operation) for c in fleet.calls[before:]) == [(h, "cluster_status") for h in (A, B, C)]
    fleet.model.stop(C)
    await r.reconcile(body, members)  # A and B now show C down: their endpoints are probed again
    fleet.model.start(C)
    before = len(fleet.calls)
    await r.reconcile(body, members)
    assert {c.node for c in fleet.calls[before:] if c.operation == "probe"} >= {A, B}
    before = len(fleet.calls)
    await r.reconcile(cluster_body(routes=[{"hostname": "r.example", "port": 9933}]), members)
    assert {c.node for c in fleet.calls[before:] if c.operation == "routes"} == {A, B, C}


class SlowReads(FakePool):
    """The FAKE pool, with every Harper read taking a moment: how many of one member's reads are in flight at once."""

    READS = ("cluster_status", "loaded_routes", "cluster_get_routes", "list_certificates")

    def __init__(self, fleet: FakeFleet):
        super().__init__(fleet)
        self.in_flight: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def client(self, access):
        inner = super().client(access)
        pool = self

        class Client:
            def __getattr__(self, name):
                call = getattr(inner, name)
                if name not in SlowReads.READS:
                    return call

                async def slow(*args, **kwargs):
                    pool.in_flight[inner.name] = pool.in_flight.get(inner.name, 0) + 1
                    pool.most[inner.name] = max(pool.most.get(inner.name, 0), pool.in_flight[inner.name])
                    try:
                        await asyncio.sleep(0.02)
                        return await call(*args, **kwargs)
                    finally:
                        pool.in_flight[inner.name] -= 1
                return slow
        return Client()


async def test_a_members_first_look_asks_everything_at_once_and_later_ones_only_cluster_status(fleet, fake_kube):
    """Before a new cluster's first write, a member's first look costs one round trip, not three in a row
    (bench/converge.py): cluster_status, both routes and the certificates all go out together."""
    r, _ = reconciler(fleet)
    r.pool = SlowReads(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    await r.reconcile(body, members)
    assert r.pool.most == {A: 4, B: 4, C: 4}
    assert any(c.operation == "add_node" for c in fleet.calls)  # what the first look read was good for planning
    await converge(r, body, members, fake_kube)
    r.pool.most.clear()
    await r.reconcile(body, members)
    assert r.pool.most == {A: 1, B: 1, C: 1}


async def test_the_sights_kept_between_rounds_hold_no_parsed_cluster_status(fleet, fake_kube):
    """Between rounds a member's last sight keeps the probe, the routes and whether every peer was connected, not
    the parsed cluster_status (bench/scale.py: at 1,000 members those answers were the largest part of the heap)."""
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    kept = r._sights.values()
    assert len(kept) == 3 and all(s.status is None and s.meshed is True and s.probe for s in kept)
    fleet.model.stop(C)
    await r.reconcile(body, members)
    assert r._sights[A].meshed is False and r._sights[C].problem is not None


async def test_a_provisioned_cluster_rolling_is_meshed_but_not_ready_and_a_pod_down_is_not_ready(fleet, fake_kube):
    """PodView (FAKE): the roll's progress keeps Ready False while Harper's mesh is whole (the roll's gate is
    Result.meshed), and a member whose pod Kubernetes does not call Ready is not counted in readyNodes."""
    from harper_operator.controller.provision import PodView
    from harper_operator.reconcile.problems import Problem
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    rolling = PodView(problem=Problem("RollingUpdate", "rolling out revision r2", permanent=False), replicas=3,
                      selector="app=harper")
    result = await r.reconcile(body, members, pods=rolling)
    status = fake_kube.last("harperclusters", "c")
    assert result.meshed and not result.converged
    assert condition(status, "Ready")["reason"] == "RollingUpdate" and status["replicas"] == 3
    result = await r.reconcile(body, members, pods=PodView(not_ready=frozenset({C}), replicas=3, selector="x"))
    assert not result.meshed and fake_kube.last("harperclusters", "c")["readyNodes"] == "2/3"


# --- Guarantee 2: never remove a healthy node ------------------------------------------------------------------


async def test_hostname_mismatch_removes_nothing_and_stalls_naming_both(fleet, fake_kube):
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    fleet.calls.clear()
    # C's HarperNode is recreated with a name Harper does not use for it.
    members[2] = node_body("n3b", "harper-2.example", host=C)
    for _ in range(3):
        await r.reconcile(body, members)
    assert not [c for c in fleet.calls if c.operation == "remove_node"], fleet.writes()
    row = fake_kube.last("harpernodes", "n3b")
    stalled = condition(row, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "HostnameMismatch"
    assert C in stalled["message"] and "harper-2.example" in stalled["message"]
    cluster = fake_kube.last("harperclusters", "c")
    assert condition(cluster, "Stalled")["reason"] == "HostnameMismatch"
    assert fleet.model.rec(A, C) is not None  # the healthy node's record is still there


async def test_nodes_not_yet_seen_are_not_taken_for_ghosts_at_once(fleet, fake_kube):
    """A cluster applied together with its nodes (or adopted): the first rounds may see only some of them."""
    r, _ = reconciler(fleet)
    await converge(r, cluster_body(), nodes(A, B, C), fake_kube)  # a cluster that already runs
    clock = Clock()
    fresh, _ = reconciler(fleet, clock, ghost_grace=20)  # a new operator whose index is not complete yet
    fleet.calls.clear()
    await fresh.reconcile(cluster_body(), nodes(A))
    clock.now += 10
    await fresh.reconcile(cluster_body(), nodes(A, B))
    assert not [c for c in fleet.calls if c.operation == "remove_node"]
    clock.now += 15
    await fresh.reconcile(cluster_body(), nodes(A, B, C))  # all seen now: nothing was ever removed
    assert not [c for c in fleet.calls if c.operation == "remove_node"]
    clock.now += 30
    await fresh.reconcile(cluster_body(), nodes(A, B))  # C undeclared for real, past the grace next time
    clock.now += 25
    await fresh.reconcile(cluster_body(), nodes(A, B))
    assert [c.detail for c in fleet.calls if c.operation == "remove_node"] == [C]


async def test_a_ghost_in_a_settled_cluster_goes_in_the_round_that_finds_it_once_the_api_server_agrees(
        fleet, fake_kube):
    """Past GHOST_YOUTH (process, cluster and newest member older than it) the ghost grace no longer applies: the
    round that finds a ghost removes it, unless the API server lists a HarperNode declaring it (a HarperNode
    created a moment ago that the index does not hold yet)."""
    from datetime import datetime
    clock = Clock()
    clock.now = datetime.fromisoformat("2026-01-01T01:00:00+00:00").timestamp()  # members created at 00:00
    r, _ = reconciler(fleet, clock, ghost_grace=20)
    body, members = cluster_body(), nodes(A, B)
    await converge(r, body, members, fake_kube)
    clock.now += 120  # the process is older than GHOST_YOUTH now
    fleet.model.inject(A, "new-node", "wss://127.0.0.98:9933")
    fake_kube.listed["harpernodes"] = [node_body("x", "new-node", host="127.0.0.98")]
    await r.reconcile(body, members)
    assert not [c for c in fleet.calls if c.operation == "remove_node"]  # declared: the index is behind
    fleet.model.inject(A, "ghost", "wss://127.0.0.97:9933")
    await r.reconcile(body, members)
    assert [c.detail for c in fleet.calls if c.operation == "remove_node"] == ["ghost"]
    assert fake_kube.lists == ["harpernodes", "harpernodes"]  # listed only when a ghost was there


async def test_records_of_another_clusters_nodes_sharing_a_harper_are_kept(fleet, fake_kube):
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B)
    await converge(r, body, members, fake_kube)
    fleet.model.inject(A, "shared-node", "wss://127.0.0.99:9933")
    other = [node_body("x", "shared-node", cluster="d", host="127.0.0.99")]
    await r.reconcile(body, members, declared=Declared.of(declared_entry(x["spec"]) for x in [*members, *other]))
    assert not [c for c in fleet.calls if c.operation == "remove_node"]
    await r.reconcile(body, members)  # no HarperNode declares it any more: now it is a ghost
    assert [c.detail for c in fleet.calls if c.operation == "remove_node"] == ["shared-node"]


async def test_retained_names_are_read_from_one_annotation_and_the_legacy_keys():
    body = cluster_body(annotations={"harperoperator.dev/retained-nodes": '["fd00::1", "a.b"]',
                                     "retained.harperoperator.dev/old": "true"})
    assert retained(body) == {"fd00::1", "a.b", "old"}
    assert retained(cluster_body(annotations={"harperoperator.dev/retained-nodes": "{not json"})) == frozenset()


# --- Guarantee 2: isolation per member --------------------------------------------------------------------------


async def test_one_bad_member_of_each_kind_never_freezes_the_others(fleet, fake_kube):
    fleet.model.nodes["127.0.0.21"] = type(fleet.model.nodes[A])("127.0.0.21", "wss://127.0.0.21:9933")
    fleet.failures[("127.0.0.21", "cluster_status")] = UnexpectedAnswerError(
        "cluster_status", 200, "answer has an unexpected shape")
    fake_kube.secrets.update({
        "garbage-ca": (True, {"ca.crt": "not a certificate"}),
        "binary": (True, {"username": "admin", "password": None}),
        "unlabelled": (False, {}),
    })
    bad = [
        node_body("bad-ca", "127.0.0.31", tls={"verify": True, "caSecretRef": {"name": "garbage-ca"}}),
        node_body("bad-binary", "127.0.0.32", credentials={"secretRef": {"name": "binary"}}),
        node_body("bad-unlabelled", "127.0.0.33", credentials={"secretRef": {"name": "unlabelled"}}),
        node_body("bad-host", "evil.example.com"),
        node_body("bad-answer", "127.0.0.21"),
        node_body("bad-dup", A),
    ]
    r, _ = reconciler(fleet)
    body, good = cluster_body(), nodes(A, B, C)
    result = await converge(r, body, good + bad, fake_kube)
    cluster = fake_kube.last("harperclusters", "c")
    rows = {row["name"]: row for row in cluster["members"]}
    assert all(rows[n]["ready"] and rows[n]["expectedPeers"] == 2 for n in ("n1", "n2", "n3")), rows
    assert cluster["readyNodes"] == f"3/{3 + len(bad)}"
    reasons = {m["metadata"]["name"]: condition(fake_kube.last("harpernodes", m["metadata"]["name"]), "Ready")["reason"]
               for m in bad}
    assert reasons == {"bad-ca": "CASecretInvalid", "bad-binary": "SecretInvalid",
                       "bad-unlabelled": "SecretNotReadable", "bad-host": "HostNotAllowed",
                       "bad-answer": "HarperRejected", "bad-dup": "DuplicateHostname"}
    assert not result.converged
    assert not [c for c in fleet.calls if c.node in ("evil.example.com", "127.0.0.31", "127.0.0.32", "127.0.0.33")]


async def test_an_exception_nobody_foresaw_is_that_members_problem_and_every_status_is_written(fleet, fake_kube):
    def crash():
        raise RecursionError("maximum recursion depth exceeded")

    fleet.answers[B] = crash
    r, _ = reconciler(fleet)
    members = nodes(A, B, C)
    await r.reconcile(cluster_body(), members)
    for m in members:
        assert fake_kube.last("harpernodes", m["metadata"]["name"])["observedGeneration"] == 1
    row = fake_kube.last("harpernodes", "n2")
    assert condition(row, "Reconciling")["reason"] == "MemberError" and "RecursionError" in \
        condition(row, "Reconciling")["message"]
    assert fake_kube.last("harperclusters", "c")["readyNodes"].endswith("/3")


async def test_wrong_password_stalls_the_cluster_with_the_members_cause(fleet, fake_kube):
    for n in (A, B, C):
        fleet.failures[(n, "cluster_status")] = AuthenticationError("cluster_status", 401, "Login failed")
    r, _ = reconciler(fleet)
    result = await r.reconcile(cluster_body(), nodes(A, B, C))
    cluster = fake_kube.last("harperclusters", "c")
    assert result.permanent
    assert condition(cluster, "Stalled")["status"] == "True"
    assert condition(cluster, "Stalled")["reason"] == "WrongCredentials"
    assert "refused the credentials" in condition(cluster, "Ready")["message"]
    assert condition(cluster, "Reconciling")["status"] == "False"


async def test_a_certificate_the_operator_does_not_trust_stalls_naming_the_member_and_the_certificate(fleet,
                                                                                                       fake_kube):
    from datetime import datetime, timezone

    from harper_operator.harper.errors import TLSVerificationError
    from harper_operator.harper.tls import CertificateInfo
    served = CertificateInfo(subject="CN=n2", issuer="CN=Old-CA", not_after=datetime(2026, 1, 2, tzinfo=timezone.utc))
    fleet.failures[(B, "cluster_status")] = TLSVerificationError(
        "cluster_status", None, "TLS to the operations API failed: certificate has expired",
        reason="certificate has expired", certificate=served)
    r, _ = reconciler(fleet)
    result = await r.reconcile(cluster_body(), nodes(A, B, C))
    stalled = condition(fake_kube.last("harpernodes", "n2"), "Stalled")
    assert result.permanent and stalled["status"] == "True" and stalled["reason"] == "CertificateInvalid"
    message = condition(fake_kube.last("harpernodes", "n2"), "Ready")["message"]
    for words in ("n2", "certificate has expired", "subject CN=n2", "issued by CN=Old-CA",
                  "valid until 2026-01-02T00:00:00+00:00", "spec.tls.caSecretRef"):
        assert words in message, message


async def test_huge_harper_errors_are_clipped_in_status_and_events(fleet, fake_kube):
    fleet.failures[(A, "cluster_status")] = RequestValidationError("cluster_status", 400, "x" * 2_000_000)
    r, events = reconciler(fleet)
    await r.reconcile(cluster_body(), nodes(A, B))
    node = fake_kube.last("harpernodes", "n1")
    assert len(str(node)) < 10_000 and len(str(fake_kube.last("harperclusters", "c"))) < 20_000
    assert all(len(msg) <= 2000 for _, _, msg in events)


async def test_stale_node_name_and_shard_are_cleared_when_a_node_stops_answering(fleet, fake_kube):
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B)
    await converge(r, body, members, fake_kube)
    assert fake_kube.last("harpernodes", "n2").get("nodeName") == B
    fleet.model.stop(B)
    await r.reconcile(body, members)
    assert "nodeName" not in fake_kube.last("harpernodes", "n2")
    assert fake_kube.patches[-2][2]["nodeName"] is None  # sent as null: a merge patch removes it


# --- Guarantee 2: no head-of-line blocking, permanent refusals are Stalled --------------------------------------


async def test_a_node_the_seed_refuses_does_not_hold_back_the_others(fleet, fake_kube):
    r, _ = reconciler(fleet)
    body = cluster_body()
    await converge(r, body, nodes(A), fake_kube, rounds=1)
    # The seed refuses B for good; C must still be added in the same round.
    fleet.refuse_joining(B)
    result = await r.reconcile(body, nodes(A, B, C))
    added = [c.detail for c in fleet.calls if c.operation == "add_node"]
    assert B in added and C in added
    assert fleet.model.rec(A, C) is not None
    cluster = fake_kube.last("harperclusters", "c")
    assert not result.converged
    assert condition(cluster, "Stalled")["status"] == "True"  # a refusal waits for a person
    assert condition(cluster, "Stalled")["reason"] == "AddNodeFailed"


# --- Guarantee 1: credentials go only where the owner allows ----------------------------------------------------


async def test_credentials_reach_only_allowed_members(fleet, fake_kube):
    r, _ = reconciler(fleet)
    members = nodes(A, B) + [node_body("outside", "harper.elsewhere.example"),
                             node_body("plain", "10.1.2.3", operationsUrl="http://10.1.2.3:9925")]
    body = cluster_body(allowedHosts=["127.0.0.0/8", "10.0.0.0/8"])
    await converge(r, body, members, fake_kube)
    assert {c.node for c in fleet.calls} <= {A, B}
    for call in fleet.calls:
        if call.authorization:
            assert call.node in (A, B) and call.detail in (A, B)
    assert condition(fake_kube.last("harpernodes", "outside"), "Stalled")["reason"] == "HostNotAllowed"
    assert condition(fake_kube.last("harpernodes", "plain"), "Stalled")["reason"] == "PlaintextNotAllowed"
    assert PASSWORD not in str(fake_kube.patches)


async def test_a_replication_url_that_is_not_harper_gets_no_record(fleet, fake_kube):
    fleet.not_harper.add(C)
    r, _ = reconciler(fleet)
    await converge(r, cluster_body(), nodes(A, B, C), fake_kube)
    assert C not in [c.detail for c in fleet.calls if c.operation == "add_node"]
    stalled = condition(fake_kube.last("harpernodes", "n3"), "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "NotHarper" and "spec.url" in stalled["message"]
    assert condition(fake_kube.last("harpernodes", "n1"), "Ready")["status"] == "True"  # A and B go on


# --- Guarantee 2: no restart loops, no lost intent --------------------------------------------------------------


async def test_upper_case_route_restarts_each_member_once_one_at_a_time(fleet, fake_kube):
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    body, members = cluster_body(routes=[{"hostname": "Route-Host.Example", "port": 9933}]), nodes(A, B, C)
    per_round = []
    for _ in range(8):
        before = len([c for c in fleet.calls if c.operation == "restart"])
        await r.reconcile(body, members)
        body["status"] = fake_kube.last("harperclusters", "c")
        per_round.append(len([c for c in fleet.calls if c.operation == "restart"]) - before)
        clock.now += 30
    restarted = [c.node for c in fleet.calls if c.operation == "restart"]
    assert sorted(restarted) == [A, B, C], restarted
    assert max(per_round) == 1
    assert condition(fake_kube.last("harperclusters", "c"), "Ready")["status"] == "True"


async def test_a_restart_that_does_not_take_effect_stalls_instead_of_looping(fleet, fake_kube):
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    fleet.model.restart = lambda on: None  # Harper comes back without loading the routes
    body, members = cluster_body(routes=[{"hostname": "r.example", "port": 9933}]), nodes(A)
    for _ in range(4):
        await r.reconcile(body, members)
        body["status"] = fake_kube.last("harperclusters", "c")
        clock.now += 10
    assert len([c for c in fleet.calls if c.operation == "restart"]) == 1
    cluster = fake_kube.last("harperclusters", "c")
    assert condition(cluster, "Stalled")["reason"] == "RestartLoop"


async def test_an_owed_restart_survives_a_round_cut_short(fleet, fake_kube):
    r, _ = reconciler(fleet)
    subs = [{"database": "data", "table": "a", "subscribe": True, "publish": True}]
    body, members = cluster_body(), [node_body("n1", A), node_body("n2", B, subscriptions=subs)]
    await converge(r, body, members, fake_kube)
    restarts_before = len([c for c in fleet.calls if c.operation == "restart"])
    members[1] = node_body("n2", B, subscriptions=[{**subs[0], "table": "b"}])
    writes = []

    def stop_after_first_write() -> bool:
        writes.append(1)
        return len([c for c in fleet.writes() if c.operation != "restart"]) > 0 and len(writes) > 1

    fleet.calls.clear()
    await r.reconcile(body, members, stopped=stop_after_first_write)
    assert [c.operation for c in fleet.writes()] == ["remove_node"]
    owed = [p for p in fake_kube.patches if p[0] == "harperclusters" and p[2].get("owedRestarts")]
    assert owed and owed[0][2]["owedRestarts"] == [{"node": B, "reason": "apply the new subscription list"}]
    body["status"] = fake_kube.last("harperclusters", "c")
    r2, _ = reconciler(fleet)  # a new operator process: only the status remembers
    await converge(r2, body, members, fake_kube)
    assert len([c for c in fleet.calls if c.operation == "restart" and c.node == B]) == 1
    assert fake_kube.last("harperclusters", "c").get("owedRestarts") == []
    assert restarts_before == 0


async def test_paused_writes_nothing(fleet, fake_kube):
    r, _ = reconciler(fleet)
    body = cluster_body(annotations={"harperoperator.dev/paused": "true"})
    await r.reconcile(body, nodes(A, B))
    assert fleet.writes() == []


# --- Property: reconcile never raises for any single member's bad input or answer -------------------------------

HOSTILE_ANSWERS = st.sampled_from([
    RecursionError("maximum recursion depth exceeded"), ValueError("bad"), KeyError("k"), TypeError("t"),
    AttributeError("a"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
    UnexpectedAnswerError("x", 200, "answer has an unexpected shape"), TransientHarperError("x", None, "reset"),
    AuthenticationError("x", 401, "Login failed"), RequestValidationError("x", 400, "no")])
HOSTILE_SPECS = st.sampled_from([
    {"operationsUrl": "https://ops@127.0.0.21:9925"}, {"url": "wss://127.0.0.21:99999"}, {"url": "wss://[::1"},
    {"operationsUrl": "ftp://x"}, {"hostname": ""}, {"hostname": 5}, {"url": None}, {"shard": "x"},
    {"credentials": {"secretRef": {"name": "missing"}}}, {"credentials": {"secretRef": {"name": "binary"}}},
    {"credentials": {"secretRef": {"name": "unlabelled"}}}, {"tls": {"caSecretRef": {"name": "garbage"}}},
    {"subscriptions": "all"}, {"clusterRef": None}, {"url": "wss://" + "x" * 600}, {"hostname": A},
    {"operationsUrl": "http://[::1]:9925"}, {"url": "ws://127.0.0.21:9933"}, {"deletionPolicy": 3}])


@settings(max_examples=80, deadline=None)
@given(answer=st.one_of(st.none(), HOSTILE_ANSWERS), spec=st.one_of(st.none(), HOSTILE_SPECS),
       operation=st.sampled_from(["cluster_status", "routes", "add_node", "remove_node", "update_node", "restart"]))
def test_reconcile_never_raises_for_one_members_bad_input_or_answer(answer, spec, operation):
    bad_ip = "127.0.0.21"
    fleet = FakeFleet.of(A, B, C, bad_ip)
    k = FakeKube(secrets={"admin": admin_secret(), "binary": (True, {"username": "u", "password": None}),
                          "unlabelled": (False, {}), "garbage": (True, {"ca.crt": "x"})})
    if answer is not None:
        fleet.failures[(bad_ip, operation)] = answer
    bad = node_body("bad", bad_ip)
    bad["spec"].update(spec or {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kube, "read_secret", k.read_secret)
        mp.setattr(kube, "patch_status", k.patch_status)
        mp.setattr(observe, "probe_replication", fleet.probe)
        r, _ = reconciler(fleet)
        loop = asyncio.new_event_loop()
        try:
            for _ in range(3):
                loop.run_until_complete(r.reconcile(cluster_body(), nodes(A, B, C) + [bad]))
        finally:
            loop.close()
    for name in ("n1", "n2", "n3", "bad"):
        assert k.last("harpernodes", name)["observedGeneration"] == 1  # every status written
    assert k.last("harperclusters", "c")["readyNodes"].endswith("/4")
    good = (A, B, C)
    assert all(fleet.model.rec(x, y) is not None for x in good for y in good if x != y), "the good mesh formed"
    assert PASSWORD not in str(k.patches)


async def test_a_round_does_not_wait_out_the_verify_timeout_for_restarts_still_owed(fleet, fake_kube):
    """A routes change: every member needs a restart, and the budget makes one a round. The round that made one ends
    once the mesh is whole again: waiting does not make the others' restarts (seen on the node: the members were
    restarted 30 s apart, the verify timeout)."""
    import time
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    r.verify_timeout = 30
    body["spec"]["routes"] = [{"hostname": "r.example", "port": 9933}]
    for made in (1, 2, 3):
        started = time.monotonic()
        await r.reconcile(body, members)
        body["status"] = fake_kube.last("harperclusters", "c")
        assert time.monotonic() - started < 5, "the round waited for restarts it did not make"
        assert len([c for c in fleet.calls if c.operation == "restart"]) == made
        clock.now += 15
    result = await r.reconcile(body, members)
    assert result.converged


async def test_a_round_whose_write_failed_does_not_wait_out_the_verify_timeout(fleet, fake_kube):
    """Waiting does not complete a failed write: the round looks once and ends (the next one retries)."""
    import time
    r, _ = reconciler(fleet)
    r.verify_timeout = 30
    fleet.refuse_joining(C)
    started = time.monotonic()
    result = await r.reconcile(cluster_body(), nodes(A, B, C))
    assert not result.converged and time.monotonic() - started < 5


async def test_a_wiped_node_is_not_joined_while_restarts_owed_for_it_are_pending(fleet, fake_kube):
    """Its peers must forget its old CA first (docs/harper-semantics.md, section 9): the owed restarts in status
    say which node waits, for a process that starts with them on record."""
    from harper_operator.reconcile.plan import forget_ca_reason
    r, _ = reconciler(fleet)
    body = cluster_body()
    await converge(r, body, nodes(A, B), fake_kube)
    body["status"] = {**(body.get("status") or {}), "owedRestarts": [{"node": B, "reason": forget_ca_reason(C)}]}
    fleet.calls.clear()
    fleet.model.stop(B)  # down: its owed restart waits, and so does the join
    fresh, _ = reconciler(fleet)
    await fresh.reconcile(body, nodes(A, B, C))
    assert not [c for c in fleet.writes() if c.operation == "add_node"]
    fleet.model.start(B)
    await converge(fresh, body, nodes(A, B, C), fake_kube)
    writes = [(c.operation, c.node) for c in fleet.writes() if c.operation in ("add_node", "restart")]
    assert writes[0] == ("restart", B) and ("add_node", A) in writes, writes


async def test_a_wiped_nodes_join_waits_for_every_owed_restart_while_status_lags(fake_kube, monkeypatch):
    """The joins wait on the restart budget's own memory, not on the status the watch brings: in CI the API server
    was down when the owed restarts were booked, the rounds that followed saw a status without them, and the wiped
    member joined between its peers' restarts. The pairs made before a peer's restart stayed half-made for good."""
    from harper_model import HarperModel
    D = "127.0.0.14"
    fleet = FakeFleet(HarperModel([A, B, C, D], cas=True))
    monkeypatch.setattr(observe, "probe_replication", fleet.probe)
    r, _ = reconciler(fleet)
    body = cluster_body()
    members = nodes(A, B, C, D)
    assert (await converge(r, body, members, fake_kube)).converged
    stale = copy.deepcopy(body["status"])  # what every later round is given: no owed restart on record
    fleet.model.wipe(D)
    fleet.calls.clear()
    for _ in range(10):
        body["status"] = copy.deepcopy(stale)
        result = await r.reconcile(body, members)
        if result.converged:
            break
    writes = [(c.operation, c.node, c.detail) for c in fleet.writes()]
    restarts = [i for i, w in enumerate(writes) if w[0] == "restart"]
    joins = [i for i, w in enumerate(writes) if w[0] == "add_node" and D in (w[1], w[2])]
    assert sorted(writes[i][1] for i in restarts) == [A, B, C], writes
    assert joins and min(joins) > max(restarts), writes
    assert result.converged


async def test_an_owed_restart_of_a_member_whose_secret_cannot_be_read_waits(fleet, fake_kube):
    """A member not read this round (its Secret read failed: the API server down) has no client: its owed restart
    stays owed rather than failing, and no other member is restarted while it may be down."""
    from harper_operator.kube import ApiException
    r, _ = reconciler(fleet)
    body = cluster_body()
    await converge(r, body, nodes(A, B, C), fake_kube)
    fake_kube.secrets["b-admin"] = admin_secret()
    owed = [{"node": B, "reason": "apply the new subscription list"},
            {"node": C, "reason": "apply the new subscription list"}]
    body["status"] = {**body["status"], "owedRestarts": owed}
    members = [node_body("n1", A), node_body("n2", B, credentials={"secretRef": {"name": "b-admin"}}),
               node_body("n3", C)]
    fake_kube.fail_secret["b-admin"] = ApiException(500, "Internal Server Error")
    fresh, events = reconciler(fleet)
    fleet.calls.clear()
    await fresh.reconcile(body, members)
    assert not [c for c in fleet.writes() if c.operation == "restart"], fleet.writes()
    assert not [e for e in events if e[1] == "RestartFailed"], events
    assert fake_kube.last("harperclusters", "c")["owedRestarts"] == owed
    del fake_kube.fail_secret["b-admin"]
    for _ in range(3):
        await fresh.reconcile(body, members)
    assert sorted(c.node for c in fleet.writes() if c.operation == "restart") == [B, C]


async def test_a_restart_still_to_come_keeps_the_cluster_from_ready(fleet, fake_kube):
    """Routes on disk that the process loads only at its next start: not Ready (RestartPending) until then."""
    r, _ = reconciler(fleet)
    # restartPolicy Never: the restart is the user's, so the state in between lasts
    body, members = cluster_body(routes=[{"hostname": "r.example", "port": 9933}], restartPolicy="Never"), nodes(A)
    for _ in range(2):
        await r.reconcile(body, members)
        body["status"] = fake_kube.last("harperclusters", "c")
    cluster = fake_kube.last("harperclusters", "c")
    assert cluster["pendingRestart"], cluster
    assert condition(cluster, "Ready")["status"] == "False" and condition(cluster, "Ready")["reason"] == "RestartPending"
    assert condition(cluster, "Reconciling")["status"] == "True"


def test_fresh_work_is_a_write_the_round_did_not_plan():
    """The verify loop stops waiting when a new write becomes possible (a pod that began to answer)."""
    from harper_operator.controller.loop import _fresh
    from harper_operator.reconcile.plan import RemoveNode, Restart
    done = [RemoveNode(A, "ghost")]
    assert not _fresh([RemoveNode(A, "ghost")], done)  # still showing: waiting may help
    assert not _fresh([Restart(B, "reconnect to its peers", settle=True)], done)  # the budget decides restarts
    assert _fresh([RemoveNode(A, "ghost"), RemoveNode(A, "other")], done)


def test_the_verify_loop_looks_often_just_after_its_writes_and_less_as_more_clusters_verify():
    from harper_operator.controller.loop import VERIFY_POLL_FAST, VERIFY_POLL_MAX, verify_delay
    assert verify_delay(0.0, 4) == VERIFY_POLL_FAST == 0.1  # a mesh 0.65 s after the writes is seen by 0.7 s
    assert verify_delay(5.0, 4) == VERIFY_POLL_MAX
    assert verify_delay(0.0, 40) == pytest.approx(0.2)  # 40 members verifying: 200 reads a second between them
    assert verify_delay(0.0, 4_000) == VERIFY_POLL_MAX  # never slower than before this pace existed


async def test_a_verify_counts_its_members_while_it_runs_and_releases_them_however_it_ends(fleet, fake_kube):
    from harper_operator.controller import loop
    r, _ = reconciler(fleet)
    r.verify_timeout = 0.3
    seen = []
    looks = r._look_all

    async def look_all(m):
        seen.append(loop._verifying["members"])
        return await looks(m)
    r._look_all = look_all
    fleet.model.stop(C)  # never meshes: the verify runs to its timeout
    await r.reconcile(cluster_body(), nodes(A, B, C))
    assert max(seen) == 3 and loop._verifying["members"] == 0


async def test_a_link_coming_up_one_end_first_is_waited_for_not_taken_for_a_restart(fleet, fake_kube):
    """While Harper meshes, a link shows up at one end first, which is also how a member that needs a restart
    looks (`reconnect`). Within MESHING of its writes the verify loop keeps looking, so the round ends Ready
    (bench/converge.py: it ended at such a look, not Ready, and Ready waited 2 to 5 s for the next round)."""
    from dataclasses import replace
    r, _ = reconciler(fleet)
    r.verify_timeout = 5
    transient = {"looks": 3}
    observe_node = fleet.model.observe_node

    def one_end_first(name):
        seen = observe_node(name)
        if name == A and B in seen.peers and transient["looks"] > 0:
            transient["looks"] -= 1
            seen = replace(seen, peers={**seen.peers, B: replace(seen.peers[B], connected=False)})
        return seen
    fleet.model.observe_node = one_end_first
    result = await r.reconcile(cluster_body(), nodes(A, B, C))
    assert transient["looks"] == 0 and result.converged


async def test_new_members_during_the_verify_end_it_for_the_next_round(fleet, fake_kube):
    """A `kubectl apply` creates HarperNodes one by one: a round that saw only the first ones must not wait out
    their mesh before the next round joins the rest. New members end its verify at the next look."""
    r, _ = reconciler(fleet)
    r.verify_timeout = 5
    looks = []
    look_all = r._look_all

    async def counted(m):
        looks.append(len(m.members))
        return await look_all(m)
    r._look_all = counted
    fleet.model.stop(C)  # the verify would wait for C until its timeout
    result = await r.reconcile(cluster_body(), nodes(A, B, C), members_changed=lambda: True)
    assert looks == [3, 3] and result.again  # the round's look, one verify look, and the next round is due at once


# --- Data safety (docs/safety.md) ----------------------------------------------------------------------------------


def leaving(host: str, *, out: bool = True):
    from harper_operator.controller.provision import PodView
    return PodView(replicas=3, selector="x", leaving=frozenset({host}),
                   out_of_service=frozenset({host}) if out else frozenset())


async def test_a_leaving_member_is_proven_drained_only_when_every_write_it_holds_is_on_the_others(fleet, fake_kube):
    """S1: out of the client Service first; then every entry of its audit log after what the survivors received
    from it must be held by every survivor, in two passing looks QUIET seconds apart."""
    from harper_operator.reconcile.drain import QUIET
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    result = await r.reconcile(body, members, pods=leaving(C, out=False))
    assert result.drained == {} and result.drain_waits == {C: f"taking {C} out of the client Service first"}
    # A and B received C's writes up to version 5; C wrote k2 at 7 (cut off, say), and relayed A's k9 at 6.
    fleet.sockets.update({(A, C): {"lastReceivedVersion": 5.0}, (B, C): {"lastReceivedVersion": 5.0}})
    fleet.audit[C] = [("t", "k1", 5.0, "upsert"), ("t", "k9", 6.0, "upsert"), ("t", "k2", 7.0, "upsert")]
    fleet.held.update({(n, "t", k): v for n in (A, B) for k, v in (("k1", 5.0), ("k9", 6.0))})
    result = await r.reconcile(body, members, pods=leaving(C))
    assert result.drain_waits == {C: f"{A} does not hold the write of data.t 'k2' (version 7.000) that {C} has"}
    reads = [c.detail for c in fleet.calls if c.operation == "read_audit_log"]
    assert reads[-1][:2] == ("data", "u") and reads[-2][:2] == ("data", "t") and 5.0 < reads[-1][2] < 5.0001
    fleet.held.update({(A, "t", "k2"): 7.0, (B, "t", "k2"): 8.0})  # B has a newer version still: as good
    result = await r.reconcile(body, members, pods=leaving(C))
    assert not result.drained and "confirming again" in result.drain_waits[C] and result.restart_due == QUIET
    clock.now += QUIET
    fleet.audit[C].append(("t", "k3", 9.0, "delete"))  # a request still in flight at the first look
    fleet.held[(A, "t", "k3")] = 3.0  # A still holds what C deleted
    assert not (await r.reconcile(body, members, pods=leaving(C))).drained
    del fleet.held[(A, "t", "k3")]
    assert not (await r.reconcile(body, members, pods=leaving(C))).drained, "a failed look starts the window again"
    clock.now += QUIET
    result = await r.reconcile(body, members, pods=leaving(C))
    assert result.drained == {C: {A, B}} and result.drain_waits == {}  # with the members it covered
    assert not [c for c in fleet.writes() if c.operation == "remove_node"], "the proof itself writes nothing"


async def test_a_leaving_member_whose_log_holds_more_than_a_read_is_paged_not_held_for_ever(fleet, fake_kube):
    """A member that received more writes than one read_audit_log answers since its own last write (found by the
    model-level tests: 1,000 writes held a scale-down for ever): the look splits the range by audit key."""
    from harper_operator.reconcile import drain as drain_module
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    fleet.sockets.update({(A, C): {"lastReceivedVersion": 5.0}, (B, C): {"lastReceivedVersion": 5.0}})
    now_ms = clock.now * 1000  # audit keys are the member's clock in ms
    fleet.audit[C] = [("t", f"k{i}", now_ms - 5000 + i, "upsert") for i in range(25)]
    fleet.held.update({(n, "t", f"k{i}"): now_ms for n in (A, B) for i in range(25)})
    import harper_operator.controller.leaving as leaving_module
    for module in (drain_module, leaving_module):
        setattr(module, "AUDIT_LIMIT", 4)
    try:
        await r.reconcile(body, members, pods=leaving(C))
        clock.now += 3
        result = await r.reconcile(body, members, pods=leaving(C))
        assert result.drained == {C: {A, B}}, result.drain_waits
        reads = [c for c in fleet.calls if c.operation == "read_audit_log" and c.detail[1] == "t"]
        assert len(reads) > 2 * 7  # every look paged (25 entries, 4 a read)
        fleet.audit[C] += [("t", f"j{i}", now_ms - 4000 + i, "upsert") for i in range(400)]  # more than 64 reads
        fleet.held.update({(n, "t", f"j{i}"): now_ms for n in (A, B) for i in range(400)})
        result = await r.reconcile(body, members, pods=leaving(C))
        assert not result.drained and "reads of its audit log hold" in result.drain_waits[C]
    finally:
        for module in (drain_module, leaving_module):
            setattr(module, "AUDIT_LIMIT", 1000)


async def test_a_leaving_member_that_does_not_answer_or_whose_log_cannot_be_read_is_never_proven(fleet, fake_kube):
    from harper_operator.harper.errors import UnexpectedAnswerError
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    fleet.failures[(C, "read_audit_log")] = UnexpectedAnswerError("read_audit_log", 200, "not a list", url="x")
    for _ in range(3):
        result = await r.reconcile(body, members, pods=leaving(C))
        clock.now += 5
    assert not result.drained and result.drain_waits[C].startswith(f"reading {C}'s audit log failed")
    del fleet.failures[(C, "read_audit_log")]
    fleet.model.stop(C)
    for _ in range(3):
        result = await r.reconcile(body, members, pods=leaving(C))
        clock.now += 5
    assert not result.drained and "does not answer" in result.drain_waits[C]


async def test_a_hibernated_cluster_asks_harper_nothing_and_says_so(fleet, fake_kube):
    """S2: replicas 0 is hibernation: no Harper call, Ready=True with reason Hibernated once every pod stopped,
    members Ready=False Hibernated, owed restarts kept for the wake-up."""
    from harper_operator.controller.provision import PodView
    from harper_operator.reconcile.problems import Problem
    r, _ = reconciler(fleet)
    owed = [{"node": B, "reason": "load the routes"}]
    body, members = cluster_body(status={"owedRestarts": owed}), nodes(A, B, C)
    fleet.calls.clear()
    going = PodView(hibernating=True, replicas=1, selector="x",
                    problem=Problem("Hibernating", "hibernating: waiting for 1 pod(s) to stop", permanent=False))
    result = await r.reconcile(body, members, pods=going)
    assert fleet.calls == [] and result.hibernated and not result.converged
    assert condition(fake_kube.last("harperclusters", "c"), "Reconciling")["reason"] == "Hibernating"
    result = await r.reconcile(body, members, pods=PodView(hibernating=True, hibernated=True, replicas=0,
                                                           selector="x"))
    status = fake_kube.last("harperclusters", "c")
    assert fleet.calls == [] and result.converged and result.hibernated
    assert condition(status, "Ready")["status"] == "True" and condition(status, "Ready")["reason"] == "Hibernated"
    assert condition(status, "Reconciling")["status"] == "False" and status["readyNodes"] == "0/3"
    assert status["owedRestarts"] == owed
    node = fake_kube.last("harpernodes", "n1")
    assert condition(node, "Ready")["status"] == "False" and condition(node, "Ready")["reason"] == "Hibernated"
    assert condition(node, "Stalled")["status"] == "False"


async def test_a_failed_secret_read_forgets_no_owed_restart_or_cooldown(fleet, fake_kube):
    """S6: one Secret read that fails (an API 500) holds the members that need it; what the budget owes them stays
    in the status for the next round."""
    from harper_operator.kube import ApiException
    r, _ = reconciler(fleet)
    owed = [{"node": B, "reason": "apply the new subscription list"}]
    done = [{"node": A, "reason": "load the routes", "at": Clock().now - 10}]
    body, members = cluster_body(status={"owedRestarts": owed, "lastRestarts": done}), nodes(A, B, C)
    fake_kube.fail_secret["admin"] = ApiException(500, "Internal Server Error")
    await r.reconcile(body, members)
    status = fake_kube.last("harperclusters", "c")
    assert status["owedRestarts"] == owed and status["lastRestarts"] == done


async def test_a_ghost_record_waits_while_a_declared_member_has_not_reported_its_name(fleet, fake_kube):
    """S4: a member whose Harper name differs from spec.hostname, down for a round, may own any unknown record."""
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B)
    await converge(r, body, members, fake_kube)
    fleet.model.inject(A, "other-name", "wss://elsewhere:9933")  # the record of a member not read yet
    late = node_body("n9", "declared-name", host="127.0.0.19")  # a member that never answered in this process
    await r.reconcile(body, [*members, late])
    assert not [c for c in fleet.calls if c.operation == "remove_node"]
    await r.reconcile(body, members)  # everyone declared has answered: now it is a ghost
    assert [c.detail for c in fleet.calls if c.operation == "remove_node"] == ["other-name"]


async def test_a_pod_that_is_not_ready_holds_every_restart(fleet, fake_kube):
    """S3: one member down at a time, whatever took it down: a routes restart waits while another pod is not Ready,
    and goes once it is back."""
    from harper_operator.controller.provision import PodView
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    body, members = cluster_body(routes=[{"hostname": "r.example", "port": 9933}]), nodes(A, B, C)
    down = PodView(replicas=3, selector="x", not_ready=frozenset({C}))
    for _ in range(2):
        await r.reconcile(body, members, pods=down)
        body["status"] = fake_kube.last("harperclusters", "c")
        clock.now += 30
    assert not [c for c in fleet.calls if c.operation == "restart"]
    await r.reconcile(body, members, pods=PodView(replicas=3, selector="x"))
    assert len([c for c in fleet.calls if c.operation == "restart"]) == 1


def restarts_made(fleet) -> list[str]:
    return [c.node for c in fleet.calls if c.operation == "restart"]


@pytest.mark.parametrize("watch", ["current", "lagging"])
async def test_a_restart_of_a_pod_that_does_not_take_effect_is_a_restart_loop(fleet, fake_kube, watch):
    """S3: a provisioned member restarts in place (Harper's restart operation: the pod and its address stay). A need
    that persists ends in RestartLoop after one restart of each member, one member at a time. `lagging`: the
    daemon's body comes from the watch and may never show the status this process wrote; the restart ledger is the
    process's own, so a lagging body neither forgets a restart of ours nor runs an owed one again."""
    from harper_operator.controller.provision import PodView
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    fleet.model.restart = lambda on: None  # Harper comes back without loading the routes
    uids = {h: f"{h}-0" for h in (A, B, C)}
    body, members = cluster_body(routes=[{"hostname": "r.example", "port": 9933}]), nodes(A, B, C)
    for _ in range(8):  # 105 s, within the 120 s cooldown (after it the operator tries once more, as it says)
        await r.reconcile(body, members, pods=PodView(replicas=3, selector="x", pods=dict(uids)))
        if watch == "current":
            body["status"] = fake_kube.last("harperclusters", "c")
        clock.now += 15
    assert sorted(restarts_made(fleet)) == [A, B, C], restarts_made(fleet)
    assert condition(fake_kube.last("harperclusters", "c"), "Stalled")["reason"] == "RestartLoop"


async def restarted_before(fleet, fake_kube, clock: Clock, ago: dict[str, float]):
    """A converged cluster A, B, C whose status says each of `ago` was restarted to reconnect that many seconds
    ago, and a new operator process (its reconciler), which knows those restarts from the status alone."""
    body, members = cluster_body(), nodes(A, B, C)
    await converge(reconciler(fleet, clock)[0], body, members, fake_kube)
    body["status"] = {**body["status"], "lastRestarts": [
        {"node": n, "reason": "reconnect to its peers", "at": clock.now - t} for n, t in ago.items()]}
    return reconciler(fleet, clock)[0], body, members


@pytest.mark.parametrize("ago", [{A: 30}, {A: 20, C: 30}], ids=["survivor-restarted", "replaced-one-too"])
async def test_a_reconnect_need_after_another_pod_was_replaced_is_a_new_need_not_a_loop(fleet, fake_kube, ago):
    """A roll, a crash or a pod deleted by hand gives a peer a new address: a survivor restarted just before may
    need to reconnect again, and that is admitted, not called RestartLoop (restarts.admit's changed_at: a new pod
    uid that no restart of ours made). Also when the replaced member was itself restarted to reconnect before: that
    was Harper's own restart, the same pod, so its next new pod is the roll's (seen on the node: C restarted to
    reconnect, then rolled 37 s later; A's next reconnect was called RestartLoop)."""
    from harper_operator.controller.provision import PodView
    clock = Clock()
    r, body, members = await restarted_before(fleet, fake_kube, clock, ago)
    fleet.model.remove_node(B, A)  # A's own sockets are down: it needs a reconnect restart
    await r.reconcile(body, members, pods=PodView(replicas=3, selector="x", pods={A: "a1", B: "b1", C: "c1"}))
    clock.now += 15
    await r.reconcile(body, members, pods=PodView(replicas=3, selector="x", pods={A: "a1", B: "b1", C: "c2"}))
    cluster = fake_kube.last("harperclusters", "c")
    assert condition(cluster, "Stalled")["status"] == "False", cluster["conditions"]


async def test_a_reconnect_need_after_an_external_member_came_back_is_a_new_need_not_a_loop(fleet, fake_kube):
    """An external cluster has no pods to watch: a member that stops answering and answers again (its pod deleted
    by hand, a crash) may be back at a new address, so a survivor restarted just before may need to reconnect again
    (seen on the node: the chart test's pod deleted 25 s after a survivor's reconnect restart, and the survivor's
    next need was called RestartLoop, Stalled, the cluster never Ready)."""
    clock = Clock()
    r, body, members = await restarted_before(fleet, fake_kube, clock, {A: 30})
    fleet.model.stop(C)
    await r.reconcile(body, members)
    clock.now += 5
    fleet.model.start(C)
    fleet.model.remove_node(B, A)  # A's own sockets are down: it needs a reconnect restart
    for _ in range(3):
        await r.reconcile(body, members)
        clock.now += 10
    cluster = fake_kube.last("harperclusters", "c")
    assert condition(cluster, "Stalled")["status"] == "False", cluster["conditions"]
    assert [c.node for c in fleet.calls if c.operation == "restart"] == [A]


async def test_a_member_back_from_the_operators_own_restart_is_still_a_loop(fleet, fake_kube):
    """The other side: the first return of a member the operator restarted is that restart's, no evidence of a
    change; its need right after is a loop."""
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    fleet.model.restart = lambda on: None  # Harper comes back without loading the routes
    body, members = cluster_body(routes=[{"hostname": "r.example", "port": 9933}]), nodes(A)
    for i in range(4):
        await r.reconcile(body, members)
        body["status"] = fake_kube.last("harperclusters", "c")
        if i == 0:
            fleet.model.stop(A)  # the restart takes it down for a round
        elif i == 1:
            fleet.model.nodes[A].up = True  # back, without the routes (start() is the patched restart)
        clock.now += 10
    assert len([c for c in fleet.calls if c.operation == "restart"]) == 1
    assert condition(fake_kube.last("harperclusters", "c"), "Stalled")["reason"] == "RestartLoop"


async def test_a_record_gossip_never_brought_is_mended_after_its_grace_not_before(fleet, fake_kube):
    """Issue 21: a member that lacks a joined member's record (Harper's gossip lost it) gets one add_node ON it,
    once the hole has lasted MEND_GRACE: a join shows the same hole for a moment, and writes nothing then."""
    from harper_operator.controller.loop import MEND_GRACE
    clock = Clock()
    r, events = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    fleet.model.lose_gossip(B, C)
    fleet.calls.clear()
    result = await r.reconcile(body, members)
    assert fleet.writes() == [] and not result.converged
    clock.now += MEND_GRACE / 2
    await r.reconcile(body, members)
    assert fleet.writes() == []
    clock.now += MEND_GRACE / 2
    result = await r.reconcile(body, members)
    assert [(c.node, c.operation, c.detail) for c in fleet.writes()] == [(B, "add_node", C)]
    assert result.converged
    assert any("gossip never brought it" in e[2] for e in events if e[1] == "AddNode")


async def test_each_round_retires_the_clients_of_members_that_left(fleet, fake_kube):
    """The pool keeps only the clients of this round's members: a HarperNode deleted (or new credentials) leaves
    no client open for the life of the process."""
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    assert r.pool.kept == [f"http://{h}:9925" for h in (A, B, C)]
    await r.reconcile(body, members[:2])
    assert r.pool.kept == [f"http://{h}:9925" for h in (A, B)]


def deleting(members: list[dict], host: str) -> list[dict]:
    out = copy.deepcopy(members)
    for m in out:
        if m["spec"]["hostname"] == host:
            m["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    return out


async def test_an_external_member_being_deleted_is_proven_like_a_leaving_pod(fleet, fake_kube):
    """S1 for a HarperNode deleted by hand: its finalizer waits for this proof. No client Service step (its clients
    are not the operator's to turn away); its writes must be on every member that stays, in two looks."""
    from harper_operator.reconcile.drain import QUIET
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    fleet.sockets.update({(A, C): {"lastReceivedVersion": 5.0}, (B, C): {"lastReceivedVersion": 5.0}})
    fleet.audit[C] = [("t", "k1", 5.0, "upsert"), ("t", "k2", 7.0, "upsert")]
    fleet.held.update({(n, "t", "k1"): 5.0 for n in (A, B)})
    going = deleting(members, C)
    result = await r.reconcile(body, going)
    assert result.drain_waits == {C: f"{A} does not hold the write of data.t 'k2' (version 7.000) that {C} has"}
    result = await r.reconcile(body, going)  # the status says why the deletion waits, naming the member
    reconciling = condition(fake_kube.last("harperclusters", "c"), "Reconciling")
    assert reconciling["reason"] == "WaitingForReplication" and C in reconciling["message"], reconciling
    fleet.held.update({(n, "t", "k2"): 7.0 for n in (A, B)})
    await r.reconcile(body, going)
    clock.now += QUIET
    result = await r.reconcile(body, going)
    assert result.drained == {C: {A, B}} and result.drain_waits == {}
    assert not [c for c in fleet.writes() if c.operation == "remove_node"], "the finalizer removes it, not the round"


async def test_a_member_being_deleted_that_no_member_lists_needs_no_proof_but_one_that_is_down_does(fleet, fake_kube):
    """Never joined (or removed by hand): nothing of the cluster's is on it alone. Listed but down: it waits."""
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B)
    await converge(r, body, members, fake_kube)
    stranger = node_body("n9", "127.0.0.19")  # no Harper answers there, and nobody lists it
    result = await r.reconcile(body, deleting(members + [stranger], "127.0.0.19"))
    assert result.drained == {"127.0.0.19": {A, B}}
    # A member refused for its own spec is never asked; one that cannot be asked for want of a Secret may list it.
    refused = node_body("n8", "127.0.0.18", url="wss://[1.2.3.4]:9933")
    assert (await r.reconcile(body, deleting(members + [stranger, refused], "127.0.0.19"))).drained
    kept = {"admin": fake_kube.secrets.pop("admin")}
    result = await r.reconcile(body, deleting(members + [stranger], "127.0.0.19"))
    waits = result.drain_waits["127.0.0.19"]
    assert not result.drained and waits.startswith(f"{A}, {B} to be asked whether they list 127.0.0.19"), waits
    fake_kube.secrets.update(kept)
    members = nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    fleet.model.stop(C)
    result = await r.reconcile(body, deleting(members, C))
    assert not result.drained and "does not answer" in result.drain_waits[C]


async def test_a_bad_member_being_deleted_waits_for_another_bad_member_and_names_it(fleet, fake_kube):
    """A member that never joined is a stranger only if every member that stays, and can be asked, says so: one held
    for a Secret of its own that does not work may list it. The wait names that member and its problem; deleting
    both lets both go (neither is listed by a member that answered)."""
    r, _ = reconciler(fleet)
    body, members = cluster_body(), nodes(A, B)
    await converge(r, body, members, fake_kube)
    fake_kube.secrets["broken"] = (True, {"username": "admin"})  # no password: the member cannot be asked
    broken = node_body("n7", "127.0.0.17", credentials={"secretRef": {"name": "broken"}})
    stranger = node_body("n9", "127.0.0.19", credentials={"secretRef": {"name": "missing"}})  # unreadable too
    result = await r.reconcile(body, deleting(members + [broken, stranger], "127.0.0.19"))
    waits = result.drain_waits["127.0.0.19"]
    assert not result.drained and waits.startswith("127.0.0.17 to be asked whether it lists 127.0.0.19 ("), waits
    assert "broken" in waits and "missing" in waits, waits
    both = deleting(deleting(members + [broken, stranger], "127.0.0.19"), "127.0.0.17")
    result = await r.reconcile(body, both)
    assert set(result.drained) == {"127.0.0.17", "127.0.0.19"}, result.drain_waits


@pytest.mark.parametrize("tick", [0.0, 0.001])
async def test_a_members_own_pod_replaced_by_a_roll_after_its_restart_is_a_new_need_not_a_loop(fleet, fake_kube, tick):
    """A roll that replaces a member's pod within the cooldown of its restart (a template change: its configuration
    may be new) makes a need after it a new one: seen on the node, a RestartLoop called after a roll with no restart
    for it at all. Meanwhile a pod absent for a round (deleted, not yet made again) keeps its last uid, so the
    replacement is still seen. `tick`: the clock moves between readings in one round; the round reads it once."""
    from harper_operator.controller.provision import PodView
    clock = Clock(tick)
    r, _ = reconciler(fleet, clock)
    fleet.model.restart = lambda on: None  # Harper comes back without loading the routes
    uids = {A: "a0"}
    body, members = cluster_body(routes=[{"hostname": "r.example", "port": 9933}]), nodes(A)

    async def round_(pods=None):
        await r.reconcile(body, members, pods=pods or PodView(replicas=1, selector="x", pods=dict(uids)))
        body["status"] = fake_kube.last("harperclusters", "c")
        clock.now += 15

    for _ in range(3):
        await round_()
    assert restarts_made(fleet) == [A] and condition(body["status"], "Stalled")["reason"] == "RestartLoop"
    await round_(PodView(replicas=1, selector="x", not_ready=frozenset({A}), pods={}))  # the roll deleted it
    uids[A] = "a-rolled"
    for _ in range(3):
        await round_()
    assert restarts_made(fleet) == [A, A], "the need the roll brought back gets its own restart"
    assert condition(body["status"], "Stalled")["reason"] == "RestartLoop", "and persists after it: a loop again"


async def test_a_restart_made_is_on_record_at_once_even_if_the_round_then_fails(fleet, fake_kube, monkeypatch):
    """The rest of a round after a restart (its verify) can take 30 s, and may fail: the restart is in the status and
    in the process's memory as soon as it ran. Otherwise the ledger still owes it, and it runs a second time for
    one need."""
    from harper_operator.controller.provision import PodView
    clock = Clock()
    r, _ = reconciler(fleet, clock)
    fleet.model.restart = lambda on: None  # Harper comes back without loading the routes
    uids = {A: "a0"}
    body, members = cluster_body(routes=[{"hostname": "r.example", "port": 9933}]), nodes(A)
    verify = r._verify

    async def failing_verify(*args, **kwargs):
        if restarts_made(fleet) == [A]:
            raise RuntimeError("the API server went away")
        return await verify(*args, **kwargs)

    monkeypatch.setattr(r, "_verify", failing_verify)
    with pytest.raises(RuntimeError):
        for _ in range(3):
            await r.reconcile(body, members, pods=PodView(replicas=1, selector="x", pods=dict(uids)))
            body["status"] = fake_kube.last("harperclusters", "c")
            clock.now += 15
    assert restarts_made(fleet) == [A]
    status = fake_kube.last("harperclusters", "c")
    assert [row["node"] for row in status["lastRestarts"]] == [A] and not status["owedRestarts"], status
    monkeypatch.setattr(r, "_verify", verify)
    for _ in range(3):
        await r.reconcile(body, members, pods=PodView(replicas=1, selector="x", pods=dict(uids)))
        body["status"] = fake_kube.last("harperclusters", "c")
        clock.now += 15
    assert restarts_made(fleet) == [A], "one restart for one need"
    assert condition(body["status"], "Stalled")["reason"] == "RestartLoop"


async def test_a_peer_that_cuts_a_wiped_members_first_join_is_restarted_after_a_grace(fake_kube):
    """docs/harper-semantics.md, section 9, the case no record shows: a member wiped and back under its name, whose
    peer still trusts its old CA in memory while no record of the old member is left. Its first join to that peer
    is cut (1006) every round; after REFUSED_JOIN_GRACE the peer is restarted, once, and the join goes through."""
    from harper_model import HarperModel

    from harper_operator.reconcile.restarts import REFUSED_JOIN_GRACE
    fleet = FakeFleet(HarperModel([A, B, C], cas=True))
    clock = Clock()
    r, events = reconciler(fleet, clock)
    old = fleet.model.nodes[C].ca
    fleet.model.wipe(C)
    fleet.model.nodes[A].trusted[C] = (old,)  # A met C before, and nothing A holds shows that CA any more
    subs = [{"database": "data", "table": "a", "subscribe": True, "publish": True}]
    body = cluster_body()
    members = [node_body("n1", A), node_body("n2", B), node_body("n3", C, subscriptions=subs)]
    refused_for = 0.0
    for _ in range(12):
        result = await r.reconcile(body, members)
        body["status"] = fake_kube.last("harperclusters", "c")
        if not [c for c in fleet.calls if c.operation == "restart"]:
            refused_for_now = [c for c in fleet.calls if c.operation == "add_node" and c.node == C]
            if refused_for_now:
                refused_for += 5
        if result.converged:
            break
        clock.now += 5
    restarts = [c.node for c in fleet.calls if c.operation == "restart"]
    assert restarts == [A], restarts
    assert refused_for >= REFUSED_JOIN_GRACE, "not before the grace"
    assert result.converged, body["status"]["conditions"]
    assert any("forget the old certificate authority of " + C in e[2] for e in events if e[1] == "Restart"), events


async def test_verify_false_is_a_warning_once_naming_what_it_leaves_open(fleet, fake_kube):
    r, events = reconciler(fleet)
    body = cluster_body()  # tls.verify false
    for _ in range(3):
        await r.reconcile(body, nodes(A, B))
    warned = [(kind, msg) for kind, reason, msg in events if reason == "TLSNotVerified"]
    assert len(warned) == 1 and warned[0][0] == "Warning"
    assert "super_user credentials" in warned[0][1] and "spec.tls.caSecretRef" in warned[0][1]
    verified, events = reconciler(fleet)
    await verified.reconcile(cluster_body(tls={"verify": True}), nodes(A, B))
    assert not [e for e in events if e[1] == "TLSNotVerified"]


def in_place_restarts(fleet, reads_files) -> list[str]:
    """The members restarted by Harper's restart operation; `reads_files(host)` is what the restarted Harper then
    reads from the files the kubelet rewrote."""
    restarted: list[str] = []
    original = fleet.model.restart

    def restart(on: str) -> None:
        restarted.append(on)
        reads_files(on)
        original(on)
    fleet.model.restart = restart
    return restarted


async def test_a_pod_that_keeps_presenting_an_old_certificate_is_restarted_after_the_grace(fleet, fake_kube,
                                                                                          monkeypatch):
    """Harper watches its certificate files but missed the second of two updates in a row on the node (one pod of
    three kept its old certificate). A provisioned member issued a certificate after it started, and still
    presenting another after restarts.CERTIFICATE_GRACE, is restarted in place (Harper's restart: the pod and its
    address stay, and Harper reads the files the kubelet rewrote), one member at a time; one seen presenting the new
    one is not asked again (FAKE presented serials: the handshake is the only fake)."""
    from harper_operator.controller import loop as loop_module
    from harper_operator.controller.provision import PodView
    from harper_operator.reconcile.restarts import CERTIFICATE_GRACE
    clock = Clock()
    r, events = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    presented = {A: 7, B: 1, C: 1}  # A already presents its new certificate (serial 7); B and C their old ones
    asked: list[set[str]] = []

    async def presented_serials(m, hosts, timeout=5.0):
        asked.append(set(hosts))
        return {h: presented[h] for h in hosts}

    monkeypatch.setattr(loop_module, "presented_serials", presented_serials)
    restarted = in_place_restarts(fleet, lambda host: presented.update({host: {B: 8, C: 9}[host]}))

    def pods() -> PodView:
        return PodView(replicas=3, selector="x", pods={h: f"{h}-0" for h in (A, B, C)},
                       renewed={h: serial for h, serial in {A: 7, B: 8, C: 9}.items() if h not in restarted})
    await r.reconcile(body, members, pods=pods())
    assert asked[-1] == {A, B, C} and restarted == []
    clock.now += CERTIFICATE_GRACE - 1
    await r.reconcile(body, members, pods=pods())
    assert asked[-1] == {B, C} and restarted == []  # A presented its own once: not asked again
    clock.now += 2
    await r.reconcile(body, members, pods=pods())
    assert len(restarted) == 1 and restarted[0] in (B, C)  # one at a time
    assert [m for _, reason, m in events if reason == "Restart"] == [
        f"restart {restarted[0]} (serve its renewed certificate)"], events


async def test_a_rollover_asks_each_member_whether_it_trusts_the_new_authority_and_restarts_one_that_does_not(
        fleet, fake_kube, monkeypatch):
    """During a rollover (PodView.authority) each running member's Harper is asked for the authorities it lists until
    it is seen listing the new one; one that still does not after restarts.CERTIFICATE_GRACE (it missed the rewritten
    file) is restarted in place, one at a time. What was seen goes to the provisioner (confirmed).
    FAKE listed authorities: list_certificates is the only fake."""
    from harper_operator.controller import loop as loop_module
    from harper_operator.controller.provision import PodView
    from harper_operator.reconcile.restarts import CERTIFICATE_GRACE
    clock = Clock()
    r, events = reconciler(fleet, clock)
    body, members = cluster_body(), nodes(A, B, C)
    await converge(r, body, members, fake_kube)
    new, old = 42, 41
    listed = {A: {old, new}, B: {old}, C: {old}}
    asked: list[set[str]] = []

    async def listed_authorities(m, pool, hosts):
        asked.append(set(hosts))
        return {h: frozenset(listed[h]) for h in hosts}

    monkeypatch.setattr(loop_module, "listed_authorities", listed_authorities)
    restarted = in_place_restarts(fleet, lambda host: listed.update({host: {new, old}}))

    def pods(authority: int | None = new) -> PodView:
        return PodView(replicas=3, selector="x", pods={h: f"{h}-0" for h in (A, B, C)}, authority=authority)
    await r.reconcile(body, members, pods=pods())
    assert asked[-1] == {A, B, C} and restarted == [] and r.confirmed.trusts == {A: new}
    listed[B] = {old, new}  # B read the rewritten file by itself
    clock.now += CERTIFICATE_GRACE - 1
    await r.reconcile(body, members, pods=pods())
    assert asked[-1] == {B, C} and restarted == [] and r.confirmed.trusts == {A: new, B: new}
    clock.now += 2
    await r.reconcile(body, members, pods=pods())
    assert restarted == [C]
    assert [m for _, reason, m in events if reason == "Restart"] == [
        f"restart {C} (trust the cluster's new certificate authority)"], events
    await r.reconcile(body, members, pods=pods())
    assert r.confirmed.trusts == {A: new, B: new, C: new}
    asked.clear()
    await r.reconcile(body, members, pods=pods(None))  # no rollover: nobody is asked
    assert asked == []
