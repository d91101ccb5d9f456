"""No import cycle inside ``fewgen``: a test walks the package's own import graph.

The rule. An edge ``A -> B`` is an import of fewgen module ``B`` that runs when ``A`` is
imported: an ``import``/``from ... import`` statement in ``A``'s module body, including those
inside module-level ``if``/``try``/``with``/loops and class bodies (they run at import time), never
those under ``if TYPE_CHECKING:`` (they never run). Importing ``a.b.c`` runs the ``__init__`` of
``a.b`` first, so the edge also goes to every package on the way that is not already being
imported (an ancestor of ``A``).

1. These import-time edges have no cycle at all: a cycle among them is a module that reads a
   half-initialised one.
2. Imports inside functions run later, when every module is loaded, so a lazy import may point
   "up" (from a module to one that imports it), but only as a declared exception: with the
   functions' imports counted too, the graph less the edges of :data:`LAZY_UP` has no cycle.
   A registry that its entries import back (the cycle issue 25 removed from ``tasks/``: the spec
   table lazily imported the sources, which imported it to register) fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fewgen

Graph = dict[str, set[str]]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package at ``root`` (named ``package``): dotted name -> file."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_statements(body: list[ast.stmt], lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module body that run when the module is imported (``lazy``:
    those inside functions too); never those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            found += import_statements(node.orelse, lazy)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not lazy:
            continue
        else:  # if/try/with/for/while/match/class bodies run with the statement that holds them
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.excepthandler, ast.match_case)):
                    found += import_statements(child.body, lazy)
            for field in ("body", "orelse", "finalbody"):
                block = getattr(node, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    found += import_statements(block, lazy)
    return found


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The dotted names an import statement of module ``importer`` imports (absolute)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = importer.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix, *(f"{prefix}.{alias.name}" for alias in node.names)]


def import_graph(root: Path, package: str, lazy: bool = False) -> Graph:
    """The import-time graph of the package at ``root``: module -> the package's modules its
    import runs (see the module docstring for the rule); ``lazy``: its functions' imports too."""
    modules = module_names(root, package)
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in import_statements(tree.body, lazy):
            for target in _targets(node, name, path.name == "__init__.py"):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the target and the packages on its way
                    step = ".".join(parts[:i])
                    if step in modules and step not in ancestors and step != name:
                        graph[name].add(step)
    return graph


def find_cycle(graph: Graph) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``[]`` where there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


FEWGEN = Path(fewgen.__file__).parent


# The lazy imports that may point up (importer, imported): each closes a cycle on purpose.
LAZY_UP = {
    ("fewgen.tasks.base", "fewgen.tasks.mix"): "TaskSet.sample_task_ids draws a mixture's tasks by source weight",
    ("fewgen.checkpoint", "fewgen.adaptation"): "loading an adapted checkpoint checks its stored context",
}


def test_fewgen_has_no_import_cycle():
    cycle = find_cycle(import_graph(FEWGEN, "fewgen"))
    assert not cycle, "import cycle at import time: " + " -> ".join(cycle)


def test_fewgens_lazy_imports_close_no_undeclared_cycle():
    graph = import_graph(FEWGEN, "fewgen", lazy=True)
    for (importer, imported), why in LAZY_UP.items():
        assert imported in graph[importer], f"{importer} no longer imports {imported} ({why}): drop it from LAZY_UP"
        graph[importer].discard(imported)
    cycle = find_cycle(graph)
    assert not cycle, "import cycle through a lazy import (not in LAZY_UP): " + " -> ".join(cycle)


def test_the_graph_sees_fewgens_imports():
    graph = import_graph(FEWGEN, "fewgen")
    assert "fewgen.tasks.base" in graph["fewgen.tasks.spec"]  # from .base import TaskSet
    assert "fewgen.config" in graph["fewgen.tasks.spec"]  # from ..config import DataConfig
    assert {"fewgen.models", "fewgen.models.bytes"} <= graph["fewgen.tasks.text"]  # the package on the way too


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_cycle_is_found_and_named(tmp_path):
    root = _package(tmp_path, {"a.py": "from .b import x\n",
                               "b.py": "try:\n    from . import c\nexcept ImportError:\n    pass\n",
                               "c.py": "class C:\n    import pkg.a\n"})
    assert find_cycle(import_graph(root, "pkg")) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_a_package_init_on_the_way_is_an_edge(tmp_path):
    root = _package(tmp_path, {"sub/__init__.py": "from ..a import y\n", "sub/leaf.py": "",
                               "a.py": "from .sub.leaf import z\n"})
    assert find_cycle(import_graph(root, "pkg")) == ["pkg.a", "pkg.sub", "pkg.a"]


def test_lazy_and_type_checking_imports_are_not_edges(tmp_path):
    root = _package(tmp_path, {"a.py": "from . import b\n",
                               "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import T\n"
                                       "def f():\n    from .a import g\n    return g\n"})
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == set() and find_cycle(graph) == []
    assert find_cycle(import_graph(root, "pkg", lazy=True)) == ["pkg.a", "pkg.b", "pkg.a"]  # TYPE_CHECKING never
