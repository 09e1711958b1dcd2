"""probe_replication against local fake replication endpoints (websockets and plain HTTP servers).

Reachable means Harper's replication protocol answered: its subprotocol, or a 1008 close."""

from __future__ import annotations

import asyncio
import http
from datetime import datetime, timezone

import pytest
from aiohttp import web
from harper_fakes import PASSWORD
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from harper_operator.harper import probe_replication
from harper_operator.harper.models import REPLICATION_SUBPROTOCOL
from harper_operator.harper.tls import decode_der_certificate


async def _quiet(ws):
    await ws.wait_closed()


async def _close_1008(ws):
    await ws.close(1008, "Unauthorized")


async def _close_1011(ws):
    await ws.close(1011, "internal error")


async def _chatty(ws):
    await ws.send("hello")
    await ws.wait_closed()


def _reject_401(connection, request):
    return Response(http.HTTPStatus.UNAUTHORIZED, "Unauthorized", Headers(), b"Unauthorized")


@pytest.fixture
async def ws_server(cert_authority):
    servers = []

    async def make(handler=_quiet, *, tls: bool = False, process_request=None,
                   subprotocols=(REPLICATION_SUBPROTOCOL,), host: str = "127.0.0.1"):
        server = await serve(handler, host, 0, subprotocols=list(subprotocols) or None,
                             process_request=process_request,
                             ssl=cert_authority.server_context() if tls else None)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"{'wss' if tls else 'ws'}://{host}:{port}"

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_fake_probe_harper_shaped_endpoint(ws_server):
    url = await ws_server()
    result = await probe_replication(url)
    assert result.reachable and result.harper and result.error is None
    assert result.subprotocol == REPLICATION_SUBPROTOCOL and 0 <= result.handshake_seconds < 5
    assert result.subject is None and result.sans == []  # plain ws: no certificate


async def test_fake_probe_tls_verified_reads_certificate(ws_server, cert_authority):
    url = await ws_server(tls=True)
    result = await probe_replication(url, ca_pem=cert_authority.ca_pem)
    assert result.reachable and result.tls_verified
    assert result.subject.startswith("CN=127.0.0.1") and "Test-Certificate-Authority" in result.issuer
    assert result.sans == ["127.0.0.1", "localhost"]
    assert result.not_after > datetime.now(timezone.utc)


async def test_fake_probe_reads_certificate_with_verification_off(ws_server):
    result = await probe_replication(await ws_server(tls=True), verify_tls=False)
    assert result.reachable and not result.tls_verified and result.sans == ["127.0.0.1", "localhost"]


async def test_fake_probe_untrusted_certificate_is_unreachable_but_described(ws_server, cert_authority):
    url = await ws_server(tls=True)
    for kwargs in ({}, {"ca_pem": cert_authority.other_ca_pem}):
        result = await probe_replication(url, **kwargs)
        assert not result.reachable and result.error.startswith("TLS verification failed")
        assert result.subject.startswith("CN=127.0.0.1")  # fetched by a second, unverified handshake


async def test_fake_probe_hostname_not_in_certificate(ws_server, cert_authority):
    # The certificate names 127.0.0.1 and localhost only; Harper's own failure text for this case
    # is "Hostname/IP does not match certificate's altnames".
    url = await ws_server(tls=True, host="127.0.0.2")
    result = await probe_replication(url, ca_pem=cert_authority.ca_pem)
    assert not result.reachable and "TLS verification failed" in result.error
    assert "127.0.0.2" not in result.sans and result.sans == ["127.0.0.1", "localhost"]


async def test_fake_probe_http_rejection_is_not_harper(ws_server, cert_authority):
    url = await ws_server(tls=True, process_request=_reject_401)
    result = await probe_replication(url, ca_pem=cert_authority.ca_pem)
    assert not result.reachable and result.http_status == 401 and not result.harper
    assert result.error == f"something answers at {url} (HTTP 401) but not Harper's replication protocol"
    assert result.subject.startswith("CN=127.0.0.1")  # certificate details are still collected


@pytest.fixture
async def http_server():
    """Factory for a plain aiohttp server answering every GET with one status (no WebSocket at all)."""
    runners = []

    async def make(status: int) -> str:
        async def answer(request):
            return web.Response(status=status, text="<html>some other service</html>")
        app = web.Application()
        app.router.add_get("/{tail:.*}", answer)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"ws://127.0.0.1:{runner.addresses[0][1]}"

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("status", [200, 401, 403, 404, 500])
async def test_fake_probe_plain_http_server_is_not_harper(http_server, status):
    url = await http_server(status)
    result = await probe_replication(url)
    assert not result.reachable and not result.harper and result.http_status == status
    assert result.error == f"something answers at {url} (HTTP {status}) but not Harper's replication protocol"


async def test_fake_probe_subprotocol_accepted_is_harper(ws_server):
    result = await probe_replication(await ws_server())
    assert result.reachable and result.harper and result.subprotocol == REPLICATION_SUBPROTOCOL


@pytest.mark.parametrize("subprotocols", [(REPLICATION_SUBPROTOCOL,), ()], ids=["with-subprotocol", "without"])
async def test_fake_probe_close_1008_is_harper(ws_server, subprotocols):
    # Harper 4.7 closes a replication socket it cannot authenticate with 1008.
    result = await probe_replication(await ws_server(_close_1008, subprotocols=subprotocols))
    assert result.reachable and result.harper and result.error is None
    if not subprotocols:
        assert result.close_code == 1008


async def test_fake_probe_close_1011_is_not_harper(ws_server):
    url = await ws_server(_close_1011, subprotocols=())
    result = await probe_replication(url)
    assert not result.reachable and not result.harper and result.close_code == 1011
    assert result.error == (f"something answers at {url} (WebSocket closed with code 1011) "
                            "but not Harper's replication protocol")


@pytest.mark.parametrize("handler", [_quiet, _chatty], ids=["quiet", "talks-first"])
async def test_fake_probe_server_without_subprotocol_is_not_harper(ws_server, handler):
    url = await ws_server(handler, subprotocols=())
    result = await probe_replication(url)
    assert not result.reachable and not result.harper and result.subprotocol is None
    assert result.error.startswith(f"something answers at {url} (WebSocket with no subprotocol")
    assert result.error.endswith("but not Harper's replication protocol")


async def test_fake_probe_sends_no_credentials(ws_server):
    seen = []

    def record(connection, request):
        seen.append(request.headers)
    result = await probe_replication(await ws_server(process_request=record))
    assert result.reachable and len(seen) == 1
    assert "Authorization" not in seen[0] and "Proxy-Authorization" not in seen[0]
    assert seen[0]["Sec-WebSocket-Protocol"] == REPLICATION_SUBPROTOCOL


async def test_fake_probe_ignores_proxy_settings(ws_server, monkeypatch):
    # The operator dials nodes directly; a proxy from the environment would answer instead.
    url = await ws_server()
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://proxyuser:{PASSWORD}@127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert (await probe_replication(url)).reachable


async def test_fake_probe_refused():
    result = await probe_replication("wss://127.0.0.1:9", verify_tls=False)
    assert not result.reachable and "Refused" in result.error and result.handshake_seconds is None


async def test_fake_probe_silent_listener_times_out():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe_replication(f"wss://127.0.0.1:{port}", verify_tls=False, timeout=0.3)
    finally:
        server.close()
    assert not result.reachable and "0.3s" in result.error


async def test_fake_probe_plain_tcp_answering_garbage():
    async def garbage(reader, writer):
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        plain = await probe_replication(f"ws://127.0.0.1:{port}", timeout=2)
        tls = await probe_replication(f"wss://127.0.0.1:{port}", verify_tls=False, timeout=2)
    finally:
        server.close()
    assert not plain.reachable and not tls.reachable


@pytest.mark.parametrize("url", ["https://a:1", "a:9933", "wss://", "", "wss://h:99999", "wss://h:0", "wss://h:-1",
                                 "wss://h:port", "wss://[zz]:1", "ws://[::1", "wss://:1", None, 5])
async def test_fake_probe_refuses_non_replication_urls(url):
    result = await probe_replication(url)
    assert not result.reachable and "not a replication URL" in result.error and result.handshake_seconds is None


@pytest.mark.parametrize("url", [f"wss://admin:{PASSWORD}@127.0.0.1:9", f"ws://{PASSWORD}@127.0.0.1:9",
                                 f"admin:{PASSWORD}@h:9933"])
async def test_fake_probe_refuses_user_info_without_echoing_it(url):
    result = await probe_replication(url)
    assert not result.reachable and "user info" in result.error and PASSWORD not in result.error


@pytest.mark.parametrize("url", ["wss://[::1]:9", "ws://[::1]:9", "ws://\x00:1", "ws://" + "a" * 300 + ":1",
                                 "ws://exa\tmple:1", "wss://127.0.0.1:9/path?q=1#f", "ws://[::ffff:127.0.0.1]:9"])
async def test_fake_probe_never_raises_for_odd_urls(url):
    result = await probe_replication(url, timeout=2)
    assert not result.reachable and result.error


@pytest.mark.parametrize("ca_pem", ["garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
async def test_fake_probe_bad_ca_bundle_is_unreachable(ws_server, ca_pem):
    url = await ws_server(tls=True)
    for verify_tls in (True, False):
        result = await probe_replication(url, ca_pem=ca_pem, verify_tls=verify_tls)
        assert not result.reachable and result.error == "CA bundle is not a valid PEM certificate bundle"


def test_decode_certificate_handles_junk():
    assert decode_der_certificate(None) is None
    assert decode_der_certificate(b"not a certificate") is None
