"""docs/conditions.md lists every condition reason the operator writes, and nothing else.

The reasons are read from the source: the first argument of every Problem(...), the reason argument of every
condition(...) (and of its four-argument shorthands c(type, status, reason, message)), and every `ready_reason=`. A reason given as an
expression is followed to its string constants (a conditional, a local variable, a helper's returns, a module
constant, `{type(op).__name__}Failed` for each Operation); one passed on from another value (`p.reason`) adds
nothing. An expression this cannot follow fails the test, so a new way of naming a reason is noticed.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from harper_operator.reconcile.plan import Operation

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "harper_operator"
PAGE = ROOT / "docs" / "conditions.md"


class _Module:
    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text())
        self.constants = {t.id: n.value.value for n in self.tree.body if isinstance(n, ast.Assign)
                          for t in n.targets if isinstance(t, ast.Name)
                          and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
        self.functions = {n.name: n for n in ast.walk(self.tree) if isinstance(n, (ast.FunctionDef,
                                                                                  ast.AsyncFunctionDef))}

    def reasons(self, node: ast.expr, scope: ast.AST) -> set[str]:
        """The string constants `node` can be, inside function `scope`."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return self.reasons(node.body, scope) | self.reasons(node.orelse, scope)
        if isinstance(node, ast.Name):
            if node.id in self.constants:
                return {self.constants[node.id]}
            assigned = [n.value for n in ast.walk(scope) if isinstance(n, ast.Assign)
                        for t in n.targets if isinstance(t, ast.Name) and t.id == node.id]
            if assigned:
                return set().union(*(self.reasons(v, scope) for v in assigned))
            if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.id in {
                    a.arg for a in (*scope.args.posonlyargs, *scope.args.args, *scope.args.kwonlyargs)}:
                return set()  # a parameter: its callers' arguments are read where they call
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
            helper = self.functions[node.func.id]
            returns = [n.value for n in ast.walk(helper) if isinstance(n, ast.Return) and n.value is not None]
            return set().union(*(self.reasons(v, helper) for v in returns))
        if isinstance(node, ast.JoinedStr) and ast.unparse(node) == "f'{type(op).__name__}Failed'":
            return {f"{t.__name__}Failed" for t in typing.get_args(Operation)}
        if isinstance(node, ast.Attribute) and node.attr == "reason":
            return set()  # passed on from another Problem
        if isinstance(node, ast.Subscript) and ast.unparse(node.slice) == "'reason'":
            return set()  # passed on from a condition already written
        raise AssertionError(f"{self.path.relative_to(ROOT)}:{node.lineno}: cannot tell which reason "
                             f"{ast.unparse(node)!r} is; name it with a string constant")


def _reason_arguments(call: ast.Call) -> list[ast.expr]:
    name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)
    found = [k.value for k in call.keywords if k.arg == "ready_reason"]
    if name == "Problem" and call.args:
        found.append(call.args[0])
    elif (name == "condition" and len(call.args) >= 3) or (name == "c" and len(call.args) == 4):
        found.append(call.args[2])  # condition(type, status, reason, message), and its local shorthands c(...)
    return found


class _Calls(ast.NodeVisitor):
    """Every call with the innermost function around it (the module for a call outside any)."""

    def __init__(self, tree: ast.Module):
        self.scopes: list[ast.AST] = [tree]
        self.found: list[tuple[ast.Call, ast.AST]] = []
        self.visit(tree)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(node)
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        self.found.append((node, self.scopes[-1]))
        self.generic_visit(node)


def code_reasons() -> dict[str, str]:
    """reason -> where the code writes it."""
    out: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _Module(path)
        for call, scope in _Calls(module.tree).found:
            for arg in _reason_arguments(call):
                for reason in module.reasons(arg, scope):
                    out.setdefault(reason, f"{path.relative_to(ROOT)}:{call.lineno}")
    return out


def page_reasons() -> set[str]:
    """Every `Reason` in the first cell of a table row."""
    rows = [line.split("|")[1] for line in PAGE.read_text().splitlines() if line.startswith("| `")]
    return {r for cell in rows for r in re.findall(r"`([A-Za-z]+)`", cell)}


def test_the_page_lists_every_reason_the_code_writes():
    missing = {r: where for r, where in code_reasons().items() if r not in page_reasons()}
    assert not missing, f"add these reasons to docs/conditions.md (meaning and fix): {missing}"


def test_the_page_lists_no_reason_the_code_no_longer_writes():
    stale = page_reasons() - set(code_reasons())
    assert not stale, f"docs/conditions.md lists reasons no code writes: {sorted(stale)}"


def test_the_reader_finds_reasons_of_every_kind():
    """The scan itself: a constant, a conditional, a helper's returns, a module constant, an f-string per Operation,
    and a ready_reason keyword, each seen where the code has one."""
    found = code_reasons()
    for reason in ("SecretNotFound", "AdoptionAmbiguous", "RollingUpdate", "Hibernated", "RestartFailed",
                   "Converged", "KubernetesRefused", "ClusterNotFound", "Paused"):
        assert reason in found, reason
