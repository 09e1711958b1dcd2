"""reconcile.drain: the proof that a leaving member's records are on the members that stay (docs/safety.md, S1).

Pure: every way the proof can be refused, by example, and the quiet window's clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harper_operator.reconcile.drain import QUIET, Drain, Mark, Socket, drain, survivors_of

L, A, B = "l", "a", "b"


def links(*, version: float = 5.0, connected: bool = True, sending: bool = False, back: bool = True,
          databases=("data", "system")) -> dict:
    """L <-> A and L <-> B, every socket as given; `back`: the survivors hold a socket from L."""
    out = {}
    for s in (A, B):
        out[(L, s)] = {d: Socket(connected, sending=sending) for d in databases}
        if back:
            out[(s, L)] = {d: Socket(connected, received=version) for d in databases}
    return out


def look(found, previous=None, now=100.0, answered=(L, A, B)) -> Drain:
    return drain(L, [A, B], found, set(answered), previous, now)


def test_proven_after_the_survivors_received_versions_stay_still_for_the_quiet_window():
    first = look(links())
    assert not first.proven and first.mark.received == {(s, d): 5.0 for s in (A, B) for d in ("data", "system")}
    assert first.due == QUIET and "to confirm l's last writes" in first.waits_for
    early = look(links(), first.mark, now=100.0 + QUIET / 2)
    assert not early.proven and early.mark == first.mark and early.due == QUIET / 2
    assert look(links(), first.mark, now=100.0 + QUIET).proven


def test_a_version_that_moves_starts_the_window_again():
    first = look(links(version=5.0))
    moved = look(links(version=6.0), first.mark, now=100.0 + QUIET)
    assert not moved.proven and moved.mark.at == 100.0 + QUIET
    assert look(links(version=6.0), moved.mark, now=100.0 + 2 * QUIET).proven


def test_no_proof_while_anything_is_in_flight_or_cut():
    still = Mark(0.0, {(s, d): 5.0 for s in (A, B) for d in ("data", "system")})
    cases = {
        "is still sending database data to a": links(sending=True),
        "are not connected on database data": links(connected=False),
        "holds no replication socket from l": links(back=False),
    }
    for words, found in cases.items():
        refused = look(found, still)
        assert not refused.proven and words in refused.waits_for and refused.mark is None, words
    refused = look(links(), still, answered=(A, B))
    assert "l does not answer" in refused.waits_for
    refused = look(links(), still, answered=(L, A))
    assert "b does not answer, so it cannot confirm l's records" in refused.waits_for
    assert "no member that stays" in drain(L, [], links(), {L}, still, 100.0).waits_for
    assert "holds no replication socket to a" in look({k: v for k, v in links().items() if k != (L, A)}, still).waits_for


def test_the_survivors_of_an_explicit_member_are_those_it_pairs_with():
    found = {(L, A): {"data": Socket(True)}}
    assert survivors_of(L, [A, B], found, explicit=True) == [A]
    assert survivors_of(L, [B, A], found, explicit=False) == [A, B]


@given(st.lists(st.tuples(st.floats(0, 10), st.sampled_from([4.0, 5.0]), st.booleans(), st.booleans()),
                max_size=12))
def test_proven_only_after_a_whole_quiet_window_with_every_socket_up_and_nothing_sent(steps):
    """Whatever the sequence of looks: a proof means the last QUIET seconds of looks all saw every socket up, nothing
    in flight, and the same versions."""
    now, mark, history = 0.0, None, []
    for dt, version, connected, sending in steps:
        now += dt
        d = look(links(version=version, connected=connected, sending=sending), mark, now=now)
        history.append((now, version, connected and not sending))
        if d.proven:
            window = [h for h in history if h[0] >= d.mark.at]
            assert now - d.mark.at >= QUIET
            assert all(ok for _, _, ok in window) and len({v for _, v, _ in window}) == 1
        mark = d.mark
