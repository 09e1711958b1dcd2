"""cluster_status against Harper 4.7.29's one-reply-per-thread behaviour, on the FAKE operations API: a request
Harper never answers is sent again after STATUS_FIRST_TRY while the first keeps waiting (until the timeout), and one
process never has two reads of one node going at once. (The behaviour itself was seen on real Harper: docs/harper-semantics.md, section 10.)"""

from __future__ import annotations

import asyncio
import time

import pytest
from harper_fakes import PASSWORD, Reply, recording

from harper_operator.harper import HarperClient, TransientHarperError
from harper_operator.harper import client as client_module

ANSWER = recording("cluster_status_no_peers")["body"]


def client_for(url: str, **kw) -> HarperClient:
    return HarperClient(url, username="admin", password=PASSWORD, **kw)


@pytest.fixture
def quick_first_try(monkeypatch):
    monkeypatch.setattr(client_module, "STATUS_FIRST_TRY", 0.2)


async def test_an_unanswered_cluster_status_is_asked_again_after_the_first_try(fake_harper, quick_first_try):
    tries = []

    def reply(_seen):
        tries.append(time.monotonic())
        return Reply(200, ANSWER, delay=30 if len(tries) == 1 else 0)  # the first is never answered in time

    fake_harper.on("cluster_status", reply)
    started = time.monotonic()
    async with client_for(fake_harper.url, timeout=5) as client:
        status = await client.cluster_status()
    assert status.node_name == "127.0.0.31" and len(tries) == 2
    assert time.monotonic() - started < 1.5, "waited for more than the first try"


async def test_a_node_that_never_answers_costs_the_timeout_once(fake_harper, quick_first_try):
    fake_harper.on("cluster_status", Reply(200, ANSWER, delay=30))
    started = time.monotonic()
    async with client_for(fake_harper.url, timeout=1.0) as client:
        with pytest.raises(TransientHarperError) as caught:
            await client.cluster_status()
    assert caught.value.timed_out and 0.9 < time.monotonic() - started < 1.6  # the timeout, not tries x timeout
    assert set(fake_harper.ops()) == {"cluster_status"} and len(fake_harper.ops()) >= 4  # a try every 0.2 s


async def test_a_refused_connection_is_not_asked_again():
    async with client_for("http://127.0.0.1:9", timeout=1.0) as client:
        with pytest.raises(TransientHarperError) as caught:
            await client.cluster_status()
    assert not caught.value.timed_out


async def test_one_process_sends_one_cluster_status_at_a_time_to_a_node(fake_harper):
    """Two clusters sharing a Harper have a client each: their reads of it still go one after the other."""
    in_flight, most = 0, 0

    fake_harper.on("cluster_status", Reply(200, ANSWER, delay=0.05))
    original = fake_harper._answer

    async def counting(reply, request):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await original(reply, request)
        finally:
            in_flight -= 1

    fake_harper._answer = counting
    async with client_for(fake_harper.url) as one, client_for(fake_harper.url) as other:
        await asyncio.gather(*(c.cluster_status() for c in (one, other, one, other)))
    assert most == 1 and fake_harper.ops().count("cluster_status") == 4


async def test_a_slow_but_healthy_node_is_read_by_the_request_already_sent(fake_harper):
    """Issue 21: a node answering every cluster_status in 2.5 s was reported Unreachable for ever, each try being cut
    at STATUS_FIRST_TRY (2 s) after 5 requests. The request sent first keeps waiting while a second one is sent."""
    fake_harper.on("cluster_status", Reply(200, ANSWER, delay=2.5))
    seen = []
    started = time.monotonic()
    async with client_for(fake_harper.url, timeout=10, observer=lambda *a: seen.append(a)) as client:
        status = await client.cluster_status()
    took = time.monotonic() - started
    assert status.node_name == "127.0.0.31"
    assert 2.4 < took < 4.0, "the first request's answer, not a later one's"
    assert fake_harper.ops().count("cluster_status") == 2  # the first at 0 s, one more at 2 s
    assert [(op, outcome) for op, outcome, _ in seen] == [("cluster_status", "ok")]  # one read, one observation


async def test_a_resent_request_that_fails_first_is_the_reads_outcome(fake_harper, quick_first_try):
    """The first request to finish wins, an error too: the re-send finds the node refusing while the first waits."""
    def reply(_seen):
        return Reply(200, ANSWER, delay=30) if len(fake_harper.seen) == 1 else Reply(503, {"error": "shutting down"})

    fake_harper.on("cluster_status", reply)
    started = time.monotonic()
    async with client_for(fake_harper.url, timeout=5) as client:
        with pytest.raises(TransientHarperError) as caught:
            await client.cluster_status()
    assert caught.value.status == 503 and time.monotonic() - started < 1.5
