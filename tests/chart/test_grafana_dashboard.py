"""The chart's Grafana dashboard (files/grafana-dashboard.json, templates/grafana-dashboard.yaml; fast).

Off by default; when on, a ConfigMap with the sidecar's label holding the JSON as it is. Every panel query names
only metrics operator/harper_operator/metrics.py defines (read from the module's collectors, not a copy of the
names), and parses as PromQL: each becomes a recording rule that the pinned promtool checks.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from chart_support import CHART, find, one, promtool_binary

from harper_operator import metrics

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
ON = {"grafana": {"dashboard": {"enabled": True}}}
# What Grafana substitutes before it sends a query: the values promtool sees instead.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$cluster": ".*"}
# Every series name a collector of metrics.py exposes, by type (prometheus_client's suffixes).
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",), "enum": ("",)}


def exported_series() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    assert names, "no collector found in harper_operator.metrics"
    return names


def panels() -> list[dict]:
    def walk(items):
        for p in items:
            yield p
            yield from walk(p.get("panels", []))  # rows may nest panels
    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def exprs() -> list[tuple[str, str]]:
    return [(f"{p['title']} / {t['refId']}", t["expr"]) for p in panels() for t in p.get("targets", [])]


def concrete(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def test_the_dashboard_is_json_with_a_handful_of_panels():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] == "harper-operator"
    assert 4 <= len(panels()) <= 10
    ids = [p["id"] for p in panels()]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    assert all(p.get("targets") for p in panels()), "a panel without a query"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "cluster"}


def test_exported_series_come_from_the_module():
    """The derived list holds what the alerts and the e2e tests use, so the derivation is not empty or wrong."""
    series = exported_series()
    assert {"harper_operator_reconciles_total", "harper_operator_reconcile_duration_seconds_bucket",
            "harper_operator_cluster_ready_nodes", "harper_operator_cluster_max_lag_seconds"} <= series


@pytest.mark.parametrize("where, expr", exprs())
def test_every_query_names_only_exported_metrics(where, expr):
    series = exported_series()
    # Metric names here all start with the operator's prefix; anything else with it would be a misspelling, and
    # a query without one would not be about the operator at all.
    named = set(re.findall(r"\bharper_operator_\w+", expr))
    assert named, f"{where}: no harper_operator_* metric in {expr}"
    assert named <= series, f"{where}: {sorted(named - series)} are not exported by metrics.py"
    # No other metric (e.g. kube-state-metrics' or Harper's own): every bare identifier that is not a PromQL
    # function, keyword or label name is one of ours.
    without_strings = re.sub(r'"[^"]*"', '""', concrete(expr))
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_matchers)
    idents = set(re.findall(r"(?<![\w.:])([A-Za-z_:][\w:]*)\b(?!\s*\()", without_groupings))
    keywords = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
    others = {i for i in idents if i.lower() not in keywords and not i.startswith("harper_operator_")}
    assert not others, f"{where}: names {sorted(others)}, which are not the operator's metrics"


def test_every_query_parses_as_promql(tmp_path):
    rules = {"groups": [{"name": "grafana-dashboard", "rules": [
        {"record": f"harper_operator_dashboard:query_{i}", "expr": concrete(expr)}
        for i, (_, expr) in enumerate(exprs())]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    done = subprocess.run([str(promtool_binary()), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs())} rules found" in done.stdout, done.stdout


def test_off_by_default(helm):
    assert not find(helm.render({}), "ConfigMap")


def test_configmap_carries_the_json_and_the_sidecar_label(helm):
    docs = helm.render(ON, release="hop", namespace="hop-system")
    cm = one(docs, "ConfigMap", "hop-harper-operator-dashboard", "hop-system")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == "hop"
    assert json.loads(cm["data"]["harper-operator.json"]) == json.loads(DASHBOARD.read_text())
    values = {"grafana": {"dashboard": {"enabled": True, "label": "grafana.example.com/dashboard",
                                        "labelValue": "harper", "namespace": "monitoring",
                                        "annotations": {"grafana_folder": "Harper"}}}}
    cm = one(helm.render(values), "ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana.example.com/dashboard"] == "harper"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Harper"}


@pytest.mark.parametrize("args, complaint", [
    (["--set", "grafana.dashboard.enabled=yes"], "/grafana/dashboard/enabled"),
    (["--set", "grafana.dashboard.label=not a label"], "/grafana/dashboard/label"),
    (["--set", "grafana.dashboard.labelValue=-x-"], "/grafana/dashboard/labelValue"),
    (["--set", "grafana.dashboard.folder=x"], "folder"),
])
def test_schema_refuses_wrong_values(helm, args, complaint):
    done = helm.template({}, *args, check=False)
    assert done.returncode and complaint in done.stderr, done.stderr


def test_readme_documents_it():
    assert "grafana.dashboard.enabled" in (CHART / "README.md").read_text()
    assert Path(DASHBOARD).name in (CHART / "templates" / "grafana-dashboard.yaml").read_text()
