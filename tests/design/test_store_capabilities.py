"""The Store contract is typed (issue 12): what every store has is a method of
:class:`papi_sandbox.store.contract.Store`, called directly; what only some have is a
``runtime_checkable`` protocol (``KeyRevocations``, ``SharedJobStore``) tested with
``isinstance``. No code under ``src/`` probes a store with ``getattr`` or ``hasattr``: a probe
that finds nothing is silently skipped (health.py's readiness probe skipped the store's check
for any object without ``readiness``, and typed the store as ``Any``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "papi_sandbox"


def _is_store(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name == "store" or name.endswith("_store")


def _store_probes(tree: ast.AST) -> list[int]:
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"getattr", "hasattr"}
        and node.args
        and _is_store(node.args[0])
    )


def test_no_store_is_probed_with_getattr() -> None:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        lines = _store_probes(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if lines:
            found[path.relative_to(SRC).as_posix()] = lines
    assert found == {}, "call the Store method, or isinstance() a capability protocol"


def test_the_check_sees_the_usual_spellings() -> None:
    source = (
        "getattr(self.store, 'x', None)\nhasattr(store, 'y')\ngetattr(state.store, 'z')\n"
        "getattr(self.limiter, 'ping', None)\n"
    )
    assert _store_probes(ast.parse(source)) == [1, 2, 3]
