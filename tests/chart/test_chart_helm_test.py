"""`helm test`: the test pod asks the operator for its metrics through the metrics Service (fast: `helm template`,
and the pod's script run here against a local metrics server).

STAND-IN: no cluster here, so the pod is not scheduled and the Service's DNS name is not resolved; the script it
runs is executed by this interpreter against a prometheus_client server on 127.0.0.1 holding the operator's
metrics (harper_operator.metrics, the module the operator serves), and against one without them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, start_http_server

from chart_support import CHART, find, one, render_notes

METRICS = {"metrics": {"service": {"enabled": True}}}


def hook_pod(docs) -> dict:
    pods = [p for p in find(docs, "Pod") if p["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(pods) == 1, f"expected one helm test pod, got {len(pods)}"
    return pods[0]


def url_of(pod) -> str:
    (c,) = pod["spec"]["containers"]
    assert c["command"][:2] == ["python", "-c"], c["command"]
    return c["command"][3]


def test_no_service_no_test(helm):
    """Off by default: without the metrics Service the operator's ports have no DNS name to test."""
    docs = helm.render()
    assert not find(docs, "Service") and not find(docs, "Pod")


@pytest.mark.parametrize("values", [METRICS, {"metrics": {"serviceMonitor": {"enabled": True}}}])
def test_hook_annotations_and_url(helm, values):
    docs = helm.render(values)
    pod = hook_pod(docs)
    assert pod["metadata"]["annotations"] == {"helm.sh/hook": "test",
                                              "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
    assert pod["metadata"]["name"] == "hop-harper-operator-test-metrics"
    assert pod["metadata"]["namespace"] == "hop-system"
    svc = one(docs, "Service")
    (port,) = svc["spec"]["ports"]
    assert url_of(pod) == "http://hop-harper-operator-metrics.hop-system.svc:8080/metrics"
    assert url_of(pod) == f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{port['port']}/metrics"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_url_follows_the_service(helm):
    docs = helm.render({"fullnameOverride": "ops", "metrics": {"port": 9090, "service": {"enabled": True,
                                                                                          "port": 9100}}},
                       namespace="monitoring")
    assert url_of(hook_pod(docs)) == "http://ops-metrics.monitoring.svc:9100/metrics"
    svc = one(docs, "Service", "ops-metrics", "monitoring")
    assert svc["spec"]["ports"][0]["port"] == 9100 and svc["spec"]["ports"][0]["targetPort"] == "metrics"


def test_runs_the_operator_image_without_token_or_operator_labels(helm):
    docs = helm.render({**METRICS, "image": {"tag": "dev"}, "imagePullSecrets": [{"name": "reg"}],
                        "nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"operator": "Exists"}]})
    pod, deployment = hook_pod(docs), one(docs, "Deployment")
    operator = deployment["spec"]["template"]["spec"]
    (c,) = pod["spec"]["containers"]
    assert c["image"] == operator["containers"][0]["image"] == "ghcr.io/harper-operator/harper-operator:dev"
    assert c["imagePullPolicy"] == operator["containers"][0]["imagePullPolicy"]
    assert c["command"][0] == "python", "the image's ENTRYPOINT is the operator: the test replaces it"
    for key in ("imagePullSecrets", "nodeSelector", "tolerations"):
        assert pod["spec"][key] == operator[key], key
    assert pod["spec"]["automountServiceAccountToken"] is False and "serviceAccountName" not in pod["spec"]
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    # Neither the ReplicaSet nor the Service may take the test pod for an operator pod.
    labels = pod["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], one(docs, "Service")["spec"]["selector"]):
        assert not all(labels.get(k) == v for k, v in selector.items()), selector
    assert labels["app.kubernetes.io/instance"] == "hop" and labels["app.kubernetes.io/component"] == "test"


def test_skip_tests_leaves_it_out(helm):
    docs = [d for d in yaml.safe_load_all(helm.template(METRICS, "--skip-tests").stdout) if d]
    assert not find(docs, "Pod") and one(docs, "Service")


# --- the pod's script, run here ------------------------------------------------------------------------------

def run_script(helm, url: str) -> subprocess.CompletedProcess:
    (c,) = hook_pod(helm.render(METRICS))["spec"]["containers"]
    return subprocess.run([sys.executable, *c["command"][1:3], url], capture_output=True, text=True, timeout=30)


@pytest.fixture
def serve():
    servers = []

    def start(registry) -> str:
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/metrics"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_script_passes_on_the_operators_metrics(helm, serve):
    from prometheus_client import REGISTRY

    import harper_operator.metrics  # noqa: F401  registers the operator's metrics, as the operator does

    url = serve(REGISTRY)
    done = run_script(helm, url)
    assert done.returncode == 0, done.stderr
    assert f"{url}: the operator answers" in done.stdout


def test_script_fails_on_other_metrics(helm, serve):
    registry = CollectorRegistry()
    Counter("something_else_total", "Not the operator", registry=registry).inc()
    url = serve(registry)
    done = run_script(helm, url)
    assert done.returncode == 1
    assert "answered without harper_operator_ metrics" in done.stderr


@pytest.mark.parametrize("values", [METRICS, {**METRICS, "runAsArbitraryUser": True},
                                    {"metrics": {"port": 9090, "serviceMonitor": {"enabled": True}},
                                     "fullnameOverride": "ops"}])
def test_lints_with_the_test_pod(helm, values, tmp_path):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = helm.run("lint", "--strict", str(CHART), "--values", str(path), "--namespace", "hop-system")
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_notes_point_at_helm_test(helm, tmp_path):
    """NOTES.txt (rendered through a throw-away copy, as test_chart_render.py does) names `helm test` only when
    there is a test to run."""
    text = render_notes(helm, tmp_path, METRICS)
    assert "helm test hop -n hop-system --logs" in text
    text = render_notes(helm, tmp_path / "defaults", {})
    assert "helm test" not in text
