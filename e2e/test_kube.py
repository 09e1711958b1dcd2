"""harper_operator.kube (kubernetes.aio) and the operator's Kopf login against the test bed's real kube-apiserver.

Every function kube.py offers, as the controller calls it: the Secret gate, custom objects and their status, 404s and
409s, server-side apply of owned objects, merge patches, uid-guarded deletes. Then credentials that expire: a
kubeconfig whose exec plugin hands out a ServiceAccount token bound to a Secret; deleting that Secret revokes the
token (the API server answers 401), and both kube.py and Kopf's login (kopf.login_via_client, through
handlers/startup.login) pick up the plugin's next token.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import kopf
import kubernetes.client.exceptions
import kubernetes.config.kube_config
import pytest

from harper_operator import kube, runner
from harper_operator import settings as config
from harper_operator.api import READABLE_LABEL
from harper_operator.handlers import startup

from .operator_process import ROOT
from .testbed.exec_plugin import ExecPlugin

GROUP_VERSION = "harperoperator.dev/v1alpha1"


@pytest.fixture(scope="module")
def crds(kubectl):
    kubectl("apply", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture
def ns(kubectl, crds) -> str:
    name = f"k-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


@pytest.fixture
async def admin(control_plane):
    """kube.py configured with the test bed's admin kubeconfig; its session closed after the test."""
    kube.configure(control_plane.kubeconfig)
    yield
    await kube.close()


def _apply(kubectl, obj: dict) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def _secret(ns: str, name: str, data: dict[str, bytes], readable: bool | None) -> dict:
    labels = {} if readable is None else {READABLE_LABEL: "true" if readable else "false"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


async def test_read_secret_decodes_only_a_readable_secret(kubectl, ns, admin):
    _apply(kubectl, _secret(ns, "open", {"username": b"admin", "password": b"s3cret", "keystore": b"\xff\xfe\x00"},
                            readable=True))
    _apply(kubectl, _secret(ns, "closed", {"password": b"hidden"}, readable=None))
    _apply(kubectl, _secret(ns, "refused", {"password": b"hidden"}, readable=False))

    assert await kube.read_secret(ns, "open") == (True, {"username": "admin", "password": "s3cret",
                                                         "keystore": None})
    assert await kube.read_secret(ns, "closed") == (False, {})
    assert await kube.read_secret(ns, "refused") == (False, {})
    assert await kube.read_secret(ns, "missing") is None


def _cluster(ns: str, name: str) -> dict:
    return {"apiVersion": GROUP_VERSION, "kind": "HarperCluster", "metadata": {"name": name, "namespace": ns},
            "spec": {"credentials": {"secretRef": {"name": "admin"}}}}


def _node(ns: str, name: str, cluster: str) -> dict:
    return {"apiVersion": GROUP_VERSION, "kind": "HarperNode", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterRef": {"name": cluster}, "hostname": f"{name}.example",
                     "url": f"wss://{name}.example:9933", "operationsUrl": f"https://{name}.example:9925"}}


async def test_custom_objects_get_list_patch_status_and_metadata(kubectl, ns, admin):
    _apply(kubectl, _cluster(ns, "c"))
    _apply(kubectl, _node(ns, "n-1", "c"))

    cluster = await kube.get_object("harperclusters", ns, "c")
    assert cluster["metadata"]["name"] == "c" and cluster["spec"]["credentials"]["secretRef"]["name"] == "admin"
    assert await kube.get_object("harperclusters", ns, "gone") is None
    assert [n["metadata"]["name"] for n in await kube.list_objects("harpernodes", ns)] == ["n-1"]
    assert await kube.list_objects("harperclusters", "nobody-here") == []

    assert await kube.patch_status("harperclusters", ns, "c", {"readyNodes": "1/3", "observedGeneration": 1})
    shown = json.loads(kubectl("get", "harperclusters", "c", "-n", ns, "-o", "json").stdout)
    assert shown["status"]["readyNodes"] == "1/3" and shown["status"]["observedGeneration"] == 1
    # A merge patch: a null removes the field, the rest stays.
    assert await kube.patch_status("harperclusters", ns, "c", {"readyNodes": None})
    status = (await kube.get_object("harperclusters", ns, "c"))["status"]
    assert "readyNodes" not in status and status["observedGeneration"] == 1
    assert await kube.patch_status("harperclusters", ns, "gone", {"readyNodes": "0/0"}) is False

    version = cluster["metadata"]["resourceVersion"]  # stale now: the status writes moved it
    await kube.patch_metadata("harperclusters", ns, "c", {"annotations": {"example.com/x": "1"}})
    assert (await kube.get_object("harperclusters", ns, "c"))["metadata"]["annotations"]["example.com/x"] == "1"
    with pytest.raises(kube.ApiException) as refused:
        await kube.patch_metadata("harperclusters", ns, "c", {"resourceVersion": version,
                                                               "annotations": {"example.com/x": "2"}})
    assert refused.value.status == 409
    # handlers/node.py catches the sync client's ApiException: the same error is one.
    assert isinstance(refused.value, kubernetes.client.exceptions.ApiException)
    with pytest.raises(kube.ApiException) as missing:
        await kube.patch_metadata("harperclusters", ns, "gone", {"annotations": {"example.com/x": "1"}})
    assert missing.value.status == 404


def _statefulset(ns: str, name: str, replicas: int = 1) -> dict:
    labels = {"app.kubernetes.io/name": "harper", "app.kubernetes.io/instance": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": ns,
                                                                         "labels": labels},
            "spec": {"serviceName": name, "replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "harper", "image": "example/harper:1"}]}}}}


async def test_owned_objects_apply_read_list_merge_patch(kubectl, ns, admin):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hc", "namespace": ns},
               "spec": {"clusterIP": "None", "selector": {"app": "hc"}, "ports": [{"name": "ops", "port": 9925}]}}
    applied = await kube.apply(service)
    assert applied["kind"] == "Service" and applied["spec"]["clusterIP"] == "None"  # camelCase, as the API has it
    assert [f["manager"] for f in applied["metadata"]["managedFields"]] == [kube.FIELD_MANAGER]

    applied = await kube.apply(_statefulset(ns, "hc"))
    assert applied["spec"]["serviceName"] == "hc" and applied["spec"]["replicas"] == 1
    # Forced: a field another manager changed is taken back.
    kubectl("scale", "statefulset", "hc", "-n", ns, "--replicas=2")
    assert (await kube.apply(_statefulset(ns, "hc")))["spec"]["replicas"] == 1

    sts = await kube.read_statefulset(ns, "hc")
    assert sts["metadata"]["name"] == "hc" and sts["spec"]["template"]["spec"]["containers"][0]["name"] == "harper"
    assert isinstance(sts["metadata"]["creationTimestamp"], str)
    assert await kube.read_statefulset(ns, "gone") is None
    assert [s["metadata"]["name"] for s in await kube.list_statefulsets(ns, "app.kubernetes.io/instance=hc")] == ["hc"]
    assert await kube.list_statefulsets(ns, "app.kubernetes.io/instance=other") == []

    assert await kube.merge_patch("StatefulSet", ns, "hc", {"metadata": {"annotations": {"example.com/y": "1"}}})
    assert (await kube.read_statefulset(ns, "hc"))["metadata"]["annotations"]["example.com/y"] == "1"
    assert await kube.merge_patch("StatefulSet", ns, "gone", {"metadata": {"annotations": {"a": "b"}}}) is False

    _apply(kubectl, _cluster(ns, "c"))
    await kube.apply(_node(ns, "c-0", "c"))  # created: 201, which the client's CustomObjectsApi reads as None
    assert (await kube.get_object("harpernodes", ns, "c-0"))["spec"]["hostname"] == "c-0.example"
    assert (await kube.apply(_node(ns, "c-0", "c")))["spec"]["hostname"] == "c-0.example"  # 200: the object


async def test_create_secret_never_replaces(kubectl, ns, admin):
    secret = _secret(ns, "admin", {"password": b"first"}, readable=True)
    assert await kube.create_secret(secret) is True
    assert await kube.create_secret(_secret(ns, "admin", {"password": b"second"}, readable=True)) is False
    assert await kube.read_secret(ns, "admin") == (True, {"password": "first"})
    fields = json.loads(kubectl("get", "secret", "admin", "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    assert [f["manager"] for f in fields["metadata"]["managedFields"]] == [kube.FIELD_MANAGER]


async def test_delete_pods_and_nodes_by_uid(kubectl, ns, admin):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hc-0", "namespace": ns, "labels": {"app": "hc"}},
           "spec": {"containers": [{"name": "c", "image": "example/none:1"}]}}
    kubectl("create", "serviceaccount", "default", "-n", ns)  # no controller-manager makes it here
    _apply(kubectl, pod)
    [listed] = await kube.list_pods(ns, "app=hc")
    assert listed["metadata"]["name"] == "hc-0" and listed["spec"]["containers"][0]["image"] == "example/none:1"
    assert await kube.list_pods(ns, "app=other") == []
    uid = listed["metadata"]["uid"]
    assert await kube.delete("Pod", ns, "hc-0", uid="not-" + uid) is False  # a successor's uid: 409, left alone
    assert await kube.delete("Pod", ns, "hc-0", uid=uid) is True  # never scheduled: gone at once
    assert await kube.delete("Pod", ns, "hc-0") is False  # 404
    assert await kube.list_pods(ns, "app=hc") == []

    _apply(kubectl, _cluster(ns, "c"))
    _apply(kubectl, _node(ns, "c-1", "c"))
    assert await kube.delete("HarperNode", ns, "c-1") is True
    assert await kube.get_object("harpernodes", ns, "c-1") is None
    assert await kube.delete("HarperNode", ns, "c-1") is False


async def test_an_api_server_refusal_is_an_api_exception(kubectl, ns, admin):
    bad = _statefulset(ns, "bad")
    bad["spec"]["replicas"] = -1
    with pytest.raises(kube.ApiException) as refused:
        await kube.apply(bad)
    assert refused.value.status == 422 and "replicas" in refused.value.body


# --- credentials that expire ---

def exec_plugin(d: Path, control_plane) -> ExecPlugin:
    """An exec-plugin kubeconfig for the test bed's kube-apiserver."""
    return ExecPlugin(d, control_plane.server, base64.b64encode(control_plane.ca_path.read_bytes()).decode())


class BoundTokens:
    """ServiceAccount tokens, each bound to a Secret of its own: deleting the Secret revokes that token."""

    def __init__(self, kubectl, ns: str, control_plane):
        self.kubectl, self.ns, self.control_plane = kubectl, ns, control_plane
        kubectl("create", "serviceaccount", "robot", "-n", ns)
        kubectl("create", "clusterrolebinding", f"robot-{ns}", "--clusterrole=cluster-admin",
                f"--serviceaccount={ns}:robot")

    def mint(self, name: str) -> str:
        self.kubectl("create", "secret", "generic", name, "-n", self.ns)
        return self.kubectl("create", "token", "robot", "-n", self.ns, "--bound-object-kind=Secret",
                            f"--bound-object-name={name}").stdout.strip()

    def revoke(self, name: str, token: str) -> None:
        self.kubectl("delete", "secret", name, "-n", self.ns)
        deadline = time.monotonic() + 30
        while self.status(token) != 401:
            assert time.monotonic() < deadline, "the API server kept accepting a token bound to a deleted Secret"
            time.sleep(0.2)

    def status(self, token: str) -> int:
        """What the API server answers this token (its bare HTTP status)."""
        request = urllib.request.Request(f"{self.control_plane.server}/apis/harperoperator.dev/v1alpha1",
                                         headers={"Authorization": f"Bearer {token}"})
        context = ssl.create_default_context(cafile=str(self.control_plane.ca_path))
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as answer:
                return answer.status
        except urllib.error.HTTPError as e:
            return e.code


@pytest.fixture
def tokens(kubectl, ns, control_plane):
    bound = BoundTokens(kubectl, ns, control_plane)
    yield bound
    kubectl("delete", "clusterrolebinding", f"robot-{ns}", check=False)


async def test_kube_reloads_an_exec_plugins_token_after_a_401(tmp_path, control_plane, kubectl, ns, tokens):
    _apply(kubectl, _cluster(ns, "c"))
    plugin = exec_plugin(tmp_path, control_plane)
    first = tokens.mint("first")
    plugin.hand_out(first)
    kube.configure(str(plugin.kubeconfig))
    try:
        assert plugin.runs == 0, "configure() only reads the kubeconfig: the plugin runs in the loop"
        assert [c["metadata"]["name"] for c in await kube.list_objects("harperclusters", ns)] == ["c"]
        assert plugin.runs == 1
        assert await kube.patch_status("harperclusters", ns, "c", {"readyNodes": "0/0"})
        assert plugin.runs == 1, "a good token is kept, not fetched per call"

        second = tokens.mint("second")
        plugin.hand_out(second)
        tokens.revoke("first", first)
        # The first call after the revocation is answered 401, runs the plugin again and succeeds with its token.
        assert (await kube.get_object("harperclusters", ns, "c"))["status"]["readyNodes"] == "0/0"
        assert plugin.runs == 2
        assert await kube.read_secret(ns, "second") == (False, {})
        assert plugin.runs == 2

        # A plugin that has nothing valid to give: the 401 is tried once more, then raised.
        tokens.revoke("second", second)
        with pytest.raises(kube.ApiException) as refused:
            await kube.list_objects("harperclusters", ns)
        assert refused.value.status == 401 and plugin.runs == 3
    finally:
        await kube.close()


def test_kopf_login_runs_the_exec_plugin_again_on_every_login(tmp_path, control_plane, kubectl, ns, tokens,
                                                              monkeypatch):
    """handlers/startup.login is Kopf's login_via_client on `--kubeconfig` (runner.use_kubeconfig): each call, as
    Kopf makes one after a 401, gets the plugin's current token."""
    plugin = exec_plugin(tmp_path, control_plane)
    # runner.use_kubeconfig changes the process's environment and the client's default: undo both afterwards.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setattr(config, "current", config.OperatorSettings(kubeconfig=str(plugin.kubeconfig)))
    runner.use_kubeconfig(str(plugin.kubeconfig))
    log = logging.getLogger(__name__)

    first = tokens.mint("first")
    plugin.hand_out(first)
    info = startup.login(logger=log, settings=kopf.OperatorSettings())
    assert info.server == control_plane.server and info.scheme == "Bearer" and info.token == first
    assert info.ca_path and not info.insecure
    assert tokens.status(info.token) == 200 and plugin.runs == 1

    second = tokens.mint("second")
    plugin.hand_out(second)
    tokens.revoke("first", first)
    assert tokens.status(info.token) == 401  # what makes Kopf invalidate the credentials and log in again
    again = startup.login(logger=log, settings=kopf.OperatorSettings())
    assert again.token == second and tokens.status(again.token) == 200 and plugin.runs == 2
