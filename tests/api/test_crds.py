"""The committed CRDs are exactly what the models generate, and they are structural."""

from pathlib import Path

import pytest
import yaml

from harper_operator.api.crd import crds, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(crds()))
def test_committed_crd_matches_models(name):
    committed = (ROOT / "crds" / name).read_text()
    assert committed == render(crds()[name]), f"crds/{name} is stale: run `make crds`"


@pytest.mark.parametrize("name", sorted(crds()))
def test_chart_carries_the_same_crds(name):
    from harper_operator.api.crd import chart_template

    chart = ROOT / "helm" / "harper-operator" / "templates" / "crds" / name
    if not (ROOT / "helm" / "harper-operator").exists():
        pytest.skip("the chart is not in this tree yet")
    assert chart.read_text() == chart_template(name, crds()[name]), "run `make crds`"


def _walk(schema, path="spec"):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


@pytest.mark.parametrize("name", sorted(crds()))
def test_schema_is_structural_and_documented(name):
    version = yaml.safe_load(render(crds()[name]))["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for path, schema in _walk(root["properties"][part], part):
            assert "type" in schema, f"{path} has no type"
            assert not {"$ref", "anyOf", "oneOf", "allOf", "title"} & schema.keys(), path
            if not path.endswith("[]"):
                assert schema.get("description"), f"{path} has no description (kubectl explain shows it)"


def test_printer_columns_and_names():
    for manifest in crds().values():
        spec = manifest["spec"]
        assert spec["names"]["categories"] == ["harper"]
        columns = [c["name"] for c in spec["versions"][0]["additionalPrinterColumns"]]
        assert columns[0] == "Ready" and columns[-1] == "Age"
        scale = spec["names"]["kind"] == "HarperCluster"
        assert spec["versions"][0]["subresources"].keys() == ({"status", "scale"} if scale else {"status"})


@pytest.mark.parametrize("name", sorted(crds()))
def test_status_not_written_yet_reads_generation_zero(name):
    """The API server fills in status {observedGeneration: 0} on objects the operator never wrote, so kstatus (Flux)
    says InProgress for them, not Current. The default must pass the CRD's own schema (the API server refuses the
    CRD otherwise), and nothing inside status has one: the operator writes every field it means."""
    from harper_operator.api import HarperClusterStatus, HarperNodeStatus

    status = yaml.safe_load(render(crds()[name]))["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["status"]
    assert status["default"] == {"observedGeneration": 0}
    for key, value in status["default"].items():
        assert status["properties"][key]["type"] == "integer" and type(value) is int, key
    assert [path for path, schema in _walk(status, "status") if "default" in schema] == ["status"]
    model = HarperClusterStatus if "harperclusters" in name else HarperNodeStatus
    parsed = model.model_validate(status["default"])
    assert parsed.observed_generation == 0 and parsed.conditions == []
