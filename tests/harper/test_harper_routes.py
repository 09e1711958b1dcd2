"""Route list edits (harper/routes.py): pure, so checked with properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harper_operator.harper.models import Route, parse_routes
from harper_operator.harper.routes import add_routes, remove_routes

routes = st.builds(Route, hostname=st.sampled_from(["a", "b", "c", "10.0.0.1", "::1"]),
                   port=st.one_of(st.none(), st.sampled_from([9925, 9933])))
# What a config file may hold: any spelling of a route, or something that is not a route at all.
entries = st.one_of(
    routes.map(lambda r: r.to_wire()),
    routes.map(lambda r: {"hostname": r.hostname, **({"port": r.port} if r.port else {})}),
    routes.map(lambda r: {"host": r.hostname, **({"port": r.port} if r.port else {}), "startTime": 1}),
    st.just({"not": "a route"}),
)


@given(current=st.lists(entries, max_size=6), wanted=st.lists(routes, max_size=4))
def test_add_then_every_wanted_route_is_present_once_more_at_most(current, wanted):
    new, added, skipped = add_routes(current, wanted)
    assert new[: len(current)] == current  # existing entries untouched, in order
    assert set(wanted) <= set(parse_routes(new))
    assert set(added) | set(skipped) == set(wanted) and not set(added) & set(parse_routes(current))
    assert add_routes(new, wanted)[1] == []  # idempotent


@given(current=st.lists(entries, max_size=6), unwanted=st.lists(routes, max_size=4))
def test_remove_then_no_unwanted_route_is_left(current, unwanted):
    new, deleted, skipped = remove_routes(current, unwanted)
    assert not set(unwanted) & set(parse_routes(new))
    assert set(deleted) == set(unwanted) & set(parse_routes(current))
    assert set(skipped) == set(unwanted) - set(deleted)
    kept = [e for e in current if e in new]
    assert kept == new  # survivors verbatim and in order
    assert remove_routes(new, unwanted)[1] == []


@given(current=st.lists(entries, max_size=6), wanted=st.lists(routes, min_size=1, max_size=4))
def test_add_then_remove_restores_the_route_set(current, wanted):
    before = set(parse_routes(current))
    added_list, added, _ = add_routes(current, wanted)
    restored, _, _ = remove_routes(added_list, added)
    assert set(parse_routes(restored)) == before


def test_spellings_count_as_the_same_route():
    current = ["wss://a:9933", {"hostname": "b", "port": 9933}, {"host": "c", "port": 9933}]
    _, added, skipped = add_routes(current, [Route(hostname=h, port=9933) for h in "abcd"])
    assert added == [Route(hostname="d", port=9933)] and len(skipped) == 3
    assert remove_routes(current, [Route(hostname="b", port=9933)])[0] == ["wss://a:9933", {"host": "c", "port": 9933}]
