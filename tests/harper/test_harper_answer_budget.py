"""Issue 21: what a member's answer costs to parse is bounded, whatever it sends. A 21 MiB cluster_status from an
allowed host grew the operator by ~500 MB (4 MiB of `{"connections":[{},{},...]}` by 1 GB, measured), so answers are
capped in bytes per operation and in objects, arrays and values before json.loads or pydantic runs; a costlier
answer is an UnexpectedAnswerError (the member's Problem). On the FAKE operations API."""

from __future__ import annotations

import copy
import tracemalloc

import pytest
from harper_fakes import PASSWORD, Reply, recording

from harper_operator.harper import HarperClient, UnexpectedAnswerError
from harper_operator.harper.client import RECORDS_BUDGET, STATUS_BUDGET, answer_budget, over_budget

MIB = 1024 * 1024
# A parse of any of these answers the old way took hundreds of MB; refused, they cost their bytes at most.
PEAK_ALLOWED = 16 * MIB


def client_for(url: str, **kw) -> HarperClient:
    return HarperClient(url, username="admin", password=PASSWORD, timeout=30, **kw)


def filled(head: bytes, unit: bytes, tail: bytes, size: int) -> bytes:
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


HOSTILE = {
    "empty peers": (b'{"connections":[', b"{},", b"{}]}"),
    "empty sockets": (b'{"connections":[{"database_sockets":[', b"{},", b"{}]}]}"),
    "empty lists": (b'{"connections":[', b"[],", b"[]]}"),
    "short strings": (b'{"connections":[{"database_sockets":[{"nodes":[', b'"a",', b'"a"]}]}]}'),
}


async def read_status_measured(url: str) -> tuple[UnexpectedAnswerError, int]:
    tracemalloc.start()
    try:
        async with client_for(url) as client:
            with pytest.raises(UnexpectedAnswerError) as caught:
                await client.cluster_status()
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("shape", sorted(HOSTILE))
async def test_a_hostile_30_mib_cluster_status_is_the_members_error(fake_harper, shape, chunked):
    fake_harper.on("cluster_status", Reply(200, body=filled(*HOSTILE[shape], 30 * MIB), chunked=chunked))
    error, peak = await read_status_measured(fake_harper.url)
    assert error.message == f"answer larger than {STATUS_BUDGET.max_bytes} bytes" and error.outcome == "permanent"
    assert peak < PEAK_ALLOWED, f"{peak / MIB:.0f} MiB traced"


@pytest.mark.parametrize("shape", sorted(HOSTILE))
async def test_a_hostile_answer_under_the_byte_cap_is_refused_unparsed(fake_harper, shape):
    """4 MiB fits the byte cap; its objects, arrays or values do not (4 MiB of empty peers parsed took 1 GB)."""
    fake_harper.on("cluster_status", Reply(200, body=filled(*HOSTILE[shape], 4 * MIB)))
    error, peak = await read_status_measured(fake_harper.url)
    assert error.message.startswith("answer holds more than") and error.message.endswith("refused unparsed")
    assert peak < PEAK_ALLOWED, f"{peak / MIB:.0f} MiB traced"


def largest_real_status(peers: int, databases: int) -> dict:
    """A cluster_status as Harper would answer it for `peers` peers of `databases` databases, from a recording."""
    answer = recording("cluster_status_survivor_after_leaving_member_drained")["body"]
    peer, socket = answer["connections"][0], answer["connections"][0]["database_sockets"][0]
    subscriptions = [{"database": f"db{d}", "subscribe": True, "publish": True} for d in range(databases)]
    answer["connections"] = [
        {**copy.deepcopy(peer), "name": f"harper-{p}.harper.ns.svc.cluster.local", "subscriptions": subscriptions,
         "database_sockets": [{**socket, "database": f"db{d}"} for d in range(databases)]}
        for p in range(peers)]
    return answer


async def test_the_largest_real_cluster_status_fits_its_budget(fake_harper):
    """No real answer may be refused: 100 peers (the CRD's most replicas) of 32 databases each are read."""
    fake_harper.on("cluster_status", Reply(200, largest_real_status(100, 32)))
    async with client_for(fake_harper.url) as client:
        status = await client.cluster_status()
    assert len(status.connections) == 100 and all(len(c.database_sockets) == 32 for c in status.connections)


async def test_an_audit_log_page_of_wide_records_fits_its_budget(fake_harper):
    """A leaving member's proof reads 1,000 audit entries carrying the records themselves, 100 fields each."""
    record = {f"field{i}": f"value {i}" for i in range(100)}
    entries = [{"operation": "upsert", "timestamp": 1.0 + i, "hash_values": [i], "records": [{**record, "id": i}]}
               for i in range(1000)]
    fake_harper.on("read_audit_log", Reply(200, entries))
    async with client_for(fake_harper.url) as client:
        assert len(await client.read_audit_log("data", "t", 0.0, 1000)) == 1000


def test_budgets_count_before_parsing_and_the_client_cap_still_applies():
    assert over_budget(b"[" + b"{}," * 10 + b"{}]", STATUS_BUDGET) is None
    assert over_budget(b"[" + b"1," * (STATUS_BUDGET.commas + 1) + b"1]", STATUS_BUDGET) == \
        f"answer holds more than {STATUS_BUDGET.commas} values"
    assert answer_budget("read_audit_log") == RECORDS_BUDGET
    assert answer_budget("cluster_status", max_answer_bytes=MIB).max_bytes == MIB
    assert answer_budget("some_operation").max_bytes < answer_budget("read_audit_log").max_bytes
