"""The layout of the package: no import cycles inside ``lloca_hep``, no oversized modules.

Import graph. Every module of ``lloca_hep`` is parsed with :mod:`ast` (nothing is imported) and
every ``import`` / ``from ... import`` of a ``lloca_hep`` module becomes an edge, whether it sits
at module level or inside a function (a function-level import only hides a cycle until the
function runs). Imports under ``if TYPE_CHECKING:`` never run and do not count. Relative
imports are resolved against the importing module's package. ``from pkg import name`` counts as
importing ``pkg`` and, when ``pkg.name`` is a module, ``pkg.name`` too.
``importlib.import_module("lloca_hep.x")`` / ``import_module(".x", __name__)`` with a literal
name counts as an import of that module; a lazy table such as ``_LAZY`` in a package's
``__init__`` (resolved by ``__getattr__`` only after the package finished initialising) does not.

The rule, and why it is sound: importing ``lloca_hep.x.y`` runs ``lloca_hep``'s and
``lloca_hep.x``'s ``__init__`` first, so an edge to ``lloca_hep.x.y`` also implies edges to
every ancestor package. Edges from a module to its *own* ancestor packages are dropped: Python
has always started initialising those before the module runs, so they cannot start a new
initialisation cycle. (They can still fail when the submodule wants a name that the parent
``__init__`` defines *after* importing that submodule; the convention here is that a
subpackage's siblings import each other directly, never through their parent ``__init__``.)
A package ``__init__`` importing its own submodules is the normal downward edge. What remains
must be a DAG: the test fails on every strongly connected component of more than one module.

Module length: no module longer than :data:`MAX_MODULE_LINES` lines (one test per module, so
the failures name the modules to split).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import lloca_hep

PACKAGE = "lloca_hep"
ROOT = Path(lloca_hep.__file__).resolve().parent
#: Longest module allowed, in lines.
MAX_MODULE_LINES = 550


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))
            if "__pycache__" not in p.parts}


MODULES = _modules()


def _package_of(module: str, path: Path) -> str:
    """The package relative imports in ``module`` are resolved against."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, path: Path, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    base = _package_of(module, path).split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(module: str, path: Path) -> set[str]:
    """The ``lloca_hep`` modules that ``module`` imports (before adding ancestors)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node.module, node.level)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names
                         if f"{target}.{alias.name}" in MODULES)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) == "import_module")):
            name = node.args[0].value
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                name = _resolve(module, path, name.lstrip(".") or None, level)
            found.add(name)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports`` over ``lloca_hep``, by the rule of the module docstring."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets: set[str] = set()
        for target in _imports(module, path):
            # ``from lloca_hep.x import name`` where name is not a module: the edge is to x
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            targets.add(target)
            targets.update(_ancestors(target))
        own = {module, *_ancestors(module)}
        graph[module] = {t for t in targets if t in MODULES and t not in own}
    return graph


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "{" + ", ".join(component) + "}: " + "; ".join(edges)


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, "import cycles inside lloca_hep:\n" + "\n".join(
        _describe(c, graph) for c in cycles)


def test_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    # function-level import (tagger loading builds models lazily)
    assert "lloca_hep.models" in graph["lloca_hep.tagger.loading"]
    # relative import of a sibling; the package __init__ importing its submodule
    assert "lloca_hep.tagger.format" in graph["lloca_hep.tagger.export"]
    assert "lloca_hep.tagger.loading" in graph["lloca_hep.tagger"]
    # an edge to a submodule implies its package; no edge to one's own package
    assert "lloca_hep.tagger" in graph["lloca_hep.inference.tag"]
    assert "lloca_hep.tagger" not in graph["lloca_hep.tagger.export"]


def test_cycle_detection_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    components = strongly_connected_components(graph)
    assert ["a", "b", "c"] in components and ["d"] in components


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_not_too_long(module: str) -> None:
    n_lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert n_lines <= MAX_MODULE_LINES, (
        f"{module} has {n_lines} lines (> {MAX_MODULE_LINES}): split it by job")


def test_runtime_does_not_import_the_test_helpers() -> None:
    """``lloca_hep.core.testing`` (toy jets, equivariance checks) is for tests only."""
    graph = import_graph()
    users = sorted(m for m, targets in graph.items() if "lloca_hep.core.testing" in targets)
    assert not users, f"runtime modules import lloca_hep.core.testing: {users}"
