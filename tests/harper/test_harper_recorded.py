"""Real Harper 4.7.29 answers (recorded from loopback nodes, secrets scrubbed) through the models
and through the client's error mapping, replayed by a fake server."""

from __future__ import annotations

import json
import re

import pytest
from harper_fakes import RECORDED, all_recordings, recording

from harper_operator.harper import (
    AuthenticationError,
    AuthorizationError,
    ClusterStatus,
    FalseSuccessError,
    NodeRequest,
    OperationNotFoundError,
    PeerRejectedError,
    PeerUnreachableError,
    RequestValidationError,
    Route,
    RoutesResult,
    Tokens,
    TransientHarperError,
    UnknownNodeError,
)

STATUS_RECORDINGS = sorted(n for n, r in all_recordings().items() if r["request"].get("operation") == "cluster_status"
                           and r["status"] == 200)


def test_recordings_hold_no_secrets():
    text = "\n".join(p.read_text() for p in RECORDED.glob("*.json"))
    assert "adminpw" not in text and "YWRtaW46YWRtaW5wdw" not in text  # the experiment's admin password
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    for token in re.findall(r"eyJ[\w-]+\.[\w-]+\.([\w-]+)", text):
        assert token == "SCRUBBED-SIGNATURE"


@pytest.mark.parametrize("name", STATUS_RECORDINGS)
def test_every_recorded_cluster_status_parses(name):
    status = ClusterStatus.model_validate(recording(name)["body"])
    assert status.type == "cluster-status" and status.is_enabled is True and status.node_name
    for conn in status.connections:
        assert conn.name and conn.url.startswith("wss://")
        assert conn.database_sockets, "4.7.29 lists a socket per database for every listed peer"
        assert conn.model_extra.get("authorization") is None


def test_fresh_node_has_no_peers_and_no_url():
    status = ClusterStatus.model_validate(recording("cluster_status_no_peers")["body"])
    assert status.connections == [] and status.node_name == "127.0.0.31" and status.url is None


def test_two_connected_peers():
    status = ClusterStatus.model_validate(recording("cluster_status_2_peers_connected")["body"])
    assert status.url == "wss://127.0.0.31:9933"
    assert sorted(status.connected_peers) == ["127.0.0.32", "127.0.0.33"]
    for conn in status.connections:
        assert sorted(conn.connected_databases) == ["data", "system"]
        assert conn.back_pressure == 0 and conn.ca_info.serial_number
        assert conn.socket("system").lag_ms == 0.0 and conn.socket("data").lag_ms is None  # nothing received yet
        assert conn.lag_ms == 0.0


def test_stopped_peer_stays_listed_disconnected():
    status = ClusterStatus.model_validate(recording("cluster_status_2_peers_one_stopped")["body"])
    assert status.connected_peers == ["127.0.0.32"]
    stopped = status.connection("127.0.0.33")
    assert not stopped.connected and stopped.connected_databases == []
    assert {s.database for s in stopped.stalled_sockets} == {"system", "data"}


def test_ghost_peer_listed_without_latency_or_times():
    status = ClusterStatus.model_validate(recording("cluster_status_with_ghost_and_stopped")["body"])
    ghost = status.connection("127.0.0.39")
    assert not ghost.connected and ghost.ca_info is None
    assert all(s.latency is None and s.lag_ms is None for s in ghost.database_sockets)
    assert status.connection("127.0.0.33").shard == 3


def test_retained_authorization_is_stripped_from_status():
    raw = recording("cluster_status_with_retained_authorization")["body"]
    assert any("authorization" in c for c in raw["connections"])
    status = ClusterStatus.model_validate(raw)
    assert any(c.has_authorization for c in status.connections)
    assert "Basic" not in status.model_dump_json()


def test_subscriptions_do_not_show_in_status_while_replicating_fully():
    # update_node wrote subscriptions to both nodes' records, but with `replicates: true` Harper
    # hides them (they are only for the old NATS clustering) and keeps replicating everything.
    for name in ("cluster_status_with_subscriptions", "cluster_status_with_subscriptions_other_side"):
        status = ClusterStatus.model_validate(recording(name)["body"])
        assert all(c.subscriptions is None and c.replicates is True for c in status.connections)


def test_recorded_routes_answers_parse():
    assert RoutesResult.model_validate(recording("routes_set_hostname_port")["body"]).added == [
        Route(hostname="127.0.0.31", port=9933)]
    dup = RoutesResult.model_validate(recording("routes_set_after_restart_appends")["body"])
    # Harper's loose comparison: a different host on the same port counted as a duplicate.
    assert dup.skipped == [Route(hostname="127.0.0.31", port=9933)]
    wrong = RoutesResult.model_validate(recording("routes_delete_hostname_form_matches_any_same_port")["body"])
    assert wrong.deleted == [Route(hostname="127.0.0.32", port=9933)]  # asked for .99, got .32 deleted
    from harper_operator.harper.models import parse_routes
    assert parse_routes(recording("routes_get_after_second_set")["body"]) == [
        Route(hostname="127.0.0.32", port=9933), Route(hostname="127.0.0.34", port=9933)]


def test_recorded_tokens_parse():
    tokens = Tokens.model_validate(recording("tokens_create_body_credentials")["body"])
    assert tokens.operation_expires_at > tokens.operation_issued_at
    assert (tokens.refresh_expires_at - tokens.refresh_issued_at).days == 30
    assert (tokens.operation_expires_at - tokens.operation_issued_at).days == 1


# --------------------------------------------------------------------------- error mapping, replayed

def _node_request(name: str) -> NodeRequest:
    body = dict(recording(name)["request"])
    body.pop("operation")
    return NodeRequest.model_validate(body)


GENERIC_ERRORS = {
    "error_add_node_bad_hostname": RequestValidationError,
    "error_add_node_bad_shard": RequestValidationError,
    "error_add_node_self_signed_no_auth": PeerRejectedError,
    "error_add_node_wrong_peer_password": PeerRejectedError,
    "add_node_unreachable_first_join": PeerUnreachableError,
    "error_bearer_expired": AuthenticationError,
    "error_bearer_invalid": AuthenticationError,
    "error_configure_cluster_bad_connections": RequestValidationError,
    "configure_cluster_all_failed": TransientHarperError,
    "error_empty_body": RequestValidationError,
    "error_forbidden_add_node": AuthorizationError,
    "error_forbidden_cluster_status": AuthorizationError,
    "error_forbidden_get_configuration": AuthorizationError,
    "error_login_failed": AuthenticationError,
    "error_must_login": AuthenticationError,
    "error_operation_not_found": OperationNotFoundError,
    "error_set_node_not_found": OperationNotFoundError,
    "error_remove_unknown_node": UnknownNodeError,
    "error_routes_set_bad": RequestValidationError,
    "error_routes_set_missing": RequestValidationError,
    "error_tokens_bad_password": AuthenticationError,
    "error_update_node_shard_null": RequestValidationError,
    "error_refresh_with_operation_token": RequestValidationError,
}


@pytest.mark.parametrize("name, expected", sorted(GENERIC_ERRORS.items()))
async def test_recorded_errors_map_to_the_right_class(replay, name, expected):
    client, load = replay
    load(name)
    with pytest.raises(expected) as info:
        await client.operation(recording(name)["request"])
    assert type(info.value) is expected
    assert info.value.status == recording(name)["status"]


async def test_recorded_unauthorized_access_is_kept(replay):
    client, load = replay
    load("error_forbidden_cluster_status")
    with pytest.raises(AuthorizationError) as info:
        await client.cluster_status()
    assert info.value.unauthorized_access == ["Operation 'clusterStatus' is restricted to 'super_user' roles"]
    assert "restricted to 'super_user'" in str(info.value)


async def test_recorded_unknown_node_names_the_node(replay):
    client, load = replay
    load("error_remove_unknown_node")
    with pytest.raises(UnknownNodeError) as info:
        await client.remove_node("127.0.0.99")
    assert info.value.node_name == "127.0.0.99"


@pytest.mark.parametrize("name", ["add_node_target_down_false_success", "add_node_ghost_after_join"])
async def test_recorded_half_failed_add_node_is_false_success(replay, name):
    client, load = replay
    load(name)
    with pytest.raises(FalseSuccessError) as info:
        await client.add_node(_node_request(name))
    assert info.value.peer is not None and info.value.peer_transient
    assert "ECONNREFUSED" in info.value.peer.reason


async def test_recorded_half_failed_update_node_is_false_success(replay):
    client, load = replay
    load("update_node_target_down_false_success")
    with pytest.raises(FalseSuccessError) as info:
        await client.update_node(_node_request("update_node_target_down_false_success"))
    assert info.value.peer.peer_url == "wss://127.0.0.33:9933"


@pytest.mark.parametrize("name", ["add_node_ok_first_join", "add_node_ok_third", "add_node_repeat_identical",
                                  "add_node_readd_after_remove", "add_node_wrong_password_already_connected",
                                  "add_node_verify_tls_true_already_connected"])
async def test_recorded_add_node_successes(replay, name):
    client, load = replay
    load(name)
    result = await client.add_node(_node_request(name))
    assert result.url == recording(name)["request"]["url"]


@pytest.mark.parametrize("name", ["update_node_shard_ok", "update_node_subscriptions_ok",
                                  "update_node_retain_authorization"])
async def test_recorded_update_node_successes(replay, name):
    client, load = replay
    load(name)
    assert (await client.update_node(_node_request(name))).message.startswith("Successfully updated")


@pytest.mark.parametrize("name, ok", [("configure_cluster_ok", True), ("configure_cluster_empty", True),
                                      ("configure_cluster_partial_unreachable", False),
                                      ("configure_cluster_partial_invalid", False),
                                      ("configure_cluster_partial_with_node_name", False)])
async def test_recorded_configure_cluster(replay, name, ok):
    client, load = replay
    load(name)
    if ok:
        assert (await client.configure_cluster([])).ok
        return
    with pytest.raises(FalseSuccessError) as info:
        await client.configure_cluster([])
    assert not info.value.result.ok


async def test_recorded_partial_configure_cluster_names_failed_nodes(replay):
    client, load = replay
    load("configure_cluster_partial_with_node_name")
    with pytest.raises(FalseSuccessError) as info:
        await client.configure_cluster([])
    assert info.value.result.failed_nodes == ["127.0.0.38"] and "127.0.0.38" in str(info.value)


async def test_recorded_remove_node_and_restart(replay):
    client, load = replay
    load("remove_node_ok")
    assert await client.remove_node("127.0.0.33") == "Successfully removed '127.0.0.33' from cluster"
    load("restart_ok")
    assert "Restarting" in await client.restart()


async def test_recorded_configuration_gives_routes(replay):
    client, load = replay
    load("get_configuration")
    assert await client.cluster_get_routes() == [Route(hostname="127.0.0.32", port=9933)]
    config = await client.get_configuration()
    assert config["replication"]["hostname"] == "127.0.0.33"


def test_recordings_are_valid_json_with_provenance():
    for name, rec in all_recordings().items():
        assert rec["harper_version"] == "4.7.29", name
        assert isinstance(rec["status"], int) and "request" in rec, name
        json.dumps(rec)


def test_subscription_only_peer():
    # First join WITH subscriptions: no `replicates`, no system socket, and the records stay
    # per node (system is not replicated, so each node holds only its peer's record).
    status = ClusterStatus.model_validate(recording("cluster_status_subscription_only_peer")["body"])
    peer = status.connection("127.0.0.34")
    assert peer.connected and peer.replicates is None and peer.shard == 2
    assert [s.database for s in peer.database_sockets] == ["data"]
    assert peer.subscriptions[0].table == "dog" and peer.subscriptions[0].publish is True
    assert status.url is None  # no record of its own either


def test_shard_from_replication_config_shows_on_self():
    status = ClusterStatus.model_validate(recording("cluster_status_shard_from_config")["body"])
    assert status.shard == 7


def test_mixed_modes_leave_an_unconnectable_peer():
    status = ClusterStatus.model_validate(recording("cluster_status_mixed_full_and_subscription_peers")["body"])
    assert status.connection("127.0.0.34").connected and status.connection("127.0.0.34").shard == 7
    assert not status.connection("127.0.0.35").connected


def test_a_first_join_the_peer_cut_is_told_from_the_other_first_join_failures():
    """Harper adds "and connection was required to sign certificate" to any failure of a first join: only a socket
    the peer cut (1006) says it may trust an old CA of ours (docs/harper-semantics.md, section 9)."""
    from harper_operator.harper.errors import PeerFailure
    suffix = " and connection was required to sign certificate"
    assert PeerFailure("wss://p:9933", "Connection closed  1006" + suffix).closed_at_first_join  # 4.7.29's spacing
    assert not PeerFailure("wss://p:9933", "connect ECONNREFUSED 127.0.0.39:9933" + suffix).closed_at_first_join
    assert not PeerFailure("wss://p:9933", "Connection closed Unauthorized 1008" + suffix).closed_at_first_join
    assert not PeerFailure("wss://p:9933", "Connection closed 1006").closed_at_first_join
