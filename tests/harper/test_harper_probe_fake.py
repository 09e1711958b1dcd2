"""probe_replication against local fake replication endpoints (websockets servers)."""

from __future__ import annotations

import asyncio
import http
from datetime import datetime, timezone

import pytest
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


async def test_fake_probe_http_rejection_still_reachable(ws_server, cert_authority):
    result = await probe_replication(await ws_server(tls=True, process_request=_reject_401),
                                     ca_pem=cert_authority.ca_pem)
    assert result.reachable and result.http_status == 401 and not result.harper
    assert result.subject.startswith("CN=127.0.0.1")


async def test_fake_probe_close_1008_still_reachable(ws_server):
    result = await probe_replication(await ws_server(_close_1008))
    assert result.reachable  # the upgrade completed; whether the close arrives first is a race


async def test_fake_probe_server_without_subprotocol_is_not_harper(ws_server):
    result = await probe_replication(await ws_server(subprotocols=()))
    assert result.reachable and not result.harper and result.subprotocol is None


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


@pytest.mark.parametrize("url", ["https://a:1", "a:9933", "wss://", ""])
async def test_fake_probe_refuses_non_replication_urls(url):
    result = await probe_replication(url)
    assert not result.reachable and "not a replication URL" in result.error


def test_decode_certificate_handles_junk():
    assert decode_der_certificate(None) is None
    assert decode_der_certificate(b"not a certificate") is None
