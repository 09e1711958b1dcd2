"""Conditions follow metav1.Condition: in the generated CRDs, in the model, and in what every writer sends."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from harper_operator.api import Condition, HarperNodeStatus
from harper_operator.api.common import GROUP
from harper_operator.reconcile.conditions import conditions

ROOT = Path(__file__).resolve().parents[2]
FILES = [f"{GROUP}_harperclusters.yaml", f"{GROUP}_harpernodes.yaml"]
DIRS = ["crds", "helm/harper-operator/crds"]
REQUIRED = {"type", "status", "lastTransitionTime", "reason", "message"}


def _conditions_schema(path: Path) -> dict:
    manifest = yaml.safe_load(path.read_text())
    root = manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root["properties"]["status"]["properties"]["conditions"]


@pytest.mark.parametrize("directory", DIRS)
@pytest.mark.parametrize("name", FILES)
def test_generated_crds_give_conditions_the_metav1_schema(directory, name):
    path = ROOT / directory / name
    if not path.exists():
        pytest.skip(f"{directory} is not in this tree")
    schema = _conditions_schema(path)
    assert schema["type"] == "array"
    assert schema["x-kubernetes-list-type"] == "map"
    assert schema["x-kubernetes-list-map-keys"] == ["type"]
    item = schema["items"]
    assert item["type"] == "object"
    assert set(item["required"]) == REQUIRED and len(item["required"]) == len(REQUIRED)
    fields = item["properties"]
    assert set(fields) == REQUIRED | {"observedGeneration"}
    assert fields["status"]["type"] == "string" and fields["status"]["enum"] == ["True", "False", "Unknown"]
    assert fields["lastTransitionTime"] == {**fields["lastTransitionTime"], "type": "string", "format": "date-time"}
    assert fields["observedGeneration"]["type"] == "integer"
    for key in ("type", "reason", "message"):
        assert fields[key]["type"] == "string"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_the_model_refuses_a_condition_without_one_of_the_five(missing):
    full = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z", "reason": "Connected",
            "message": ""}
    Condition.model_validate(full)
    with pytest.raises(ValidationError):
        Condition.model_validate({k: v for k, v in full.items() if k != missing})


def _five(condition: dict) -> None:
    assert REQUIRED <= condition.keys(), condition
    datetime.fromisoformat(condition["lastTransitionTime"].replace("Z", "+00:00"))


def test_reconcile_conditions_fit_the_model():
    for kw in ({}, {"busy": True}, {"busy": True, "paused": True}):
        out = conditions(generation=3, now=datetime(2026, 1, 2, 3, 4, 5), **kw)
        for c in out:
            _five(c)
        HarperNodeStatus.model_validate({"conditions": out})


@pytest.fixture
def patched(monkeypatch):
    from harper_operator import kube

    writes: list[tuple] = []

    async def patch_status(plural, namespace, name, status):
        writes.append((plural, namespace, name, status))
        return True

    monkeypatch.setattr(kube, "patch_status", patch_status)
    return writes


async def test_an_orphaned_node_gets_five_field_conditions(patched):
    from harper_operator.handlers import node

    await node._orphan("ns", "n-1", 7, "gone")
    [(plural, namespace, name, status)] = patched
    assert (plural, namespace, name, status["observedGeneration"]) == ("harpernodes", "ns", "n-1", 7)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert sorted(by_type) == ["Ready", "Reconciling", "Stalled"]
    for c in status["conditions"]:
        _five(c)
        assert c["reason"] == "ClusterNotFound" and c["observedGeneration"] == 7
    assert by_type["Ready"]["status"] == "False" and by_type["Stalled"]["status"] == "True"
    assert "gone" in by_type["Ready"]["message"]
    HarperNodeStatus.model_validate(status)


async def test_an_orphaned_node_keeps_its_transition_times_while_nothing_changes(patched):
    from harper_operator.handlers import node

    earlier = [
        {"type": "Ready", "status": "False", "reason": "Connected", "message": "",
         "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "Stalled", "status": "False", "reason": "Connected", "message": "",
         "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    await node._orphan("ns", "n-1", 8, "gone", previous=earlier)
    by_type = {c["type"]: c for c in patched[-1][3]["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"  # still False
    assert by_type["Stalled"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"  # False -> True
