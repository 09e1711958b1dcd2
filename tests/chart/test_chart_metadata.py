"""Chart.yaml: what `helm search`, `helm show chart` and Artifact Hub show users (fast, static plus `helm template`).

The Artifact Hub annotations are checked against what they describe: the license against pyproject.toml, the
CRDs against crds/, the examples against the CRDs' schemas and the operator's models, the image against
values.yaml, the links against files of this repository.
"""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from chart_support import CHART, ROOT

CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
ANNOTATIONS = CHART_YAML.get("annotations", {})
PROJECT = "https://github.com/harper-operator/harper-operator"
# Artifact Hub's operator capability levels (https://artifacthub.io/docs/topics/annotations/helm/).
CAPABILITIES = ("Basic Install", "Seamless Upgrades", "Full Lifecycle", "Deep Insights", "Auto Pilot")


def crd_files() -> dict[str, dict]:
    """kind -> CustomResourceDefinition, from the repository's crds/ (the chart's templates/crds/ renders the same
    CRDs: test_chart_crds.py)."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
    return {c["spec"]["names"]["kind"]: c for c in crds}


def annotation_list(key: str) -> list:
    assert key in ANNOTATIONS, f"Chart.yaml has no {key} annotation"
    assert isinstance(ANNOTATIONS[key], str), f"{key} must be a string holding YAML (Artifact Hub reads it so)"
    value = yaml.safe_load(ANNOTATIONS[key])
    assert isinstance(value, list) and value, key
    return value


def test_home_sources_maintainers_keywords():
    assert CHART_YAML["home"] == PROJECT
    assert PROJECT in CHART_YAML["sources"]
    assert all(s.startswith("https://") for s in CHART_YAML["sources"])
    maintainers = CHART_YAML["maintainers"]
    assert maintainers and all(m.get("name") for m in maintainers)
    assert all(m["url"].startswith("https://") for m in maintainers if "url" in m)
    assert {"harper", "operator", "kopf", "replication"} <= set(CHART_YAML["keywords"])
    if "icon" in CHART_YAML:
        assert CHART_YAML["icon"].startswith("https://")


def test_project_url_is_the_one_the_gitops_examples_use():
    """One project URL everywhere: the Argo CD and Flux examples point at the same repository."""
    urls = set()
    for path in (ROOT / "examples" / "gitops").rglob("*.yaml"):
        urls |= set(re.findall(r"(?:repoURL|url): (https://\S+?)(?:\.git)?$", path.read_text(), re.M))
    assert urls == {PROJECT}, urls


def test_helm_reads_the_metadata(helm):
    shown = yaml.safe_load(helm.run("show", "chart", str(CHART)).stdout)
    for key in ("home", "sources", "maintainers", "keywords", "kubeVersion"):
        assert shown[key] == CHART_YAML[key], key
    assert shown["annotations"] == ANNOTATIONS


def test_kube_version_is_enforced(helm):
    """kubeVersion: helm refuses a cluster older than the chart supports, and admits vendors' version suffixes."""
    assert CHART_YAML["kubeVersion"] == ">=1.25.0-0"
    helm.template({}, "--kube-version", "1.25.0")
    helm.template({}, "--kube-version", "1.31.2-eks-1")  # vendor suffixes are pre-releases: the -0 admits them
    done = helm.template({}, "--kube-version", "1.24.9", check=False)
    assert done.returncode and "kubeVersion" in (done.stderr + done.stdout)


def test_license_is_the_packages():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert ANNOTATIONS["artifacthub.io/license"] == pyproject["project"]["license"]["text"] == "Apache-2.0"


def test_operator_annotations():
    assert ANNOTATIONS["artifacthub.io/operator"] == "true"  # a string: annotations are strings
    assert ANNOTATIONS["artifacthub.io/operatorCapabilities"] in CAPABILITIES


def test_links_point_at_this_repository():
    links = annotation_list("artifacthub.io/links")
    assert all(set(link) == {"name", "url"} and link["name"] for link in links), links
    assert len({link["name"] for link in links}) == len(links)
    assert {"name": "Source", "url": PROJECT} in links
    for link in links:
        url = link["url"]
        assert url == PROJECT or url.startswith(PROJECT + "/blob/main/"), url
        if url != PROJECT:
            path = url.removeprefix(PROJECT + "/blob/main/")
            assert (ROOT / path).is_file(), f"{link['name']}: {path} is not in the repository"


def test_images_is_the_default_image():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    images = annotation_list("artifacthub.io/images")
    assert images == [{"name": "harper-operator",
                       "image": f"{values['image']['repository']}:{CHART_YAML['appVersion']}"}]


def test_crds_annotation_describes_the_crds():
    crds = crd_files()
    listed = annotation_list("artifacthub.io/crds")
    assert sorted(c["kind"] for c in listed) == sorted(crds) == ["HarperCluster", "HarperNode"]
    for entry in listed:
        crd = crds[entry["kind"]]
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        assert entry["name"] == crd["metadata"]["name"]
        assert entry["version"] == version["name"]
        assert entry["displayName"] == entry["kind"]
        # The CRD's own description, so `kubectl explain` and Artifact Hub say the same.
        assert entry["description"] == version["schema"]["openAPIV3Schema"]["description"]


def _conforms(value, schema, path="") -> list[str]:
    """The ways `value` breaks a CRD structural schema (properties, required, type, enum, pattern, bounds)."""
    errors = []
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "number": (int, float)}
    if kind and not isinstance(value, types[kind]):
        return [f"{path}: {value!r} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", len(value)) or len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: {value!r} has the wrong length")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            errors.append(f"{path}: {value} out of bounds")
    if isinstance(value, dict) and "properties" in schema:
        errors += [f"{path}: {r} is required" for r in schema.get("required", []) if r not in value]
        for key, sub in value.items():
            if key not in schema["properties"]:
                if not schema.get("x-kubernetes-preserve-unknown-fields"):
                    errors.append(f"{path}.{key}: unknown field")
                continue
            errors += _conforms(sub, schema["properties"][key], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _conforms(item, schema["items"], f"{path}[{i}]")
    return errors


@pytest.mark.parametrize("kind", ["HarperCluster", "HarperNode"])
def test_crds_examples_are_valid_objects(kind):
    crd = crd_files()[kind]
    examples = [e for e in annotation_list("artifacthub.io/crdsExamples") if e["kind"] == kind]
    assert len(examples) == 1, f"one {kind} example"
    (example,) = examples
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert example["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    assert example["metadata"]["name"] and set(example["metadata"]) == {"name"}
    assert _conforms(example, version["schema"]["openAPIV3Schema"]) == []
    # And the operator's own models accept the spec (they carry the checks a CEL rule makes in the API server).
    from harper_operator.api.cluster import HarperClusterSpec
    from harper_operator.api.node import HarperNodeSpec

    model = {"HarperCluster": HarperClusterSpec, "HarperNode": HarperNodeSpec}[kind]
    model.model_validate(example["spec"])


def test_conformance_check_catches_mistakes():
    """The schema walk above is a stand-in for the API server's validation: it must see what breaks."""
    crd = crd_files()["HarperNode"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    (good,) = [e for e in annotation_list("artifacthub.io/crdsExamples") if e["kind"] == "HarperNode"]
    assert _conforms({**good, "spec": {**good["spec"], "operationUrl": "https://x:1"}}, schema)  # misspelt
    assert _conforms({**good, "spec": {k: v for k, v in good["spec"].items() if k != "url"}}, schema)
    assert _conforms({**good, "spec": {**good["spec"], "url": "http://x:1"}}, schema)  # not ws(s)://
    assert _conforms({**good, "spec": {**good["spec"], "shard": "one"}}, schema)
