"""The Helm chart on the real test bed (REAL tests: kube-apiserver with RBAC, real Harper nodes).

* `helm install` of helm/harper-operator succeeds in namespace mode and in cluster mode.
* `kubectl auth can-i --as=system:serviceaccount:...` proves the ServiceAccount may do what the
  operator needs and nothing it must not (other namespaces' Secrets, deleting resources, pods...).
* The operator runs as a process with a kubeconfig holding only that ServiceAccount's token
  (`kubectl create token`) and brings a 3-node HarperCluster to Ready=True, 3/3; its metrics move;
  its liveness endpoint answers; the Argo CD health script calls the live objects Healthy.
* With peering on, the operator keeps its keep-alive in the chart's KopfPeering under the same token.
* Upgrading a release of chart 0.1.0 (from git, whose CRDs came from its crds/ folder) to this chart, on an API
  server of its own: the one-time adoption step the chart README documents, then the CRDs carry this chart's
  labels and the models' schema, a HarperCluster survives, and `helm uninstall` leaves the CRDs and the object.

The fast stand-ins (rendering, schema, the Lua on hand-written samples) are in tests/chart/.
Nothing runs pods here (no kubelet): the chart's Deployment is created but never started, so the
operator runs out of cluster, exactly as the Deployment would run it, with the ServiceAccount's token.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from .operator_process import ROOT, OperatorProcess
from .testbed.kube import ControlPlane


def _chart_support():
    spec = importlib.util.spec_from_file_location("chart_support", ROOT / "tests" / "chart" / "chart_support.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("chart_support", module)
    spec.loader.exec_module(module)
    return module


support = _chart_support()

SUFFIX = uuid.uuid4().hex[:6]
GROUP = "harperoperator.dev"
READY_TIMEOUT = 180


def wait_until(what, check, timeout=60.0, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


class Release:
    def __init__(self, name: str, namespace: str, watched: list[str], install_output: str):
        self.name, self.namespace, self.watched, self.notes = name, namespace, watched, install_output
        self.fullname = name if "harper-operator" in name else f"{name}-harper-operator"
        self.service_account = self.fullname
        self.user = f"system:serviceaccount:{namespace}:{self.service_account}"


@pytest.fixture(scope="module")
def helm(testbed_tools, control_plane, tmp_path_factory):
    h = support.Helm(Path(testbed_tools.helm), tmp_path_factory.mktemp("helm-home"))
    h.env["KUBECONFIG"] = control_plane.kubeconfig
    return h


@pytest.fixture(scope="module")
def rbac_enforced(kubectl):
    """can-i answers mean nothing on an API server that allows everything: check RBAC is on first."""
    done = kubectl("auth", "can-i", "create", "pods", "-n", "default",
                   "--as=system:serviceaccount:default:nobody-" + SUFFIX, check=False)
    assert done.stdout.strip() == "no", "the test bed's kube-apiserver must run with --authorization-mode=RBAC"


def _install(helm, kubectl, name: str, namespace: str, watched: list[str], *extra: str) -> Release:
    for ns in watched:
        kubectl("create", "namespace", ns)
    args = ["install", name, str(support.CHART), "--namespace", namespace, "--create-namespace",
            "--set-json", f"watchNamespaces={json.dumps(watched)}", *extra]
    done = helm.run(*args)
    return Release(name, namespace, watched, done.stdout)


def _uninstall(helm, release: Release) -> None:
    helm.run("uninstall", release.name, "--namespace", release.namespace, check=False)


@pytest.fixture(scope="module")
def ns_release(helm, kubectl, rbac_enforced):
    """Namespace mode, peering on: serves hop-w-* and hop-p-* (the second stays empty for the peering test).
    It renders the HarperCluster and HarperNode CRDs (crds.create), taking them over when they exist already
    (e2e/scenarios, earlier in the same session, applies crds/ with kubectl): --take-ownership, as the chart
    README tells a user whose CRDs came from kubectl or from chart 0.1.0."""
    release = _install(helm, kubectl, f"hop-{SUFFIX}", f"hop-{SUFFIX}", [f"hop-w-{SUFFIX}", f"hop-p-{SUFFIX}"],
                       "--set", "peering.enabled=true", "--take-ownership")
    kubectl("create", "namespace", f"hop-o-{SUFFIX}")  # watched by nobody
    yield release
    _uninstall(helm, release)


@pytest.fixture(scope="module")
def cluster_release(helm, kubectl, ns_release, rbac_enforced):
    """Cluster mode, peering on (all its CRDs already came with ns_release, which owns them: crds.create=false)."""
    release = _install(helm, kubectl, f"hopc-{SUFFIX}", f"hopc-{SUFFIX}", [],
                       "--set", "peering.enabled=true", "--set", "peering.installCRDs=false",
                       "--set", "crds.create=false")
    yield release
    _uninstall(helm, release)


def can_i(kubectl, release: Release, verb: str, resource: str, namespace: str | None = None,
          subresource: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={release.user}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args.append(f"--subresource={subresource}")
    done = kubectl(*args, check=False)
    answer = done.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {done.stdout} {done.stderr}"
    return answer == "yes"


def check_grants(kubectl, release, expected):
    wrong = []
    for verb, resource, namespace, subresource, allowed in expected:
        if can_i(kubectl, release, verb, resource, namespace, subresource) != allowed:
            wrong.append(f"{'CAN NOT' if allowed else 'CAN'} {verb} {resource}"
                         f"{'/' + subresource if subresource else ''} in {namespace or 'all namespaces'}")
    assert not wrong, "ServiceAccount grants differ from the operator's needs:\n  " + "\n  ".join(wrong)


# --- install ----------------------------------------------------------------------------------------

def test_install_namespace_mode(ns_release, kubectl):
    watched, spare = ns_release.watched
    kubectl("wait", "--for=condition=Established", f"crd/harperclusters.{GROUP}", f"crd/harpernodes.{GROUP}",
            "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    kubectl("get", "deployment", ns_release.fullname, "-n", ns_release.namespace)
    kubectl("get", "serviceaccount", ns_release.service_account, "-n", ns_release.namespace)
    for ns in (watched, spare):
        kubectl("get", "role,rolebinding", ns_release.fullname, "-n", ns)
        kubectl("get", "kopfpeering", ns_release.fullname, "-n", ns)  # the post-install hook
    kubectl("get", "clusterrole,clusterrolebinding", f"{ns_release.fullname}-kopf")
    # The CRDs are the release's (templates/crds/), kept on uninstall.
    for crd in (f"harperclusters.{GROUP}", f"harpernodes.{GROUP}"):
        meta = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)["metadata"]
        assert meta["annotations"]["meta.helm.sh/release-name"] == ns_release.name, meta
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", meta
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", meta
    assert kubectl("get", "clusterrole", ns_release.fullname, check=False).returncode != 0, \
        "namespace mode must not create the operator's ClusterRole"
    # The NOTES helm prints tell the user what to apply next.
    assert f"kubectl -n {watched} create secret generic harper-admin" in ns_release.notes
    assert f"kubectl -n {watched} get hc,hn" in ns_release.notes and "kind: HarperNode" in ns_release.notes


def test_install_cluster_mode(cluster_release, kubectl):
    kubectl("get", "clusterrole,clusterrolebinding", cluster_release.fullname)
    kubectl("get", "clusterrole,clusterrolebinding", f"{cluster_release.fullname}-kopf")
    kubectl("get", "clusterkopfpeering", cluster_release.fullname)
    kubectl("get", "deployment", cluster_release.fullname, "-n", cluster_release.namespace)
    assert "every namespace" in cluster_release.notes


def test_upgrade_and_uninstall(helm, kubectl, ns_release):
    """A third release (crds.create=false: ns_release owns the CRDs): upgrade keeps it deployed; uninstall removes
    the RBAC, keeps the CRDs. test_upgrade_from_chart_0_1_0 uninstalls a release that owns them."""
    release = _install(helm, kubectl, f"hopu-{SUFFIX}", f"hopu-{SUFFIX}", [f"hopu-w-{SUFFIX}"],
                       "--set", "crds.create=false")
    helm.run("upgrade", release.name, str(support.CHART), "--namespace", release.namespace,
             "--set-json", f"watchNamespaces={json.dumps(release.watched)}", "--set", "log.level=DEBUG",
             "--set", "crds.create=false")
    status = json.loads(helm.run("status", release.name, "--namespace", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 2
    _uninstall(helm, release)
    assert kubectl("get", "role", release.fullname, "-n", release.watched[0], check=False).returncode != 0
    assert kubectl("get", "clusterrole", f"{release.fullname}-kopf", check=False).returncode != 0
    kubectl("get", "crd", f"harperclusters.{GROUP}", f"harpernodes.{GROUP}")


# --- what the ServiceAccount may do -----------------------------------------------------------------

def test_service_account_grants_namespace_mode(ns_release, kubectl):
    watched, spare = ns_release.watched
    other, home = f"hop-o-{SUFFIX}", ns_release.namespace
    hc, hn, peer = f"harperclusters.{GROUP}", f"harpernodes.{GROUP}", "kopfpeerings.kopf.dev"
    crd = "customresourcedefinitions.apiextensions.k8s.io"
    yes = [(v, r, ns, None, True) for ns in (watched, spare) for r in (hc, hn) for v in ("get", "list", "watch", "patch")]
    yes += [(v, r, watched, "status", True) for r in (hc, hn) for v in ("get", "patch")]
    yes += [("get", "secrets", watched, None, True), ("create", "events", watched, None, True)]
    yes += [(v, peer, watched, None, True) for v in ("get", "list", "watch", "patch")]
    yes += [(v, crd, None, None, True) for v in ("get", "list", "watch")]
    # rbac.provisioning (default on): what a HarperCluster with spec.instances writes, in the watched namespaces.
    yes += [(v, hn, watched, None, True) for v in ("create", "delete")]
    yes += [(v, "secrets", watched, None, True) for v in ("create", "patch")]
    yes += [(v, "statefulsets.apps", watched, None, True) for v in ("get", "list", "watch", "create", "patch")]
    yes += [(v, r, watched, None, True) for r in ("services", "poddisruptionbudgets.policy")
            for v in ("get", "create", "patch")]
    yes += [(v, "pods", watched, None, True) for v in ("get", "list", "watch", "patch", "delete")]
    # A leaving member's volume claim is marked, then deleted, once its data is proven elsewhere (docs/safety.md).
    yes += [(v, "persistentvolumeclaims", watched, None, True) for v in ("list", "patch", "delete")]
    no = [("get", "secrets", ns, None, False) for ns in (other, home, "default", "kube-system")]
    no += [(v, "secrets", watched, None, False) for v in ("list", "watch", "update", "delete")]
    no += [(v, hc, watched, None, False) for v in ("create", "update", "delete", "deletecollection")]
    no += [(v, hn, watched, None, False) for v in ("update", "deletecollection")]
    no += [(v, hc, ns, None, False) for ns in (other, home) for v in ("get", "list", "patch")]
    no += [("update", hc, watched, "status", False)]
    no += [(v, "pods", watched, None, False) for v in ("create", "update")]
    no += [(v, "pods", ns, None, False) for ns in (other, home) for v in ("get", "delete")]
    no += [(v, "statefulsets.apps", watched, None, False) for v in ("delete", "update")]
    no += [("create", "persistentvolumeclaims", watched, None, False)]
    no += [("create", "deployments.apps", watched, None, False), ("create", "configmaps", watched, None, False)]
    no += [("patch", "events", watched, None, False), ("create", "events.events.k8s.io", watched, None, False)]
    no += [("create", "events", other, None, False)]
    yes += [(v, "namespaces", None, None, True) for v in ("list", "watch")]  # Kopf's namespace observer
    no += [(v, "namespaces", None, None, False) for v in ("get", "create", "patch", "delete")]
    no += [(v, crd, None, None, False) for v in ("create", "patch", "delete")]
    no += [("patch", "clusterkopfpeerings.kopf.dev", None, None, False), ("patch", peer, other, None, False)]
    no += [("create", "rolebindings.rbac.authorization.k8s.io", watched, None, False),
           ("impersonate", "serviceaccounts", watched, None, False), ("*", "*", watched, None, False)]
    check_grants(kubectl, ns_release, yes + no)


def test_service_account_grants_cluster_mode(cluster_release, kubectl):
    hc, hn = f"harperclusters.{GROUP}", f"harpernodes.{GROUP}"
    anywhere = f"hop-o-{SUFFIX}"
    yes = [(v, r, None, None, True) for r in (hc, hn) for v in ("get", "list", "watch", "patch")]
    yes += [(v, r, None, "status", True) for r in (hc, hn) for v in ("get", "patch")]
    # Cluster mode reads Secrets anywhere, by design (watchNamespaces is the way to narrow it).
    yes += [("get", "secrets", anywhere, None, True), ("create", "events", anywhere, None, True)]
    yes += [(v, "clusterkopfpeerings.kopf.dev", None, None, True) for v in ("get", "list", "watch", "patch")]
    yes += [(v, hn, None, None, True) for v in ("create", "delete")]  # rbac.provisioning (default on)
    yes += [(v, "pods", anywhere, None, True) for v in ("get", "patch", "delete")]
    no = [(v, "secrets", None, None, False) for v in ("list", "watch", "update", "delete")]
    no += [(v, hc, None, None, False) for v in ("create", "update", "delete")]
    no += [("update", hn, None, None, False)]
    no += [(v, "pods", anywhere, None, False) for v in ("create", "update")]
    no += [(v, "namespaces", None, None, False) for v in ("list", "watch")]
    no += [("patch", "kopfpeerings.kopf.dev", anywhere, None, False), ("*", "*", None, None, False)]
    check_grants(kubectl, cluster_release, yes + no)


# --- the operator under the ServiceAccount's token -----------------------------------------------

def _other_clusterwide_operators(admin_kubeconfig: str) -> list[str]:
    """Other `harper-operator run` processes serving every namespace of this API server: they would reconcile
    this test's HarperCluster too, and then the test would prove nothing about the ServiceAccount."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("harper-operator") for a in args) or "run" not in args:
            continue
        if admin_kubeconfig in args and not any(a in ("--namespace", "-n") or a.startswith("--namespace=")
                                                for a in args):
            found.append(f"pid {cmdline.parent.name}: {' '.join(args).strip()}")
    return found


def _token_kubeconfig(kubectl, control_plane, release: Release, path: Path) -> str:
    token = kubectl("create", "token", release.service_account, "-n", release.namespace,
                    "--duration=2h").stdout.strip()
    assert token.count(".") == 2, "kubectl create token returned no JWT"
    return str(control_plane.write_kubeconfig(path, token, release.user))


def _get(kubectl, kind: str, name: str, namespace: str) -> dict | None:
    done = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _condition(obj: dict | None, type_: str) -> dict:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def _ready(obj: dict | None) -> bool:
    return bool(obj) and _condition(obj, "Ready").get("status") == "True" and \
        obj["status"].get("observedGeneration") == obj["metadata"].get("generation")


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
# A 403 on its own: not the milliseconds of a log line's time, nor part of a duration or another number (CI run 20
# failed on "17:20:25,403 ... add_node (ok, 0.084s)").
_STATUS_403 = re.compile(r"(?<![\d.,:])403(?![\d.])")


def _forbidden_lines(log: str) -> list[str]:
    """Every 403 or Kopf permission warning in the operator's log: with the chart's rules there is none."""
    return [l for l in log.splitlines() if _STATUS_403.search(_STAMP.sub("", l)) or "orbidden" in l
            or "ot enough permissions" in l]


class Scenario:
    def __init__(self, release, namespace, operator, cluster, nodes, baseline):
        self.release, self.namespace, self.operator = release, namespace, operator
        self.cluster, self.nodes, self.baseline = cluster, nodes, baseline
        self.ready_at: dict[str, float] = {}


@pytest.fixture(scope="module")
def scenario(ns_release, kubectl, control_plane, testbed_tools, harper_fleet, tmp_path_factory):
    """Secret + HarperCluster + 3 HarperNodes in the watched namespace, served by the operator running with
    nothing but the chart's ServiceAccount token. (The fleet is reset here as the harper_nodes fixture does:
    a module fixture cannot use that function-scoped one.)"""
    others = _other_clusterwide_operators(control_plane.kubeconfig)
    assert not others, (
        "another harper-operator serves every namespace of this API server and would reconcile this test's "
        "cluster as well (e.g. e2e/scenarios' session-scoped `operator` fixture, still running after its "
        "package finished; scope it to the package):\n  " + "\n  ".join(others))
    harper_fleet.reset()
    nodes = harper_fleet.nodes[:3]
    namespace = ns_release.watched[0]
    tmp = tmp_path_factory.mktemp("chart-operator")
    kubeconfig = _token_kubeconfig(kubectl, control_plane, ns_release, tmp / "sa.kubeconfig")
    # The token works, and is the ServiceAccount (not the admin).
    whoami = subprocess.run([str(testbed_tools.kubectl), "--kubeconfig", kubeconfig, "auth", "whoami", "-o", "json"],
                            capture_output=True, text=True, timeout=30)
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == ns_release.user

    operator = OperatorProcess(kubeconfig, tmp / "operator.log", namespaces=(namespace,)).start()
    baseline = {"reconciles": operator.metric("harper_operator_reconciles_total"),
                "calls": operator.metric("harper_operator_harper_calls_total")}
    cluster = f"chart-{SUFFIX}"
    a = nodes[0]
    objects = [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": "harper-admin", "labels": {"harperoperator.dev/readable": "true"}},
         "stringData": {"username": a.username, "password": a.password}},
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "HarperCluster", "metadata": {"name": cluster},
         "spec": {"credentials": {"secretRef": {"name": "harper-admin"}}, "tls": {"verify": False},
                  "deletionPolicy": "Delete", "reconcileIntervalSeconds": 5}},
        *({"apiVersion": f"{GROUP}/v1alpha1", "kind": "HarperNode", "metadata": {"name": f"{cluster}-{i}"},
           "spec": {"clusterRef": {"name": cluster}, "hostname": n.name, "url": n.replication_url,
                    "operationsUrl": n.operations_url}} for i, n in enumerate(nodes)),
    ]
    s = Scenario(ns_release, namespace, operator, cluster, [f"{cluster}-{i}" for i in range(3)], baseline)
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                        "items": objects}))
        yield s
    finally:
        _tear_down(kubectl, s)


def _tear_down(kubectl, s: Scenario) -> None:
    """Delete the resources while the operator still runs (it releases the finalizers), so no HarperCluster is
    left behind for another operator to reconcile against the shared Harper nodes; strip leftovers."""
    try:
        kubectl("delete", "harpernodes,harperclusters", "--all", "-n", s.namespace, "--wait=false", check=False)
        try:
            wait_until("resources gone", lambda: not kubectl(
                "get", "harpernodes,harperclusters", "-n", s.namespace, "-o", "name").stdout.strip(), timeout=60)
        except AssertionError:
            for name in kubectl("get", "harpernodes,harperclusters", "-n", s.namespace,
                                "-o", "name").stdout.split():
                kubectl("patch", name, "-n", s.namespace, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}', check=False)
    finally:
        s.operator.stop()


def _with_log(s: Scenario, what: str, check, timeout: float, interval: float = 1.0):
    try:
        return wait_until(what, check, timeout=timeout, interval=interval)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- operator log (tail) ---\n{s.operator.log_tail()}") from None


def test_operator_with_service_account_token_makes_cluster_ready(scenario, kubectl):
    s = scenario
    hc = _with_log(s, f"HarperCluster {s.cluster} Ready=True for its generation", lambda: (
        lambda o: o if _ready(o) else False)(_get(kubectl, "harpercluster", s.cluster, s.namespace)),
        timeout=READY_TIMEOUT)
    s.ready_at = {"reconciles": s.operator.metric("harper_operator_reconciles_total"),
                  "calls": s.operator.metric("harper_operator_harper_calls_total")}
    assert hc["status"]["readyNodes"] == "3/3", hc["status"]
    for name in s.nodes:
        hn = _with_log(s, f"HarperNode {name} Ready", lambda: (lambda o: o if _ready(o) else False)(
            _get(kubectl, "harpernode", name, s.namespace)), timeout=60)
        assert hn["status"]["connectedPeers"] == "2/2", hn["status"]

    # Everything it needed was granted: no 403 and no Kopf permission warning in its log.
    assert not _forbidden_lines(s.operator.log_tail(100000)), _forbidden_lines(s.operator.log_tail(100000))
    # It posted Events with the ServiceAccount (events: create).
    events = json.loads(kubectl("get", "events", "-n", s.namespace, "-o", "json").stdout)["items"]
    assert any(e["involvedObject"].get("kind") in ("HarperCluster", "HarperNode") for e in events), events
    # Kopf's liveness endpoint (the chart's livenessProbe) answers on metrics port + 1.
    with urllib.request.urlopen(f"http://127.0.0.1:{s.operator.metrics_port + 1}/healthz", timeout=5) as r:
        assert r.status == 200

    # REAL counterpart of tests/chart/test_argocd_health.py: the Argo CD script on the live objects.
    live = [hc] + [_get(kubectl, "harpernode", n, s.namespace) for n in s.nodes]
    for obj in live:
        health = support.lua_health(obj)
        assert health["status"] == "Healthy", (obj["kind"], obj["metadata"]["name"], health)
    _save_samples(live, "e2e/test_chart.py: Ready under the ServiceAccount token")


def test_operator_metrics_move(scenario):
    s = scenario
    if not s.ready_at:
        pytest.fail("the Ready test did not reach Ready; nothing to compare")
    assert s.baseline["reconciles"] == 0, "counted reconciles before any HarperCluster existed"
    assert s.ready_at["reconciles"] > s.baseline["reconciles"]
    assert s.ready_at["calls"] > s.baseline["calls"]
    assert s.operator.metric("harper_operator_reconciles_total", result="converged") > 0
    # The cluster's daemon goes on (reconcileIntervalSeconds: 5): both counters keep moving.
    _with_log(s, "reconciles_total and harper_calls_total to grow after Ready", lambda: (
        s.operator.metric("harper_operator_reconciles_total") > s.ready_at["reconciles"]
        and s.operator.metric("harper_operator_harper_calls_total") > s.ready_at["calls"]), timeout=45)
    assert s.operator.metric("harper_operator_cluster_ready_nodes", namespace=s.namespace, cluster=s.cluster) == 3


def test_peering_keepalive_with_service_account_token(ns_release, kubectl, control_plane, tmp_path_factory):
    """--peering under the token: Kopf finds the chart's KopfPeering (list/watch) and writes its keep-alive
    into it (patch). Runs on the release's second, empty, watched namespace: no Harper involved."""
    spare = ns_release.watched[1]
    tmp = tmp_path_factory.mktemp("chart-peering")
    kubeconfig = _token_kubeconfig(kubectl, control_plane, ns_release, tmp / "sa.kubeconfig")
    operator = OperatorProcess(kubeconfig, tmp / "operator.log", namespaces=(spare,),
                               extra=("--peering", ns_release.fullname)).start()
    try:
        peering = wait_until("the operator's keep-alive in the KopfPeering", lambda: (lambda o: o if (
            o and o.get("status")) else False)(_get(kubectl, "kopfpeering", ns_release.fullname, spare)), timeout=60)
        (entry,) = peering["status"].values()
        assert {"priority", "lastseen", "lifetime"} <= set(entry), entry
        assert not _forbidden_lines(operator.log_tail(100000)), operator.log_tail()
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- operator log (tail) ---\n{operator.log_tail()}") from None
    finally:
        operator.stop()


def _save_samples(objects: list[dict], source: str) -> None:
    """With HARPER_OPERATOR_SAVE_STATUS_SAMPLES=<dir>, write the live objects as status samples
    (tests/chart/status-samples/ format) so real ones can be added to the fast suite."""
    target = os.environ.get("HARPER_OPERATOR_SAVE_STATUS_SAMPLES")
    if not target:
        return
    Path(target).mkdir(parents=True, exist_ok=True)
    for obj in objects:
        health = support.lua_health(obj)
        name = f"real-{obj['kind'].lower()}-{health['status'].lower()}-{obj['metadata']['name']}.json"
        sample = {"description": f"live {obj['kind']} from the e2e test bed", "source": source,
                  "expected": {"status": health["status"], "messageContains": _condition(obj, "Ready").get(
                      "reason", "")}, "object": obj}
        (Path(target) / name).write_text(json.dumps(sample, indent=2) + "\n")


# --- upgrading from chart 0.1.0, whose CRDs came from its crds/ folder ----------------------------------------

# Chart 0.1.0 as released: Helm installed its CRDs from crds/, once, without its ownership metadata.
CHART_0_1_0_COMMIT = "ed71130"
CRD_NAMES = (f"harperclusters.{GROUP}", f"harpernodes.{GROUP}")
# Stands in for a field the models gained after 0.1.0: removed from the live CRD before the upgrade.
ADDED_FIELD = "routes"


def _chart_from_git(commit: str, dest: Path) -> Path:
    """helm/harper-operator as committed at `commit` (git archive), or a clear failure when it is missing."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if found.returncode:
        pytest.fail(f"chart 0.1.0 comes from git commit {commit}, which this checkout lacks (a shallow or exported "
                    f"copy?): run the test in a full `git clone` (or `git fetch --unshallow`)")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, "helm/harper-operator"],
                             capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "helm" / "harper-operator"


@pytest.fixture(scope="module")
def chart_0_1_0(tmp_path_factory) -> Path:
    chart = _chart_from_git(CHART_0_1_0_COMMIT, tmp_path_factory.mktemp("chart-0.1.0"))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["version"] == "0.1.0", f"commit {CHART_0_1_0_COMMIT} holds chart {meta['version']}, not 0.1.0"
    assert sorted(p.name for p in (chart / "crds").iterdir()) == [f"{GROUP}_{c.split('.')[0]}.yaml"
                                                                  for c in CRD_NAMES]
    return chart


@pytest.fixture
def own_api_server(testbed_tools, tmp_path):
    """A kube-apiserver of this test alone: CRDs are cluster-wide, and the ones this test upgrades must be the
    ones chart 0.1.0 installed, not the session's (which ns_release owns). Yields (helm, kubectl)."""
    plane = ControlPlane(testbed_tools).start()
    try:
        h = support.Helm(Path(testbed_tools.helm), tmp_path / "helm-home")
        h.env["KUBECONFIG"] = plane.kubeconfig

        def k(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
            done = subprocess.run([str(testbed_tools.kubectl), "--kubeconfig", plane.kubeconfig, *args],
                                  input=input, capture_output=True, text=True, timeout=60)
            if check and done.returncode:
                raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
            return done

        yield h, k
    finally:
        plane.stop()


def _crd(k, name: str) -> dict:
    return json.loads(k("get", "crd", name, "-o", "json").stdout)


@pytest.mark.parametrize("adoption", ["take-ownership", "kubectl-label-annotate"])
def test_upgrade_from_chart_0_1_0(own_api_server, chart_0_1_0, adoption):
    """The one-time step of the chart README, both ways: `helm upgrade --take-ownership` (helm 3.17+), or
    labelling and annotating the CRDs as the release's and a plain `helm upgrade`."""
    from harper_operator.api.crd import crds

    helm, k = own_api_server
    name, namespace = "harper-operator", "harper-operator-system"
    helm.run("install", name, str(chart_0_1_0), "--namespace", namespace, "--create-namespace")
    k("wait", "--for=condition=Established", *(f"crd/{c}" for c in CRD_NAMES), "--timeout=60s")
    before = {c: _crd(k, c) for c in CRD_NAMES}
    for crd in before.values():  # what 0.1.0's crds/ left: no labels, no Helm annotations
        assert not crd["metadata"].get("labels") and "meta.helm.sh/release-name" not in crd["metadata"].get(
            "annotations", {}), crd["metadata"]

    # A user's HarperCluster, then the CRD loses a field, as if the models had gained it after 0.1.0.
    k("create", "namespace", "harper")
    cluster = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "HarperCluster", "metadata": {"name": "kept",
                                                                                        "namespace": "harper"},
               "spec": {"credentials": {"secretRef": {"name": "harper-admin"}}, "tls": {"verify": False},
                        "deletionPolicy": "Retain", "reconcileIntervalSeconds": 45}}
    k("create", "-f", "-", input=json.dumps(cluster))
    created = json.loads(k("get", "harpercluster", "kept", "-n", "harper", "-o", "json").stdout)
    schema_path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties"
    k("patch", "crd", CRD_NAMES[0], "--type=json", "-p",
      json.dumps([{"op": "remove", "path": f"{schema_path}/{ADDED_FIELD}"}]))
    assert ADDED_FIELD not in _crd(k, CRD_NAMES[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]["properties"]

    upgrade = ["upgrade", name, str(support.CHART), "--namespace", namespace]
    # Without the step, Helm refuses CRDs it did not create (and changes nothing).
    refused = helm.run(*upgrade, check=False)
    assert refused.returncode and "invalid ownership metadata" in refused.stderr, refused.stderr
    if adoption == "take-ownership":
        helm.run(*upgrade, "--take-ownership")
    else:
        k("label", "crd", *CRD_NAMES, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        k("annotate", "crd", *CRD_NAMES, f"meta.helm.sh/release-name={name}",
          f"meta.helm.sh/release-namespace={namespace}", "--overwrite")
        helm.run(*upgrade)

    new_version = yaml.safe_load((support.CHART / "Chart.yaml").read_text())["version"]
    (listed,) = json.loads(helm.run("list", "--namespace", namespace, "-o", "json").stdout)
    assert listed["status"] == "deployed" and listed["chart"] == f"harper-operator-{new_version}", listed
    generated = {m["metadata"]["name"]: m for m in crds().values()}
    for c in CRD_NAMES:
        crd = _crd(k, c)
        meta = crd["metadata"]
        assert meta["uid"] == before[c]["metadata"]["uid"], "the CRD was replaced: every object would be gone"
        assert meta["labels"]["helm.sh/chart"] == f"harper-operator-{new_version}", meta
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", meta
        assert meta["labels"]["app.kubernetes.io/instance"] == name, meta
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", meta
        assert meta["annotations"]["meta.helm.sh/release-name"] == name, meta
        assert meta["annotations"]["meta.helm.sh/release-namespace"] == namespace, meta
        (live,), (want,) = crd["spec"]["versions"], generated[c]["spec"]["versions"]
        assert live["schema"] == want["schema"], f"{c}: the live schema is not the one the models generate"
        assert live["additionalPrinterColumns"] == want["additionalPrinterColumns"]
    spec_fields = _crd(k, CRD_NAMES[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec_fields["properties"][ADDED_FIELD] == \
        generated[CRD_NAMES[0]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "properties"][ADDED_FIELD]

    def survived() -> None:
        obj = json.loads(k("get", "harpercluster", "kept", "-n", "harper", "-o", "json").stdout)
        assert obj["metadata"]["uid"] == created["metadata"]["uid"] and obj["spec"] == created["spec"], obj

    survived()
    # One time only: the next upgrade needs no step.
    helm.run(*upgrade, "--set", "log.level=DEBUG")
    # The release's own objects go with it; the CRDs (keep) and the user's HarperCluster stay.
    helm.run("uninstall", name, "--namespace", namespace)
    assert k("get", "deployment", name, "-n", namespace, check=False).returncode != 0
    for c in CRD_NAMES:
        crd = _crd(k, c)
        assert crd["metadata"]["uid"] == before[c]["metadata"]["uid"] and not crd["metadata"].get(
            "deletionTimestamp"), crd["metadata"]
    survived()
