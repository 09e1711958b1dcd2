"""values.schema.json: every key of values.yaml is described, and wrong values fail `helm template` (fast)."""

from __future__ import annotations

import json

import pytest
import yaml

from chart_support import CHART

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())

# Objects whose keys are the user's (labels, annotations, selectors, quantities, affinity).
FREE_FORM = {"image.pullSecrets", "nodeSelector", "podAnnotations", "podLabels", "affinity", "resources.requests",
             "resources.limits", "metrics.service.annotations", "metrics.serviceMonitor.labels",
             "serviceAccount.annotations", "grafana.dashboard.annotations", "global"}


def _resolve(schema):
    if "$ref" in schema:
        return _resolve(SCHEMA["definitions"][schema["$ref"].split("/")[-1]])
    return schema


def _walk_values(values, schema, path=""):
    schema = _resolve(schema)
    if isinstance(values, dict) and path not in FREE_FORM:
        assert schema.get("additionalProperties") is False, f"{path or '(root)'} is not strict"
        for key, sub in values.items():
            assert key in schema["properties"], f"{path}.{key} is not in values.schema.json"
            _walk_values(sub, schema["properties"][key], f"{path}.{key}".lstrip("."))


def test_every_value_is_in_the_strict_schema():
    _walk_values(VALUES, SCHEMA)
    assert set(SCHEMA["properties"]) - {"global"} == set(VALUES), "schema and values.yaml list different keys"


def test_defaults_validate(helm):
    helm.template({})


@pytest.mark.parametrize("args, complaint", [
    (["--set", "metrics.port=abc"], "/metrics/port"),
    (["--set", "metrics.port=80"], "/metrics/port"),  # privileged: the container runs as uid 65532
    (["--set", "metrics.port=65535"], "/metrics/port"),  # port+1 must exist for /healthz
    (["--set", "watchNamespaces=team-a"], "/watchNamespaces"),  # a string, not a list
    (["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0"),
    (["--set", "watchNamespaces={a,a}"], "/watchNamespaces"),
    (["--set", "watchNamespaces={team-*}"], "/watchNamespaces/0"),  # exact names only (one Role each)
    (["--set", "peering.enabled=yes"], "/peering/enabled"),
    (["--set", "peering.name=Not_A_Name"], "/peering/name"),
    (["--set", "log.format=xml"], "/log/format"),
    (["--set", "log.level=verbose"], "/log/level"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["--set", "image.digest=latest"], "/image/digest"),
    (["--set", "reconcile.verifyTimeoutSeconds=0"], "/reconcile/verifyTimeoutSeconds"),
    (["--set", "reconcile.maxConcurrentRounds=-1"], "/reconcile/maxConcurrentRounds"),
    (["--set", "reconcile.maxConcurrentRounds=2.5"], "/reconcile/maxConcurrentRounds"),
    (["--set", "reconcile.minIntervalSeconds=-1"], "/reconcile/minIntervalSeconds"),
    (["--set", "metrics.serviceMonitor.interval=30"], "/metrics/serviceMonitor/interval"),
    (["--set", "metrics.service.type=ExternalName"], "/metrics/service/type"),
    (["--set", "replicaCount=2"], "replicaCount"),  # the value is `replicas`
    (["--set", "replicas=2"], "/peering/enabled"),  # two active operators would race: peering elects one
    (["--set", "replicas=0"], "/replicas"),
    (["--set", "rbac.create=true", "--set", "rbac.clusterWide=true"], "clusterWide"),
    (["--set", "serviceAccount.create=no"], "/serviceAccount/create"),
    (["--set", "argocd.healthCheck.enabled=1"], "/argocd/healthCheck/enabled"),
    (["--set", "securityContext.runAsUser=0"], "securityContext"),  # the security context is not a value
    (["--set-json", 'extraEnv=[{"value": "x"}]'], "/extraEnv/0"),
    (["--set-json", 'nodeSelector={"a": 1}'], "/nodeSelector/a"),
])
def test_wrong_values_fail(helm, args, complaint):
    done = helm.template({}, *args, check=False)
    assert done.returncode != 0, f"helm template {' '.join(args)} succeeded"
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert complaint in done.stderr, done.stderr


@pytest.mark.parametrize("args", [
    ["--set", "metrics.port=0"],
    ["--set", "metrics.port=9090"],
    ["--set", "watchNamespaces={harper,team-b}"],
    ["--set", "peering.enabled=true", "--set", "peering.name=harper.ops"],
    ["--set-json", "reconcile.minIntervalSeconds=2.5"],  # --set keeps decimals as strings
    ["--set", "image.tag=0.1.0-rc.1"],
    ["--set", "replicas=2", "--set", "peering.enabled=true"],
    ["--set-json", 'resources={"requests": {"cpu": 0.1, "memory": "64Mi"}}'],
    ["--set-json", 'global={"imageRegistry": "x"}'],  # what a parent chart passes down
])
def test_right_values_pass(helm, args):
    helm.template({}, *args)
