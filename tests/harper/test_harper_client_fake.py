"""HarperClient against local fakes: wire format, error mapping, tokens, timeouts, TLS, secrets."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from harper_fakes import PASSWORD, Reply, Seen, make_jwt, recording, start_fake

from harper_operator.harper import (
    AuthenticationError,
    Authorization,
    FalseSuccessError,
    HarperClient,
    HarperError,
    InvalidTargetError,
    NodeRequest,
    PeerRejectedError,
    RequestValidationError,
    Route,
    Subscription,
    TLSVerificationError,
    TransientHarperError,
    UnexpectedAnswerError,
)

OK_ADD = {"message": "Successfully added 'wss://n1:9933' to cluster"}


def client_for(url: str, **kw) -> HarperClient:
    kw.setdefault("timeout", 2.0)
    return HarperClient(url, username="admin", password=PASSWORD, **kw)


class Calls(list):
    def __call__(self, operation, outcome, seconds):
        assert seconds >= 0
        self.append((operation, outcome))


# --------------------------------------------------------------------------- wire format

async def test_fake_sends_basic_auth_json_post(fake_harper):
    fake_harper.on("cluster_status", Reply(200, recording("cluster_status_no_peers")["body"]))
    async with client_for(fake_harper.url) as client:
        status = await client.cluster_status()
    assert status.node_name == "127.0.0.31"
    seen = fake_harper.seen[0]
    assert seen.body == {"operation": "cluster_status"}
    assert seen.authorization == "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert seen.headers["Content-Type"] == "application/json"


async def test_fake_add_node_wire_body_and_set_node_alias(fake_harper):
    fake_harper.on("add_node", Reply(200, OK_ADD))
    req = NodeRequest(hostname="n1", url="wss://n1:9933", verify_tls=False, shard=1,
                      authorization=Authorization(username="admin", password=PASSWORD),
                      subscriptions=[Subscription(database="data", subscribe=True, publish=True)])
    async with client_for(fake_harper.url) as client:
        result = await client.add_node(req)
        await client.set_node(req)
    assert result.url == "wss://n1:9933" and result.node_name == "n1"
    assert fake_harper.ops() == ["add_node", "add_node"]  # 4.7.29 has no set_node operation
    assert fake_harper.seen[0].body == req.to_wire("add_node")


async def test_fake_update_and_remove_node(fake_harper):
    fake_harper.on("update_node", Reply(200, {"message": "Successfully updated 'wss://n1:9933'"}))
    fake_harper.on("remove_node", Reply(200, {"message": "Successfully removed 'n1' from cluster"}))
    async with client_for(fake_harper.url) as client:
        assert (await client.update_node(NodeRequest(url="wss://n1:9933", shard=2))).url == "wss://n1:9933"
        assert await client.remove_node("n1") == "Successfully removed 'n1' from cluster"
    assert fake_harper.seen[1].body == {"operation": "remove_node", "hostname": "n1"}


async def test_fake_configure_cluster_names_each_connection(fake_harper):
    fake_harper.on("configure_cluster", Reply(200, recording("configure_cluster_ok")["body"]))
    reqs = [NodeRequest(url="wss://127.0.0.32:9933"), NodeRequest(hostname="n3", url="wss://127.0.0.33:9933")]
    async with client_for(fake_harper.url) as client:
        result = await client.configure_cluster(reqs)
    assert result.ok and len(result.connections) == 2
    sent = fake_harper.seen[0].body["connections"]
    assert [c["node_name"] for c in sent] == ["127.0.0.32", "n3"]
    assert all("operation" not in c for c in sent)


def _config_routes(fake, routes):
    """A fake whose config file holds `routes` and whose set_configuration rewrites them."""
    state = {"routes": list(routes)}
    fake.on("get_configuration", lambda _s: Reply(200, {"replication": {"hostname": "n", "routes": state["routes"]}}))

    def set_configuration(seen: Seen) -> Reply:
        state["routes"] = seen.body["replication_routes"]
        return Reply(200, {"message": "Configuration successfully set. You must restart HarperDB for new config "
                                      "settings to take effect."})
    fake.on("set_configuration", set_configuration)
    return state


async def test_fake_set_routes_appends_url_strings_to_the_file(fake_harper):
    state = _config_routes(fake_harper, [{"hostname": "a", "port": 9933, "startTime": 5}])
    async with client_for(fake_harper.url) as client:
        result = await client.cluster_set_routes([Route(hostname="a", port=9933), "wss://b:9933", {"host": "c"}])
        assert result.added == [Route(hostname="b", port=9933), Route(hostname="c")]
        assert result.skipped == [Route(hostname="a", port=9933)]
        assert state["routes"] == [{"hostname": "a", "port": 9933, "startTime": 5}, "wss://b:9933", "c"]
        assert await client.cluster_get_routes() == [Route(hostname="a", port=9933), Route(hostname="b", port=9933),
                                                     Route(hostname="c")]
        writes = fake_harper.ops().count("set_configuration")
        again = await client.cluster_set_routes(["wss://b:9933"])
    assert again.added == [] and fake_harper.ops().count("set_configuration") == writes  # no-op: no write


async def test_fake_delete_routes_in_any_spelling(fake_harper):
    state = _config_routes(fake_harper, ["wss://a:9933", {"hostname": "b", "port": 9933}, {"host": "c", "port": 9933},
                                         {"weird": True}])
    async with client_for(fake_harper.url) as client:
        result = await client.cluster_delete_routes([Route(hostname="b", port=9933), "wss://c:9933", "wss://z:1"])
    assert result.deleted == [Route(hostname="b", port=9933), Route(hostname="c", port=9933)]
    assert result.skipped == [Route(hostname="z", port=1)]
    assert state["routes"] == ["wss://a:9933", {"weird": True}]  # untouched entries kept verbatim


async def test_fake_replace_and_loaded_routes(fake_harper):
    state = _config_routes(fake_harper, ["wss://old:1"])
    fake_harper.on("cluster_get_routes", Reply(200, {"hub": [{"host": "h", "port": 1}], "leaf": ["wss://l:2"]}))
    async with client_for(fake_harper.url) as client:
        assert "successfully" in await client.replace_routes([Route(hostname="a", port=9933)])
        assert state["routes"] == ["wss://a:9933"]
        assert await client.loaded_routes() == [Route(hostname="h", port=1), Route(hostname="l", port=2)]
        fake_harper.on("set_configuration", Reply(200, {"message": "nothing happened"}))
        with pytest.raises(FalseSuccessError):
            await client.replace_routes([])


async def test_fake_generic_operation_passes_through(fake_harper):
    fake_harper.on("search_by_id", Reply(200, [{"id": 1}]))
    async with client_for(fake_harper.url) as client:
        assert await client.operation({"operation": "search_by_id", "ids": [1]}) == [{"id": 1}]
    assert fake_harper.seen[0].body == {"operation": "search_by_id", "ids": [1]}


# --------------------------------------------------------------------------- error mapping

@pytest.mark.parametrize("reply, expected, outcome", [
    (Reply(503, {"error": "busy"}), TransientHarperError, "transient"),
    (Reply(429, text="slow down"), TransientHarperError, "transient"),
    (Reply(404, text="Not found"), UnexpectedAnswerError, "permanent"),
    (Reply(200, text="<html>hello</html>"), UnexpectedAnswerError, "permanent"),
    (Reply(200, {"unexpected": True}), FalseSuccessError, "false_success"),
    (Reply(200, {"message": "Successfully added 'x' but there was an error updating target node: boom"}),
     FalseSuccessError, "false_success"),
    (Reply(200, {"message": "Something else entirely"}), FalseSuccessError, "false_success"),
    (Reply(500, {"error": "Error returned from wss://n1:9933: Connection closed Unauthorized 1008 and connection was "
                          "required to sign certificate"}), PeerRejectedError, "permanent"),
    (Reply(400, {"statusCode": 400, "error": "Bad Request", "message": "Invalid JSON."}),
     RequestValidationError, "permanent"),
])
async def test_fake_add_node_answers_map_to_errors(fake_harper, reply, expected, outcome):
    if reply.json == {"unexpected": True}:
        expected = UnexpectedAnswerError  # no message at all: not Harper's add_node answer
        outcome = "permanent"
    fake_harper.on("add_node", reply)
    calls = Calls()
    async with client_for(fake_harper.url, observer=calls) as client:
        with pytest.raises(expected) as info:
            await client.add_node(NodeRequest(url="wss://n1:9933"))
    assert calls == [("add_node", outcome)]
    assert info.value.outcome == outcome and info.value.operation == "add_node"
    if expected is RequestValidationError:
        assert info.value.message == "Invalid JSON."


async def test_fake_observer_sees_every_call_and_cannot_break_them(fake_harper):
    def broken(*_args):
        raise RuntimeError("metrics are down")
    fake_harper.on("cluster_status", Reply(200, {"connections": []}))
    async with client_for(fake_harper.url, observer=broken) as client:
        assert (await client.cluster_status()).connections == []
        assert await client.health()


async def test_fake_connection_refused_is_transient_and_unsent():
    calls = Calls()
    async with client_for("http://127.0.0.1:9", observer=calls) as client:
        with pytest.raises(TransientHarperError) as info:
            await client.cluster_status()
        assert not await client.health()
    assert info.value.request_sent is False and info.value.status is None
    assert calls == [("cluster_status", "transient"), ("health", "transient")]


async def test_fake_timeout_is_transient_and_bounded(fake_harper):
    fake_harper.on("cluster_status", Reply(200, {}, delay=5))
    async with client_for(fake_harper.url, timeout=0.3) as client:
        start = time.monotonic()
        with pytest.raises(TransientHarperError) as info:
            await client.cluster_status()
        assert time.monotonic() - start < 2
    assert info.value.request_sent and "0.3s" in info.value.message


async def test_fake_writes_use_write_timeout(fake_harper):
    fake_harper.on("add_node", Reply(200, OK_ADD, delay=0.6))
    async with client_for(fake_harper.url, timeout=0.2, write_timeout=3) as client:
        assert (await client.add_node(NodeRequest(url="wss://n1:9933"))).url == "wss://n1:9933"
    async with client_for(fake_harper.url, timeout=0.2) as client:
        with pytest.raises(TransientHarperError):
            await client.add_node(NodeRequest(url="wss://n1:9933"))


async def test_fake_silent_server_times_out(raw_server):
    server = await raw_server(["hang"])
    async with client_for(server.url, timeout=0.3) as client:
        with pytest.raises(TransientHarperError):
            await client.get_configuration()


async def test_fake_dropped_connection_retried_once_for_reads(raw_server):
    server = await raw_server(["close", (200, {"connections": [], "node_name": "n"})])
    async with client_for(server.url) as client:
        assert (await client.cluster_status()).node_name == "n"
    assert server.connections == 2


async def test_fake_dropped_connection_not_retried_for_writes(raw_server):
    server = await raw_server(["close", (200, OK_ADD)])
    async with client_for(server.url) as client:
        with pytest.raises(TransientHarperError) as info:
            await client.add_node(NodeRequest(url="wss://n1:9933"))
    assert server.connections == 1 and info.value.request_sent


async def test_fake_dropped_twice_gives_up(raw_server):
    server = await raw_server(["close", "close", (200, {})])
    async with client_for(server.url) as client:
        with pytest.raises(TransientHarperError):
            await client.cluster_status()
    assert server.connections == 2


# --------------------------------------------------------------------------- health

async def test_fake_health(fake_harper):
    async with client_for(fake_harper.url) as client:
        assert await client.health()
        fake_harper.health = Reply(503, text="starting")
        assert not await client.health()
        fake_harper.health = Reply(200, text="ok", delay=3)
        client.timeout = 0.2
        assert not await client.health()


# --------------------------------------------------------------------------- tokens

def _token_server(fake, *, op_lifetime: float = 3600, refresh_ok: bool = True):
    """Fake Harper that issues JWTs and accepts only its latest operation token."""
    state = {"logins": 0, "refreshes": 0, "valid": set()}

    def login(seen: Seen) -> Reply:
        assert seen.authorization is None  # credentials travel in the body
        if seen.body.get("password") != PASSWORD:
            return Reply(401, {"error": "invalid credentials"})
        state["logins"] += 1
        op = make_jwt(exp=time.time() + op_lifetime, tag=f"login{state['logins']}")
        state["valid"] = {op}
        return Reply(200, {"operation_token": op,
                           "refresh_token": make_jwt(exp=time.time() + 86400, sub="refresh", tag="r")})

    def refresh(seen: Seen) -> Reply:
        if not refresh_ok or not (seen.authorization or "").startswith("Bearer "):
            return Reply(401, {"error": "invalid token"})
        state["refreshes"] += 1
        op = make_jwt(exp=time.time() + op_lifetime, tag=f"refresh{state['refreshes']}")
        state["valid"] = {op}
        return Reply(200, {"operation_token": op})

    def status(seen: Seen) -> Reply:
        token = (seen.authorization or "").removeprefix("Bearer ")
        if token not in state["valid"]:
            return Reply(401, {"error": "token expired"})
        return Reply(200, {"node_name": "n", "connections": []})

    fake.on("create_authentication_tokens", login)
    fake.on("refresh_operation_token", refresh)
    fake.on("cluster_status", status)
    return state


async def test_fake_token_login_then_bearer(fake_harper):
    state = _token_server(fake_harper)
    calls = Calls()
    async with client_for(fake_harper.url, use_token=True, observer=calls) as client:
        await client.cluster_status()
        await client.cluster_status()
    assert state["logins"] == 1
    assert fake_harper.ops() == ["create_authentication_tokens", "cluster_status", "cluster_status"]
    assert fake_harper.seen[1].authorization.startswith("Bearer ")
    assert calls == [("create_authentication_tokens", "ok"), ("cluster_status", "ok"), ("cluster_status", "ok")]


async def test_fake_token_refreshed_before_expiry(fake_harper):
    state = _token_server(fake_harper, op_lifetime=2)  # inside the renew margin almost at once
    async with client_for(fake_harper.url, use_token=True) as client:
        await client.cluster_status()
        await asyncio.sleep(1.7)
        await client.cluster_status()
    assert state["logins"] == 1 and state["refreshes"] == 1
    refresh = next(s for s in fake_harper.seen if s.operation == "refresh_operation_token")
    assert "sub" in base64.urlsafe_b64decode(refresh.authorization.split(".")[1] + "==").decode()


async def test_fake_token_rejected_is_renewed_once(fake_harper):
    state = _token_server(fake_harper)
    async with client_for(fake_harper.url, use_token=True) as client:
        await client.cluster_status()
        state["valid"] = set()  # the server forgets the token (restart, revocation)
        assert (await client.cluster_status()).node_name == "n"
    assert state["refreshes"] == 1


async def test_fake_token_rejected_twice_raises(fake_harper):
    _token_server(fake_harper)
    fake_harper.on("cluster_status", Reply(401, {"error": "Login failed"}))
    async with client_for(fake_harper.url, use_token=True) as client:
        with pytest.raises(AuthenticationError):
            await client.cluster_status()
    assert fake_harper.ops().count("cluster_status") == 2  # one renewal, no loop


async def test_fake_token_refresh_failure_falls_back_to_login(fake_harper):
    state = _token_server(fake_harper, refresh_ok=False)
    async with client_for(fake_harper.url, use_token=True) as client:
        await client.cluster_status()
        state["valid"] = set()
        await client.cluster_status()
    assert state["logins"] == 2


async def test_fake_token_403_expired_renews(fake_harper):
    state = _token_server(fake_harper)
    first = {"done": False}

    def status(seen: Seen) -> Reply:
        if not first["done"]:
            first["done"] = True
            return Reply(403, {"error": "token expired"})
        return Reply(200, {"connections": []})
    fake_harper.on("cluster_status", status)
    async with client_for(fake_harper.url, use_token=True) as client:
        await client.cluster_status()
    assert state["refreshes"] == 1


async def test_fake_concurrent_calls_log_in_once(fake_harper):
    state = _token_server(fake_harper)
    async with client_for(fake_harper.url, use_token=True) as client:
        await asyncio.gather(*(client.cluster_status() for _ in range(10)))
    assert state["logins"] == 1


async def test_fake_token_bad_password(fake_harper):
    _token_server(fake_harper)
    async with HarperClient(fake_harper.url, username="admin", password="nope", use_token=True) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.cluster_status()
    assert info.value.operation == "create_authentication_tokens"


async def test_fake_create_authentication_tokens(fake_harper):
    _token_server(fake_harper)
    async with client_for(fake_harper.url) as client:
        tokens = await client.create_authentication_tokens()
        await client.operation({"operation": "describe_all"})
    assert tokens.operation_expires_at is not None
    assert fake_harper.seen[-1].authorization.startswith("Basic ")  # not installed without use_token


# --------------------------------------------------------------------------- secrets

async def test_fake_errors_never_carry_credentials(fake_harper):
    peer_pw = "peer-pa55word-xyz"
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    fake_harper.on("add_node", Reply(500, {"error": f"Error returned from wss://n1:9933: boom {peer_pw} {PASSWORD} "
                                                    f"{basic}"}))
    fake_harper.on("cluster_status", Reply(400, {"error": f"'password' {PASSWORD} is not allowed"}))
    async with client_for(fake_harper.url) as client:
        text = repr(client) + str(client)
        with pytest.raises(HarperError) as one:
            await client.add_node(NodeRequest(url="wss://n1:9933",
                                              authorization={"username": "admin", "password": peer_pw}))
        with pytest.raises(HarperError) as two:
            await client.cluster_status()
    for exc in (one.value, two.value):
        text += str(exc) + repr(exc) + " ".join(map(str, exc.args)) + exc.message
    assert PASSWORD not in text and peer_pw not in text and basic not in text
    assert "***" in one.value.message


async def test_fake_token_errors_never_carry_tokens(fake_harper):
    state = _token_server(fake_harper)

    def leaky(seen: Seen) -> Reply:
        return Reply(400, {"error": f"bad request from {seen.authorization}"})
    fake_harper.on("describe_all", leaky)
    async with client_for(fake_harper.url, use_token=True) as client:
        with pytest.raises(RequestValidationError) as info:
            await client.operation({"operation": "describe_all"})
    token = next(iter(state["valid"]))
    assert token not in str(info.value) and "Bearer ***" in str(info.value)


def test_client_constructor_validates_and_hides_password():
    for bad in ("ftp://x:1", "node-0:9925", f"http://admin:{PASSWORD}@x:9925"):
        with pytest.raises(InvalidTargetError) as info:
            HarperClient(bad, username="admin", password=PASSWORD)
        assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    with pytest.raises(InvalidTargetError):
        HarperClient("http://x:1", username="a", password="b", timeout=0)
    client = HarperClient("https://x:9925/prefix/", username="admin", password=PASSWORD)
    assert client.operations_url == "https://x:9925/prefix/" and client.health_url == "https://x:9925/prefix/health"
    assert PASSWORD not in repr(client) and PASSWORD not in str(client) and PASSWORD not in str(vars(client))


# --------------------------------------------------------------------------- TLS

@pytest.fixture
async def tls_fake(cert_authority):
    fake, runner = await start_fake(cert_authority.server_context())
    fake.url = fake.url.replace("127.0.0.1", "localhost")
    fake.on("cluster_status", Reply(200, {"connections": []}))
    yield fake
    await runner.cleanup()


async def test_fake_tls_verified_against_a_ca_bundle(tls_fake, cert_authority):
    async with client_for(tls_fake.url, ca_pem=cert_authority.ca_pem) as client:
        assert (await client.cluster_status()).connections == []
        assert await client.health()


async def test_fake_tls_untrusted_certificate_is_permanent(tls_fake, cert_authority):
    calls = Calls()
    for kwargs in ({}, {"ca_pem": cert_authority.other_ca_pem}):
        async with client_for(tls_fake.url, observer=calls, **kwargs) as client:
            with pytest.raises(TLSVerificationError):
                await client.cluster_status()
            assert not await client.health()
    assert ("cluster_status", "permanent") in calls


async def test_fake_tls_a_refused_certificate_is_named(tmp_path):
    """An expired certificate, or one of another CA: OpenSSL's reason, and the certificate presented, read again by
    an unverified handshake, so the problem can say which one it is."""
    import ssl
    from datetime import datetime, timedelta, timezone

    from harper_operator.provision import pki
    long_ago = datetime.now(timezone.utc) - timedelta(days=800)
    authority = pki.new_authority("t", long_ago)
    leaf = pki.issue(authority, "localhost", ["127.0.0.1"], long_ago)
    (tmp_path / "c.pem").write_text(leaf.certificate)
    (tmp_path / "k.pem").write_text(leaf.key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    fake, runner = await start_fake(ctx)
    try:
        url = fake.url.replace("127.0.0.1", "localhost")
        for ca, reason in ((authority.certificate, "certificate has expired"),
                           (pki.new_authority("other", datetime.now(timezone.utc)).certificate,
                            "unable to get local issuer certificate")):
            async with client_for(url, ca_pem=ca) as client:
                with pytest.raises(TLSVerificationError) as failed:
                    await client.cluster_status()
            assert failed.value.reason == reason and reason in str(failed.value)
            assert failed.value.certificate.subject == "CN=localhost"
            assert failed.value.certificate.not_after < datetime.now(timezone.utc)
    finally:
        await runner.cleanup()


async def test_fake_tls_verification_can_be_turned_off(tls_fake):
    async with client_for(tls_fake.url, verify_tls=False) as client:
        assert (await client.cluster_status()).connections == []
