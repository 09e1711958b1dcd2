"""Fakes for the Harper client tests: a scriptable operations API (aiohttp), a raw HTTP server
for broken connections, recorded real answers, and an openssl-made CA for TLS.

Fixtures wrapping these live in conftest.py; test modules import the helpers from here."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

RECORDED = Path(__file__).parent / "recorded"
PASSWORD = "s3cret-pa55word"  # distinctive, so a leak is easy to grep for


def recording(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text())


def all_recordings() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RECORDED.glob("*.json"))}


def make_jwt(*, exp: float, iat: float | None = None, sub: str = "operation", tag: str = "") -> str:
    """An unsigned-looking JWT with chosen times (the client never verifies signatures)."""
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    claims = {"username": "admin", "super_user": True, "exp": int(exp), "iat": int(iat if iat is not None else time.time()),
              "sub": sub, "tag": tag}
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.sig-{tag or 'x'}"


@dataclass
class Reply:
    """One answer. `body` is sent byte for byte (hostile or huge answers); with `chunked` it is
    streamed without a Content-Length, and `endless` streams `body` over and over until the
    client hangs up."""

    status: int = 200
    json: Any = None
    text: str | None = None
    delay: float = 0.0
    body: bytes | None = None
    chunked: bool = False
    endless: bool = False
    content_type: str = "application/json"


@dataclass
class Seen:
    body: Any
    headers: dict[str, str]

    @property
    def operation(self) -> str | None:
        return self.body.get("operation") if isinstance(self.body, dict) else None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


Handler = Callable[[Seen], Reply]


@dataclass
class FakeHarper:
    """Answers POST / by operation name; records every request it saw."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    handlers: dict[str, Handler] = field(default_factory=dict)
    health: Reply = field(default_factory=lambda: Reply(200, text="HarperDB is running."))
    default: Reply | None = None  # the answer to every operation without its own handler
    streamed_bytes: int = 0  # body bytes written by chunked/endless answers
    hung_up: bool = False  # a client closed the connection while a streamed answer was being written

    def on(self, operation: str, reply: Reply | Handler) -> None:
        self.handlers[operation] = reply if callable(reply) else (lambda _seen, r=reply: r)

    def ops(self) -> list[str | None]:
        return [s.operation for s in self.seen]

    async def _post(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = raw
        seen = Seen(body, dict(request.headers))
        self.seen.append(seen)
        fallback = self.default or Reply(200, {"message": "ok"})
        handler = self.handlers.get(seen.operation or "", lambda _s: fallback)
        return await self._answer(handler(seen), request)

    async def _get_health(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(self.health, request)

    async def _answer(self, reply: Reply, request: web.Request) -> web.StreamResponse:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.chunked or reply.endless:
            return await self._stream(reply, request)
        if reply.body is not None:
            return await self._stream(reply, request, sized=True)
        if reply.text is not None:
            return web.Response(status=reply.status, text=reply.text)
        return web.json_response(reply.json, status=reply.status)

    async def _stream(self, reply: Reply, request: web.Request, sized: bool = False) -> web.StreamResponse:
        """Write the body in pieces, so a huge answer costs the fake no copy of it (the tests measure the client's
        memory in this process). `sized`: with a Content-Length, else chunked."""
        resp = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type})
        if sized:
            resp.content_length = len(reply.body or b"")
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        body = reply.body if sized else reply.body or b" "
        try:
            while True:
                for start in range(0, len(body), 64 * 1024):
                    piece = body[start:start + 64 * 1024]
                    await resp.write(piece)
                    self.streamed_bytes += len(piece)
                if not reply.endless:
                    break
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # the client hung up mid-answer (RuntimeError: transport closed)
            self.hung_up = True
        return resp


async def _serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def start_fake(ssl_context: ssl.SSLContext | None = None) -> tuple[FakeHarper, web.AppRunner]:
    fake = FakeHarper()
    app = web.Application()
    app.router.add_post("/", fake._post)
    app.router.add_get("/health", fake._get_health)
    runner, port = await _serve(app, ssl_context)
    fake.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    return fake, runner


class RawServer:
    """A TCP server run by a script, one action per accepted connection:
    "close" (accept then hang up), "hang" (never answer), or (status, body) as HTTP/1.1."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> "RawServer":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        action = self.script[min(self.connections, len(self.script) - 1)]
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if length:
                await reader.readexactly(length)
            if action == "close":
                writer.close()
                return
            if action == "hang":
                await asyncio.sleep(3600)
                return
            status, body = action
            payload = json.dumps(body).encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + payload)
            await writer.drain()
            writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()


@dataclass
class CertAuthority:
    ca_pem: str
    cert_file: Path
    key_file: Path
    other_ca_pem: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_cert_authority(d: Path) -> CertAuthority:
    """A private CA and a server certificate for 127.0.0.1/localhost, like Harper's own."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Test-Certificate-Authority", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1/O=HarperDB, Inc.", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem",
             "-days", "2", "-subj", "/CN=Unrelated-CA", cwd=d)
    return CertAuthority(ca_pem=(d / "ca.pem").read_text(), cert_file=d / "server.pem", key_file=d / "server.key",
                         other_ca_pem=(d / "other.pem").read_text())
