"""Fixtures for the operator scenarios: CRDs installed, the operator running, a namespace per test."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from ..operator_process import ROOT, OperatorProcess
from .kit import Kube


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
