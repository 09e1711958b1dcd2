"""The chart's HarperCluster and HarperNode CRDs (templates/crds/, fast: `helm template`, no cluster).

They are templates, so `helm upgrade` updates them (a chart's crds/ folder is installed once and never again),
behind the value crds.create, annotated helm.sh/resource-policy: keep so `helm uninstall` leaves them (and every
HarperCluster). `harper-operator crds --chart-out` writes them from the same models as the repository's crds/.
e2e/test_chart.py upgrades a real release of chart 0.1.0 to this chart and uninstalls it.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from chart_support import CHART, ROOT, find, one

from harper_operator.api.crd import crds
from harper_operator.api.crd import chart_template

TEMPLATES = CHART / "templates" / "crds"
GROUP = "harperoperator.dev"
NAMES = {f"harperclusters.{GROUP}", f"harpernodes.{GROUP}"}
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]


def ours(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in find(docs, "CustomResourceDefinition") if d["spec"]["group"] == GROUP}


def test_no_crds_folder_in_the_chart():
    """A CRD in crds/ and in templates/ would collide on install (helm creates crds/ first, then the template's
    create fails: it exists)."""
    assert not (CHART / "crds").exists()


def test_templates_are_what_the_models_generate():
    """`make crds` writes templates/crds/ (`crds-check` compares it too): one template per CRD, no other file."""
    assert sorted(p.name for p in TEMPLATES.iterdir()) == sorted(crds())
    for name, manifest in crds().items():
        assert (TEMPLATES / name).read_text() == chart_template(name, manifest), f"run `make crds` ({name})"


def test_default_renders_both_crds_kept_and_labelled(helm):
    docs = helm.render({}, release="hop")
    rendered = ours(docs)
    assert set(rendered) == NAMES
    for name, crd in rendered.items():
        meta = crd["metadata"]
        assert meta["annotations"] == {"helm.sh/resource-policy": "keep"}
        labels = meta["labels"]
        assert labels["helm.sh/chart"] == f"harper-operator-{CHART_VERSION}"
        assert labels["app.kubernetes.io/instance"] == "hop" and labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels == one(docs, "Deployment")["metadata"]["labels"], "the chart's labels, as on its Deployment"
        # Apart from those, exactly the CRD a kubectl user applies from the repository's crds/.
        plain = yaml.safe_load((ROOT / "crds" / f"{GROUP}_{name.split('.')[0]}.yaml").read_text())
        assert {**crd, "metadata": {"name": meta["name"]}} == plain


def test_crds_create_false_renders_no_crd(helm):
    assert not find(helm.render({"crds": {"create": False}}), "CustomResourceDefinition")
    # The peering CRDs have their own switch (peering.installCRDs).
    docs = helm.render({"crds": {"create": False}, "peering": {"enabled": True}})
    assert {d["spec"]["group"] for d in find(docs, "CustomResourceDefinition")} == {"kopf.dev"}


def test_values_without_a_crds_key_still_render_them(helm, tmp_path):
    """`helm upgrade --reuse-values` from 0.1.0 reuses that release's values, which have no crds key: the CRDs
    are rendered (default true), not dropped and not a nil-pointer error."""
    chart = tmp_path / CHART.name
    shutil.copytree(CHART, chart)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    del values["crds"]
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    assert set(ours(helm.render({}, chart=chart))) == NAMES


@pytest.mark.parametrize("args", [["--set", "crds.create=true"], ["--set", "crds.create=false"]])
def test_schema_accepts_crds_create(helm, args):
    helm.template({}, *args)


@pytest.mark.parametrize("args, complaint", [
    (["--set", "crds.create=yes"], "/crds/create"),
    (["--set-json", 'crds.create="true"'], "/crds/create"),
    (["--set-json", "crds=true"], "/crds"),
    (["--set", "crds.install=true"], "install"),
])
def test_schema_refuses_wrong_crds_values(helm, args, complaint):
    done = helm.template({}, *args, check=False)
    assert done.returncode and "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert complaint in done.stderr, done.stderr


def test_braces_in_generated_text_are_printed_as_they_are(helm, tmp_path):
    """A description holding `{{ ... }}` (Go template syntax, as Harper's docs might quote) must not be executed
    by Helm: chart_template escapes it."""
    name, manifest = next(iter(crds().items()))
    literal = 'Use {{ .Values.x }} or {{- "y" -}} as text; }} alone too.'
    manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = literal
    chart = tmp_path / CHART.name
    shutil.copytree(CHART, chart)
    (chart / "templates" / "crds" / name).write_text(chart_template(name, manifest))
    crd = ours(helm.render({}, chart=chart))[manifest["metadata"]["name"]]
    assert crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] == literal
