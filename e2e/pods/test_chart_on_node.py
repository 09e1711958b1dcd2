"""The chart where users run it: `helm install` on a real one-node Kubernetes (kubelet, containerd, CoreDNS), the
operator's image pulled from a registry, Harper as pods addressed by their DNS names. Runs in file order on one
node, one operator release and one Harper StatefulSet."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from . import harper
from ..scenarios.kit import wait_until
from .conftest import CHART, GROUP_VERSION, all_ready, harper_call, replaced

OPERATOR_NS = "harper-system"
RELEASE = "harper-operator"
CLUSTER = "pods"
WRITE_REASONS = {"AddNode", "UpdateNode", "RemoveNode", "SetRoutes", "DeleteRoutes", "Restart"}
SELECTOR = "app.kubernetes.io/name=harper-operator"


def _image(ref: str) -> tuple[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


def operator_pods(bed) -> list[dict]:
    return [p for p in bed.json("get", "pods", "-n", OPERATOR_NS, "-l", SELECTOR)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def logs(bed, pod: str) -> str:
    return bed.kubectl("logs", pod, "-n", OPERATOR_NS, check=False).stdout


def ready(bed, kind: str, name: str, namespace: str, nodes: str | None = None):
    obj = bed.get(kind, name, namespace)
    if not obj:
        return False
    status = obj.get("status") or {}
    cond = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    ok = cond.get("status") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]
    return obj if ok and (nodes is None or status.get("readyNodes") == nodes) else False


def writes(bed, namespace: str) -> list[str]:
    events = bed.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={CLUSTER}")["items"]
    return sorted(f"{e['reason']} x{e.get('count', 1)}: {e['message'][:160]}" for e in events
                  if e["reason"] in WRITE_REASONS)


def write_count(bed, namespace: str) -> int:
    events = bed.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={CLUSTER}")["items"]
    return sum(e.get("count", 1) for e in events if e["reason"] in WRITE_REASONS)


def has_record(bed, pods, i: int, key: str) -> bool:
    status, answer = harper_call(bed, pods, i, {"operation": "search_by_id", "database": "data", "table": "t",
                                                "ids": [key], "get_attributes": ["id"]})
    return status == 200 and isinstance(answer, list) and any(r.get("id") == key for r in answer)


def restart_count(bed, namespace: str) -> int:
    events = bed.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={CLUSTER}")["items"]
    return sum(e.get("count", 1) for e in events if e["reason"] == "Restart")


def peer_names(bed, pods, i: int) -> set[str]:
    status, answer = harper_call(bed, pods, i, {"operation": "cluster_status"})
    assert status == 200, answer
    return {c["name"] for c in answer.get("connections", [])}


def meshed(bed, pods) -> bool:
    """Every pod's Harper shows every other pod with all its database sockets connected."""
    for i in range(pods.replicas):
        status, answer = harper_call(bed, pods, i, {"operation": "cluster_status"})
        if status != 200:
            return False
        up = {c["name"] for c in answer.get("connections", [])
              if c.get("database_sockets") and all(s.get("connected") for s in c["database_sockets"])}
        if up != {pods.dns(j) for j in range(pods.replicas) if j != i}:
            return False
    return True


@pytest.fixture(scope="module")
def release(bed, harper_pods):
    repository, tag = _image(bed.images["operator"])
    bed.kubectl("create", "namespace", OPERATOR_NS)
    # --take-ownership: the chart's CRDs (templates/crds/, kept on uninstall) may be left by another release of
    # this node bed, which a plain install refuses to adopt.
    bed.run_helm("install", RELEASE, CHART, "-n", OPERATOR_NS, "--set", f"image.repository={repository}",
                 "--set", f"image.tag={tag}", "--set-json", f'watchNamespaces=["{harper_pods.namespace}"]',
                 "--set", "metrics.service.enabled=true", "--take-ownership", "--wait", "--timeout", "240s")
    return harper_pods


def test_the_operator_pod_runs_from_the_chart(bed, release):
    (pod,) = operator_pods(bed)
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])  # through its own readiness probe
    container = pod["spec"]["containers"][0]
    assert container["image"] == bed.images["operator"]
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["spec"]["securityContext"]["runAsNonRoot"]
    assert "--kubeconfig" not in " ".join(container.get("args", []))  # in-cluster config, its ServiceAccount
    # The process really runs as the chart's non-root user (read from the host: this is the node).
    uids = []
    for pid in subprocess.run(["pgrep", "-f", "harper-operator run"], capture_output=True, text=True).stdout.split():
        try:
            if "kubepods" in Path(f"/proc/{pid}/cgroup").read_text():
                uids.append(re.search(r"^Uid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
        except (OSError, AttributeError):
            continue
    assert uids and set(uids) == {"65532"}, uids


def test_a_cluster_of_harper_pods_is_ready_and_replicates(bed, release):
    pods, ns = release, release.namespace
    bed.apply({"apiVersion": GROUP_VERSION, "kind": "HarperCluster", "metadata": {"name": CLUSTER},
               "spec": {"credentials": {"secretRef": {"name": "harper-admin"}}, "tls": {"verify": False},
                        "reconcileIntervalSeconds": 10}}, namespace=ns)
    bed.apply(*({"apiVersion": GROUP_VERSION, "kind": "HarperNode", "metadata": {"name": f"{CLUSTER}-{i}"},
                 "spec": {"clusterRef": {"name": CLUSTER}, "hostname": pods.dns(i),
                          "url": f"wss://{pods.dns(i)}:{harper.REPLICATION_PORT}",
                          "operationsUrl": f"https://{pods.dns(i)}:{harper.OPS_PORT}"}}
                for i in range(pods.replicas)), namespace=ns)
    wait_until("the cluster Ready 3/3", lambda: ready(bed, "harpercluster", CLUSTER, ns, "3/3"), timeout=240,
               diagnose=bed.diagnose(ns))
    # A record written through one pod is read on another.
    harper_call(bed, pods, 0, {"operation": "create_table", "database": "data", "table": "t", "primary_key": "id"})
    key = uuid.uuid4().hex
    wait_until("the table on pod 1", lambda: harper_call(bed, pods, 1, {
        "operation": "describe_table", "database": "data", "table": "t"})[0] == 200, timeout=60)
    assert harper_call(bed, pods, 0, {"operation": "insert", "database": "data", "table": "t",
                                      "records": [{"id": key}]})[0] == 200
    wait_until("the record on pod 1", lambda: has_record(bed, pods, 1, key), timeout=60)
    release.key = key
    # Status says what cluster_status says.
    for i in range(pods.replicas):
        hn = bed.get("harpernode", f"{CLUSTER}-{i}", ns)
        assert hn["status"]["nodeName"] == pods.dns(i)
        assert {p["name"] for p in hn["status"]["peers"]} == peer_names(bed, pods, i) == \
            {pods.dns(j) for j in range(pods.replicas) if j != i}


def test_a_deleted_harper_pod_comes_back_with_its_volume(bed, release):
    pods, ns = release, release.namespace
    before, restarts_before = write_count(bed, ns), restart_count(bed, ns)
    old_uid = bed.get("pod", f"{harper.SERVICE}-1", ns)["metadata"]["uid"]
    bed.kubectl("delete", "pod", f"{harper.SERVICE}-1", "-n", ns, "--wait=false")
    # The status alone can still be the one written before the pod went (a pod back within a round busy with
    # another member's restart is never seen down: seen in CI), so Harper itself must show the new pod meshed.
    wait_until("a new pod 1, every pod connected to every other, and Ready 3/3", lambda: replaced(
        bed, ns, f"{harper.SERVICE}-1", old_uid) and meshed(bed, pods) and ready(bed, "harpercluster", CLUSTER, ns,
                                                                               "3/3"),
               timeout=240, diagnose=bed.diagnose(ns))
    # Its volume came back with it: the record replicated before is still there.
    assert wait_until("pod 1 answers", lambda: harper_call(bed, pods, 1, {"operation": "cluster_status"})[0] == 200)
    assert has_record(bed, pods, 1, release.key)
    extra = write_count(bed, ns) - before
    print(f"writes to Harper while a pod was replaced: {extra} ({writes(bed, ns)})")
    # The minimum: the survivors may reconnect to the new pod (new IP, same name) by themselves, and when they do
    # not within the operator's grace, each is restarted once to reconnect (seen: 0, 1 and 2). Nothing else.
    restarts = [w for w in writes(bed, ns) if w.startswith("Restart")]
    assert extra <= pods.replicas - 1 and extra == restart_count(bed, ns) - restarts_before, writes(bed, ns)
    assert all("reconnect" in w for w in restarts), restarts


def test_metrics_are_scraped_through_the_service(bed, release):
    services = bed.json("get", "services", "-n", OPERATOR_NS)["items"]
    (svc,) = [s for s in services if any(p["port"] == 8080 for p in s["spec"]["ports"])]
    url = f"http://{svc['spec']['clusterIP']}:8080/metrics"
    text = wait_until("metrics through the Service", lambda: _get(url), timeout=60)

    def ready_nodes() -> list[str]:
        return [line for line in (_get(url) or "").splitlines()
                if line.startswith("harper_operator_cluster_ready_nodes{") and f'"{CLUSTER}"' in line
                and f'"{release.namespace}"' in line]
    # The gauge follows the cluster's rounds: a member restarting for a reconnect just now counts as not ready.
    wait_until("the cluster's ready members in the metrics, 3 of them", lambda: ready_nodes() and ready_nodes()[
        0].endswith(" 3.0"), timeout=120, diagnose=lambda: f"{ready_nodes()}\n{text[:3000]}")


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return None


def test_the_operator_pod_deleted_mid_reconcile(bed, release):
    pods, ns = release, release.namespace
    bed.kubectl("patch", "harpernode", f"{CLUSTER}-2", "-n", ns, "--type=merge", "-p", '{"spec":{"shard":1}}')
    (pod,) = operator_pods(bed)
    time.sleep(1)  # the change wakes the round; kill the pod while it runs
    bed.kubectl("delete", "pod", pod["metadata"]["name"], "-n", OPERATOR_NS, "--wait=false")
    wait_until("a new operator pod", lambda: [p for p in operator_pods(bed)
                                              if p["metadata"]["name"] != pod["metadata"]["name"]], timeout=120)
    wait_until("the change converged by the new pod", lambda: ready(bed, "harpernode", f"{CLUSTER}-2", ns) and
               ready(bed, "harpercluster", CLUSTER, ns, "3/3"), timeout=240, diagnose=bed.diagnose(ns))
    for i in range(pods.replicas):  # no ghost, no missing record
        assert peer_names(bed, pods, i) == {pods.dns(j) for j in range(pods.replicas) if j != i}


def test_two_replicas_elect_one_and_the_other_takes_over(bed, release):
    ns = release.namespace
    bed.run_helm("upgrade", RELEASE, CHART, "-n", OPERATOR_NS, "--reuse-values", "--set", "replicas=2",
                 "--set", "peering.enabled=true", "--wait", "--timeout", "240s")
    wait_until("two operator pods Ready", lambda: all_ready(bed, OPERATOR_NS, SELECTOR, 2), timeout=180)
    paused = wait_until("one replica standing by", lambda: [p["metadata"]["name"] for p in operator_pods(bed)
                                                           if "Pausing operations" in logs(bed, p["metadata"]["name"])],
                        timeout=120)
    assert len(paused) == 1, paused
    standby = paused[0]
    (active,) = [p["metadata"]["name"] for p in operator_pods(bed) if p["metadata"]["name"] != standby]
    bed.kubectl("delete", "pod", active, "-n", OPERATOR_NS, "--wait=false")
    wait_until("the standby resumes", lambda: "Resuming operations" in logs(bed, standby), timeout=120)
    bed.kubectl("patch", "harpercluster", CLUSTER, "-n", ns, "--type=merge", "-p",
                '{"spec":{"reconcileIntervalSeconds":11}}')
    wait_until("the change is reconciled", lambda: ready(bed, "harpercluster", CLUSTER, ns, "3/3"), timeout=120)


def test_helm_uninstall_keeps_the_crds_and_the_resources(bed, release):
    ns = release.namespace
    bed.run_helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--timeout", "120s")
    wait_until("the operator pods gone", lambda: not operator_pods(bed), timeout=120)
    assert bed.kubectl("get", "crd", "harperclusters.harperoperator.dev", check=False).returncode == 0
    assert bed.get("harpercluster", CLUSTER, ns) is not None
    # What the documentation tells a user to do to remove them without an operator: drop the finalizers.
    for kind in ("harpernodes", "harperclusters"):
        for obj in bed.json("get", kind, "-n", ns)["items"]:
            bed.kubectl("patch", kind, obj["metadata"]["name"], "-n", ns, "--type=merge",
                        "-p", json.dumps({"metadata": {"finalizers": None}}))
