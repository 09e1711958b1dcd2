"""Fixtures for everything under e2e/: the real test bed (see e2e/testbed).

Session fixtures start each piece once; the control plane and the Harper fleet start side by side
when the collected tests need both. Every test here is marked `e2e`. A tool that cannot be built
fails the tests with the build's output: nothing is skipped silently.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .testbed.harper import HarperFleet, HarperNode
from .testbed.kube import ControlPlane
from .testbed.sandbox import Testbed
from .testbed.tools import Tools, ensure_tools

E2E_DIR = Path(__file__).parent
FLEET_SIZE = 5  # tests use the first 3 or more
_TESTBED = pytest.StashKey[Testbed]()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def testbed_tools(request) -> Tools:
    """Paths of etcd, kube-apiserver, helm, kubectl, harperdb (built into the cache the first time)."""
    # Show the build progress live: the first build takes minutes and would otherwise look hung.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        return ensure_tools()


@pytest.fixture(scope="session")
def _testbed(request, testbed_tools) -> Testbed:
    bed = Testbed(testbed_tools, FLEET_SIZE)
    request.config.stash[_TESTBED] = bed
    # Start now whatever any collected test will need, so both pieces start at the same time.
    needed = {name for item in request.session.items for name in item.fixturenames}
    try:
        bed.start(control_plane="control_plane" in needed, fleet=bool(needed & {"harper_fleet", "harper_nodes"}))
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def control_plane(_testbed) -> ControlPlane:
    """etcd + kube-apiserver; .kubeconfig (admin), .server, .version, .write_kubeconfig(path, token)."""
    return _testbed.start(control_plane=True, fleet=False).control_plane


@pytest.fixture(scope="session")
def harper_fleet(_testbed) -> HarperFleet:
    """Five running Harper nodes (127.0.0.11-15 unless another test bed holds them), one admin
    username/password for all."""
    return _testbed.start(control_plane=False, fleet=True).fleet


@pytest.fixture
def harper_nodes(harper_fleet) -> list[HarperNode]:
    """The fleet's nodes after fleet.reset(): all running, no replication peers, no test data."""
    harper_fleet.reset()
    return list(harper_fleet.nodes)


@pytest.fixture(scope="session")
def kubectl(control_plane, testbed_tools):
    """kubectl(*args, input=None, check=True, timeout=60) -> CompletedProcess (text), as the admin.
    A failure raises with kubectl's stderr unless check=False."""
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60):
        cmd = [str(testbed_tools.kubectl), "--kubeconfig", control_plane.kubeconfig, *map(str, args)]
        done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise AssertionError(f"kubectl {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
        return done
    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed e2e test, attach the end of the apiserver's and every Harper node's log."""
    outcome = yield
    report = outcome.get_result()
    bed = item.config.stash.get(_TESTBED, None)
    if report.failed and bed is not None and item.get_closest_marker("e2e"):
        for title, text in bed.log_tails(80):
            report.sections.append((title, text))
