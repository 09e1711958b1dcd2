"""The Argo CD health check (helm/harper-operator/files/argocd-health.lua).

FAST STAND-IN: these run the script with lupa's Lua 5.1 (Argo CD uses gopher-lua, a Lua 5.1) with only
the libraries Argo CD opens for ConfigMap scripts, on the JSON objects in status-samples/. The samples are
hand-written in the shape of the operator's status models; the REAL check is in e2e/test_chart.py, which
runs the same script on the live HarperCluster and HarperNodes after the operator made them Ready.
"""

from __future__ import annotations

import re

import pytest
import yaml

from chart_support import LUA_HEALTH, ROOT, lua_health, one, samples

SAMPLES = samples()
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def test_there_are_samples_for_every_outcome_and_both_kinds():
    assert len(SAMPLES) >= 10
    outcomes = {s["expected"]["status"] for _, s in SAMPLES}
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= outcomes
    kinds = {s["object"]["kind"] for _, s in SAMPLES}
    assert kinds == {"HarperCluster", "HarperNode"}


@pytest.mark.parametrize("name, sample", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_sample(name, sample):
    """Stand-in: one status sample -> the health Argo CD would show."""
    assert set(sample) >= {"description", "source", "expected", "object"}, name
    assert sample["object"]["apiVersion"] == "harperoperator.dev/v1alpha1"
    got = lua_health(sample["object"])
    assert got["status"] in ARGO_STATUSES
    assert got["status"] == sample["expected"]["status"], f"{name}: {sample['description']}: {got}"
    assert sample["expected"]["messageContains"] in (got["message"] or ""), f"{name}: {got}"


@pytest.mark.parametrize("name, sample", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_samples_fit_the_crd_status_schema(name, sample):
    """The hand-written samples are valid statuses of the real CRDs (so they are real-shaped)."""
    status = sample["object"].get("status")
    if status is None:
        return
    kind = sample["object"]["kind"].lower() + "s"
    crd = yaml.safe_load((ROOT / "crds" / f"harperoperator.dev_{kind}.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    _conforms(status, schema, f"{name}:status")


def _conforms(value, schema, path):
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    assert isinstance(value, types[schema["type"]]), f"{path}: {value!r} is not {schema['type']}"
    if schema["type"] == "object" and "properties" in schema:
        for key, sub in value.items():
            assert key in schema["properties"], f"{path}.{key} is not in the CRD (it would be pruned)"
            _conforms(sub, schema["properties"][key], f"{path}.{key}")
        for key in schema.get("required", []):
            assert key in value, f"{path}.{key} is required"
    if schema["type"] == "array":
        for i, item in enumerate(value):
            _conforms(item, schema["items"], f"{path}[{i}]")
    if "enum" in schema:
        assert value in schema["enum"], path


def test_generation_compare_is_numeric():
    """gopher-lua gives numbers as float64; Python ints arrive as Lua numbers too: 3 == 3.0 must hold."""
    (_, ready), = [s for s in SAMPLES if s[0] == "cluster-ready.json"]
    obj = ready["object"]
    obj["metadata"]["generation"] = 3.0
    assert lua_health(obj)["status"] == "Healthy"


def test_stand_in_is_as_strict_as_argo():
    """The stand-in hides the string library as Argo CD does, so a script using it would fail here."""
    with pytest.raises(Exception):
        lua_health({"metadata": {}}, 'local hs = {}; hs.status = string.lower("Healthy"); return hs')
    assert "string." not in LUA_HEALTH.read_text() and "math." not in LUA_HEALTH.read_text()


def test_configmap_template_carries_the_script(helm):
    docs = helm.render({"argocd": {"healthCheck": {"enabled": True, "namespace": "gitops"}}})
    cm = one(docs, "ConfigMap", "argocd-cm", "gitops")
    script = LUA_HEALTH.read_text()
    assert cm["data"] == {"resource.customizations.health.harperoperator.dev_HarperCluster": script,
                          "resource.customizations.health.harperoperator.dev_HarperNode": script}
    options = cm["metadata"]["annotations"]["argocd.argoproj.io/sync-options"].split(",")
    assert {"ServerSideApply=true", "Prune=false", "Delete=false"} <= set(options)
    assert cm["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_docs_snippet_is_the_script():
    """docs/gitops.md's argocd-cm snippet is exactly files/argocd-health.lua, for both kinds."""
    text = (ROOT / "docs" / "gitops.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    (cm,) = [b for b in blocks if isinstance(b, dict) and b.get("kind") == "ConfigMap"]
    assert cm["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    script = LUA_HEALTH.read_text()
    assert cm["data"] == {"resource.customizations.health.harperoperator.dev_HarperCluster": script,
                          "resource.customizations.health.harperoperator.dev_HarperNode": script}
