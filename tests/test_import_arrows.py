"""The import arrows of DESIGN.md, read statically (``ast``; nothing is imported or run).

* nothing in ``dslnet_edge`` imports ``train``, ``export``, ``calibration`` or ``samples``;
* ``calibration`` imports neither ``export`` nor ``train``;
* ``train`` and ``samples`` do not import ``export``;
* no two modules of the project import each other, directly or round a loop (function-level
  "lazy" imports count: they only hide a cycle from the import system, not from a reader).
  Imports under ``if TYPE_CHECKING:`` are annotations only and are left out of the cycle check.

Every import is seen: module level, inside functions, ``from . import x`` (relative) alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dslnet_edge", "train", "export", "calibration", "samples")

#: (importer package, imported package) pairs that must never appear.
FORBIDDEN = {
    ("dslnet_edge", "train"): "dslnet_edge is the ground floor",
    ("dslnet_edge", "export"): "dslnet_edge is the ground floor",
    ("dslnet_edge", "calibration"): "dslnet_edge is the ground floor",
    ("dslnet_edge", "samples"): "dslnet_edge is the ground floor",
    ("calibration", "export"): "export -> calibration, never back",
    ("calibration", "train"): "calibration stands on dslnet_edge alone",
    ("train", "export"): "export reads what training writes, not the other way",
    ("samples", "export"): "samples run deployed models through dslnet_edge",
}

#: Cycles allowed for now, each as the sorted tuple of its modules, with the reason (none today).
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = REPO) -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            modules[_module_name(path, root)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, under TYPE_CHECKING) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := resolve(alias.name)) is not None:
                    found.append((target, node.lineno, typing_only))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                target = resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else resolve(base)
                if target is not None:
                    found.append((target, node.lineno, typing_only))
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(tree, False)
    return [(t, line, typing) for t, line, typing in found if t != name]


def import_graph(root: Path = REPO) -> dict[str, list[tuple[str, int, bool]]]:
    modules = project_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def forbidden_arrows(graph) -> list[str]:
    bad = []
    for name, imports in graph.items():
        for target, line, _ in imports:
            pair = (name.split(".")[0], target.split(".")[0])
            if pair in FORBIDDEN:
                bad.append(f"{name}:{line} imports {target} ({FORBIDDEN[pair]})")
    return bad


def cycles(graph) -> list[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan), runtime imports only."""
    edges = {n: sorted({t for t, _, typing in imps if not typing and t in graph}) for n, imps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def strongconnect(v: str) -> None:  # recursion depth is bounded by the module count (~150)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strongconnect(w)
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
                found.append(tuple(sorted(component)))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_walk_sees_the_project(graph):
    # the walker must find real arrows, or the checks below would pass vacuously
    assert len(graph) > 50
    assert any(t == "dslnet_edge.spec" for t, _, _ in graph["export.contract"])
    assert any(t == "export.contract" for t, _, _ in graph["export.parity"])
    assert any(t == "export.plugin" for t, _, _ in graph["export.plugin.graph"])


def test_package_arrows_point_one_way(graph):
    assert forbidden_arrows(graph) == []


def test_no_import_cycles(graph):
    found = cycles(graph)
    unexpected = [c for c in found if c not in ALLOWED_CYCLES]
    assert unexpected == [], f"import cycles: {unexpected}"
    stale = [c for c in ALLOWED_CYCLES if c not in found]
    assert stale == [], f"these allowed cycles are gone; remove them from ALLOWED_CYCLES: {stale}"


def test_checks_catch_a_back_arrow_and_a_cycle(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "dslnet_edge" / "a.py").write_text("def f():\n    from export import b\n")
    (tmp_path / "export" / "b.py").write_text("from . import c\n")
    (tmp_path / "export" / "c.py").write_text("import export.b\n")
    (tmp_path / "export" / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from export.b import x\n")
    fake = import_graph(tmp_path)
    assert forbidden_arrows(fake) == ["dslnet_edge.a:2 imports export.b (dslnet_edge is the ground floor)"]
    assert cycles(fake) == [("export.b", "export.c")]
