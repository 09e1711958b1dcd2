"""harper_operator.kube on kubernetes.aio, against a small local HTTP server standing in for the API server.

What needs no real API server: credentials reloaded once after a 401 (an exec plugin's token expired), the
(connect, read) TIMEOUT reaching aiohttp, 404/409 answers, errors raised as both clients' ApiException, the session
made in the running loop and closed by close(). e2e/test_kube.py runs every call against a real kube-apiserver.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import kubernetes.client.exceptions
import pytest
from aiohttp import web
from kubernetes.aio import client as aio
from kubernetes.aio.config import ConfigException

from e2e.testbed.exec_plugin import ExecPlugin
from harper_operator import kube

CLUSTERS = "/apis/harperoperator.dev/v1alpha1/namespaces/ns/harperclusters"

class FakeApiServer:
    """Accepts one bearer token at a time; lists one HarperCluster, has no other (answers for `slow` after 2 s), has
    every Secret already."""

    def __init__(self):
        self.valid = "first"
        self.seen: list[str] = []
        app = web.Application()
        app.router.add_get(CLUSTERS, self.list_clusters)
        app.router.add_get(CLUSTERS + "/{name}", self.missing)
        app.router.add_post("/api/v1/namespaces/ns/secrets", self.conflict)
        self.runner = web.AppRunner(app)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        self.seen.append(header)
        return header == f"Bearer {self.valid}"

    def _status(self, code: int, reason: str) -> web.Response:
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                                  "code": code}, status=code)

    async def list_clusters(self, request):
        if not self._authorized(request):
            return self._status(401, "Unauthorized")
        return web.json_response({"apiVersion": "harperoperator.dev/v1alpha1", "kind": "HarperClusterList",
                                  "items": [{"metadata": {"name": "c", "namespace": "ns"}}]})

    async def missing(self, request):
        if request.match_info["name"] == "slow":
            await asyncio.sleep(2)
        if not self._authorized(request):
            return self._status(401, "Unauthorized")
        return self._status(404, "NotFound")

    async def conflict(self, request):
        if not self._authorized(request):
            return self._status(401, "Unauthorized")
        return self._status(409, "AlreadyExists")

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def server():
    fake = FakeApiServer()
    url = await fake.start()
    fake.url = url
    yield fake
    await kube.close()
    await fake.runner.cleanup()


@pytest.fixture
def plugin(tmp_path, server) -> ExecPlugin:
    p = ExecPlugin(tmp_path, server.url)
    p.hand_out("first")
    kube.configure(str(p.kubeconfig))
    return p


async def test_the_client_is_made_in_the_running_loop_and_the_plugin_runs_there(server, plugin):
    assert plugin.runs == 0  # configure() parses the kubeconfig only
    assert [c["metadata"]["name"] for c in await kube.list_objects("harperclusters", "ns")] == ["c"]
    assert plugin.runs == 1
    assert [c["metadata"]["name"] for c in await kube.list_objects("harperclusters", "ns")] == ["c"]
    assert plugin.runs == 1 and server.seen == ["Bearer first"] * 2


async def test_a_401_reloads_the_credentials_once_for_all_the_calls_that_saw_it(server, plugin):
    await kube.list_objects("harperclusters", "ns")
    server.valid = "second"  # the first token expired
    plugin.hand_out("second")
    answers = await asyncio.gather(*(kube.list_objects("harperclusters", "ns") for _ in range(5)))
    assert all([c["metadata"]["name"] for c in found] == ["c"] for found in answers)
    assert plugin.runs == 2, "five calls answered 401 at once ran the plugin once"
    assert server.seen[-1] == "Bearer second"


async def test_a_second_401_is_raised_as_both_clients_api_exception(server, plugin):
    server.valid = "nobody"
    with pytest.raises(kube.ApiException) as refused:
        await kube.list_objects("harperclusters", "ns")
    assert refused.value.status == 401 and plugin.runs == 2
    assert isinstance(refused.value, kubernetes.client.exceptions.ApiException)
    assert isinstance(refused.value, aio.ApiException)
    assert server.seen == ["Bearer first", "Bearer first"]


async def test_404_and_409_keep_their_meaning(server, plugin):
    assert await kube.get_object("harperclusters", "ns", "gone") is None
    assert await kube.create_secret({"apiVersion": "v1", "kind": "Secret",
                                     "metadata": {"name": "admin", "namespace": "ns"}}) is False


async def test_every_call_gives_up_after_the_read_timeout(server, plugin, monkeypatch):
    monkeypatch.setattr(kube, "TIMEOUT", (1.0, 0.3))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await kube.get_object("harperclusters", "ns", "slow")
    assert time.monotonic() - started < 3


def test_the_timeout_pair_becomes_aiohttps_connect_and_read_timeouts():
    seen = {}

    class Session:
        async def request(self, **kw):
            seen.update(kw)
            return type("Answer", (), {"status": 200, "reason": "OK"})()

    rest = kube._Rest(aio.Configuration())
    rest.pool_manager = Session()
    asyncio.run(rest.request("GET", "http://127.0.0.1:1/x", _request_timeout=kube.TIMEOUT))
    timeout = seen["timeout"]
    assert (timeout.total, timeout.sock_connect, timeout.sock_read) == (None, 5.0, 30.0)


async def test_close_closes_the_session_and_the_next_call_makes_a_new_one(server, plugin):
    await kube.list_objects("harperclusters", "ns")
    first = kube._api
    session = first.rest_client.pool_manager
    await kube.close()
    assert session.closed and kube._api is None
    await kube.list_objects("harperclusters", "ns")
    assert kube._api is not first and plugin.runs == 2
    await kube.close()
    await kube.close()  # twice is harmless


def test_configure_fails_at_once_on_a_missing_kubeconfig(tmp_path):
    with pytest.raises(ConfigException):
        kube.configure(str(tmp_path / "nothing-here"))


def test_configure_in_a_pod_reads_no_kubeconfig(monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBECONFIG", "/nowhere/at/all")
    kube.configure()
    assert kube.source() == kube.IN_CLUSTER


def test_configure_without_a_path_outside_a_pod_uses_kubeconfig(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "config"
    ExecPlugin(tmp_path, "http://127.0.0.1:1")
    path.write_text((tmp_path / "kubeconfig").read_text())
    monkeypatch.setenv("KUBECONFIG", str(path))
    kube.configure()
    assert kube.source() == str(path)


def test_plain_is_the_apis_camel_case():
    sts = aio.V1StatefulSet(metadata=aio.V1ObjectMeta(name="hc", owner_references=[aio.V1OwnerReference(
        api_version="v1", kind="X", name="x", uid="u", block_owner_deletion=True)]),
        spec=aio.V1StatefulSetSpec(service_name="hc", selector=aio.V1LabelSelector(match_labels={"a": "b"}),
                                   template=aio.V1PodTemplateSpec()))
    plain = kube._plain(sts)
    assert plain["spec"]["serviceName"] == "hc" and plain["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert plain["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
    json.dumps(plain)


@pytest.mark.parametrize("provisioning", [False, True])
def test_preload_imports_the_api_classes_the_rounds_call_before_the_loop_starts(provisioning):
    """The client imports an API class and its models on first use (CoreV1Api: 0.56 s), which inside the event
    loop stalled the process's first cluster; preload() does it at the start. In a fresh interpreter: this one has
    imported them already."""
    code = ("import sys; from harper_operator import kube; "
            f"kube.preload(provisioning={provisioning}); "
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('kubernetes.aio.client.api.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(kube.__file__).parents[1])})
    loaded = set(ast.literal_eval(done.stdout))
    assert {"core_v1_api", "custom_objects_api"} <= loaded
    assert ({"apps_v1_api", "policy_v1_api"} <= loaded) is provisioning
