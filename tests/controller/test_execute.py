"""execute(): the one core -> wire translation, and a failure stopping only what depends on it (FAKE fleet)."""

from __future__ import annotations

from fake_fleet import FakePool, admin_secret, cluster_body, node_body

from harper_operator.api import HarperClusterSpec
from harper_operator.controller.execute import execute, node_request, route_to_wire
from harper_operator.controller.members import SecretData, membership
from harper_operator.harper.errors import RequestValidationError, TransientHarperError
from harper_operator.reconcile.plan import AddNode, RemoveNode, Restart, SetRoutes, UpdateNode
from harper_operator.reconcile.topology import Route, Subscription

A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"


def members(*hosts, **spec):
    cluster = HarperClusterSpec.model_validate(cluster_body()["spec"])
    return membership(cluster, [node_body(f"n{h[-1]}", h, **spec) for h in hosts],
                      {"admin": SecretData(*admin_secret())}, namespace="ns")


async def run(fleet, plan, m, stopped=lambda: False):
    reported = []

    async def report(op, error):
        reported.append((op, error))

    return await execute(plan, m, FakePool(fleet), report, stopped), reported


async def test_a_failure_skips_only_what_involves_its_node(fleet):
    m = members(A, B, C)
    target = {n.name: n for n in m.desired.nodes}
    fleet.refuse_joining(B)
    plan = [AddNode(A, target[B]), AddNode(A, target[C]), UpdateNode(A, target[B]), Restart(C, "after C")]
    outcomes, reported = await run(fleet, plan, m)
    assert [(type(o.operation).__name__, o.error is not None, o.skipped) for o in outcomes] == [
        ("AddNode", True, False), ("AddNode", False, False), ("UpdateNode", False, True), ("Restart", False, False)]
    assert len(reported) == 3


async def test_a_restart_is_skipped_only_after_a_failed_call_on_that_node(fleet):
    """An add_node that failed AGAINST B leaves B's restart in place (for a wiped peer it is the cure); a write
    that failed ON B (a route it did not take) makes B's restart moot."""
    m = members(A, B, C)
    target = {n.name: n for n in m.desired.nodes}
    fleet.refuse_joining(B)
    fleet.failures[(C, "cluster_set_routes")] = RequestValidationError("cluster_set_routes", 400, "bad route")
    plan = [AddNode(A, target[B]), SetRoutes(C, (Route("r", 1),)), Restart(B, "forget"), Restart(C, "routes")]
    outcomes, _ = await run(fleet, plan, m)
    assert [(o.error is not None, o.skipped) for o in outcomes] == [(True, False), (True, False), (False, False),
                                                                     (False, True)]


async def test_an_unanswering_caller_gets_nothing_more_this_round(fleet):
    m = members(A, B, C)
    fleet.failures[(A, "remove_node")] = TransientHarperError("remove_node", None, "cannot connect")
    plan = [RemoveNode(A, "ghost"), SetRoutes(A, (Route("r", 1),)), SetRoutes(B, (Route("r", 1),))]
    outcomes, _ = await run(fleet, plan, m)
    assert [o.skipped for o in outcomes] == [False, True, False]


async def test_a_permanent_refusal_is_reported_as_such(fleet):
    m = members(A, B)
    fleet.failures[(A, "restart")] = RequestValidationError("restart", 400, "nope")
    outcomes, reported = await run(fleet, [Restart(A)], m)
    assert isinstance(outcomes[0].error, RequestValidationError) and reported[0][1] is outcomes[0].error


async def test_stopping_starts_nothing_new(fleet):
    m = members(A, B)
    calls = []
    outcomes, _ = await run(fleet, [Restart(A), Restart(B)], m, stopped=lambda: calls.append(1) or len(calls) > 1)
    assert [o.operation.on for o in outcomes] == [A]


async def test_an_unexpected_exception_becomes_that_operations_failure(fleet):
    m = members(A, B)
    fleet.failures[(A, "restart")] = KeyError("odd")
    outcomes, _ = await run(fleet, [Restart(A), Restart(B)], m)
    assert "KeyError" in str(outcomes[0].error) and outcomes[1].error is None


def test_requests_carry_the_target_members_own_credentials_and_wire_values():
    m = members(A, B, subscriptions=[{"database": "data", "table": "t", "subscribe": True, "publish": False}])
    target = m.desired.by_name()[B]
    wire = node_request(target, m).to_wire("add_node")
    assert wire["hostname"] == B and wire["url"] == f"wss://{B}:9933"
    assert wire["authorization"]["username"] == "admin"
    assert wire["subscriptions"] == [{"database": "data", "table": "t", "subscribe": True, "publish": False}]
    assert route_to_wire(Route("FD00::1", 9933)).url == "wss://[fd00::1]:9933"
    assert Subscription("d", None, True, True)  # core values stay free of wire shapes


async def test_every_restart_is_harpers_own_restart_operation(fleet):
    """Routes and subscriptions too: Harper's restart reads its configuration file again, and keeps a provisioned
    member's pod and address. A new pod would have a new address, which survivors may not reconnect to until the
    cluster DNS forgets the old one (docs/harper-semantics.md, section 15)."""
    from harper_operator.reconcile.plan import ROUTES_RESTART, SUBSCRIPTIONS_RESTART
    plan = [Restart(A, ROUTES_RESTART), Restart(B, SUBSCRIPTIONS_RESTART), Restart(C, "reconnect to its peers",
                                                                                   settle=True)]

    async def report(op, error):
        pass

    outcomes = await execute(plan, members(A, B, C), FakePool(fleet), report)
    assert all(o.error is None for o in outcomes)
    assert [(c.node, c.operation) for c in fleet.calls if c.operation == "restart"] == [
        (A, "restart"), (B, "restart"), (C, "restart")]


def test_certificate_restarts_wait_out_their_grace():
    from harper_operator.reconcile.restarts import restarts_for_unserved_certificates, restarts_for_untrusted_authority
    restarts = restarts_for_unserved_certificates([C, A, C])
    assert [(r.on, r.settle, r.grace) for r in restarts] == [(A, True, 150.0), (C, True, 150.0)]
    assert [(r.on, r.settle, r.grace) for r in restarts_for_untrusted_authority([A])] == [(A, True, 150.0)]
