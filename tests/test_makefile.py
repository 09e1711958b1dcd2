"""The Makefile's own promises, without installing anything: a venv that an interrupted run left broken is made
anew (issue 13), the stamp only follows an install that succeeded, and `make crds-check` fails on stale CRDs.
The set-up runs in a copy of the Makefile with a fake python, so no network and no real venv is touched."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_OK = ROOT / ".ci" / "venv-ok"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _env(**extra: str) -> dict[str, str]:
    # Run under `make unit`, the outer make's flags (jobserver, -n, ...) must not leak into the inner one.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return {**env, **extra}


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _venv_ok(venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(VENV_OK), str(venv)], capture_output=True, text=True, timeout=60)


def _broken_venv(venv: Path) -> None:
    """What an interrupted `python -m venv` or install leaves: a python that runs but has no pip."""
    _script(venv / "bin" / "python", 'if [ "$1" = -m ]; then echo "No module named $2" >&2; exit 1; fi\nexit 0\n')


def test_venv_ok_reports_a_venv_without_pip_as_broken(tmp_path):
    _broken_venv(tmp_path / "v")
    r = _venv_ok(tmp_path / "v")
    assert r.returncode == 1 and "no working pip" in r.stderr


def test_venv_ok_reports_a_real_venv_without_pip_as_broken(tmp_path):
    # the state issue 13 saw: `python -m venv` interrupted before ensurepip had put pip in
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True, timeout=60)
    r = _venv_ok(tmp_path / "v")
    assert r.returncode == 1 and "no working pip" in r.stderr


def test_venv_ok_reports_a_missing_or_unrunnable_python(tmp_path):
    assert _venv_ok(tmp_path / "absent").returncode == 1
    (tmp_path / "v" / "bin").mkdir(parents=True)
    r = _venv_ok(tmp_path / "v")
    assert r.returncode == 1 and "no runnable bin/python" in r.stderr
    (tmp_path / "v" / "bin" / "python").symlink_to(tmp_path / "gone")   # its interpreter removed or upgraded
    assert _venv_ok(tmp_path / "v").returncode == 1


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not run from a virtualenv")
def test_venv_ok_accepts_the_venv_these_tests_run_in():
    r = _venv_ok(Path(sys.prefix))
    assert r.returncode == 0, r.stderr


@pytest.fixture
def project(tmp_path):
    """A copy of the Makefile and .ci/venv-ok; PYTHON is a fake whose `-m venv` makes a venv whose pip only logs."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(VENV_OK, tmp_path / ".ci" / "venv-ok")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "constraints.txt").write_text("")
    log = tmp_path / "calls.log"
    good_python = (
        f'echo "python $*" >> {log}\n'
        'if [ "$1 $2 $3" = "-m pip install" ]; then exit "${FAKE_PIP_RC:-0}"; fi\n'
        'exit 0\n'
    )
    fake = _script(tmp_path / "fake" / "python3", (
        f'echo "venv $*" >> {log}\n'
        '[ "$1 $2" = "-m venv" ] || exit 2\n'
        'mkdir -p "$3/bin"\n'
        f"cat > \"$3/bin/python\" <<'EOF'\n#!/bin/sh\n{good_python}EOF\n"
        'chmod +x "$3/bin/python"\n'
    ))

    def make(*targets: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "-C", str(tmp_path), f"PYTHON={fake}", *targets], capture_output=True,
                              text=True, timeout=60, env=_env(**env))

    return tmp_path, make, log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_make_install_recreates_a_venv_left_without_pip(project):
    root, make, log = project
    _broken_venv(root / ".venv")
    (root / ".venv" / "left-over").write_text("")
    r = make("install")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no working pip" in r.stderr and "(re)creating .venv" in r.stdout
    assert not (root / ".venv" / "left-over").exists(), "the broken venv must be removed, not patched"
    assert (root / ".venv" / ".installed").exists()
    calls = _calls(log)
    assert calls[0] == "venv -m venv .venv" and any(c.startswith("python -m pip install") for c in calls)

    # idempotent: an installed venv is left alone
    before = _calls(log)
    r = make("install")
    assert r.returncode == 0 and _calls(log) == before, r.stdout + r.stderr


def test_a_failed_install_leaves_no_stamp_and_the_next_make_installs_into_the_same_venv(project):
    root, make, log = project
    r = make("install", FAKE_PIP_RC="1")            # e.g. interrupted, or the network gone
    assert r.returncode != 0 and not (root / ".venv" / ".installed").exists()
    assert (root / ".venv" / "bin" / "python").exists()
    (root / ".venv" / "kept").write_text("")
    r = make("install")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / ".venv" / ".installed").exists() and (root / ".venv" / "kept").exists()
    assert [c for c in _calls(log) if c.startswith("venv")] == ["venv -m venv .venv"]   # created once only


def _recipe(target: str) -> str:
    r = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_make_test_checks_the_crds_and_lints_before_pytest():
    for target in ("test", "test-serial"):
        out = _recipe(target)
        assert out.index("harper-operator crds --out") < out.index("-m pytest")
        assert out.index("ruff check") < out.index("-m pytest")


@pytest.mark.skipif(not (Path(sys.prefix) / "bin" / "harper-operator").exists(), reason="harper-operator not installed")
def test_crds_check_fails_with_a_diff_on_stale_crds(tmp_path):
    venv = Path(sys.prefix)
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    chart_crds = Path("helm", "harper-operator", "templates", "crds")
    shutil.copytree(ROOT / chart_crds, tmp_path / chart_crds)

    def check() -> subprocess.CompletedProcess[str]:
        # -o: the real venv's stamp is taken as up to date, so nothing is installed from the copy
        return subprocess.run(["make", "-C", str(tmp_path), f"VENV={venv}", "-o", f"{venv}/.installed", "crds-check"],
                              capture_output=True, text=True, timeout=120, env=_env())

    r = check()
    assert r.returncode == 0 and "match the models" in r.stdout, r.stdout + r.stderr

    crd = sorted((tmp_path / "crds").glob("*.yaml"))[0]
    crd.write_text(crd.read_text().replace("openAPIV3Schema", "openAPIV3Schemaa", 1))
    (tmp_path / chart_crds / "old.yaml").write_text("kind: CustomResourceDefinition\n")
    r = check()
    assert r.returncode != 0
    assert "stale CRDs in crds/ helm/harper-operator/templates/crds/" in r.stdout
    assert "-      openAPIV3Schemaa:" in r.stdout and "+      openAPIV3Schema:" in r.stdout
    assert "Only in " in r.stdout and "old.yaml" in r.stdout


def test_make_test_reruns_nothing():
    """A retry is a finding, not a pass: `make test` runs every test once."""
    for target in ("test", "test-serial"):
        assert "-m pytest" in _recipe(target) and "--reruns" not in _recipe(target)
    assert "rerunfailures" not in (ROOT / "pyproject.toml").read_text()


def _runs(recipe: str) -> list[tuple[list[str], list[str]]]:
    """(paths, ignored paths) of each pytest run in a recipe."""
    runs = []
    for line in recipe.splitlines():
        if "-m pytest" not in line:
            continue
        words = line.split("-m pytest", 1)[1].split()
        args = [w for w in words[: next(i for i, w in enumerate(words) if w.startswith("--durations"))]
                if w not in ("-q", "-p", "no:cacheprovider")]
        runs.append(([a for a in args if not a.startswith("--")],
                     [a.removeprefix("--ignore=") for a in args if a.startswith("--ignore=")]))
    return runs


def _in(path: str, under: str) -> bool:
    return path == under or path.startswith(under.rstrip("/") + "/")


def _modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for top in ("tests", "e2e") for p in (ROOT / top).rglob("test_*.py")}


def test_make_test_runs_every_test_module_in_exactly_one_of_its_three_runs():
    """Three pytest runs side by side, all of which must pass; each test module is in exactly one of them."""
    recipe = _recipe("test")
    runs = _runs(recipe)
    assert len(runs) == 3, recipe
    for module in _modules():
        owners = [i for i, (paths, ignored) in enumerate(runs)
                  if any(_in(module, p) for p in paths) and not any(_in(module, p) for p in ignored)]
        assert len(owners) == 1, f"{module} runs in {len(owners)} of make test's pytest runs"
    assert "[ $rest -eq 0 ] && [ $matrixes -eq 0 ] && [ $nodes -eq 0 ]" in recipe
    node, matrix, _ = (paths for paths, _ in runs)

    def owner(module: str) -> list[str] | None:
        return next((paths for paths in (node, matrix) if any(_in(module, p) for p in paths)), None)

    sources = {m: (ROOT / m).read_text() for m in _modules() if m.startswith("e2e/")}
    # One node layer per machine: a module that starts it runs in the node layer's run.
    starts_a_node = {m for m, text in sources.items() if "ensure_node_tools" in text or "testbed.node import" in text}
    assert all(owner(m) is node for m in starts_a_node), starts_a_node
    # netcut's tests expect its iptables chain to be theirs alone: every module that cuts runs in their run.
    # (the loopback fault matrix cuts through e2e/faults/faults.py's LOOPBACK faults)
    cuts = {m for m, text in sources.items() if "netcut" in text or "faults.faults import LOOPBACK" in text}
    assert "e2e/test_netcut.py" in cuts and all(owner(m) is matrix for m in cuts), cuts


def test_make_test_serial_runs_every_test_module_in_one_run():
    (run,) = _runs(_recipe("test-serial"))
    assert run == (["tests", "e2e"], [])
