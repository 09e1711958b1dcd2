"""The test bed itself, against the real programs: if these fail, no other e2e result means anything."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from .scenarios import kit
from .testbed import proc, tools
from .testbed.harper import HarperFleet
from .testbed.kube import ControlPlane
from .testbed.tools import k8s_version


wait_until = functools.partial(kit.wait_until, timeout=30.0, interval=0.2)


def pod(name: str, namespace: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                       "spec": {"containers": [{"name": "c", "image": "never-pulled"}]}})


@pytest.fixture
def namespace(kubectl) -> str:
    # Never deleted: without a controller-manager a namespace never finishes terminating.
    name = f"tb-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


def test_apiserver_reports_the_pinned_version(control_plane, kubectl):
    assert control_plane.version == k8s_version() == "v1.36.3"
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert (server["gitVersion"], server["major"], server["minor"]) == ("v1.36.3", "1", "36")


def test_rbac_is_on_and_service_account_tokens_work(control_plane, testbed_tools, kubectl, namespace, tmp_path):
    kubectl("create", "serviceaccount", "bot", "-n", namespace)
    can_i = kubectl("auth", "can-i", "list", "secrets", "-n", namespace,
                    "--as", f"system:serviceaccount:{namespace}:bot", check=False)
    assert can_i.stdout.strip() == "no", can_i

    # TokenRequest (kubectl create token) needs the service-account signing key flags.
    token = kubectl("create", "token", "bot", "-n", namespace).stdout.strip()
    as_bot = control_plane.write_kubeconfig(tmp_path / "bot.kubeconfig", token, "bot")
    run = lambda *args: subprocess.run([testbed_tools.kubectl, "--kubeconfig", as_bot, *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=60)
    whoami = json.loads(run("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:bot"
    denied = run("get", "secrets", "-n", namespace)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr, denied

    # Granting the right through RBAC is what makes it work.
    kubectl("create", "role", "read-secrets", "--verb=list", "--resource=secrets", "-n", namespace)
    kubectl("create", "rolebinding", "bot-reads", "--role=read-secrets", f"--serviceaccount={namespace}:bot",
            "-n", namespace)
    wait_until("the binding to take effect", lambda: run("get", "secrets", "-n", namespace).returncode == 0)


def test_service_account_admission_is_on(kubectl, namespace):
    # No controller-manager, so no `default` ServiceAccount: ServiceAccount admission refuses pods...
    refused = kubectl("apply", "-f", "-", "-n", namespace, input=pod("p", namespace), check=False)
    assert refused.returncode != 0 and 'serviceaccount "default" not found' in refused.stderr, refused
    # ...until one exists, and then mounts its token as a projected volume.
    kubectl("create", "serviceaccount", "default", "-n", namespace)
    kubectl("apply", "-f", "-", input=pod("p", namespace))
    spec = json.loads(kubectl("get", "pod", "p", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["serviceAccountName"] == "default"
    assert any("serviceAccountToken" in s for v in spec["volumes"] for s in v.get("projected", {}).get("sources", []))
    kubectl("delete", "pod", "p", "-n", namespace, "--timeout=30s")  # never scheduled: deleted at once


def test_three_harper_nodes_answer_with_admin_auth(harper_nodes):
    for node in harper_nodes[:3]:
        assert node.healthy()
        status, answer = node.operation({"operation": "user_info"})
        assert status == 200 and answer["username"] == node.username, answer
        assert node.password_file.read_text() == node.password
        status, answer = node.operation({"operation": "user_info"}, auth=(node.username, "wrong"))
        assert status == 401, (status, answer)
        assert node.ok({"operation": "cluster_status"})["node_name"] == node.name


def join(a, b) -> None:
    """A plain add_node from a to b, the way a first join with self-signed certificates works."""
    a.ok({"operation": "add_node", "hostname": b.name, "url": b.replication_url, "verify_tls": False,
          "authorization": {"username": b.username, "password": b.password}})


def connected_peers(node) -> set[str]:
    return {c["name"] for c in node.ok({"operation": "cluster_status"})["connections"]
            if c.get("database_sockets") and all(s.get("connected") for s in c["database_sockets"])}


def test_add_node_makes_two_nodes_replicate(harper_nodes):
    a, b = harper_nodes[:2]
    join(a, b)
    wait_until("a and b connected", lambda: connected_peers(a) == {b.name} and connected_peers(b) == {a.name})
    a.ok({"operation": "create_database", "database": "tb"})
    a.ok({"operation": "create_table", "database": "tb", "table": "things", "primary_key": "id"})
    a.ok({"operation": "insert", "database": "tb", "table": "things", "records": [{"id": "k1", "from": a.name}]})

    def on_b():
        status, rows = b.operation({"operation": "search_by_id", "database": "tb", "table": "things", "ids": ["k1"],
                                    "get_attributes": ["id", "from"]})
        return status == 200 and rows
    assert wait_until("the record on b", on_b, timeout=15) == [{"id": "k1", "from": a.name}]


def test_reset_leaves_no_peers_and_no_test_data(harper_fleet):
    a, b, c = harper_fleet.nodes[:3]
    join(a, b)
    join(a, c)
    # Each node then holds a peer to clear. Gossip does not always bring b and c each other's record (the operator
    # mends that with an add_node; a test bed reset must not need it): reset clears whatever it left.
    wait_until("a joined to b and c", lambda: connected_peers(a) == {b.name, c.name}
               and a.name in connected_peers(b) and a.name in connected_peers(c))
    a.ok({"operation": "create_table", "database": "data", "table": "leftover", "primary_key": "id"})
    c.kill()  # a test may leave a node down, too

    seconds = harper_fleet.reset()
    print(f"reset took {seconds:.2f}s")
    for node in harper_fleet.nodes:
        assert node.healthy()
        assert node.peers() == [], node
        assert node.schema() == {}, node


def test_harper_restart_operation_is_supervised(harper_nodes):
    # {"operation": "restart"} (needed after cluster_set_routes) ends the process; the test bed
    # relaunches it on the same addresses, as a kubelet would.
    node = harper_nodes[0]
    before = node.restarts
    status, answer = node.operation({"operation": "restart"})
    assert status == 200, answer
    wait_until("the relaunch", lambda: node.restarts == before + 1, timeout=30)
    node.wait_healthy(60)
    assert node.ok({"operation": "cluster_status"})["node_name"] == node.name


def test_stop_leaves_no_process_port_or_temp_dir(testbed_tools):
    # Its own control plane and a one-node fleet: the session's stay untouched (and the fleet
    # has to pick a free block of addresses next to the session's).
    with ControlPlane(testbed_tools) as cp, HarperFleet(testbed_tools.harperdb, 1) as fleet:
        node = fleet.nodes[0]
        pids = [cp._etcd.pid, cp._apiserver.pid, node.pid]
        ports = [("127.0.0.1", p) for p in cp.ports] + node.ports
        dirs = [cp.dir, fleet.dir]
        assert not any(proc.port_is_free(h, p) for h, p in ports)  # all of them really listen
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    busy = [f"{h}:{p}" for h, p in ports if not proc.port_is_free(h, p)]
    assert busy == []
    assert not any(d.exists() for d in dirs)


def test_children_die_with_pytest_even_on_sigkill(tmp_path):
    # A child spawned from a thread that has ended must survive that thread (the spawner thread's
    # job) and still die when its parent process is SIGKILLed (PR_SET_PDEATHSIG).
    script = textwrap.dedent(f"""
        import threading, time
        from e2e.testbed import proc
        out = []
        t = threading.Thread(target=lambda: out.append(proc.spawn(["sleep", "600"], log_path={str(tmp_path / 'log')!r})))
        t.start(); t.join()
        print(out[0].pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[1])
    try:
        child = int(parent.stdout.readline())
        time.sleep(0.5)
        os.kill(child, 0)  # alive although the thread that started it is gone
        parent.kill()
        parent.wait()
        wait_until("the child to die", lambda: not os.path.exists(f"/proc/{child}") or
                   open(f"/proc/{child}/stat").read().split()[2] == "Z", timeout=10)
    finally:
        parent.kill()


def test_a_failed_build_fails_loudly_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HARPER_OPERATOR_CACHE", str(tmp_path))
    with pytest.raises(tools.ToolBuildError, match="boom"):
        tools._cached("broken", "v0", "broken",
                      lambda out: tools._run(["sh", "-c", "echo boom >&2; exit 3"], cwd=out))
    assert [p.name for p in tmp_path.iterdir()] == [".broken-v0.lock"]


# --- stopping and starting the control plane's pieces (fault tests build on these) -------------
# They use the session's control plane and must leave it up and healthy, even when they fail.


def configmap_value(kubectl, namespace: str, name: str) -> str:
    done = kubectl("get", "configmap", name, "-n", namespace, "-o", "jsonpath={.data.k}", "--request-timeout=10s")
    return done.stdout


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_the_apiserver_restarts_alone_on_its_port_and_keeps_the_data(control_plane, kubectl, namespace, kill):
    kubectl("create", "configmap", "before", "-n", namespace, "--from-literal=k=v1")
    server, ports, kubeconfig = control_plane.server, list(control_plane.ports), Path(control_plane.kubeconfig)
    config_before = kubeconfig.read_text()
    apiserver, etcd = control_plane._apiserver.pid, control_plane._etcd.pid
    try:
        control_plane.stop_apiserver(kill=kill)
        assert not control_plane.ready()
        down = kubectl("get", "configmap", "before", "-n", namespace, "--request-timeout=3s", check=False)
        assert down.returncode != 0 and "refused" in down.stderr, down  # really gone: nothing listens
        assert control_plane._etcd.pid == etcd and control_plane._etcd.poll() is None  # etcd stays

        control_plane.start_apiserver()
        assert control_plane.ready()
        assert control_plane._apiserver.pid != apiserver
        assert (control_plane.server, control_plane.ports, kubeconfig.read_text()) == (server, ports, config_before)
        assert configmap_value(kubectl, namespace, "before") == "v1"  # same kubeconfig, a new process
        kubectl("create", "configmap", "after", "-n", namespace, "--from-literal=k=v2")

        started = time.monotonic()
        control_plane.restart_apiserver(down=1, kill=kill)
        assert time.monotonic() - started >= 1
        assert configmap_value(kubectl, namespace, "after") == "v2"
    finally:
        control_plane.start_apiserver()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_etcd_restarts_alone_with_its_data_and_the_apiserver_recovers(control_plane, kubectl, namespace, kill):
    kubectl("create", "configmap", "before", "-n", namespace, "--from-literal=k=v1")
    etcd, apiserver = control_plane._etcd.pid, control_plane._apiserver.pid
    try:
        control_plane.stop_etcd(kill=kill)
        # The apiserver stays up but stops being ready, and writes fail.
        wait_until("/readyz to fail", lambda: not control_plane.ready(), timeout=30)
        write = kubectl("create", "configmap", "during", "-n", namespace, "--from-literal=k=x",
                        "--request-timeout=5s", check=False)
        assert write.returncode != 0, write
        assert control_plane._apiserver.pid == apiserver and control_plane._apiserver.poll() is None

        control_plane.start_etcd()
        assert control_plane._etcd.pid != etcd
        # The apiserver reconnects by itself, to the same URL.
        wait_until("/readyz again", control_plane.ready, timeout=60, interval=0.5)
        assert control_plane._apiserver.pid == apiserver
        assert configmap_value(kubectl, namespace, "before") == "v1"  # the data dir was kept
        kubectl("create", "configmap", "after", "-n", namespace, "--from-literal=k=v2")

        control_plane.restart_etcd(down=1, kill=kill)
        wait_until("/readyz after restart_etcd", control_plane.ready, timeout=60, interval=0.5)
        assert configmap_value(kubectl, namespace, "after") == "v2"
    finally:
        control_plane.start_etcd()
        if not control_plane.ready():
            wait_until("the apiserver to recover", control_plane.ready, timeout=60, interval=0.5)


@pytest.mark.parametrize("stopped", ["apiserver", "etcd"])
def test_stop_cleans_up_while_a_piece_is_stopped(testbed_tools, stopped):
    with ControlPlane(testbed_tools) as cp:
        pids = [cp._etcd.pid, cp._apiserver.pid]
        getattr(cp, f"stop_{stopped}")(kill=True)
        getattr(cp, f"stop_{stopped}")()  # a second stop is a no-op
        ports, d = list(cp.ports), cp.dir
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert [p for p in ports if not proc.port_is_free("127.0.0.1", p)] == []
    assert not d.exists()


def test_a_sandbox_started_with_sigint_ignored_still_stops_on_ctrl_c():
    """A shell's background job starts with SIGINT ignored, and Python keeps it so: `make sandbox-node &` then `fg`
    and Ctrl-C did nothing. proc.interruptible() makes Ctrl-C a KeyboardInterrupt again."""
    import signal
    script = ("import os, signal, sys\nfrom e2e.testbed import proc\n"
              "assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN\nproc.interruptible()\n"
              "try:\n    os.kill(os.getpid(), signal.SIGINT); signal.pause()\n"
              "except KeyboardInterrupt:\n    print('interrupted')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[1],
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.stdout.strip() == "interrupted", done.stderr
