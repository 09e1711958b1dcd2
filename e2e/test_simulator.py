"""The scale-benchmark SIMULATOR (e2e/simulator) driven by the operator's REAL client, probe, observe and execute.

No test bed: it uses none of e2e/conftest.py's fixtures and starts the simulator in-process (2 groups x 3 nodes) on
non-default ports, so a benchmark running on the same machine does not collide with it. What passes here is what
the benchmark relies on: the operator reads the simulator's answers as it reads Harper's.
"""

from __future__ import annotations

import aiohttp
import pytest

from e2e.simulator import Simulator
from harper_operator.api import HarperClusterSpec
from harper_operator.api.hosts import is_loopback
from harper_operator.controller.clients import ClientPool
from harper_operator.controller.execute import execute
from harper_operator.controller.members import Access, SecretData, membership
from harper_operator.controller.observe import look_all, observed
from harper_operator.harper import models as wire
from harper_operator.harper.client import HarperClient
from harper_operator.harper.errors import (AuthenticationError, OperationNotFoundError, PeerRejectedError,
                                           PeerUnreachableError, UnknownNodeError)
from harper_operator.harper.probe import probe_replication
from harper_operator.reconcile import Route, plan, pending_restart

PASSWORD = "simulated-s3cret"
PORTS = {"operations_port": 19925, "replication_port": 19933, "control_port": 19999}


@pytest.fixture
async def sim():
    async with Simulator([3, 3], password=PASSWORD, **PORTS) as running:
        yield running


def client(sim: Simulator, name: str, password: str = PASSWORD) -> HarperClient:
    return ClientPool().client(Access(sim.operations_url(name), "admin", password))


def join(sim: Simulator, name: str, password: str = PASSWORD) -> wire.NodeRequest:
    """What controller/execute.node_request sends."""
    return wire.NodeRequest(hostname=name, url=sim.replication_url(name), verify_tls=True,
                            authorization=wire.Authorization(username="admin", password=password))


async def stats(sim: Simulator) -> dict:
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.get(sim.control_url + "/stats") as answer:
            assert answer.status == 200
            return await answer.json()


async def test_layout_and_probe(sim):
    g0, g1 = sim.groups
    assert g0 == ["127.50.0.1", "127.50.0.2", "127.50.0.3"] and g1 == ["127.50.0.4", "127.50.0.5", "127.50.0.6"]
    assert all(is_loopback(n) for n in g0 + g1)  # so http:// and ws:// pass the operator's plaintext rule
    found = await probe_replication(sim.replication_url(g0[1]))
    assert found.reachable and found.subprotocol == wire.REPLICATION_SUBPROTOCOL, found.error
    nothing = await probe_replication(f"ws://127.50.0.7:{sim.replication_port}", timeout=2)
    assert not nothing.reachable
    http_only = await probe_replication(f"ws://{g0[1]}:{sim.operations_port}", timeout=2)
    assert not http_only.reachable and http_only.http_status == 404


async def test_add_gossip_remove_and_errors(sim):
    g0, g1 = sim.groups
    seed = client(sim, g0[0])
    status = await seed.cluster_status()
    assert status.node_name == g0[0] and status.connections == [] and status.url is None

    for peer in g0[1:]:
        done = await seed.add_node(join(sim, peer))
        assert done.url == sim.replication_url(peer) and done.node_name == peer

    for name in g0:  # the seed told both; gossip told them about each other
        status = await client(sim, name).cluster_status()
        others = sorted(set(g0) - {name})
        assert status.node_name == name and status.url == sim.replication_url(name)
        assert sorted(status.connected_peers) == others, status
        assert all(c.replicates is True and c.url == sim.replication_url(c.name) for c in status.connections)
    for name in g1:
        assert (await client(sim, name).cluster_status()).connections == []

    with pytest.raises(PeerUnreachableError):  # groups never meet
        await seed.add_node(join(sim, g1[0]))
    with pytest.raises(PeerRejectedError):  # a first join with the wrong password: the peer closes with 1008
        await client(sim, g1[1]).add_node(join(sim, g1[2], password="wrong-password"))

    assert (await seed.remove_node(g0[2])).startswith("Successfully removed")
    assert g0[2] not in (await seed.cluster_status()).peer_names
    with pytest.raises(UnknownNodeError):
        await seed.remove_node(g0[2])
    with pytest.raises(AuthenticationError):
        await client(sim, g0[0], password="wrong-password").cluster_status()
    with pytest.raises(OperationNotFoundError):
        await seed.operation({"operation": "no_such_operation"})

    counted = await stats(sim)
    assert counted["nodes"] == 6 and counted["started"] == sim.started
    assert counted["calls"]["add_node"] == 4 and counted["calls"]["remove_node"] == 2
    # cluster_status: first look, 3 + 3 after the joins, after the removal, with the wrong password
    assert counted["calls"]["cluster_status"] == 1 + 3 + 3 + 1 + 1
    # the seed: 4 cluster_status, 3 add_node, 2 remove_node, the unknown operation
    assert counted["calls_by_node"][g0[0]] == 4 + 3 + 2 + 1


async def test_the_operator_converges_a_group(sim):
    """The operator's own observe -> plan -> execute rounds mesh group 1 and load its routes."""
    names = sim.groups[1]
    cluster = HarperClusterSpec.model_validate({
        "credentials": {"secretRef": {"name": "admin"}},
        "routes": [{"hostname": names[0], "port": sim.replication_port}]})
    bodies = [{"metadata": {"name": f"node-{i}", "namespace": "ns", "creationTimestamp": f"2026-01-01T00:00:0{i}Z"},
               "spec": {"clusterRef": {"name": "c"}, "hostname": n, "url": sim.replication_url(n),
                        "operationsUrl": sim.operations_url(n)}} for i, n in enumerate(names)]
    members = membership(cluster, bodies, {"admin": SecretData(True, {"username": "admin", "password": PASSWORD})},
                         namespace="ns")
    assert [m.problem for m in members.members] == [None] * 3

    async def report(op, error):
        assert error is None, f"{op.describe()}: {error!r}"

    async with ClientPool() as pool:
        for _ in range(6):
            seen = observed(await look_all(members, pool))
            assert all(seen.reachable(n) for n in names), seen
            ops = plan(members.desired, seen, restart_for_routes=True)
            if not ops:
                break
            await execute(ops, members, pool, report)
        assert ops == [] and pending_restart(members.desired, seen) == {}
    for name in names:
        node = seen.nodes[name]
        assert sorted(node.peers) == sorted(set(names) - {name})
        assert all(p.connected and p.replicates for p in node.peers.values())
        assert node.routes == (Route(names[0], sim.replication_port),) == node.routes_on_disk
    calls = (await stats(sim))["calls"]
    assert calls["restart"] == 3 and calls["set_configuration"] == 3 and calls["add_node"] >= 2
