"""reconcile.drain: the proof that a leaving member's records are on the members that stay (docs/safety.md, S1).

Pure: every way a look can fail, and the two passing looks QUIET seconds apart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harper_operator.reconcile.drain import (QUIET, Socket, Write, drain, look, received, still_proven,
                                             survivors_of, unlisted)

L, A, B = "l", "a", "b"


def links(*, a: float | None = 5.0, b: float | None = 5.0, databases=("data", "system")) -> dict:
    """L <-> A and L <-> B; A and B have received from L up to `a` and `b`."""
    out = {}
    for s, version in ((A, a), (B, b)):
        out[(L, s)] = {d: Socket(True) for d in databases}
        out[(s, L)] = {d: Socket(True, received=version) for d in databases}
    return out


def test_received_is_the_smallest_version_any_survivor_has_per_database():
    assert received(L, [A, B], links(a=5.0, b=3.0), {L, A, B}) == {"data": 3.0, "system": 3.0}
    assert received(L, [A, B], links(a=None), {L, A, B}) == {"data": 0.0, "system": 0.0}


def test_received_says_why_a_look_cannot_be_made():
    assert "l does not answer" in received(L, [A, B], links(), {A, B})
    assert "b does not answer, so it cannot confirm l's records" in received(L, [A, B], links(), {L, A})
    assert "no member that stays" in received(L, [], links(), {L})
    cut = {k: v for k, v in links().items() if k != (A, L)}
    assert "hold no replication link" in received(L, [A, B], cut, {L, A, B})


def test_a_look_passes_only_when_every_write_is_held_by_every_survivor():
    w = Write("data", "t", "k", 7.0)
    assert look(L, [A, B], [w], {(A, "data", "t", "k"): 7.0, (B, "data", "t", "k"): 9.0}, False) == ""
    waits = look(L, [A, B], [w], {(A, "data", "t", "k"): 7.0, (B, "data", "t", "k"): 6.0}, False)
    assert waits == "b does not hold the write of data.t 'k' (version 7.000) that l has"
    assert "does not hold the write" in look(L, [A, B], [w], {(A, "data", "t", "k"): 7.0}, False)
    gone = Write("data", "t", "k", 7.0, deleted=True)
    assert look(L, [A, B], [gone], {(A, "data", "t", "k"): 8.0}, False) == ""
    assert "the deletion of" in look(L, [A, B], [gone], {(A, "data", "t", "k"): 6.0}, False)
    assert "reads of its audit log hold" in look(L, [A, B], [], {}, True)
    assert look(L, [A, B], "reading l's audit log failed", {}, False) == "reading l's audit log failed"


def test_proven_after_two_passing_looks_quiet_seconds_apart():
    first = drain(L, "", None, 100.0)
    assert not first.proven and first.passed_at == 100.0 and first.due == QUIET
    early = drain(L, "", first.passed_at, 100.0 + QUIET / 2)
    assert not early.proven and early.passed_at == 100.0 and early.due == QUIET / 2
    assert drain(L, "", first.passed_at, 100.0 + QUIET).proven
    failed = drain(L, "b does not answer", first.passed_at, 100.0 + QUIET)
    assert not failed.proven and failed.passed_at is None and failed.waits_for == "b does not answer"


def test_the_survivors_of_an_explicit_member_are_those_it_pairs_with():
    found = {(L, A): {"data": Socket(True)}}
    assert survivors_of(L, [A, B], found, explicit=True) == [A]
    assert survivors_of(L, [B, A], found, explicit=False) == [A, B]


@given(st.lists(st.tuples(st.floats(0, 10), st.booleans()), max_size=12))
def test_proven_only_after_passing_looks_covering_a_whole_quiet_window(looks):
    """Whatever the sequence: a proof means every look since the window began passed, and it began QUIET ago."""
    now, passed_at, start = 0.0, None, None  # start: the first passing look since the last failed one
    for dt, passes in looks:
        now += dt
        d = drain(L, "" if passes else "waiting", passed_at, now)
        start = (now if start is None else start) if passes else None
        if d.proven:
            assert passes and d.passed_at == start and now - start >= QUIET
        passed_at = d.passed_at


def test_only_the_newest_write_of_a_record_counts():
    """A record written then deleted is absent on the survivors, as it should be (found by the model-level tests:
    the scale-down waited for ever on the first write)."""
    writes = [Write("data", "t", "k", 5.0), Write("data", "t", "k", 6.0, deleted=True)]
    assert look(L, [A], writes, {}, False) == ""
    assert "the deletion of" in look(L, [A], writes, {(A, "data", "t", "k"): 5.0}, False)


def test_a_proof_counts_only_while_it_covers_every_other_member():
    drained = {L: frozenset({A, B})}
    assert still_proven(drained, [L, A, B]) == {L}
    assert still_proven(drained, [L, A, B, "c"]) == set()  # c came (back) since: it was not asked


def test_a_member_no_one_lists_needs_no_proof_once_every_askable_member_answered():
    assert unlisted(L, [A, B], [A, B], {}, {A, B}, {L: "it does not answer"}) is True
    # A member refused for its own spec is not askable: the others decide.
    assert unlisted(L, [A, B], [A], {}, {A}, {L: "it does not answer", B: "bad Secret"}) is True


def test_a_member_no_one_lists_waits_for_one_that_could_not_be_asked_and_names_it():
    wait = unlisted(L, [A, B], [A, B], {}, {A}, {B: "its Secret is missing", L: "it does not answer"})
    assert wait == ("b to be asked whether it lists l (its Secret is missing): no member that answered lists l, "
                    "which cannot itself be read (it does not answer)")
    both = unlisted(L, [A, B], [A, B], {}, set(), {A: "x", B: "y", L: "z"})
    assert both.startswith("a, b to be asked whether they list l (x; y)")


def test_a_listed_or_answering_member_gets_the_usual_proof():
    listed = {(A, L): {"data": Socket(True)}}
    assert unlisted(L, [A, B], [A, B], listed, {A}, {B: "y", L: "z"}) is None
    assert unlisted(L, [A, B], [A, B], {}, {A, L}, {B: "y"}) is None
