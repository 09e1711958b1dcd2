"""Fixtures for the Harper client tests (helpers are in harper_fakes.py)."""

from __future__ import annotations

import shutil

import pytest
from harper_fakes import CertAuthority, RawServer, Reply, make_cert_authority, recording, start_fake

from harper_operator.harper import HarperClient


@pytest.fixture
async def fake_harper():
    """A fake operations API on 127.0.0.1 (plain HTTP)."""
    fake, runner = await start_fake()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def replay(fake_harper):
    """(client, load): a client of `fake_harper`; load(name) makes it answer every operation with that recording."""
    client = HarperClient(fake_harper.url, username="admin", password="pw", timeout=5)

    def load(name: str) -> None:
        rec = recording(name)
        reply = Reply(rec["status"], rec["body"]) if not isinstance(rec["body"], str) else Reply(rec["status"],
                                                                                                 text=rec["body"])
        fake_harper.handlers.clear()
        fake_harper.on(rec["request"].get("operation", ""), reply)
        fake_harper.on("", reply)

    yield client, load
    await client.close()


@pytest.fixture
async def raw_server():
    """Factory for scripted raw TCP servers (dropped connections, silence)."""
    servers: list[RawServer] = []

    async def make(script):
        server = await RawServer(script).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture(scope="session")
def cert_authority(tmp_path_factory) -> CertAuthority:
    """A private CA and a server certificate for 127.0.0.1/localhost, like Harper's own."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    return make_cert_authority(tmp_path_factory.mktemp("tls"))
