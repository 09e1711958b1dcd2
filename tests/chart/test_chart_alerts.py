"""The chart's alerting rules (templates/prometheusrule.yaml): off by default, rendered as a PrometheusRule when
alerts.enabled, each alert with a runbook in docs/alerts.md, and `promtool check rules` plus `promtool test rules`
(alerts-test.yaml: which alerts fire on which series) on what the chart renders. promtool is the pinned one
(e2e/tools/promtool), built on first use like helm."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chart_support import CHART, ROOT, one, promtool_binary

ALERTS_DOC = ROOT / "docs" / "alerts.md"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts-test.yaml"
ON = {"alerts": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}}}
EXPECTED = {  # alert: severity
    "HarperMemberDisconnected": "warning",
    "HarperClusterNotReady": "critical",
    "HarperReplicationLagging": "warning",
    "HarperClusterReconcileStale": "warning",
    "HarperCertificateExpiring": "warning",
    "HarperOperatorReconcileErrors": "warning",
    "HarperOperatorAbsent": "critical",
}


def _rule(helm, values=ON, **kw) -> dict:
    return one(helm.render(values, **kw), "PrometheusRule")


def _alerts(rule: dict) -> dict[str, dict]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def _merge(*values: dict) -> dict:
    out: dict = {}
    for v in values:
        for key, sub in v.items():
            out[key] = _merge(out.get(key, {}), sub) if isinstance(sub, dict) else sub
    return out


@pytest.fixture(scope="module")
def promtool() -> Path:
    return promtool_binary()


def _promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _write_rules(rule: dict, folder: Path) -> Path:
    """spec.groups as a Prometheus rule file: what the Prometheus Operator hands Prometheus."""
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


# --- rendering -------------------------------------------------------------------------------------------------

def test_off_by_default(helm):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["alerts"]["enabled"] is False
    assert not [d for d in helm.render({}) if d["kind"] == "PrometheusRule"]
    # not even with the ServiceMonitor on: alerts are a choice of their own
    assert not [d for d in helm.render({"metrics": {"serviceMonitor": {"enabled": True}}})
                if d["kind"] == "PrometheusRule"]


def test_renders_one_prometheusrule(helm):
    rule = _rule(helm)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == "hop-harper-operator"
    assert rule["metadata"]["namespace"] == "hop-system"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "hop"
    assert [g["name"] for g in rule["spec"]["groups"]] == ["harper-operator.clusters", "harper-operator.operator"]


def test_every_alert_has_severity_summary_description_and_runbook(helm):
    alerts = _alerts(_rule(helm))
    assert set(alerts) == set(EXPECTED)
    for name, alert in alerts.items():
        assert re.fullmatch(r"Harper(Operator)?[A-Z][A-Za-z]+", name), name
        assert alert["labels"]["severity"] == EXPECTED[name], name
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert alert["annotations"]["runbook_url"] == (
            "https://github.com/harper-operator/harper-operator/blob/main/docs/alerts.md#" + name.lower())
        assert "{{" not in alert["annotations"]["summary"], name  # summaries group alerts: no per-series text


def test_runbook_base_url_is_the_projects_home():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["alerts"]["runbookBaseURL"] == chart["home"] + "/blob/main/docs/alerts.md"


def test_every_alert_has_a_runbook_section():
    """GitHub's anchor for a heading `## HarperClusterNotReady` is #harperclusternotready."""
    headings = re.findall(r"^## (\S+)\s*$", ALERTS_DOC.read_text(), re.M)
    assert set(EXPECTED) <= set(headings), set(EXPECTED) - set(headings)
    for name in EXPECTED:
        section = ALERTS_DOC.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("What it means", "How to look", "What to do"):
            assert part in section, f"{name}: no '{part}'"


def test_rules_select_this_releases_operator(helm):
    alerts = _alerts(_rule(helm, release="prod", namespace="ops"))
    for name, alert in alerts.items():
        assert 'job="prod-harper-operator-metrics"' in alert["expr"], name
    assert 'namespace="ops"' in alerts["HarperOperatorAbsent"]["expr"]
    assert alerts["HarperOperatorAbsent"]["labels"]["namespace"] == "ops"


def test_job_is_the_metrics_services_name(helm):
    """The ServiceMonitor names no jobLabel, so the Prometheus Operator sets job to the Service's name."""
    docs = helm.render(ON)
    service = one(docs, "Service", "hop-harper-operator-metrics")
    assert "jobLabel" not in one(docs, "ServiceMonitor")["spec"]
    assert f'job="{service["metadata"]["name"]}"' in _alerts(one(docs, "PrometheusRule"))["HarperOperatorAbsent"]["expr"]


def test_thresholds_and_labels_follow_the_values(helm):
    rule = _rule(helm, _merge(ON, {"alerts": {
        "labels": {"release": "kube-prometheus-stack"}, "runbookBaseURL": "https://wiki.example.com/harper/",
        "memberDisconnectedFor": "1m", "notReadyFor": "30m", "laggingSeconds": 2.5, "laggingFor": "1h",
        "reconcileErrorsFor": "45m", "absentFor": "2m", "staleAfterSeconds": 3600}}))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = _alerts(rule)
    assert alerts["HarperMemberDisconnected"]["for"] == "1m"
    assert alerts["HarperClusterNotReady"]["for"] == "30m"
    assert alerts["HarperReplicationLagging"]["for"] == "1h"
    assert re.search(r">\s*2\.5\s*$", alerts["HarperReplicationLagging"]["expr"])
    assert alerts["HarperOperatorReconcileErrors"]["for"] == "45m"
    assert alerts["HarperOperatorAbsent"]["for"] == "2m"
    assert re.search(r">\s*3600\s*$", alerts["HarperClusterReconcileStale"]["expr"])
    assert alerts["HarperClusterNotReady"]["annotations"]["runbook_url"] == (
        "https://wiki.example.com/harper#harperclusternotready")


@pytest.mark.parametrize("values, complaint", [
    ({"alerts": {"enabled": True}}, "alerts need metrics.serviceMonitor.enabled"),
    (_merge(ON, {"metrics": {"port": 0}}), "need metrics.port"),  # said by the ServiceMonitor's Service
])
def test_needs_the_operators_metrics(helm, values, complaint):
    done = helm.template(values, check=False)
    assert done.returncode != 0 and complaint in done.stderr, done.stderr


@pytest.mark.parametrize("args, complaint", [
    (["--set", "alerts.enabled=yes"], "/alerts/enabled"),
    (["--set", "alerts.notReadyFor=10"], "/alerts/notReadyFor"),
    (["--set", "alerts.laggingFor=five"], "/alerts/laggingFor"),
    (["--set", "alerts.laggingSeconds=0"], "/alerts/laggingSeconds"),
    (["--set", "alerts.staleAfterSeconds=30"], "/alerts/staleAfterSeconds"),
    (["--set", "alerts.runbookBaseURL=docs/alerts.md"], "/alerts/runbookBaseURL"),
    (["--set", "alerts.labels.bad key=x"], "/alerts/labels"),
    (["--set", "alerts.severity=page"], "severity"),
])
def test_wrong_values_fail(helm, args, complaint):
    done = helm.template({}, *args, check=False)
    assert done.returncode != 0, f"helm template {' '.join(args)} succeeded"
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert complaint in done.stderr, done.stderr


def test_lints(helm):
    done = helm.run("lint", str(CHART), "--strict", "--set", "alerts.enabled=true",
                    "--set", "metrics.serviceMonitor.enabled=true")
    assert "0 chart(s) failed" in done.stdout, done.stdout


# --- promtool ---------------------------------------------------------------------------------------------------

def test_promtool_checks_the_rules(helm, promtool, tmp_path):
    rules = _write_rules(_rule(helm), tmp_path)
    done = _promtool(promtool, "check", "rules", "--lint=all", "--lint-fatal", rules.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in done.stdout, done.stdout


def test_promtool_unit_tests(helm, promtool, tmp_path):
    """alerts-test.yaml: which alerts fire, with which labels and text, on which series."""
    _write_rules(_rule(helm), tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    done = _promtool(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_promtool_unit_tests_catch_a_broken_rule(helm, promtool, tmp_path):
    """The unit tests are not vacuous: with the not-ready threshold raised they fail."""
    _write_rules(_rule(helm, _merge(ON, {"alerts": {"notReadyFor": "30m"}})), tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    done = _promtool(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0, done.stdout
    assert "HarperClusterNotReady" in done.stdout + done.stderr


def test_promtool_is_the_pinned_release(promtool):
    done = subprocess.run([str(promtool), "--version"], capture_output=True, text=True, timeout=60)
    go_mod = (ROOT / "e2e" / "tools" / "promtool" / "go.mod").read_text()
    module = re.search(r"github.com/prometheus/prometheus v0\.3(\d\d)\.(\d+)", go_mod)
    assert module, go_mod
    assert f"version 3.{int(module.group(1))}.{module.group(2)}" in done.stdout + done.stderr, done.stdout
