"""No function of the service is longer than MAX_FUNCTION_LINES (issue 12).

How a function is measured: from its ``def`` line to its last line (``end_lineno``), decorators
left out, comments, docstrings and blank lines inside it counted. A function nested in another
is counted inside its parent (a factory of closures is as long as all of them), and is measured
on its own as well: a long closure is itself a long function. Lambdas and classes are not
functions here (a class's methods are).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Longest function allowed in src/, in lines.
MAX_FUNCTION_LINES = 70

#: Functions still longer, with their length when this test landed: (path below src/, name).
#: This list must only shrink: remove a row when its function is split, never add one and never
#: raise a number. Each belongs to another piece of work under way (the lead sees it emptied).
ALLOWED_LONGER: dict[tuple[str, str], int] = {}


def function_lengths(root: Path = SRC) -> dict[tuple[str, str], int]:
    """(path below ``root``, qualified name) -> lines, for every function and method."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()

        def visit(node: ast.AST, prefix: str, where: str = where) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    name = prefix + child.name
                    assert child.end_lineno is not None
                    found[(where, name)] = child.end_lineno - child.lineno + 1
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")
                else:
                    visit(child, prefix)

        visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), "")
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    lengths = function_lengths()
    too_long = {
        f"{where}: {name} has {lines} lines"
        for (where, name), lines in lengths.items()
        if lines > ALLOWED_LONGER.get((where, name), MAX_FUNCTION_LINES)
    }
    assert not too_long, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them; never grow the allowlist):\n"
        + "\n".join(sorted(too_long))
    )


def test_the_allowlist_only_names_functions_still_too_long() -> None:
    # A row whose function was split (or renamed, or moved) goes, so the list can only shrink.
    lengths = function_lengths()
    stale = {
        f"{where}: {name}"
        for (where, name), allowed in ALLOWED_LONGER.items()
        if lengths.get((where, name), 0) <= MAX_FUNCTION_LINES
    }
    assert not stale, "remove these rows from ALLOWED_LONGER:\n" + "\n".join(sorted(stale))


def test_the_measure_counts_nested_functions_inside_their_parent_and_alone(
    tmp_path: Path,
) -> None:
    (tmp_path / "m.py").write_text(
        "class C:\n"
        "    @staticmethod\n"
        "    def method():\n"
        "        x = 1\n"
        "\n"
        "        async def inner():\n"
        "            return x\n"
        "\n"
        "        return inner\n",
        encoding="utf-8",
    )
    assert function_lengths(tmp_path) == {("m.py", "C.method"): 7, ("m.py", "C.method.inner"): 2}
