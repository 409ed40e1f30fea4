"""Tests import what they share as packages (``tests.support``, ``tests.clients...``,
``bench.<script>``), never by putting a folder on ``sys.path`` (issue 12): a test that does so
changes what every later test of the same process imports under a bare name (``run``,
``stream``, ``stack``...)."""

from __future__ import annotations

import ast

from tests.structure.test_function_length import ROOT


def _sys_path_changes(tree: ast.AST) -> list[int]:
    """Lines that change ``sys.path`` (a method call on it, or an assignment to it)."""
    lines = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t for t in targets if isinstance(t, ast.Attribute)), None)
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "path"
            and isinstance(target.value, ast.Name)
            and target.value.id == "sys"
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_test_changes_sys_path() -> None:
    found = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        lines = _sys_path_changes(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if lines:
            found[path.relative_to(ROOT).as_posix()] = lines
    assert found == {}, "import shared helpers as packages (tests.x, bench.x) instead"


def test_the_check_sees_the_usual_spellings() -> None:
    source = "import sys\nsys.path.insert(0, 'x')\nsys.path.append('y')\nsys.path = []\n"
    assert _sys_path_changes(ast.parse(source)) == [2, 3, 4]
