"""HarperClient against hostile answers and settings: only HarperError leaves it, answers are
read with a byte cap, messages are redacted then clipped, bad settings are InvalidTargetError."""

from __future__ import annotations

import base64
import math

import pytest
from harper_fakes import PASSWORD, Reply, make_jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harper_operator.harper import (
    Authorization,
    AuthorizationError,
    HarperClient,
    HarperError,
    InvalidTargetError,
    NodeRequest,
    PeerUnreachableError,
    PermanentHarperError,
    RequestValidationError,
    TransientHarperError,
    UnexpectedAnswerError,
)
from harper_operator.harper.errors import MAX_MESSAGE_CHARS, clip_message

PEER_PASSWORD = "peer-pa55word-xyz"
BASIC = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
MIB = 1024 * 1024


def client_for(url: str, **kw) -> HarperClient:
    kw.setdefault("timeout", 5.0)
    return HarperClient(url, username="admin", password=PASSWORD, **kw)


def _node_request() -> NodeRequest:
    return NodeRequest(hostname="n1", url="wss://n1:9933",
                       authorization=Authorization(username="admin", password=PEER_PASSWORD))


def every_operation(client: HarperClient) -> dict:
    """Every public operation of the client, as zero-argument coroutine factories."""
    req = _node_request()
    return {
        "cluster_status": client.cluster_status,
        "get_configuration": client.get_configuration,
        "add_node": lambda: client.add_node(req),
        "set_node": lambda: client.set_node(req),
        "update_node": lambda: client.update_node(req),
        "remove_node": lambda: client.remove_node("n1"),
        "configure_cluster": lambda: client.configure_cluster([req]),
        "cluster_get_routes": client.cluster_get_routes,
        "loaded_routes": client.loaded_routes,
        "cluster_set_routes": lambda: client.cluster_set_routes(["wss://a:9933"]),
        "cluster_delete_routes": lambda: client.cluster_delete_routes(["wss://a:9933"]),
        "replace_routes": lambda: client.replace_routes(["wss://a:9933"]),
        "restart": client.restart,
        "operation": lambda: client.operation({"operation": "describe_all"}),
        "create_authentication_tokens": client.create_authentication_tokens,
    }


def assert_clean(exc: HarperError) -> None:
    """A HarperError fit for a log line or a Kubernetes condition: bounded, no secret."""
    assert len(exc.message) <= MAX_MESSAGE_CHARS
    text = str(exc) + repr(exc) + " ".join(map(str, exc.args))
    for secret in (PASSWORD, PEER_PASSWORD, BASIC):
        assert secret not in text


async def call_everything(url: str) -> list[HarperError]:
    """Call every operation (and a token client's cluster_status); each must return or raise a
    HarperError. Returns the errors raised."""
    errors: list[HarperError] = []
    async with client_for(url) as client, client_for(url, use_token=True) as token_client:
        calls = list(every_operation(client).items()) + [("token cluster_status", token_client.cluster_status)]
        for name, call in calls:
            try:
                await call()
            except HarperError as exc:
                assert_clean(exc)
                errors.append(exc)
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{name} raised {type(exc).__name__}: {str(exc)[:300]}")
    return errors


# --------------------------------------------------------------------------- any answer

_KEYS = st.sampled_from(["message", "error", "statusCode", "connections", "database_sockets", "hub", "leaf",
                         "replication", "routes", "hostname", "host", "port", "url", "operation_token",
                         "refresh_token", "unauthorized_access", "failed_nodes", "response", "node_name",
                         "shard", "subscriptions", "authorization", "connected", "nodes"]) | st.text(max_size=8)
_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["Successfully added 'wss://n1:9933'", "Successfully removed 'n1'", "wss://a:9933",
                              "wss://h:99999", "Copying", "Error returned from wss://n1:9933: ECONNREFUSED",
                              f"leaked {PASSWORD} and Basic {BASIC}", make_jwt(exp=-62135596800)]))
JSON_VALUES = st.recursive(_LEAVES, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(_KEYS, children, max_size=5), max_leaves=25)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(answer=JSON_VALUES, status=st.sampled_from([200, 200, 200, 201, 400, 401, 403, 404, 500, 503]))
async def test_any_json_answer_returns_or_raises_a_harper_error(fake_harper, answer, status):
    fake_harper.handlers.clear()
    fake_harper.default = Reply(status, answer)
    await call_everything(fake_harper.url)


def _nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


HOSTILE_BODIES = {
    "deep arrays": _nested(100_000, b""),
    "deep objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep but parseable": _nested(400),
    "deep at the limit": _nested(950),
    "huge integer": b"1" * 5000,
    "not utf-8": b"\xff\xfe\x00\x80garbage",
    "empty": b"",
    "whitespace": b"  \n ",
    "hub not a list": b'{"hub":5}',
    "hub and leaf junk": b'{"hub":[1,{"host":[]}],"leaf":"x"}',
    "empty list": b"[]",
    "number": b"5",
    "string": b'"x"',
    "null": b"null",
    "nan": b'{"message": NaN}',
    "connections not a list": b'{"connections":"x"}',
    "connections of numbers": b'{"connections":[5, null]}',
    "connection fields wrong": b'{"connections":[{"name":[],"database_sockets":5,"shard":{},"ca_info":7}]}',
    "socket fields wrong": b'{"connections":[{"database_sockets":[{"connected":"yes","latency":"x","nodes":5}]}]}',
    "replication not an object": b'{"replication":5}',
    "routes not a list": b'{"replication":{"routes":{"a":1}}}',
    "junk routes": b'{"replication":{"routes":[5,null,{"url":{}},"wss://h:99999",{"hostname":[]},' + _nested(300) + b"]}}",
    "message not a string": b'{"message":{"a":1}}',
    "deep message": b'{"message":' + _nested(500) + b"}",
    "deep error": b'{"error":' + _nested(500) + b"}",
    "deep unauthorized_access": b'{"error":"no","unauthorized_access":' + _nested(500) + b"}",
    "configure_cluster junk": b'{"message":"x","connections":[{"response":' + _nested(500) + b'}],"failed_nodes":[[]]}',
    "token not a string": b'{"operation_token":5}',
    "token with a newline": b'{"operation_token":"abc\\ndef","refresh_token":"x y"}',
    "token at the edge of time": b'{"operation_token":"' + make_jwt(exp=-62135596800).encode() + b'"}',
    "lone surrogate": b'{"message":"\\ud800","replication":{"routes":["\\ud800"]}}',
}


@pytest.mark.parametrize("status", [200, 403, 500])
@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
async def test_hostile_answers_become_harper_errors(fake_harper, name, status):
    fake_harper.default = Reply(status, body=HOSTILE_BODIES[name])
    errors = await call_everything(fake_harper.url)
    if status == 200 and name in ("deep arrays", "deep objects"):
        # Refused unparsed for their count of arrays, or parsed and found too deep: either way no crash.
        assert errors and all(isinstance(e, UnexpectedAnswerError)
                              and ("nested too deeply" in e.message or "objects and arrays" in e.message)
                              for e in errors)


async def test_unknown_charset_is_read_as_utf8(fake_harper):
    fake_harper.default = Reply(200, body=b'{"node_name":"n","connections":[]}',
                                content_type="application/json; charset=no-such-charset")
    async with client_for(fake_harper.url) as client:
        assert (await client.cluster_status()).node_name == "n"


@pytest.mark.parametrize("body, operation, expected", [
    (b"[]", "cluster_status", "answer has an unexpected shape"),
    (b'{"connections":[5]}', "cluster_status", "first at connections.0"),
    (b'{"replication":5}', "get_configuration", "configuration's replication is not an object"),
    (b'{"replication":{"routes":5}}', "cluster_get_routes", "configuration's replication.routes is not a list"),
    (b'{"hub":5}', "loaded_routes", "hub/leaf routes are not lists"),
    (b"null", "loaded_routes", "answer is not a list of routes"),
    (b'{"message":5}', "restart", "answer has no message"),
    (b'{"message":5}', "remove_node", "answer has no message"),
    (b"<html>", "cluster_status", "answer is not JSON: '<html>'"),
    (b"1" * 5000, "cluster_status", "answer holds a value too large to read"),
    (_nested(5_000), "cluster_status", "answer is nested too deeply to read"),
    (_nested(100_000), "cluster_status", "answer holds more than 17408 objects and arrays: refused unparsed"),
    (b'{"operation_token":"a\\nb"}', "create_authentication_tokens",
     "answer holds a token that cannot be sent in a header"),
])
async def test_unreadable_answers_say_what_was_wrong(fake_harper, body, operation, expected):
    fake_harper.default = Reply(200, body=body)
    async with client_for(fake_harper.url) as client:
        with pytest.raises(UnexpectedAnswerError) as info:
            await every_operation(client)[operation]()
    assert expected in info.value.message and info.value.status == 200
    assert info.value.outcome == "permanent"


async def test_junk_routes_in_the_file_are_kept_not_fatal(fake_harper):
    fake_harper.default = Reply(200, {"replication": {"routes": [5, {"url": {}}, "wss://h:99999", "wss://b:1"]}})
    async with client_for(fake_harper.url) as client:
        assert [r.url for r in await client.cluster_get_routes()] == ["wss://b:1"]


async def test_a_token_at_the_edge_of_time_does_not_break_calls(fake_harper):
    fake_harper.on("create_authentication_tokens", Reply(200, {"operation_token": make_jwt(exp=-62135596800)}))
    fake_harper.on("cluster_status", Reply(200, {"node_name": "n"}))
    async with client_for(fake_harper.url, use_token=True) as client:
        assert (await client.cluster_status()).node_name == "n"


async def test_bad_caller_input_is_a_request_validation_error(fake_harper):
    async with client_for(fake_harper.url) as client:
        for call in (lambda: client.cluster_set_routes(["ftp://x"]), lambda: client.cluster_delete_routes(5),
                     lambda: client.replace_routes([{"hostname": ""}]), lambda: client.operation([1]),
                     lambda: client.operation({"operation": "x", "value": object()})):
            with pytest.raises(RequestValidationError) as info:
                await call()
            assert info.value.status is None
    assert fake_harper.seen == []  # refused before sending


# --------------------------------------------------------------------------- bounded input

@pytest.mark.parametrize("reply", [
    Reply(200, body=b" " * (5 * MIB)),  # with a Content-Length: refused before reading
    Reply(200, body=b"[" + b"1," * (5 * MIB // 2) + b"1]", chunked=True),  # no Content-Length
    Reply(500, body=b"x" * (5 * MIB), chunked=True),  # error answers are capped too
    Reply(200, body=b"0123456789" * 1000, endless=True),  # would never end: must not be read to the end
], ids=["content-length", "chunked", "chunked-error", "endless"])
async def test_answers_over_the_cap_are_refused(fake_harper, reply):
    fake_harper.default = reply
    async with client_for(fake_harper.url, max_answer_bytes=MIB, timeout=20) as client:
        with pytest.raises(UnexpectedAnswerError) as info:
            await client.cluster_status()
        assert info.value.message == f"answer larger than {MIB} bytes" and info.value.status == reply.status
        # The half-read connection was dropped, not pooled: the next call reads a clean answer.
        fake_harper.default = Reply(200, {"node_name": "n"})
        assert (await client.cluster_status()).node_name == "n"


async def test_answer_exactly_at_the_cap_is_read(fake_harper):
    body = b'{"node_name":"n","pad":"' + b"x" * 1000 + b'"}'
    fake_harper.default = Reply(200, body=body, chunked=True)
    async with client_for(fake_harper.url, max_answer_bytes=len(body)) as client:
        assert (await client.cluster_status()).node_name == "n"
    async with client_for(fake_harper.url, max_answer_bytes=len(body) - 1) as client:
        with pytest.raises(UnexpectedAnswerError):
            await client.cluster_status()


# --------------------------------------------------------------------------- bounded, redacted messages

def test_clip_message():
    assert clip_message("short") == "short"
    clipped = clip_message("a" * 5000)
    assert len(clipped) <= MAX_MESSAGE_CHARS and clipped.endswith(" more characters)") and "…" in clipped
    kept = clipped.split("…")[0]
    assert clipped.endswith(f"({5000 - len(kept)} more characters)")
    assert len(clip_message("b" * 300, 50)) <= 50


def _boundary_text() -> str:
    """Text where clipping the raw text would cut PASSWORD in half."""
    length = 3000
    keep = MAX_MESSAGE_CHARS - len(f"… ({length} more characters)")
    head = "x" * (keep - 5)
    return head + PASSWORD + "y" * (length - len(head) - len(PASSWORD))


async def test_password_across_the_clipping_boundary_never_survives(fake_harper):
    fake_harper.default = Reply(400, {"error": _boundary_text()})
    async with client_for(fake_harper.url) as client:
        with pytest.raises(RequestValidationError) as info:
            await client.cluster_status()
    text = info.value.message
    assert len(text) <= MAX_MESSAGE_CHARS and text.endswith("more characters)")
    for size in range(4, len(PASSWORD) + 1):  # not even a piece of it
        assert PASSWORD[:size] not in text
    assert_clean(info.value)


@pytest.mark.parametrize("as_json", [True, False])
async def test_megabytes_of_error_text_are_clipped_and_redacted(fake_harper, as_json):
    def answer(leak: str) -> Reply:
        filler = "z" * (1024 * 1024)
        text = f"Error returned from wss://n1:9933: {leak} {filler}{leak}{filler}{leak}"
        return Reply(500, {"error": text}) if as_json else Reply(500, text=text)
    fake_harper.default = answer(f"{PASSWORD} Authorization: Basic {BASIC}")
    # add_node knows the peer's password too (it sent it), so it redacts that as well.
    fake_harper.on("add_node", answer(f"{PASSWORD} Authorization: Basic {BASIC} {PEER_PASSWORD}"))
    async with client_for(fake_harper.url) as client:
        with pytest.raises(TransientHarperError) as info:
            await client.add_node(_node_request())
        with pytest.raises(TransientHarperError) as status_info:
            await client.cluster_status()
    for exc in (info.value, status_info.value):
        assert_clean(exc)
        assert "***" in exc.message and len(str(exc)) < MAX_MESSAGE_CHARS + 200
    assert isinstance(info.value, PeerUnreachableError)
    peer = info.value.peer
    assert len(peer.reason) <= MAX_MESSAGE_CHARS and PASSWORD not in peer.reason and BASIC not in peer.reason
    assert PEER_PASSWORD not in peer.reason


async def test_not_json_answers_are_redacted_before_quoting(fake_harper):
    # The quote is cut at 200 characters; the password straddles that cut.
    fake_harper.default = Reply(200, text="x" * 195 + PASSWORD + "y" * 50)
    async with client_for(fake_harper.url) as client:
        with pytest.raises(UnexpectedAnswerError) as info:
            await client.cluster_status()
    assert PASSWORD[:4] not in info.value.message and "answer is not JSON" in info.value.message


async def test_escaped_secrets_are_redacted_too(fake_harper):
    password = 'pa"ss\\word-é'
    fake_harper.default = Reply(403, {"error": {"detail": f"bad {password}"}, "unauthorized_access": [password]})
    async with HarperClient(fake_harper.url, username="admin", password=password) as client:
        with pytest.raises(AuthorizationError) as info:
            await client.cluster_status()
    text = str(info.value) + repr(info.value)
    assert password not in text and "pa\\\"ss" not in text and "***" in text


# --------------------------------------------------------------------------- settings

@pytest.mark.parametrize("url, says", [
    ("ftp://h:1", "must use http or https"),
    ("h:9925", "must use http or https"),
    ("https://", "has no host"),
    ("https://:9925", "has no host"),
    ("https://opsuser@h:9925", "must not carry user info"),
    ("https://opsuser:hunter22@h:9925", "must not carry user info"),
    (f"https://admin:{PASSWORD}@h:9925", "must not carry user info"),
    ("https://@h:9925", "must not carry user info"),
    ("https://h:99999", "invalid port"),
    ("https://h:0", "invalid port"),
    ("https://h:-1", "invalid port"),
    ("https://h:port", "invalid port"),
    ("https://[::1", "cannot be parsed"),
    ("https://[zz]:1", "cannot be parsed"),
    ("https://ex ample:1", "invalid host"),
    (None, "not a string"),
])
def test_bad_operations_urls_are_invalid_targets(url, says):
    with pytest.raises(InvalidTargetError) as info:
        HarperClient(url, username="admin", password=PASSWORD)
    exc = info.value
    assert isinstance(exc, PermanentHarperError) and exc.operation == "connect" and exc.status is None
    assert says in exc.message
    text = str(exc) + repr(exc)
    for secret in ("opsuser", "hunter22", PASSWORD):
        assert secret not in text


@pytest.mark.parametrize("kwargs", [
    {"timeout": 0}, {"timeout": -1}, {"timeout": math.nan}, {"timeout": math.inf}, {"timeout": "soon"},
    {"timeout": True}, {"write_timeout": 0}, {"write_timeout": -5.0}, {"max_answer_bytes": 0},
    {"max_answer_bytes": 1.5},
])
def test_bad_limits_are_invalid_targets(kwargs):
    with pytest.raises(InvalidTargetError) as info:
        HarperClient("https://h:9925", username="admin", password=PASSWORD, **kwargs)
    assert info.value.operation == "connect" and "positive" in info.value.message


@pytest.mark.parametrize("ca_pem", [
    "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", f"secret {PASSWORD}",
    "ünïcode", b"\x30\x03\x02\x01\x00",
])
@pytest.mark.parametrize("verify_tls", [True, False])
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_garbage_ca_bundle_is_an_invalid_target(ca_pem, verify_tls, scheme):
    with pytest.raises(InvalidTargetError) as info:
        HarperClient(f"{scheme}://h:9925", username="admin", password=PASSWORD, ca_pem=ca_pem, verify_tls=verify_tls)
    assert info.value.message == "CA bundle is not a valid PEM certificate bundle"
    assert PASSWORD not in str(info.value) and "AAAA" not in str(info.value)


def test_good_settings_still_construct(cert_authority):
    client = HarperClient("https://[::1]:9925/x", username="admin", password=PASSWORD, ca_pem=cert_authority.ca_pem,
                          timeout=1, write_timeout=2, max_answer_bytes=10)
    assert client.operations_url == "https://[::1]:9925/x/" and client.max_answer_bytes == 10
    assert HarperClient("http://h", username="a", password="b").max_answer_bytes == 32 * 1024 * 1024
