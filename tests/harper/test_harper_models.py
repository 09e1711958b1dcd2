"""The pydantic requests/answers of the Harper client: wire forms, validation, tolerance."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from harper_fakes import PASSWORD, make_jwt
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from harper_operator.harper import models
from harper_operator.harper.models import (
    Authorization,
    CaInfo,
    ClusterStatus,
    ConfigureClusterResult,
    Connection,
    DatabaseSocket,
    NodeRequest,
    NodeWriteResult,
    Route,
    RoutesResult,
    Subscription,
    Tokens,
    node_name_from_url,
    parse_harper_time,
    parse_routes,
)

UTC = timezone.utc


# --------------------------------------------------------------------------- time parsing

@pytest.mark.parametrize("raw, expected", [
    ("Wed, 25 Nov 2026 18:34:24 GMT", datetime(2026, 11, 25, 18, 34, 24, tzinfo=UTC)),
    ("2026-11-25T18:00:00Z", datetime(2026, 11, 25, 18, 0, tzinfo=UTC)),
    ("2026-11-25T19:00:00+01:00", datetime(2026, 11, 25, 18, 0, tzinfo=UTC)),
    ("2026-11-25T18:00:00", datetime(2026, 11, 25, 18, 0, tzinfo=UTC)),
    ("Nov 22 18:33:18 2036 GMT", datetime(2036, 11, 22, 18, 33, 18, tzinfo=UTC)),
    (1795629600000, datetime(2026, 11, 25, 18, 0, tzinfo=UTC)),
    (1795629600000.5, datetime(2026, 11, 25, 18, 0, 0, 500, tzinfo=UTC)),
    (datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC)),
])
def test_parse_harper_time_reads_every_spelling(raw, expected):
    assert parse_harper_time(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "Copying", 0, 1, True, "not a date", [], {}, 1e300])
def test_parse_harper_time_unreadable_is_none(raw):
    assert parse_harper_time(raw) is None


# --------------------------------------------------------------------------- Subscription

def test_subscription_wire_form_omits_absent_table():
    sub = Subscription(database="data", subscribe=True, publish=False)
    assert sub.to_wire() == {"database": "data", "subscribe": True, "publish": False}
    assert Subscription(database="data", table="dog", subscribe=False, publish=True).to_wire()["table"] == "dog"


def test_subscription_accepts_legacy_schema_spelling():
    assert Subscription.model_validate({"schema": "dev", "subscribe": True, "publish": True}).database == "dev"


@pytest.mark.parametrize("bad", [
    {"database": "d", "subscribe": True},  # publish missing
    {"database": "", "subscribe": True, "publish": True},
    {"database": "d", "subscribe": "yes", "publish": True},  # strict booleans
    {"database": "d", "tabel": "dog", "subscribe": True, "publish": True},  # typo must not widen it
])
def test_subscription_rejects_bad_input(bad):
    with pytest.raises(ValidationError):
        Subscription.model_validate(bad)


# --------------------------------------------------------------------------- NodeRequest

def test_node_request_minimal_wire_form():
    req = NodeRequest(url="wss://node-1:9933")
    assert req.to_wire("add_node") == {"operation": "add_node", "url": "wss://node-1:9933", "verify_tls": True}
    assert req.node_name == "node-1"


def test_node_request_full_wire_form_uses_harper_names():
    req = NodeRequest(
        hostname="node-1", url="wss://node-1:9933", verify_tls=False,
        authorization=Authorization(username="admin", password=PASSWORD), retain_authorization=True,
        revoked_certificates=["ABC123"], shard=2, start_time=datetime(2026, 11, 25, 18, 0, tzinfo=UTC),
        subscriptions=[Subscription(database="data", table="dog", subscribe=True, publish=False)],
    )
    assert req.to_wire("update_node") == {
        "operation": "update_node", "hostname": "node-1", "url": "wss://node-1:9933", "verify_tls": False,
        "authorization": {"username": "admin", "password": PASSWORD}, "retain_authorization": True,
        "revoked_certificates": ["ABC123"], "shard": 2, "start_time": "2026-11-25T18:00:00.000Z",
        "subscriptions": [{"database": "data", "table": "dog", "subscribe": True, "publish": False}],
    }
    json.dumps(req.to_wire("add_node"))  # plain JSON all the way down


def test_node_request_start_time_is_sent_in_utc():
    naive = NodeRequest(url="wss://a:1", start_time=datetime(2026, 1, 1, 12, 0))
    paris = NodeRequest(url="wss://a:1", start_time=datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    parsed = NodeRequest(url="wss://a:1", start_time="2026-01-01T12:00:00Z")
    for req in (naive, paris, parsed):
        assert req.to_wire("add_node")["start_time"] == "2026-01-01T12:00:00.000Z"


def test_node_request_hostname_only_is_allowed_and_named():
    req = NodeRequest(hostname="node-2")
    assert req.node_name == "node-2"
    assert "url" not in req.to_wire("add_node")


def test_node_request_authorization_header_string_is_kept_secret():
    req = NodeRequest(url="wss://a:1", authorization="Basic YWRtaW46czNjcmV0LXBhNTV3b3Jk")
    assert isinstance(req.authorization, SecretStr)
    assert req.to_wire("add_node")["authorization"] == "Basic YWRtaW46czNjcmV0LXBhNTV3b3Jk"
    assert "YWRtaW46" not in repr(req) and "YWRtaW46" not in str(req)
    assert set(req.secrets()) >= {"Basic YWRtaW46czNjcmV0LXBhNTV3b3Jk", "YWRtaW46czNjcmV0LXBhNTV3b3Jk", PASSWORD}


def test_node_request_authorization_from_dict():
    req = NodeRequest.model_validate({"url": "wss://a:1", "authorization": {"username": "u", "password": PASSWORD}})
    assert isinstance(req.authorization, Authorization)
    assert PASSWORD in req.secrets()


@pytest.mark.parametrize("bad", [
    {},  # neither hostname nor url
    {"url": "https://a:9933"},
    {"url": "wss://:9933"},
    {"url": "wss://a:notaport"},
    {"url": "a:9933"},
    {"hostname": ""},
    {"url": "wss://a:1", "shard": -1},
    {"url": "wss://a:1", "shard": True},  # strict: a bool is not a shard
    {"url": "wss://a:1", "shard": "3"},
    {"url": "wss://a:1", "verify_tls": "yes"},
    {"url": "wss://a:1", "authorization": ""},
    {"url": "wss://a:1", "authorization": {"username": "", "password": "x"}},
    {"url": "wss://a:1", "node_name": "x"},  # unknown field: refused, not silently dropped
    {"url": "wss://a:1", "subscriptions": [{"database": "d"}]},
])
def test_node_request_rejects_bad_input(bad):
    with pytest.raises(ValidationError):
        NodeRequest.model_validate(bad)


def test_node_request_and_authorization_never_show_the_password():
    req = NodeRequest(url="wss://a:1", authorization={"username": "admin", "password": PASSWORD})
    for text in (repr(req), str(req), repr(req.authorization), req.model_dump_json(), str(req.model_dump())):
        assert PASSWORD not in text
    with pytest.raises(ValidationError) as info:
        NodeRequest.model_validate({"url": "ftp://a", "authorization": {"username": "admin", "password": PASSWORD}})
    assert PASSWORD not in str(info.value)


# --------------------------------------------------------------------------- Route

@pytest.mark.parametrize("raw, hostname, port, scheme", [
    ("wss://127.0.0.32:9933", "127.0.0.32", 9933, "wss"),
    ("ws://node-1:9925", "node-1", 9925, "ws"),
    ("wss://[::1]:9933", "::1", 9933, "wss"),
    ("node-1:9933", "node-1", 9933, "wss"),
    ("node-1", "node-1", None, "wss"),
    ({"hostname": "node-1", "port": 9933}, "node-1", 9933, "wss"),
    ({"host": "node-1", "port": 9933}, "node-1", 9933, "wss"),
    ({"host": "node-1", "hostname": "node-1", "port": 9933}, "node-1", 9933, "wss"),
    ({"hostname": "node-1", "port": "9933"}, "node-1", 9933, "wss"),
    ({"hostname": "node-1:9944"}, "node-1", 9944, "wss"),
    ({"hostname": "node-1"}, "node-1", None, "wss"),
    ({"url": "wss://node-1:9933"}, "node-1", 9933, "wss"),
])
def test_route_reads_every_harper_spelling(raw, hostname, port, scheme):
    route = Route.model_validate(raw)
    assert (route.hostname, route.port, route.scheme) == (hostname, port, scheme)


@pytest.mark.parametrize("raw", ["http://a:1", "wss://", "", {"port": 9933}, {"hostname": "a", "port": 0},
                                 {"hostname": "a", "port": 70000}, 42])
def test_route_rejects_garbage(raw):
    with pytest.raises(ValidationError):
        Route.model_validate(raw)


def test_route_is_sent_as_a_url_string():
    assert Route(hostname="node-1", port=9933).to_wire() == "wss://node-1:9933"
    assert Route(hostname="::1", port=9933).to_wire() == "wss://[::1]:9933"
    assert Route(hostname="node-1").to_wire() == "node-1"  # Harper picks its own replication port
    assert Route(hostname="node-1", scheme="ws").to_wire() == "ws://node-1"
    assert str(Route(hostname="node-1", port=9933)) == "wss://node-1:9933"


def test_routes_are_hashable_values():
    a = Route.model_validate("wss://n:9933")
    b = Route.model_validate({"hostname": "n", "port": 9933})
    assert a == b and len({a, b}) == 1
    with pytest.raises(ValidationError):
        a.port = 1  # frozen


def test_parse_routes_skips_unreadable_entries():
    assert parse_routes(["wss://a:1", {"nope": 1}, 5, {"host": "b", "port": 2}]) == [
        Route(hostname="a", port=1), Route(hostname="b", port=2)]
    assert parse_routes(None) == [] and parse_routes({"hub": []}) == []


hostnames = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(hostname=hostnames, port=st.one_of(st.none(), st.integers(1, 65535)))
def test_route_round_trips_through_its_wire_form(hostname, port):
    route = Route(hostname=hostname, port=port)
    again = Route.model_validate(route.to_wire())
    assert again.port == route.port
    assert again.hostname.lower() == route.hostname.lower() or again.hostname == route.hostname


# --------------------------------------------------------------------------- DatabaseSocket

SOCKET_47 = {
    "database": "data", "connected": True, "latency": 4.2, "threadId": 1, "nodes": ["127.0.0.32"],
    "lastCommitConfirmed": "Wed, 25 Nov 2026 18:34:22 GMT",
    "lastReceivedRemoteTime": "Wed, 25 Nov 2026 18:34:23 GMT",
    "lastReceivedLocalTime": "Wed, 25 Nov 2026 18:34:25 GMT",
    "sendingMessage": "Wed, 25 Nov 2026 18:34:20 GMT",
    "lastReceivedVersion": 1795631664053.9932, "backPressurePercent": 12.5, "lastReceivedStatus": "Receiving",
}


def test_socket_maps_every_47_field():
    s = DatabaseSocket.model_validate(SOCKET_47)
    assert (s.database, s.connected, s.latency, s.thread_id, s.nodes) == ("data", True, 4.2, 1, ["127.0.0.32"])
    assert s.last_commit_confirmed == datetime(2026, 11, 25, 18, 34, 22, tzinfo=UTC)
    assert s.sending_message == datetime(2026, 11, 25, 18, 34, 20, tzinfo=UTC)
    assert s.last_received_version == 1795631664053.9932
    assert s.back_pressure_percent == 12.5 and s.last_received_status == "Receiving"
    assert s.lag_ms == 2000.0
    assert not s.stalled and not s.copying


def test_socket_accepts_snake_case_and_44_spellings():
    s = DatabaseSocket.model_validate({"database": "d", "connected": True, "thread_id": 3,
                                       "catching_up_from": "up-to-date", "last_received_local_time": 1795629600000})
    assert s.thread_id == 3
    assert s.model_extra == {"catching_up_from": "up-to-date"}  # unknown fields kept
    assert s.last_received_local_time == datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def test_socket_with_nothing_set_yet():
    s = DatabaseSocket.model_validate({"database": "system"})
    assert s.connected is False and s.lag_ms is None and s.back_pressure_percent is None and s.nodes == []
    assert s.stalled  # not connected


def test_socket_copying_marker():
    s = DatabaseSocket.model_validate({**SOCKET_47, "sendingMessage": "Copying"})
    assert s.copying and s.sending_message is None


@pytest.mark.parametrize("pressure, stalled", [(None, False), (0, False), (49.9, False), (50, True), (100, True)])
def test_socket_stalled_by_back_pressure(pressure, stalled):
    assert DatabaseSocket.model_validate({**SOCKET_47, "backPressurePercent": pressure}).stalled is stalled


def test_socket_nodes_tolerates_objects_and_junk():
    assert DatabaseSocket.model_validate({"nodes": [{"name": "a"}, "b", 3]}).nodes == ["a", "b"]
    assert DatabaseSocket.model_validate({"nodes": "a"}).nodes == []


# --------------------------------------------------------------------------- Connection

def _conn(**overrides):
    base = {"name": "127.0.0.32", "url": "wss://127.0.0.32:9933", "replicates": True, "subscriptions": None,
            "database_sockets": [dict(SOCKET_47, database="system"), dict(SOCKET_47)]}
    base.update(overrides)
    return Connection.model_validate(base)


def test_connection_connected_needs_every_socket_and_at_least_one():
    assert _conn().connected
    assert not _conn(database_sockets=[]).connected  # a peer that never authenticated
    down = _conn(database_sockets=[dict(SOCKET_47, database="system"), dict(SOCKET_47, connected=False)])
    assert not down.connected
    assert down.connected_databases == ["system"]
    assert [s.database for s in down.stalled_sockets] == ["data"]


def test_connection_lag_and_back_pressure_are_maxima():
    c = _conn(database_sockets=[
        dict(SOCKET_47, backPressurePercent=3),
        dict(SOCKET_47, lastReceivedLocalTime="Wed, 25 Nov 2026 18:34:30 GMT", backPressurePercent=7),
        {"database": "x", "connected": True},
    ])
    assert c.lag_ms == 7000.0 and c.back_pressure == 7
    assert _conn(database_sockets=[{"database": "x", "connected": True}]).lag_ms is None
    assert _conn(database_sockets=[{"database": "x", "connected": True}]).back_pressure is None
    assert c.socket("x").database == "x" and c.socket("nope") is None


def test_connection_drops_retained_authorization():
    c = _conn(authorization="Basic YWRtaW46czNjcmV0LXBhNTV3b3Jk")
    assert c.has_authorization
    assert "YWRtaW46" not in c.model_dump_json() and "YWRtaW46" not in repr(c)
    assert not _conn().has_authorization


def test_connection_optional_record_fields():
    c = _conn(shard=2, start_time=1795629600000, revoked_certificates=["A"],
              ca_info={"issuer": "CN=x", "subject": "CN=x", "serialNumber": "23F4", "validFrom": "Nov 25 18:33:18 2026 GMT",
                       "validTo": "Nov 22 18:33:18 2036 GMT", "subjectAltName": "IP Address:127.0.0.1"},
              subscriptions=[{"database": "data", "table": "dog", "subscribe": True, "publish": False}])
    assert c.shard == 2 and c.revoked_certificates == ["A"]
    assert c.start_time == datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    assert c.ca_info == CaInfo(issuer="CN=x", subject="CN=x", serial_number="23F4",
                               valid_from=datetime(2026, 11, 25, 18, 33, 18, tzinfo=UTC),
                               valid_to=datetime(2036, 11, 22, 18, 33, 18, tzinfo=UTC),
                               subject_alt_name="IP Address:127.0.0.1")
    assert c.subscriptions == [Subscription(database="data", table="dog", subscribe=True, publish=False)]
    assert _conn(start_time="2026-11-25T18:00:00Z").start_time == c.start_time


@pytest.mark.parametrize("raw, shard", [(0, 0), (3, 3), (3.0, 3), ("4", 4), (None, None), (True, None), ("x", None),
                                        (2.5, None)])
def test_connection_shard_coercion(raw, shard):
    assert _conn(shard=raw).shard == shard


def test_connection_tolerates_odd_subscriptions_and_replicates():
    assert _conn(subscriptions=[{"database": "d"}]).subscriptions is None  # unreadable: dropped, not fatal
    assert _conn(subscriptions=[{"schema": "d", "table": None, "subscribe": True, "publish": True,
                                 "extra": 1}]).subscriptions[0].database == "d"
    assert _conn(replicates={"sends": True}).replicates == {"sends": True}
    assert _conn(database_sockets=None).database_sockets == []


def test_connection_nats_era_shape_parses():
    c = Connection.model_validate({"node_name": "old", "status": "open", "ports": {"clustering": 9932},
                                   "latency_ms": 3, "subscriptions": [{"schema": "dev", "table": "dog",
                                                                       "subscribe": True, "publish": True}]})
    assert c.name == "old" and not c.connected and c.model_extra["status"] == "open"


# --------------------------------------------------------------------------- ClusterStatus

def test_cluster_status_helpers():
    status = ClusterStatus.model_validate({
        "type": "cluster-status", "node_name": "127.0.0.31", "url": "wss://127.0.0.31:9933", "is_enabled": True,
        "connections": [_conn().model_dump(), {"name": "127.0.0.33", "database_sockets": [{"connected": False}]}],
    })
    assert status.peer_names == ["127.0.0.32", "127.0.0.33"]
    assert status.connected_peers == ["127.0.0.32"]
    assert status.connection("127.0.0.33").connected is False and status.connection("x") is None
    assert status.max_lag_ms == 2000.0 and status.shard is None


def test_cluster_status_minimal_and_junk_shapes():
    assert ClusterStatus.model_validate({}).connections == []
    assert ClusterStatus.model_validate({"connections": "nope", "shard": "2"}).shard == 2
    assert ClusterStatus.model_validate({"node_name": "n", "future_field": 1}).model_extra == {"future_field": 1}


# --------------------------------------------------------------------------- write answers

def test_node_write_result_names_the_peer():
    r = NodeWriteResult(message="Successfully added 'wss://a:1' to cluster", url="wss://a:1")
    assert r.node_name == "a"
    assert NodeWriteResult(message="x").node_name is None
    assert node_name_from_url("wss://[::1]:9933") == "::1"


def test_configure_cluster_result_ok_and_failures():
    ok = ConfigureClusterResult.model_validate({"message": "Configure cluster complete.", "connections": [
        {"node_name": "a", "response": "Successfully added 'wss://a:1' to cluster"}]})
    assert ok.ok
    half = ConfigureClusterResult.model_validate({"message": "m", "connections": [
        {"response": "Successfully added 'wss://b:1' to cluster but there was an error updating target node: x"}]})
    assert not half.ok and half.connections[0].failed
    partial = ConfigureClusterResult.model_validate({"message": "m", "failed_nodes": [None], "connections": []})
    assert not partial.ok
    odd = ConfigureClusterResult.model_validate({"connections": [{"response": {"message": "Successfully added"}},
                                                                 {"response": {"weird": 1}}]})
    assert not odd.connections[0].failed and odd.connections[1].failed


def test_routes_result_reads_mixed_forms():
    r = RoutesResult.model_validate({"message": "cluster routes successfully set",
                                     "set": ["wss://a:1"], "skipped": [{"hostname": "b", "port": 2}]})
    assert r.added == [Route(hostname="a", port=1)] and r.skipped == [Route(hostname="b", port=2)]
    assert RoutesResult.model_validate({"deleted": [{"host": "c", "port": 3}]}).deleted == [Route(hostname="c", port=3)]


def test_tokens_read_expiry_without_showing_tokens():
    now = time.time()
    tokens = Tokens.model_validate({"operation_token": make_jwt(exp=now + 60, iat=now),
                                    "refresh_token": make_jwt(exp=now + 3600, iat=now, sub="refresh")})
    assert abs(tokens.operation_expires_at.timestamp() - (now + 60)) < 1.5
    assert abs(tokens.refresh_expires_at.timestamp() - (now + 3600)) < 1.5
    assert tokens.operation_issued_at is not None and tokens.refresh_issued_at is not None
    assert "eyJ" not in repr(tokens)
    opaque = Tokens(operation_token="not-a-jwt")
    assert opaque.operation_expires_at is None and opaque.refresh_expires_at is None


# list_certificates of Harper 4.7.29 nodes (PEMs left out), recorded on 2026-12-07: one left to make its own
# certificates, one given a certificate of the cluster's authority (TLS_CERTIFICATE and friends).
_HARPER_CA = "CN=HarperDB-Certificate-Authority-127.0.0.11 C=USA ST=Colorado L=Denver O=HarperDB\\, Inc."
_CLUSTER_CA = "O=harper-operator CN=harper-operator CA exp/tls 20261207035309"
HARPER_MADE = [
    {"name": "127.0.0.11", "is_authority": False, "is_self_signed": True,
     "details": {"subject": "CN=127.0.0.11 C=USA ST=Colorado L=Denver O=HarperDB\\, Inc.", "issuer": _HARPER_CA,
                 "serial_number": "1546E0D0A13A3F27"}},
    {"name": "HarperDB-Certificate-Authority-127.0.0.11", "is_authority": True, "is_self_signed": True,
     "details": {"subject": _HARPER_CA, "issuer": _HARPER_CA, "serial_number": "0523DDA45D5329EF"}}]
CLUSTER_GIVEN = [
    {"name": "127.0.0.11", "is_authority": False, "is_self_signed": None,
     "details": {"subject": "CN=127.0.0.11", "issuer": _CLUSTER_CA, "serial_number": "582C3A99A5FB6020"}},
    {"name": "HarperDB-Certificate-Authority-127.0.0.11", "is_authority": True, "is_self_signed": True,
     "details": {"subject": _HARPER_CA, "issuer": _HARPER_CA, "serial_number": "3FD210577F8290E7"}},
    {"name": "harper-operator CA exp/tls 20261207035309", "is_authority": True, "is_self_signed": None,
     "details": {"subject": _CLUSTER_CA, "issuer": _CLUSTER_CA, "serial_number": "2E1051B8067BD4FF"}}]


@pytest.mark.parametrize("answer,serial", [(HARPER_MADE, "0523DDA45D5329EF"), (CLUSTER_GIVEN, "2E1051B8067BD4FF")],
                         ids=["harper-made", "cluster-ca"])
def test_own_authority_is_the_signer_of_the_nodes_own_certificate(answer, serial):
    # A node given a certificate still makes a CA of its own, which signs nothing it uses: a wiped node that comes
    # back with the cluster's certificate is the same to its peers, not a stranger with a new CA.
    certificates = [models.Certificate.model_validate(c) for c in answer]
    assert models.own_authority(certificates, "127.0.0.11").serial_number == serial
    # Without its own certificate in the list: the CA Harper names after the node, as before.
    assert models.own_authority(certificates[1:], "127.0.0.11").name == "HarperDB-Certificate-Authority-127.0.0.11"
    assert models.own_authority(certificates, "127.0.0.99") is None


def test_a_certificate_keeps_its_pem_and_never_a_private_key():
    cert = models.Certificate.model_validate({**CLUSTER_GIVEN[0], "certificate": "-----BEGIN CERTIFICATE-----",
                                              "private_key": "-----BEGIN PRIVATE KEY-----", "private_key_name": "k"})
    assert cert.certificate == "-----BEGIN CERTIFICATE-----" and "PRIVATE" not in str(cert.model_dump())
    assert "BEGIN" not in repr(cert)
