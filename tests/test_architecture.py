"""The package's architecture: subpackages by concern, imports that flow one way, small modules.

The layers themselves are the import-linter contract in ``pyproject.toml`` (``make test`` runs
``lint-imports`` first); these tests add what a contract cannot state: no import cycle at all
(module level or inside functions; ``TYPE_CHECKING`` blocks aside), module sizes, and the
subpackages a researcher finds.
"""

from __future__ import annotations

from pathlib import Path

import grimp

import alliance_analysis

PACKAGE = Path(alliance_analysis.__file__).parent

#: A module is read in one sitting: longer ones are split by concern.
MAX_LINES = 700


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.find_modules_directly_imported_by(node)):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_among_the_modules() -> None:
    graph = grimp.build_graph("alliance_analysis", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.b", imported="p.c")
    assert _cycles(graph) == [["p.a", "p.b"]]


def test_modules_are_small() -> None:
    sizes = {path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_subpackages_by_concern_each_say_what_they_own() -> None:
    subpackages = sorted(p.parent.relative_to(PACKAGE).as_posix()
                         for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)
    assert {"data", "multilevel", "multilevel/engine", "sem", "change", "power", "report",
            "stats", "teaching"} <= set(subpackages)
    for name in subpackages:
        doc = (PACKAGE / name / "__init__.py").read_text()
        assert doc.startswith('"""') and "import" in doc.split('"""')[1], name
