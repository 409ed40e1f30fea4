"""The import graph of ``src/papi_sandbox`` (docs/design.md, "Layout"): a DAG with the pure
domain at the bottom.

Every import counts: at module level, inside functions and under ``if TYPE_CHECKING:``. A
function-level import that closes a circle hides the circle from Python's import machinery, not
from the design; a type-only one still ties two modules' definitions together."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "papi_sandbox"

#: The pure domain: balances in, postings out; rules, matching, prices. No I/O, no clock
#: beyond the wall time, and nothing of the layers above.
PURE = (
    "papi_sandbox.grammar",
    "papi_sandbox.money",
    "papi_sandbox.ledger",
    "papi_sandbox.trading",
    "papi_sandbox.market.symbols",
    "papi_sandbox.market.prices",
    "papi_sandbox.market.config",
    "papi_sandbox.market.state",
)
#: What the pure domain never imports, even indirectly: the store, the wire, the web layers,
#: the jobs, the streams, the service layer, the process's settings and entry points.
IO_LAYERS = (
    "papi_sandbox.store",
    "papi_sandbox.api",
    "papi_sandbox.wire",
    "papi_sandbox.stream",
    "papi_sandbox.admin",
    "papi_sandbox.ui",
    "papi_sandbox.jobs",
    "papi_sandbox.service",
    "papi_sandbox.trading_service",
    "papi_sandbox.settings",
    "papi_sandbox.cli",
    "papi_sandbox.market.feed",
)
#: Standard-library modules the pure domain may use (no files, sockets, threads or processes).
PURE_STDLIB = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "itertools",
    "math",
    "re",
    "time",
    "typing",
    "pathlib",  # market.config: a feed file's path, resolved, never opened
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (a name inside a module: that module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(module: str, path: Path) -> list[str]:
    """Every name ``module`` imports, absolute, from anywhere in its source."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.append(full if full in MODULES else base)
    return names


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_resolve(n) for n in _imported_names(module, path) if n.startswith(PACKAGE)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


GRAPH = _graph()


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_the_imports_it_must_see() -> None:
    """The checker itself: module-level, function-level and relative imports are edges."""
    assert len(MODULES) > 60
    assert "papi_sandbox.api.state" in GRAPH["papi_sandbox.api.app"]
    assert "papi_sandbox.api.app" in GRAPH["papi_sandbox.cli"]  # imported inside serve
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH) or [])


def test_nothing_imports_the_composition_root_but_the_entry_points() -> None:
    """The layers it assembles read ``api.state``; only entry points build the app."""
    entry_points = {"papi_sandbox", "papi_sandbox.cli"}
    importers = {m for m, targets in GRAPH.items() if "papi_sandbox.api.app" in targets}
    assert importers <= entry_points, importers


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, PURE)))
def test_the_pure_domain_imports_no_io_layer(module: str) -> None:
    """Transitively: a pure module reaches only pure modules, and only calm stdlib modules."""
    seen, todo = {module}, [module]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    reached_io = sorted(m for m in seen if _under(m, IO_LAYERS))
    assert not reached_io, f"{module} reaches {reached_io}"
    assert all(_under(m, PURE) or m == PACKAGE for m in seen), sorted(seen)
    outside = {
        name.split(".")[0]
        for name in _imported_names(module, MODULES[module])
        if not name.startswith(PACKAGE)
    }
    assert outside <= PURE_STDLIB, f"{module} imports {sorted(outside - PURE_STDLIB)}"
