"""The image recipe and the GitOps examples (fast, static: no Docker, Argo CD or Flux here).

STAND-INS: the Dockerfile cannot be built on this machine, so these read it and check it against the chart
and the package; the install step it runs (`pip install -c constraints.txt .` from the reduced build
context) is the one `make install` runs. The GitOps manifests are checked for shape and for pointing at
paths that exist.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex

import pytest
import yaml

from chart_support import CHART, ROOT, one

DOCKERFILE = (ROOT / "operator" / "Dockerfile").read_text()


def _instructions():
    lines, current = [], ""
    for raw in DOCKERFILE.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not raw.rstrip().endswith("\\"):
            lines.append(current)
            current = ""
    return [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]


def test_dockerfile_is_multi_stage_python_311_slim():
    steps = _instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build")
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), "both stages on the same base (venv links)"
    final = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][1]:]
    assert ("COPY", "--from=build /opt/harper-operator /opt/harper-operator") in final
    assert not [a for op, a in final if op == "RUN"], "the final stage runs nothing at build time (no shell use)"


def test_dockerfile_installs_with_the_constraints():
    run = " ".join(a for op, a in _instructions() if op == "RUN")
    assert "pip install -c /tmp/constraints.txt ." in run
    assert "grep -v '^-e ' constraints.txt" in run
    copied = " ".join(a for op, a in _instructions() if op == "COPY")
    for name in ("pyproject.toml", "constraints.txt", "README.md", "operator/harper_operator"):
        assert name in copied, name


def test_dockerfile_runs_non_root_without_a_shell():
    steps = _instructions()
    assert ("USER", "65532:65532") in steps
    (entrypoint,) = [a for op, a in steps if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["harper-operator", "run"], "exec form, no shell"
    assert not [a for op, a in steps if op == "CMD"]
    env = " ".join(a for op, a in steps if op == "ENV")
    assert "PATH=/opt/harper-operator/bin:$PATH" in env and "PYTHONDONTWRITEBYTECODE=1" in env


def test_chart_runs_the_image_as_built(helm):
    docs = helm.render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE, re.M)
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsGroup"] == int(user.group(2))
    exposed = {int(p) for p in re.search(r"^EXPOSE (.*)$", DOCKERFILE, re.M).group(1).split()}
    assert {p["containerPort"] for p in pod["containers"][0]["ports"]} == exposed


def test_console_script_exists():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'harper-operator = "harper_operator.cli:main"' in pyproject


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for this file: last matching pattern wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[-1], pattern[3:])
        else:
            hit = fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/")
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_build_copies():
    patterns = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
                if l.strip() and not l.startswith("#")]
    for kept in ("pyproject.toml", "constraints.txt", "README.md", "operator/harper_operator/cli.py",
                 "operator/harper_operator/api/crd.py"):
        assert not _ignored(kept, patterns), kept
    for dropped in (".venv/bin/python", ".git/HEAD", "e2e/testbed/tools.py", "tests/chart/conftest.py",
                    "helm/harper-operator/Chart.yaml", "operator/harper_operator/__pycache__/cli.cpython-311.pyc",
                    "operator/harper_operator.egg-info/PKG-INFO", "bench/x.py", "docs/gitops.md"):
        assert _ignored(dropped, patterns), dropped


# --- GitOps examples ----------------------------------------------------------------------------

GITOPS = ROOT / "examples" / "gitops"


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_argocd_operator_application():
    (app,) = _docs(GITOPS / "argocd" / "harper-operator.yaml")
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").exists()
    values = source["helm"]["valuesObject"]
    # The values are valid for the chart: the schema accepts them.
    schema_keys = json.loads((CHART / "values.schema.json").read_text())["properties"]
    assert set(values) <= set(schema_keys)
    assert "CreateNamespace=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_argocd_cluster_application_points_at_the_sample():
    (app,) = _docs(GITOPS / "argocd" / "harper-cluster.yaml")
    source = app["spec"]["source"]
    assert source["path"] == "examples" and source["directory"]["include"] == "cluster.yaml"
    assert (ROOT / source["path"] / source["directory"]["include"]).exists()
    assert "SkipDryRunOnMissingResource=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) > \
        int(_docs(GITOPS / "argocd" / "harper-operator.yaml")[0]["metadata"]["annotations"][
            "argocd.argoproj.io/sync-wave"])


def _gitignore_keeps(rules: str, path: str) -> bool:
    """Flux `spec.ignore` (gitignore syntax) for the few rule shapes used here: is `path` kept?"""
    ignored = False
    parts = path.split("/")
    for rule in [r.strip() for r in rules.splitlines() if r.strip()]:
        negate = rule.startswith("!")
        rule = rule.lstrip("!")
        anchored = rule.lstrip("/").rstrip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatch(prefix, anchored) and prefix.count("/") == anchored.count("/"):
                ignored = not negate
                break
    return not ignored


def test_flux_source_keeps_only_the_sample_cluster():
    (repo,) = _docs(GITOPS / "flux" / "gitrepository.yaml")
    assert repo["apiVersion"] == "source.toolkit.fluxcd.io/v1" and repo["kind"] == "GitRepository"
    rules = repo["spec"]["ignore"]
    assert _gitignore_keeps(rules, "examples/cluster.yaml")
    for dropped in ("examples/gitops/argocd/harper-cluster.yaml", "helm/harper-operator/Chart.yaml",
                    "crds/harperoperator.dev_harperclusters.yaml", "README.md"):
        assert not _gitignore_keeps(rules, dropped), dropped


def test_flux_kustomization_applies_the_sample():
    (ks,) = _docs(GITOPS / "flux" / "harper-cluster.yaml")
    assert ks["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1" and ks["kind"] == "Kustomization"
    (repo,) = _docs(GITOPS / "flux" / "gitrepository.yaml")
    assert ks["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
    assert ks["spec"]["path"] == "./examples" and ks["spec"]["wait"] is True
    assert ks["spec"]["targetNamespace"] == "harper"
    # What Flux would apply from that path: only cluster.yaml survives the ignore rules.
    kept = [p for p in (ROOT / "examples").rglob("*.yaml")
            if _gitignore_keeps(repo["spec"]["ignore"], str(p.relative_to(ROOT)))]
    assert [p.name for p in kept] == ["cluster.yaml"]
    kinds = sorted(d["kind"] for d in _docs(kept[0]))
    assert kinds == ["HarperCluster", "HarperNode", "HarperNode", "HarperNode"]
    assert all("namespace" not in d["metadata"] for d in _docs(kept[0])), "targetNamespace sets it"


def test_flux_helmrelease_installs_the_chart():
    docs = _docs(GITOPS / "flux" / "harper-operator.yaml")
    repo = one(docs, "GitRepository")
    release = one(docs, "HelmRelease")
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    chart = release["spec"]["chart"]["spec"]
    assert chart["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
    assert (ROOT / chart["chart"] / "Chart.yaml").exists()
    assert _gitignore_keeps(repo["spec"]["ignore"], chart["chart"].lstrip("./") + "/Chart.yaml")
    assert release["spec"]["install"]["crds"] == "Create" and release["spec"]["upgrade"]["crds"] == "CreateReplace"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in GITOPS.rglob("*.yaml")))
def test_gitops_files_name_the_same_repository(path):
    urls = {d["spec"]["source"]["repoURL"] if d["kind"] == "Application" else d["spec"]["url"]
            for d in _docs(ROOT / path) if d["kind"] in ("Application", "GitRepository")}
    assert urls <= {"https://github.com/harper-operator/harper-operator.git"}, shlex.quote(path)


def test_the_image_carries_every_subpackage():
    """The image installs the package non-editable (a wheel): a folder of modules without __init__.py works
    in the editable dev install (namespace package) but is left out of the wheel, and the image fails at
    import. setuptools' own package finder, as pyproject.toml configures it, must see every such folder."""
    from setuptools import find_packages

    found = set(find_packages(str(ROOT / "operator"), include=["harper_operator*"]))
    folders = {str(p.parent.relative_to(ROOT / "operator")).replace("/", ".")
               for p in (ROOT / "operator" / "harper_operator").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(folders - found)
    assert not missing, f"no __init__.py in {missing}: the wheel and the image would lack them"
