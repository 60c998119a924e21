"""The house's shape, pinned so that later work keeps it (issue 16).

* No import circle anywhere in ``xenstore/``, typing-only imports included.
* No module in ``xenstore/`` over :data:`MAX_LINES` lines.

(That importing ``xenstore.daemon.core`` loads neither trio nor construct is
pinned by ``tests/protocol/test_imports.py``, with the client's and codec's.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xenstore"
#: The house's size for one module (issue 16: "no module over 450 lines").
MAX_LINES = 450



def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its __init__)."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported, or that a type checker follows.

    Everything outside function bodies: the module's top level, ``if`` (so
    ``if TYPE_CHECKING:`` too), ``try``, ``with`` and class bodies. Imports
    inside a function run only when it is called: a deliberate lazy import
    (to keep trio or construct out of a start-up, say), so not an edge here.
    """
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (``from a import b``: ``a.b`` if
    that is a module, else ``a``; a relative import resolved against its package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in module_level_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {target for target in found if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each
    sorted; together they hold every import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def one_circle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest circle through the component's first module, for the message."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle in {component}")


def describe(graph: dict[str, set[str]], components: list[list[str]]) -> str:
    lines = []
    for component in components:
        lines.append(f"{len(component)} modules: {', '.join(component)}")
        lines.append("  e.g. " + " -> ".join(one_circle(graph, component)))
    return "\n".join(lines)


def test_the_walker_sees_every_kind_of_import() -> None:
    """Top level, relative, ``if TYPE_CHECKING:``, ``try``, class bodies; not functions."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import a.b\n"
        "from . import c\n"
        "from .d import e\n"
        "if TYPE_CHECKING:\n    from f import g\n"
        "try:\n    import h\nexcept ImportError:\n    pass\n"
        "class K:\n    import i\n"
        "def lazy():\n    import j\n"
        "async def later():\n    import k\n"
    )
    found = list(module_level_imports(ast.parse(source)))
    names = sorted(
        alias.name if isinstance(node, ast.Import) else f"{node.level}{node.module}:{alias.name}"
        for node in found
        for alias in node.names
    )
    assert names == ["0f:g", "0typing:TYPE_CHECKING", "1None:c", "1d:e", "a.b", "h", "i"]


def test_circles_are_found_and_shown() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert one_circle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_the_graph_covers_the_package() -> None:
    graph = import_graph()
    assert "xenstore.daemon.core" in graph
    assert "xenstore.errors" in graph["xenstore.paths"]


def test_no_import_circle_in_the_package() -> None:
    """Module-level and typing-only imports (``if TYPE_CHECKING:``) count; imports
    inside functions are deliberate lazy imports and do not."""
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles in xenstore/:\n" + describe(graph, found)


def oversized() -> dict[str, int]:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    return {name: lines for name, lines in sorted(sizes.items()) if lines > MAX_LINES}


def test_no_module_over_the_house_size() -> None:
    found = oversized()
    assert not found, f"modules over {MAX_LINES} lines: " + ", ".join(
        f"{name} ({lines})" for name, lines in found.items()
    )
