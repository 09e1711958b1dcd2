"""The scale-benchmark SIMULATOR: one process serving many simulated Harper nodes on loopback addresses.

Not Harper, and never a stand-in for it in e2e scenarios (those run real harperdb): it exists so a benchmark can
point one operator at 1,000 nodes, which real Harper processes could not provide on one machine. Each node answers
the operations API (operations.py, state in harper_model.HarperModel) and Harper's replication handshake well
enough for the operator's probe; there is no data, no TLS and no certificate.

Nodes come in groups; each group is one independent model, so gossip stays O(group size^2) and nodes of
different groups never meet (an add_node across groups finds nothing listening, as far as the model knows).
Node k (from 0) is 127.50.{k // 250}.{k % 250 + 1}: all of 127/8 answers on Linux's lo without setup. Its Harper
name is that address, its replication URL ws://ADDRESS:9933, its operations API http://ADDRESS:9925. A control
endpoint at 127.50.255.254:9999 answers GET /stats with the calls counted, independently of the operator.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import resource
import time
from collections import Counter
from typing import Any, Sequence

from aiohttp import web

from .harper_model import HarperModel
from .operations import Call, answer

log = logging.getLogger(__name__)

SUBPROTOCOL = "harperdb-replication-v1"
OPERATIONS_PORT, REPLICATION_PORT = 9925, 9933
CONTROL_HOST, CONTROL_PORT = "127.50.255.254", 9999
PER_OCTET = 250
MAX_NODES = 255 * PER_OCTET  # 127.50.255.x is left for the control endpoint
# Sockets kept free beyond two listeners per node: the operator's pooled connections and probes.
SPARE_FDS = 1024


def node_address(k: int) -> str:
    return f"127.50.{k // PER_OCTET}.{k % PER_OCTET + 1}"


def raise_fd_limit(needed: int) -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (2 listeners per node plus connections); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if limit < needed:
        log.warning("RLIMIT_NOFILE is %d, below the %d sockets this simulator may need", limit, needed)
    return limit


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class Simulator:
    """Simulated Harper nodes: `groups[i]` nodes in group i. Use `async with Simulator(...)` or start()/stop()."""

    def __init__(self, groups: Sequence[int], *, password: str, username: str = "admin",
                 operations_port: int = OPERATIONS_PORT, replication_port: int = REPLICATION_PORT,
                 control_host: str = CONTROL_HOST, control_port: int = CONTROL_PORT) -> None:
        if not password or not username:
            raise ValueError("the simulated super_user needs a username and a password")
        if any(not isinstance(n, int) or n < 1 for n in groups) or not 0 < sum(groups) <= MAX_NODES:
            raise ValueError(f"groups must be positive node counts, {MAX_NODES} nodes at most")
        self.credentials = (username, password)
        self.operations_port, self.replication_port = operations_port, replication_port
        self.control = (control_host, control_port)
        self.groups: list[list[str]] = []
        self.models: dict[str, HarperModel] = {}  # node address -> its group's model
        k = 0
        for size in groups:
            names = [node_address(i) for i in range(k, k + size)]
            k += size
            model = HarperModel(names, {n: self.replication_url(n) for n in names})
            self.groups.append(names)
            self.models.update((n, model) for n in names)
        self.calls: Counter[str] = Counter()  # operation -> requests (refused ones included)
        self.calls_by_node: Counter[str] = Counter()
        self.handshakes = 0  # replication upgrades (the operator's probes)
        self.started: float | None = None
        self._runners: list[web.AppRunner] = []

    # --- addresses ---
    def operations_url(self, name: str) -> str:
        return f"http://{name}:{self.operations_port}"

    def replication_url(self, name: str) -> str:
        return f"ws://{name}:{self.replication_port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.control[0]}:{self.control[1]}"

    def describe(self) -> dict[str, Any]:
        """What a benchmark needs to write HarperNodes: every node's name and URLs, per group."""
        return {"groups": [[{"hostname": n, "url": self.replication_url(n), "operationsUrl": self.operations_url(n)}
                            for n in group] for group in self.groups],
                "username": self.credentials[0], "stats": self.control_url + "/stats"}

    def stats(self) -> dict[str, Any]:
        return {"calls": dict(self.calls), "nodes": len(self.models), "started": self.started,
                "calls_by_node": dict(self.calls_by_node), "replication_handshakes": self.handshakes}

    # --- lifecycle ---
    async def start(self) -> None:
        raise_fd_limit(2 * len(self.models) + SPARE_FDS)
        try:
            await self._serve(self._operations, self.operations_port, list(self.models))
            await self._serve(self._replication, self.replication_port, list(self.models))
            control = web.Application()
            control.router.add_get("/stats", self._stats)
            control.router.add_get("/nodes", self._nodes)
            await self._listen(control, [self.control[0]], self.control[1])
        except BaseException:
            await self.stop()
            raise
        self.started = time.time()

    async def _serve(self, handler, port: int, hosts: list[str]) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handler)
        await self._listen(app, hosts, port)

    async def _listen(self, app: web.Application, hosts: list[str], port: int) -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        for host in hosts:
            try:
                await web.TCPSite(runner, host, port, reuse_address=True).start()
            except OSError as e:
                raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def __aenter__(self) -> "Simulator":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # --- handlers ---
    async def _stats(self, _: web.Request) -> web.Response:
        return _json(200, self.stats())

    async def _nodes(self, _: web.Request) -> web.Response:
        return _json(200, self.describe())

    def _node(self, request: web.Request) -> str | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        name = sockname[0] if sockname else None
        return name if name in self.models else None

    def _authenticated(self, header: str | None) -> web.Response | None:
        """None when the Basic credentials are the super_user's, else Harper's 401."""
        if not header:
            return _json(401, {"error": "Must login"})
        scheme, _, value = header.partition(" ")
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        want_user, want_password = self.credentials
        if (scheme.lower() == "basic" and hmac.compare_digest(user.encode(), want_user.encode())
                and hmac.compare_digest(password.encode(), want_password.encode())):
            return None
        return _json(401, {"error": "Login failed"})

    async def _operations(self, request: web.Request) -> web.StreamResponse:
        name = self._node(request)
        if name is None:
            return _json(404, {"error": "no simulated node at this address"})
        if request.method == "GET" and request.path == "/health":
            self.calls["health"] += 1
            return web.Response(text="HarperDB is running.")  # guessed body; the client reads only the status
        if request.method != "POST" or request.path != "/":
            return _json(404, {"error": "Not Found"})
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
            return _json(400, {"statusCode": 400, "error": "Bad Request",
                               "message": "Request body must include an 'operation' property."})
        self.calls[body["operation"]] += 1
        self.calls_by_node[name] += 1
        refused = self._authenticated(request.headers.get("Authorization"))
        if refused is not None:
            return refused
        status, result = answer(Call(self.models[name], name, body, self.credentials))
        return _json(status, result)

    async def _replication(self, request: web.Request) -> web.StreamResponse:
        """Accept the upgrade with Harper's subprotocol, then close 1008 as Harper does to a peer it cannot
        authenticate (the probe carries no certificate): what the operator's probe takes for Harper."""
        name = self._node(request)
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), timeout=1.0)
        if name is None or not ws.can_prepare(request).ok:
            return web.Response(status=404, text="Not Found")
        self.handshakes += 1
        if not self.models[name].nodes[name].up:
            return web.Response(status=503, text="stopped")  # only if someone stopped it in the model
        await ws.prepare(request)
        await ws.close(code=1008, message=b"Unauthorized")
        return ws
