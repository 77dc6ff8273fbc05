"""The package's shape: no import circle between lwd_gym's modules, no private cross-module import.

Imports are read with ``ast`` (nothing is executed), nested ones included: an import moved into a
function still ties the two modules together.  ``from package import submodule`` counts as an
import of the submodule, not of the package's ``__init__``; imports under ``TYPE_CHECKING`` do
not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lwd_gym"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def import_graph() -> dict[str, dict[str, list[str]]]:
    """``{module: {imported module: [imported names]}}`` over lwd_gym's own modules."""
    mods = _modules()
    graph: dict[str, dict[str, list[str]]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, list[str]] = {}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods:
                        edges.setdefault(alias.name, [])
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                    if target in mods and target != name:
                        edges.setdefault(target, []).append(alias.name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_imports_of_every_kind():
    graph = import_graph()
    assert "lwd_gym.agents.base" in graph["lwd_gym.agents.latent"]  # from lwd_gym.agents.base import BaseAgent
    assert "lwd_gym.distributed" in graph["lwd_gym.agents.latent"]  # from lwd_gym import distributed: the submodule
    assert "lwd_gym.evaluation" in graph["lwd_gym.agents.learning"]  # an import inside a method
    assert _cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]


def test_no_import_circle_in_lwd_gym():
    assert _cycles(import_graph()) == []


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{module} imports {name} from {target}"
        for module, edges in import_graph().items()
        for target, names in edges.items()
        for name in names
        if name.startswith("_") and not name.startswith("__") and target.rpartition(".")[2] != name
    ]
    assert private == []
