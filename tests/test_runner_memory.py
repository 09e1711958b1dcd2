"""The operator gives freed heap back to the system (runner.free_heap, glibc's malloc_trim): measured on this
process, not on a fake."""

from __future__ import annotations

import gc
import sys

import pytest

from harper_operator import runner


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or runner._malloc_trim() is None, reason="glibc only")
def test_free_heap_returns_what_python_freed():
    # Answers of a few KB (bodies, their parsed lists) come from glibc's heap, not Python's small-object arenas.
    # A few that live on (every hundredth here) pin the heap, so freeing the rest gives nothing back by itself.
    held = [bytes(4000) + str(i).encode() for i in range(50_000)]
    survivors = held[::100]
    grown = rss_mb()
    del held
    gc.collect()
    before = rss_mb()
    assert runner.free_heap() is True
    after = rss_mb()
    assert after < before - 100, f"RSS {grown:.0f} MB grown, {before:.0f} MB freed, {after:.0f} MB after trim"
    assert len(survivors) == 500


@pytest.mark.skipif(runner._malloc_trim() is None, reason="glibc only")
def test_the_trim_runs_in_a_daemon_thread():
    thread = runner.trim_heap_every(3600)
    assert thread is not None and thread.daemon and thread.is_alive()
