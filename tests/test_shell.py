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
        async with registry.exclusive("ns", "c", close="uid-1"):
            order.append("dissolve")
            assert registry.closing("uid-1")

    await asyncio.gather(round_(), deletion())
    assert order == ["round starts", "round ends", "dissolve"]
    registry.unregister("ns", "c")


async def test_a_cluster_created_again_under_its_name_is_not_closing():
    """Deleted, then created again with the same name (a new uid): the new daemon must run its rounds, whatever
    order the old daemon's end and the deletion handler came in (seen: the new cluster was never reconciled)."""
    old_wake = registry.register("ns", "again")
    async with registry.exclusive("ns", "again", close="old-uid"):
        registry.unregister("ns", "again", old_wake)   # the old daemon ends while the deletion runs
        new_wake = registry.register("ns", "again")    # the new object's daemon starts
        assert not registry.closing("new-uid")
    assert not registry.closing("old-uid") and not registry.closing("new-uid")
    registry.unregister("ns", "again", old_wake)       # a late end of the old daemon keeps the new one's wake-up
    assert registry.poke("ns", "again") and new_wake.is_set()
    registry.unregister("ns", "again", new_wake)
    assert not registry.poke("ns", "again")


async def test_a_stuck_round_does_not_block_a_deletion_for_ever():
    async with registry.exclusive("ns", "stuck", timeout=None):
        async with registry.exclusive("ns", "stuck", close="uid-stuck", timeout=0.1):
            pass  # went on after the timeout
    registry.unregister("ns", "stuck")


async def test_a_poke_before_the_daemon_registers_is_kept_for_it():
    """A HarperNode's create handler may run before Kopf started its cluster's daemon: the daemon then runs its
    next round at once instead of after its back-off (bench/converge.py saw 3 to 4 s lost there)."""
    assert not registry.poke("ns", "early")
    wake = registry.register("ns", "early")
    assert wake.is_set()
    wake.clear()
    assert not registry.register("ns", "early").is_set()  # kept for one registration, not for ever
    registry.unregister("ns", "early")
    assert not registry.poke("ns", None) and ("ns", "") not in registry._early


async def test_no_more_rounds_run_at_once_than_the_limit():
    running, most = 0, 0

    async def round_() -> None:
        nonlocal running, most
        async with registry.round_slot(2):
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(round_() for _ in range(6)))
    assert most == 2
    async with registry.round_slot(0), registry.round_slot(0):  # 0: no limit
        pass

