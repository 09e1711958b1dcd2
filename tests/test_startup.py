"""handlers/startup.py: Kopf logs in with its own login functions, on `--kubeconfig` (runner.use_kubeconfig), so
every login (Kopf logs in again after a 401) reads fresh credentials; the client's session is closed on exit.

The real kopf.login_via_client runs here on real kubeconfig files (it contacts no server); e2e/test_kube.py shows
the tokens it returns work, and stop working, against a real kube-apiserver.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import kopf
import kubernetes.config.kube_config
import pytest
import yaml
from kopf._core.intents.causes import Activity

from e2e.testbed.exec_plugin import ExecPlugin
from harper_operator import kube, runner
from harper_operator import settings as config
from harper_operator.handlers import startup

LOG = logging.getLogger(__name__)

def _kubeconfig(path: Path, server: str, user: dict) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "users": [{"name": "t", "user": user}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return path


@pytest.fixture
def process(monkeypatch):
    """runner.use_kubeconfig changes the process's environment and the client's default kubeconfig: undone after."""
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    return monkeypatch


def _run_with(monkeypatch, kubeconfig: str | None) -> None:
    monkeypatch.setattr(config, "current", config.OperatorSettings(kubeconfig=kubeconfig))
    runner.use_kubeconfig(kubeconfig)


def test_login_on_kubeconfig_is_kopfs_login_via_client_reading_it_afresh(tmp_path, process):
    """An exec plugin runs on every login: after a 401 Kopf gets the plugin's new token, not the first one."""
    plugin = ExecPlugin(tmp_path, "https://203.0.113.9:6443")
    _run_with(process, str(plugin.kubeconfig))
    plugin.hand_out("first")
    info = startup.login(logger=LOG, settings=kopf.OperatorSettings())
    assert (info.server, info.scheme, info.token) == ("https://203.0.113.9:6443", "Bearer", "first")
    plugin.hand_out("second")
    assert startup.login(logger=LOG, settings=kopf.OperatorSettings()).token == "second"


def test_kubeconfig_wins_over_the_pods_service_account(tmp_path, process):
    process.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    process.setenv("KUBERNETES_SERVICE_PORT", "443")
    path = _kubeconfig(tmp_path / "kubeconfig", "https://203.0.113.9:6443", {"token": "static"})
    _run_with(process, str(path))
    assert os.environ["KUBECONFIG"] == str(path) and "KUBERNETES_SERVICE_HOST" not in os.environ
    assert not kube.in_cluster()
    info = startup.login(logger=LOG, settings=kopf.OperatorSettings())
    assert (info.server, info.token) == ("https://203.0.113.9:6443", "static")


def test_in_a_pod_without_kubeconfig_kopf_logs_in_with_the_service_account(process):
    process.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    _run_with(process, None)
    assert os.environ["KUBERNETES_SERVICE_HOST"] == "10.0.0.1"  # nothing given: nothing changed
    calls = []
    process.setattr(kopf, "login_with_service_account", lambda **kw: calls.append("sa") or "sa-info")
    process.setattr(kopf, "login_via_client", lambda **kw: calls.append("client") or "client-info")
    assert startup.login(logger=LOG, settings=kopf.OperatorSettings()) == "sa-info" and calls == ["sa"]


def test_out_of_a_pod_without_kubeconfig_kopf_finds_the_default_kubeconfig(process):
    process.delenv("KUBERNETES_SERVICE_HOST")
    _run_with(process, None)
    calls = []
    process.setattr(kopf, "login_via_client", lambda **kw: calls.append(kw) or "client-info")
    assert startup.login(logger=LOG, settings=kopf.OperatorSettings()) == "client-info" and len(calls) == 1


def _handlers(activity: Activity) -> list:
    """Ours; Kopf's own fallbacks (its default logins) run only when there are none."""
    return [h.fn for h in kopf.get_default_registry()._activities.get_all_handlers()
            if h.activity == activity and not h._fallback]


def test_the_registered_activities_are_startups_own():
    assert _handlers(Activity.STARTUP) == [startup.configure]
    assert _handlers(Activity.AUTHENTICATION) == [startup.login]
    assert _handlers(Activity.CLEANUP) == [startup.close_kubernetes_client]


async def test_cleanup_closes_the_kubernetes_client(monkeypatch):
    closed = []

    async def close():
        closed.append(True)

    monkeypatch.setattr(kube, "close", close)
    await startup.close_kubernetes_client(logger=LOG)
    assert closed == [True]
