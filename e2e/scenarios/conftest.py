"""Fixtures for the operator scenarios: CRDs installed, the operator running, a namespace per test."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from ..operator_process import ROOT, OperatorProcess
from . import kit


class Kube:
    """kubectl against the test bed, in one namespace; JSON in, JSON out."""

    def __init__(self, kubectl: str, kubeconfig: str, namespace: str):
        self.kubectl, self.kubeconfig, self.namespace = kubectl, kubeconfig, namespace

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.kubectl, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args]
        done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def apply(self, *objs: dict, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}),
                        check=check)

    def get(self, kind: str, name: str) -> dict | None:
        done = self.run("get", kind, name, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def delete(self, kind: str, name: str, wait: bool = True) -> None:
        self.run("delete", kind, name, f"--wait={'true' if wait else 'false'}", "--timeout=120s")

    def patch(self, kind: str, name: str, patch: dict) -> None:
        self.run("patch", kind, name, "--type=merge", "-p", json.dumps(patch))

    def events(self, name: str) -> list[dict]:
        done = self.run("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        return json.loads(done.stdout)["items"]

    def ready(self, kind: str, name: str) -> dict | bool:
        obj = self.get(kind, name)
        if not obj:
            return False
        generation = obj["metadata"].get("generation")
        c = kit.condition(obj, "Ready")
        return obj if c.get("status") == "True" and obj["status"].get("observedGeneration") == generation else False


@pytest.fixture(scope="session")
def crds(control_plane, testbed_tools):
    subprocess.run([testbed_tools.kubectl, "--kubeconfig", control_plane.kubeconfig, "apply", "-f",
                    str(ROOT / "crds")], check=True, capture_output=True)
    subprocess.run([testbed_tools.kubectl, "--kubeconfig", control_plane.kubeconfig, "wait", "--for",
                    "condition=Established", "crd", "--all", "--timeout=60s"], check=True, capture_output=True)


@pytest.fixture(scope="package")
def operator(crds, control_plane, tmp_path_factory):
    """One operator for the scenarios, stopped when they end: other suites (the chart's) run their own."""
    proc = OperatorProcess(control_plane.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log").start()
    yield proc
    proc.stop()


@pytest.fixture
def kube(control_plane, testbed_tools, crds, request) -> Kube:
    """A fresh namespace. Namespaces never finish deleting here (no controller-manager), so none is deleted;
    the test's resources are, so no cluster of an earlier test keeps reconciling the shared Harper nodes."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    subprocess.run([testbed_tools.kubectl, "--kubeconfig", control_plane.kubeconfig, "create", "namespace", ns],
                   check=True, capture_output=True)
    k = Kube(testbed_tools.kubectl, control_plane.kubeconfig, ns)
    yield k
    k.run("delete", "harperclusters,harpernodes", "--all", "--wait=true", "--timeout=90s", check=False)
    left = k.run("get", "harperclusters,harpernodes", "-o", "name", check=False).stdout.split()
    if left:  # no operator ran (or it is stuck): finalizers would keep these forever
        for name in left:
            k.run("patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "operator" in item.fixturenames:
        proc = item.funcargs.get("operator")
        if proc is not None:
            report.sections.append(("operator log (tail)", proc.log_tail()))
