"""url_key: one key per replication endpoint however its URL is spelled, never raising (issue 20, S5).

Another part of the operator recognises a declared member's record by url_key, so what it treats as equal (its
docstring) is pinned here: each spelling listed there gives the same key, each difference listed there does not.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harper_operator.reconcile.topology import url_key

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
NAMES = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(lambda n: not _is_ip(n))
PORTS = st.integers(1, 65535)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@st.composite
def endpoints(draw) -> tuple[str, str, int]:
    """(scheme, host as the key writes it, port)."""
    scheme = draw(st.sampled_from(["wss", "ws"]))
    host = draw(st.one_of(NAMES, st.ip_addresses(v=4).map(str),
                          st.ip_addresses(v=6).map(lambda a: f"[{a.compressed}]")))
    return scheme, host, draw(PORTS)


@st.composite
def spellings(draw, endpoint: tuple[str, str, int]) -> str:
    """One way a person, or Harper's answer, may write this endpoint."""
    scheme, host, port = endpoint
    if host.startswith("["):
        address = ipaddress.IPv6Address(host[1:-1])
        host = "[" + draw(st.sampled_from([address.compressed, address.exploded,
                                           address.exploded.replace(":0000", ":0")])) + "]"
    elif not _is_ip(host) and draw(st.booleans()):
        host += "."
    host = "".join(c.upper() if draw(st.booleans()) else c for c in host)
    scheme = scheme.upper() if draw(st.booleans()) else scheme
    user = draw(st.sampled_from(["", "u@", "u:p@"]))
    port_text = draw(st.sampled_from([str(port), f"0{port}"]))
    tail = draw(st.sampled_from(["", "/", "/path", "/?q=1", "#f"]))
    space = draw(st.sampled_from(["", " ", "\t"]))
    return f"{space}{scheme}://{user}{host}:{port_text}{tail}{space}"


@given(st.data(), endpoints())
def test_every_spelling_of_one_endpoint_has_one_key(data, endpoint):
    scheme, host, port = endpoint
    first, second = data.draw(spellings(endpoint)), data.draw(spellings(endpoint))
    assert url_key(first) == url_key(second) == f"{scheme}://{host}:{port}"


@given(endpoints(), endpoints())
def test_different_endpoints_have_different_keys(a, b):
    if a != b:
        assert url_key(f"{a[0]}://{a[1]}:{a[2]}") != url_key(f"{b[0]}://{b[1]}:{b[2]}")


@pytest.mark.parametrize("one,other", [
    ("wss://[::1]:9933", "wss://[0:0:0:0:0:0:0:1]:9933"),
    ("wss://[::1]:9933", "wss://[0000::0001]:9933/"),
    ("wss://[::ffff:1.2.3.4]:9933", "wss://[::FFFF:0102:0304]:9933"),
    ("wss://harper-1.example:9933", "WSS://Harper-1.Example.:9933/"),
    ("wss://h:9933", "wss://h:09933"),
    ("wss://h", "wss://h:"),
    ("wss://[::1::2]:9933", "WSS://[::1::2]:9933/"),  # no IPv6 address: compared as text, a slash dropped
])
def test_documented_equal_spellings(one, other):
    assert url_key(one) == url_key(other)


@pytest.mark.parametrize("one,other", [
    ("ws://h:9933", "wss://h:9933"),
    ("wss://h", "wss://h:9933"),  # Harper takes a missing port for the caller's own
    ("wss://1.2.3.4:9933", "wss://[::ffff:1.2.3.4]:9933"),
    ("wss://127.0.0.1:9933", "wss://127.1:9933"),
    ("wss://localhost:9933", "wss://127.0.0.1:9933"),
])
def test_documented_different_endpoints(one, other):
    assert url_key(one) != url_key(other)


ANYTHING = st.one_of(st.text(), st.none(), st.integers(), st.lists(st.text(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
                     st.builds(lambda s, h, t: f"{s}://{h}{t}", st.sampled_from(["wss", "WS", "https", ""]),
                               st.text(alphabet="[]:.0123456789abcdefABCDEF%@/ ", max_size=20),
                               st.sampled_from(["", ":", ":99999", ":-1", ":0x10", "/", "?#"])))


@given(ANYTHING)
def test_never_raises_and_a_key_is_its_own_key(value):
    key = url_key(value)
    assert isinstance(key, str)
    assert url_key(key) == key
