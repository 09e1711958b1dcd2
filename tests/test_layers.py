"""The layering, written down as import contracts that `make test` checks.

    handlers, cli, runner, inspect          (the shell: Kopf wiring, commands)
      > controller                          (one reconcile: read, plan, write, verify, report)
        > reconcile | provision | harper | api | kube
                                            (pure core: Harper's plan, Kubernetes objects and scaling | Harper's
                                             wire | resource schema | Kubernetes calls)

* reconcile is pure: it imports nothing of the project but itself, and no I/O library.
* provision is pure too: it renders a provisioned cluster's objects and decides its scaling from the api models.
* harper knows Harper's wire and nothing of the resources (api) or of Kubernetes.
* api is the schema: it imports nothing of the project but itself.
* nothing below the shell imports handlers (Kopf registration happens only where the operator runs).
* inside inspect (a package; its layer is still "inspect"), rendering and routing are pure: inspect/render.py,
  inspect/routing.py and inspect/errors.py import no I/O library, and of the project only what PURE_MODULES
  lists, so none of them reaches Kubernetes or Harper (that is inspect/kubeapi, proxy and transports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "operator" / "harper_operator"
IO = {"aiohttp", "kopf", "kubernetes", "websockets", "prometheus_client", "socket", "subprocess", "asyncio"}

# layer -> project layers it may import (itself always allowed)
ALLOWED = {
    "reconcile": set(),
    "api": set(),
    "provision": {"api"},
    "harper": set(),
    "kube": {"api"},
    "settings": set(),
    "metrics": set(),
    "controller": {"reconcile", "provision", "harper", "api", "kube"},
    "handlers": {"controller", "reconcile", "provision", "harper", "api", "kube", "settings", "metrics"},
    "inspect": {"controller", "reconcile", "provision", "harper", "api", "kube"},
    "runner": {"handlers", "kube", "metrics", "settings"},
    "cli": {"runner", "inspect", "api", "settings", "kube", "handlers"},
}
NO_IO = {"reconcile", "api", "provision"}
# Pure modules inside a shell layer: path under the package -> the project modules (prefixes) they may import.
PURE_MODULES = {
    "inspect/errors.py": (),
    "inspect/render.py": (),
    "inspect/routing.py": ("harper_operator.api",),
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, is_project) for every import in the file, relative ones resolved against the package."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).with_suffix("").parts
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, a.name.startswith("harper_operator")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:len(here) - node.level])
                if path.name == "__init__.py":
                    base = list(here[:len(here) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] if node.module else [f"{module}.{a.name}".strip(".") for a in node.names]
                out += [("harper_operator." + n if n else "harper_operator", True) for n in names]
            else:
                out.append((node.module or "", (node.module or "").startswith("harper_operator")))
    return out


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    layer = _layer(path)
    assert layer in ALLOWED, f"{layer} is a new layer: add it to ALLOWED with what it may import"
    for module, project in _imports(path):
        if project:
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else ""
            assert target in ALLOWED[layer] | {layer, ""}, f"{path.name} ({layer}) imports {module}"
        elif layer in NO_IO:
            assert module.split(".")[0] not in IO, f"{path.name} ({layer}) is pure but imports {module}"


@pytest.mark.parametrize("rel", sorted(PURE_MODULES))
def test_pure_modules_of_a_shell_layer(rel):
    path = PACKAGE / rel
    assert path.exists(), f"{rel} is gone: update PURE_MODULES"
    allowed = PURE_MODULES[rel]
    for module, project in _imports(path):
        if project:
            assert any(module == a or module.startswith(a + ".") for a in allowed), f"{rel} imports {module}"
        else:
            assert module.split(".")[0] not in IO, f"{rel} is pure but imports {module}"


def test_the_contract_can_fail():
    """The checker sees a forbidden import (so a green run means something)."""
    bad = PACKAGE / "reconcile" / "plan.py"
    assert ("harper_operator.reconcile.topology", True) in _imports(bad)
    assert "harper" not in ALLOWED["reconcile"]
    transport = PACKAGE / "inspect" / "transports.py"
    assert ("harper_operator.inspect.proxy", True) in _imports(transport)
    assert not any(m.startswith("harper_operator.inspect") for m, _ in _imports(PACKAGE / "inspect" / "render.py"))
