"""The thin shell's own promises, without Kubernetes: peering priorities differ between replicas, and a
deletion waits for the round in flight (so no add_node lands after the deletion's remove_node)."""

from __future__ import annotations

import argparse
import asyncio

from harper_operator.handlers import registry
from harper_operator.settings import OperatorSettings


def _args(**kw):
    base = dict(kubeconfig=None, namespaces=[], log_format="plain", log_level="info", metrics_port=0, peering="p",
                priority=None, min_reconcile_interval=0.0, verify_timeout=1.0)
    return argparse.Namespace(**{**base, **kw})


def test_each_replica_draws_its_own_peering_priority():
    # Kopf pauses every operator that sees a peer of equal priority: two replicas must not both pause.
    drawn = {OperatorSettings.from_args(_args()).priority for _ in range(20)}
    assert len(drawn) > 15 and all(p > 0 for p in drawn)
    assert OperatorSettings.from_args(_args(priority=7)).priority == 7


async def test_a_deletion_waits_for_the_round_in_flight_and_stops_the_next():
    order: list[str] = []
    registry.register("ns", "c")

    async def round_():
        async with registry.exclusive("ns", "c", timeout=None):
            order.append("round starts")
            await asyncio.sleep(0.2)
            order.append("round ends")

    async def deletion():
        await asyncio.sleep(0.05)
        async with registry.exclusive("ns", "c", close=True):
            order.append("dissolve")

    await asyncio.gather(round_(), deletion())
    assert order == ["round starts", "round ends", "dissolve"]
    assert registry.closing("ns", "c")
    registry.unregister("ns", "c")
    assert not registry.closing("ns", "c")


async def test_a_stuck_round_does_not_block_a_deletion_for_ever():
    async with registry.exclusive("ns", "stuck", timeout=None):
        async with registry.exclusive("ns", "stuck", close=True, timeout=0.1):
            pass  # went on after the timeout
    registry.unregister("ns", "stuck")
