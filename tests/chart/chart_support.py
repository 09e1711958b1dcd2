"""What the chart tests share: the helm binary, rendering the chart, and running the Argo CD Lua check.

e2e/test_chart.py loads this file by path too, so the real-cluster tests use the same helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "harper-operator"
LUA_HEALTH = CHART / "files" / "argocd-health.lua"
SAMPLES = Path(__file__).resolve().parent / "status-samples"
HELM_MODULE = ROOT / "e2e" / "tools" / "helm"


def helm_binary() -> Path:
    """The helm the test bed builds (pinned in e2e/tools/helm/go.mod), built on first use and cached.

    $HARPER_OPERATOR_HELM points at another binary (for a quick local run). Never skips: a helm that
    cannot be built fails the tests with the build's output.
    """
    if os.environ.get("HARPER_OPERATOR_HELM"):
        return Path(os.environ["HARPER_OPERATOR_HELM"])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from e2e.testbed import tools
    except ImportError:  # the test bed package is not in this tree: build it the same way, here
        tools = None
    if tools is not None:
        if hasattr(tools, "ensure_helm"):
            return Path(tools.ensure_helm())
        return Path(tools.ensure_tools().helm)
    out = Path(tempfile.gettempdir()) / "harper-operator-helm" / "helm"
    if not out.exists():
        done = subprocess.run(["go", "build", "-trimpath", "-o", str(out), "helm.sh/helm/v3/cmd/helm"],
                              cwd=HELM_MODULE, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"building helm failed:\n{done.stdout}\n{done.stderr}")
    return out


def promtool_binary() -> Path:
    """The promtool the test bed builds (pinned in e2e/tools/promtool/go.mod), built on first use and cached.

    $HARPER_OPERATOR_PROMTOOL points at another binary. Like helm, never skips: a promtool that cannot be built
    fails the alert tests with the build's output.
    """
    if os.environ.get("HARPER_OPERATOR_PROMTOOL"):
        return Path(os.environ["HARPER_OPERATOR_PROMTOOL"])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from e2e.testbed import tools

    return Path(tools.ensure_promtool())


class Helm:
    """`helm` with a private, empty configuration (no repositories, no plugins, no cluster)."""

    def __init__(self, binary: Path, home: Path):
        self.binary = binary
        self.env = {**os.environ,
                    "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_DATA_HOME": str(home / "data"), "KUBECONFIG": str(home / "no-kubeconfig")}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120)
        if check and done.returncode:
            raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def template(self, values: dict | None = None, *extra: str, release: str = "hop",
                 namespace: str = "hop-system", chart: Path = CHART, check: bool = True) -> subprocess.CompletedProcess:
        args = ["template", release, str(chart), "--namespace", namespace]
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            json.dump(values or {}, f)  # JSON is YAML
        try:
            return self.run(*args, "--values", f.name, *extra, check=check)
        finally:
            os.unlink(f.name)

    def render(self, values: dict | None = None, *extra: str, **kw: Any) -> list[dict]:
        """Every rendered object (hooks included), as dicts."""
        return [d for d in yaml.safe_load_all(self.template(values, *extra, **kw).stdout) if d]


def find(docs: Iterable[dict], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)]


def one(docs: Iterable[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, got {len(found)}"
    return found[0]


# --- Argo CD health check --------------------------------------------------------------------------

# Argo CD runs ConfigMap health scripts in gopher-lua (Lua 5.1) with only the base, table, package and a
# "safe" os library opened. The stand-in below uses real Lua 5.1 (lupa) and removes everything else, so a
# script that leans on string.*, math.* or io.* fails here as it would in Argo CD.
_ARGO_HIDDEN_GLOBALS = ("string", "math", "io", "debug", "coroutine", "dofile", "loadfile", "load",
                        "loadstring", "require", "module", "package")


def lua_health(obj: dict, script: str | None = None) -> dict:
    """Run files/argocd-health.lua on one object the way Argo CD does; returns {"status", "message"}."""
    from lupa import lua51

    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False, unpack_returned_tuples=True)
    g = lua.globals()
    for name in _ARGO_HIDDEN_GLOBALS:
        g[name] = None
    # json round trip: exactly the types Argo CD decodes (numbers, strings, booleans, maps, lists, null).
    g.obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute(script if script is not None else LUA_HEALTH.read_text())
    assert result is not None and lua51.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    out = {k: result[k] for k in ("status", "message")}
    assert set(dict(result.items())) <= {"status", "message"}, dict(result.items())
    return out


def samples() -> list[tuple[str, dict]]:
    """(file name, sample) for every status sample: {"description", "source", "expected", "object"}."""
    return [(p.name, json.loads(p.read_text())) for p in sorted(SAMPLES.glob("*.json"))]


def copy_chart(dest: Path) -> Path:
    target = dest / CHART.name
    shutil.copytree(CHART, target)
    return target


def render_notes(helm, tmp_path: Path, values: dict) -> str:
    """NOTES.txt as `helm install` would print it: `helm template` skips NOTES.txt, so it is rendered through a
    throw-away copy of the chart where it becomes a ConfigMap (e2e/test_chart.py reads the real NOTES)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "zz-notes.yaml").write_text(
        '{{- define "test.notes" -}}\n' + notes + '\n{{- end }}\n'
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n  namespace: x\n"
        'data:\n  notes: {{ include "test.notes" . | quote }}\n')
    return one(helm.render(values, chart=chart), "ConfigMap", "notes")["data"]["notes"]
