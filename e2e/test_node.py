"""The one-node Kubernetes layer (e2e/testbed/node.py), against the real programs: what users' clusters
do for the chart and Harper (images from a registry, Deployments, StatefulSets with stable DNS,
Services, the API from inside a pod, persistent volumes), and that the machine is left as found.

The tests share one node and run in file order; the last two stop it and check the clean-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from .testbed import node_host, proc
from .testbed.node import CLUSTER_DOMAIN, DNS_IP, KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME, Node, dns_query
from .testbed.node_tools import ensure_node_tools
from .testbed.tools import k8s_version

PROBE_PORT = 8080


def wait_until(what, check, timeout=60.0, interval=0.5, diagnose=None):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diagnose() if diagnose else ''}")
        time.sleep(interval)
    return result


@pytest.fixture(scope="module")
def node(request, testbed_tools):
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the first build takes minutes: show it
        node_tools = ensure_node_tools()
    sysctls_before = node_host.read_sysctls()
    n = Node(testbed_tools, node_tools)
    try:
        n.start()
        n.sysctls_before = sysctls_before
        print(f"\nnode layer: started in {n.start_seconds}; memory MiB {n.memory_mib()}")
        yield n
    finally:
        n.stop()


def apply(node: Node, *objects: dict) -> None:
    node.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def diagnose(node: Node, namespace: str):
    def text() -> str:
        pods = node.kubectl("get", "pods,pvc,pv,svc,endpointslices", "-n", namespace, "-o", "wide", check=False).stdout
        events = node.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
        tails = "\n".join(f"--- {title}\n{body}" for title, body in node.log_tails(25)
                          if title.startswith(("kubelet", "containerd", "kube-controller")))
        return f"{pods}\n{events}\n{tails}"
    return text


@pytest.fixture
def namespace(node) -> str:
    name = f"nt-{uuid.uuid4().hex[:8]}"
    node.kubectl("create", "namespace", name)
    # The namespace controller's ServiceAccount controller makes `default`; pods need it.
    wait_until("the default ServiceAccount", lambda: node.kubectl(
        "get", "serviceaccount", "default", "-n", name, check=False).returncode == 0, timeout=30)
    return name


def probe_container(image: str, **extra) -> dict:
    return {"name": "probe", "image": image, "ports": [{"containerPort": PROBE_PORT}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": PROBE_PORT}, "periodSeconds": 1},
            **extra}


def http(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, str, dict]:
    """(status, body, headers) of a request from the host; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)
    except OSError:
        return 0, "", {}


def get_json(node: Node, *args: str) -> dict:
    return json.loads(node.kubectl("get", *args, "-o", "json").stdout)


def pod_json(node: Node, namespace: str, name: str) -> dict:
    return get_json(node, "pod", name, "-n", namespace)


def pod_url(node: Node, namespace: str, pod: str, endpoint: str, query: dict | None = None) -> str:
    """The probe's URL in that pod, from the host (straight to the pod IP over the bridge)."""
    ip = pod_json(node, namespace, pod)["status"]["podIP"]
    return f"http://{ip}:{PROBE_PORT}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")


def rollout(node: Node, namespace: str, kind_name: str, timeout: int = 120) -> None:
    done = node.kubectl("rollout", "status", kind_name, "-n", namespace, f"--timeout={timeout}s",
                        check=False, timeout=timeout + 10)
    assert done.returncode == 0, f"{kind_name} not ready: {done.stderr}\n{diagnose(node, namespace)()}"


# --- the node itself -----------------------------------------------------------------------


def test_the_node_is_ready_with_the_pinned_versions(node):
    info = get_json(node, "node", NODE_NAME)
    assert info["status"]["nodeInfo"]["kubeletVersion"] == k8s_version() == "v1.36.3"
    assert info["status"]["nodeInfo"]["kubeProxyVersion"] in ("", "v1.36.3")  # deprecated field
    assert info["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://2.4.2"
    assert {"type": "InternalIP", "address": NODE_IP} in info["status"]["addresses"]
    ready = [c for c in info["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", ready
    assert node.registry.address.startswith("127.0.0.1:")
    assert node.images["probe"].startswith(node.registry.address + "/")
    # Cluster DNS answers from the host too, and only for the cluster: no forwarding outside.
    assert dns_query(DNS_IP, f"kubernetes.default.svc.{CLUSTER_DOMAIN}") == [KUBERNETES_SERVICE_IP]
    assert dns_query(DNS_IP, "example.com") == []
    # The guard that keeps pod traffic inside the test range is in place.
    assert subprocess.run(["iptables", "-w", "-C", "FORWARD", "-i", node_host.BRIDGE, "!", "-o", node_host.BRIDGE,
                           "-j", "KUBE-TESTBED-EGRESS"], capture_output=True).returncode == 0


def test_a_deployment_from_the_local_registry_becomes_ready(node, namespace):
    labels = {"app": "web"}
    apply(node, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": 1, "containers": [probe_container(node.images["probe"])]}}}})
    rollout(node, namespace, "deployment/web")
    pods = get_json(node, "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["status"]["podIP"].startswith("198.18.")
        # Straight from the host to the pod over the bridge: the pod answers with its own name.
        status, body, _ = http(f"http://{pod['status']['podIP']}:{PROBE_PORT}/")
        assert (status, body.strip()) == (200, pod["metadata"]["name"])
    # The kubelet serves logs, exec and port-forward to the API server (InternalIP address type,
    # its serving certificate checked against the CA, containerd's streaming server behind it).
    name = pods[0]["metadata"]["name"]
    assert f"probe listening on :{PROBE_PORT}" in node.kubectl("logs", "-n", namespace, name).stdout
    assert node.kubectl("exec", "-n", namespace, name, "--", "/probe", "hostname").stdout.strip() == name
    local_port = proc.free_port()
    forward = subprocess.Popen([str(node.node_tools.kubectl), "--kubeconfig", node.kubeconfig, "port-forward",
                                "-n", namespace, f"pod/{name}", f"{local_port}:{PROBE_PORT}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Forwarding from 127.0.0.1" in forward.stdout.readline()
        assert http(f"http://127.0.0.1:{local_port}/")[:2] == (200, name + "\n")
    finally:
        forward.kill()
        forward.wait()


def test_a_cluster_ip_service_routes_to_its_pods(node, namespace):
    labels = {"app": "echo"}
    apply(node, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": 1, "containers": [probe_container(node.images["probe"])]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": PROBE_PORT}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": namespace},
         "spec": {"terminationGracePeriodSeconds": 1, "containers": [probe_container(node.images["probe"])]}})
    rollout(node, namespace, "deployment/echo")
    node.kubectl("wait", "pod/client", "-n", namespace, "--for=condition=Ready", "--timeout=120s", timeout=130)
    service_ip = get_json(node, "svc", "echo", "-n", namespace)["spec"]["clusterIP"]
    assert service_ip.startswith("198.19.0.")
    backend = get_json(node, "pods", "-n", namespace, "-l", "app=echo")["items"][0]
    name = backend["metadata"]["name"]

    # From the host through kube-proxy's rules...
    assert wait_until("the Service from the host", lambda: http(f"http://{service_ip}/")[1].strip() == name,
                      timeout=30, diagnose=diagnose(node, namespace))
    # ...and from another pod, by the Service's DNS name (short and fully qualified).
    for host in ("echo", f"echo.{namespace}.svc.{CLUSTER_DOMAIN}"):
        url = pod_url(node, namespace, "client", "/get", {"url": f"http://{host}/"})
        status, body, headers = wait_until(f"{host} from a pod", lambda: (r := http(url))[0] == 200 and r,
                                           timeout=30, diagnose=diagnose(node, namespace))
        assert (headers.get("X-Upstream-Status"), body.strip()) == ("200", name)


def test_statefulset_pods_find_each_other_through_cluster_dns(node, namespace):
    labels = {"app": "db"}
    apply(node, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": namespace},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": PROBE_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": namespace},
         "spec": {"serviceName": "db", "replicas": 2, "selector": {"matchLabels": labels},
                  "podManagementPolicy": "Parallel",
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "terminationGracePeriodSeconds": 1, "containers": [probe_container(node.images["probe"])]}}}})
    rollout(node, namespace, "statefulset/db")
    ips = {name: pod_json(node, namespace, name)["status"]["podIP"] for name in ("db-0", "db-1")}

    for me, other in (("db-0", "db-1"), ("db-1", "db-0")):
        for name in (f"{other}.db.{namespace}.svc.{CLUSTER_DOMAIN}", f"{other}.db"):  # FQDN, and via search path
            url = pod_url(node, namespace, me, "/lookup", {"name": name})
            body = wait_until(f"{me} resolving {name}", lambda: (r := http(url))[0] == 200 and r[1],
                              timeout=45, diagnose=diagnose(node, namespace))
            assert body.split() == [ips[other]], (me, name, body)
        # ...and reach it there: what a replication peer does with the name it was given.
        peer = f"http://{other}.db.{namespace}.svc.{CLUSTER_DOMAIN}:{PROBE_PORT}/"
        url = pod_url(node, namespace, me, "/get", {"url": peer})
        status, body, _ = http(url)
        assert (status, body.strip()) == (200, other)
    # The headless Service's own name lists every ready pod.
    url = pod_url(node, namespace, "db-0", "/lookup", {"name": f"db.{namespace}.svc.{CLUSTER_DOMAIN}"})
    assert sorted(http(url)[1].split()) == sorted(ips.values())
    # Its own name resolves to its own IP too (a pod's hostname and subdomain).
    url = pod_url(node, namespace, "db-0", "/lookup", {"name": f"db-0.db.{namespace}.svc.{CLUSTER_DOMAIN}"})
    assert http(url)[1].split() == [ips["db-0"]]


def test_a_pod_reaches_the_api_server_with_its_service_account_token(node, namespace):
    apply(node, {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": namespace}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-client", "namespace": namespace},
         "spec": {"serviceAccountName": "reader", "terminationGracePeriodSeconds": 1,
                  "containers": [probe_container(node.images["probe"])]}})
    node.kubectl("wait", "pod/api-client", "-n", namespace, "--for=condition=Ready", "--timeout=120s", timeout=130)
    api = f"https://kubernetes.default.svc/api/v1/namespaces/{namespace}/pods"
    url = pod_url(node, namespace, "api-client", "/get", {"url": api, "token": "1"})

    # Authenticated as its ServiceAccount (TLS verified against the CA in kube-root-ca.crt)...
    status, body, headers = wait_until("an answer from the API server", lambda: (r := http(url))[0] == 200 and r,
                                       timeout=30, diagnose=diagnose(node, namespace))
    assert headers["X-Upstream-Status"] == "403"
    assert f"system:serviceaccount:{namespace}:reader" in json.loads(body)["message"]
    # ...and allowed once RBAC says so.
    node.kubectl("create", "role", "list-pods", "--verb=list", "--resource=pods", "-n", namespace)
    node.kubectl("create", "rolebinding", "reader-lists", "--role=list-pods",
                 f"--serviceaccount={namespace}:reader", "-n", namespace)
    status, body, headers = wait_until("the binding to take effect",
                                       lambda: (r := http(url))[2].get("X-Upstream-Status") == "200" and r, timeout=30)
    assert "api-client" in {p["metadata"]["name"] for p in json.loads(body)["items"]}
    # The in-cluster address is the `kubernetes` Service's ClusterIP, as client libraries use it.
    version = f"https://{KUBERNETES_SERVICE_IP}/version"
    url = pod_url(node, namespace, "api-client", "/get", {"url": version, "token": "1"})
    status, body, headers = http(url)
    assert headers.get("X-Upstream-Status") == "200" and json.loads(body)["gitVersion"] == "v1.36.3", body


def test_a_host_path_volume_keeps_its_data_when_the_pod_is_deleted(node, namespace):
    host_dir = node.dir / "volumes" / namespace
    apply(node, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"pv-{namespace}"},
        "spec": {"capacity": {"storage": "10Mi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "testbed-manual",
                 "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"},
                 # Only this namespace's claim may take it (tests share the node).
                 "claimRef": {"namespace": namespace, "name": "data-store-0"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "store", "namespace": namespace},
         "spec": {"clusterIP": "None", "selector": {"app": "store"}, "ports": [{"port": PROBE_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "store", "namespace": namespace},
         "spec": {"serviceName": "store", "replicas": 1, "selector": {"matchLabels": {"app": "store"}},
                  "template": {"metadata": {"labels": {"app": "store"}}, "spec": {
                      "terminationGracePeriodSeconds": 1,
                      "containers": [probe_container(node.images["probe"],
                                                     volumeMounts=[{"name": "data", "mountPath": "/data"}])]}},
                  "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                      "accessModes": ["ReadWriteOnce"], "storageClassName": "testbed-manual",
                      "resources": {"requests": {"storage": "10Mi"}}}}]}})
    rollout(node, namespace, "statefulset/store")
    pvc = get_json(node, "pvc", "data-store-0", "-n", namespace)
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"] == f"pv-{namespace}"

    first = pod_json(node, namespace, "store-0")
    marker = f"written by {first['metadata']['uid']}"
    write = pod_url(node, namespace, "store-0", "/write", {"path": "/data/marker"})
    status, body, _ = http(write, data=marker.encode())
    assert status == 200, body
    assert (host_dir / "marker").read_text() == marker  # it is really on the host path

    node.kubectl("delete", "pod", "store-0", "-n", namespace, "--wait=true", "--timeout=60s", timeout=70)
    wait_until("store-0 to come back", lambda: (p := json.loads(node.kubectl(
        "get", "pod", "store-0", "-n", namespace, "-o", "json", "--ignore-not-found").stdout or "{}")) and
        p["metadata"]["uid"] != first["metadata"]["uid"], timeout=60, diagnose=diagnose(node, namespace))
    node.kubectl("wait", "pod/store-0", "-n", namespace, "--for=condition=Ready", "--timeout=120s", timeout=130)
    status, body, _ = http(pod_url(node, namespace, "store-0", "/read", {"path": "/data/marker"}))
    assert (status, body) == (200, marker)


def container_state(node: Node, namespace: str, pod: str) -> tuple[str, int]:
    status = pod_json(node, namespace, pod)["status"]["containerStatuses"][0]
    return status["containerID"], status["restartCount"]


def ready_heartbeat(node: Node) -> str:
    conditions = get_json(node, "node", NODE_NAME)["status"]["conditions"]
    return next(c["lastHeartbeatTime"] for c in conditions if c["type"] == "Ready")


def test_pods_keep_running_while_the_kubelet_restarts(node, namespace):
    apply(node, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "steady", "namespace": namespace},
                 "spec": {"terminationGracePeriodSeconds": 1, "containers": [probe_container(node.images["probe"])]}})
    node.kubectl("wait", "pod/steady", "-n", namespace, "--for=condition=Ready", "--timeout=120s", timeout=130)
    before = container_state(node, namespace, "steady")
    url = pod_url(node, namespace, "steady", "/")
    kubelet, heartbeat = node.pids()["kubelet"], ready_heartbeat(node)
    try:
        started = time.monotonic()
        node.restart_kubelet(down=2)  # SIGTERM, as systemd stops it
        print(f"restart_kubelet(down=2) took {time.monotonic() - started:.1f}s")
        assert node.pids()["kubelet"] != kubelet
        assert node._node_ready()
        assert ready_heartbeat(node) > heartbeat  # reported by the new kubelet (RFC 3339 sorts as text)
        assert container_state(node, namespace, "steady") == before  # the same container, never restarted

        # A crash: with no kubelet at all, the pod still answers.
        heartbeat = ready_heartbeat(node)
        node.stop_kubelet(kill=True)
        assert "kubelet" not in node.pids()
        status, body, _ = http(url)
        assert (status, body.strip()) == (200, "steady")
        node.start_kubelet()
        assert node._node_ready() and ready_heartbeat(node) > heartbeat
        assert container_state(node, namespace, "steady") == before
        node.kubectl("wait", "pod/steady", "-n", namespace, "--for=condition=Ready", "--timeout=60s", timeout=70)
        status, body, _ = http(url)
        assert (status, body.strip()) == (200, "steady")
    finally:
        node.start_kubelet()  # the tests after this one need it


# --- leaving the machine as found (these stop the shared node: keep them last) -------------


def test_stop_leaves_the_machine_clean(node):
    pids = [pid for pids in node.pids().values() for pid in pids]
    roles = set(node.pids())
    assert {"kubelet", "containerd", "kube-proxy", "kube-apiserver", "pods", "containerd-shims"} <= roles, roles
    assert node_host.leftovers()  # the probe below sees a running layer
    print(f"memory MiB with the test pods: {node.memory_mib()}")

    node.stop()

    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and
             Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"]
    assert alive == []
    assert node_host.leftovers() == []
    assert node_host.foreign_kubepods() == []  # the pods' cgroups were under the layer's own root
    assert node_host.read_sysctls() == node.sysctls_before  # ip_forward above all
    assert not any(point.startswith(str(node_host.STATE_DIR)) for point in node_host._mount_points())
    assert not Path(f"/sys/class/net/{node_host.NODE_IFACE}").exists()
    for path in node_host.FIXED_PATHS:
        assert not os.path.lexists(path), path
    node.stop()  # idempotent


CRASHING_RUN = textwrap.dedent("""
    import os, sys, time
    from e2e.testbed.node import Node
    from e2e.testbed.node_tools import ensure_node_tools
    from e2e.testbed.tools import ensure_etcd, ensure_kube_apiserver, ensure_kubectl, Tools
    tools = Tools(etcd=ensure_etcd(), kube_apiserver=ensure_kube_apiserver(), helm=None, kubectl=ensure_kubectl(),
                  harperdb=None)
    Node(tools, ensure_node_tools()).start()
    print("UP", flush=True)
    time.sleep(600)
""")


def test_the_next_start_cleans_up_after_a_crashed_run(node, testbed_tools):
    sysctls_before = node_host.read_sysctls()
    assert node_host.leftovers() == []  # the previous test stopped the shared node
    crashed = subprocess.Popen([sys.executable, "-c", CRASHING_RUN], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).parents[1], start_new_session=True)
    try:
        assert crashed.stdout.readline().strip() == "UP"
    finally:
        os.killpg(crashed.pid, signal.SIGKILL)  # no clean-up ran: as if the machine's OOM killer struck
        crashed.wait()
    # The kubelet and friends die with their parent; pods, shims and host state stay behind.
    left = wait_until("the layer's own processes to die", lambda: not any(
        "kubelet" in why or "containerd --config" in why for why in node_host.layer_pids().values())
        and node_host.leftovers(), timeout=30)
    kinds = {item.split()[0] for item in left}
    assert {"process", "mount", "cgroup", "chain", "interface", "path"} <= kinds, left

    with Node(testbed_tools, ensure_node_tools()) as again:  # start() clears the leftovers first
        assert again._node_ready()
    assert node_host.leftovers() == []
    assert node_host.read_sysctls() == sysctls_before


def test_only_one_node_layer_runs_per_machine(tmp_path):
    first, second = node_host.MachineLock(tmp_path / "lock"), node_host.MachineLock(tmp_path / "lock")
    first.acquire(timeout=1)
    with pytest.raises(node_host.NodeBusy, match=f"pid {os.getpid()}"):
        second.acquire(timeout=1)
    first.release()
    second.acquire(timeout=1)
    second.release()
    assert not (tmp_path / "lock").exists()
