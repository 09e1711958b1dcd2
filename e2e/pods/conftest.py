"""Fixtures for the scenarios on the node layer: one real node (kubelet, containerd, CoreDNS) with the local
registry, the operator and Harper images pushed there, Harper as pods, and the chart installed with helm."""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ..scenarios.kit import wait_until
from ..testbed.images import build_images
from ..testbed.node import Node
from ..testbed.node_tools import ensure_node_tools
from ..testbed.registry import Registry
from . import harper

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "harper-operator"
GROUP_VERSION = "harperoperator.dev/v1alpha1"
READABLE = {"harperoperator.dev/readable": "true"}


@dataclass
class Bed:
    node: Node
    images: dict[str, str]
    helm: Path

    def kubectl(self, *args, input=None, check=True, timeout=90):
        return self.node.kubectl(*args, input=input, check=check, timeout=timeout)

    def apply(self, *objects, namespace=None):
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump_all(objects))

    def get(self, kind, name, namespace):
        done = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def json(self, *args):
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def run_helm(self, *args, check=True):
        done = subprocess.run([str(self.helm), "--kubeconfig", self.node.kubeconfig, *map(str, args)],
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode:
            raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{done.stderr}")
        return done

    def diagnose(self, namespace):
        def text():
            out = self.kubectl("get", "pods,pvc,svc,hc,hn", "-n", namespace, "-o", "wide", check=False).stdout
            events = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp",
                                  check=False).stdout[-3000:]
            return f"{out}\n{events}"
        return text


@pytest.fixture(scope="package")
def bed(request, testbed_tools) -> Bed:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    registry = Registry().start()
    try:
        with capture.global_and_fixture_disabled():  # first builds take minutes: show them
            node_tools = ensure_node_tools()
            images = build_images(registry)
        node = Node(testbed_tools, node_tools, registry)
        node.start()
        try:
            yield Bed(node, images, testbed_tools.helm)
        finally:
            node.stop()
    finally:
        registry.stop()


@dataclass
class HarperPods:
    namespace: str
    username: str
    password: str
    replicas: int

    def dns(self, i: int) -> str:
        return harper.pod_dns(i, self.namespace)


@pytest.fixture(scope="package")
def harper_pods(bed) -> HarperPods:
    ns = f"hp-{uuid.uuid4().hex[:6]}"
    bed.kubectl("create", "namespace", ns)
    wait_until("the default ServiceAccount", lambda: bed.kubectl(
        "get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0, timeout=60)
    pods = HarperPods(ns, "admin", secrets.token_urlsafe(16), 3)
    bed.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "harper-admin", "labels": READABLE},
               "stringData": {"username": pods.username, "password": pods.password}}, namespace=ns)
    bed.apply(*harper.volumes(ns, pods.replicas, bed.node.dir / "volumes"))
    bed.apply(*harper.statefulset(ns, bed.images["harper"], pods.replicas, "harper-admin"))
    wait_until("Harper pods Ready", lambda: all_ready(bed, ns, "app.kubernetes.io/name=harper", pods.replicas),
               timeout=300, diagnose=bed.diagnose(ns))
    return pods


def all_ready(bed: Bed, namespace: str, selector: str, count: int) -> bool:
    items = bed.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    ready = [p for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in p.get("status", {}).get("conditions", []))
             and not p["metadata"].get("deletionTimestamp")]
    return len(ready) == count and ready


def replaced(bed, ns: str, pod: str, old_uid: str) -> bool:
    """A new pod of that name (not `old_uid`) is Ready: it answers. The cluster's Ready alone can still be the status
    written before the operator saw the old pod go (run 10: a replaced pod still Pending, the cluster Ready 3/3)."""
    found = bed.get("pod", pod, ns) or {}
    return found.get("metadata", {}).get("uid") not in (None, old_uid) and any(
        c["type"] == "Ready" and c["status"] == "True" for c in (found.get("status") or {}).get("conditions", []))


def harper_call(bed: Bed, pods: HarperPods, ordinal: int, body: dict, timeout: float = 15) -> tuple[int, object]:
    """An operation on one pod of the hand-written StatefulSet (e2e/pods/harper.py)."""
    return pod_call(bed, pods.namespace, f"{harper.SERVICE}-{ordinal}", (pods.username, pods.password), body, timeout)


def pod_call(bed: Bed, namespace: str, pod: str, auth: tuple[str, str], body: dict,
             timeout: float = 15) -> tuple[int, object]:
    """One operation on one Harper pod, from the host straight to the pod's IP (the test's own client, not the
    operator's). (0, reason) when the pod has no IP or does not answer."""
    ip = ((bed.get("pod", pod, namespace) or {}).get("status") or {}).get("podIP")
    if not ip:
        return 0, f"{pod} has no IP"
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # Harper's self-signed certificate
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(f"https://{ip}:{harper.OPS_PORT}/", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)
