"""No function outside tests/ is longer than MAX_FUNCTION_LINES (issue 12).

Which files: every ``*.py`` of the repository but those under the top-level ``tests/``: src/,
bench/, and any script elsewhere (deploy/, .ci/). Left out, as not the project's code: .git, a
virtualenv (a directory holding ``pyvenv.cfg``, whatever its name) and the directories .gitignore
names (``bench/.node/``, caches, build output), so a fresh clone and a working tree measure alike.

How a function is measured: from its ``def`` line to its last line (``end_lineno``), decorators
left out, comments, docstrings and blank lines inside it counted. A function nested in another
is counted inside its parent (a factory of closures is as long as all of them), and is measured
on its own as well: a long closure is itself a long function. Lambdas and classes are not
functions here (a class's methods are).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Longest function allowed outside tests/, in lines.
MAX_FUNCTION_LINES = 70

#: Functions still longer, with their length when this test landed: (path below the repository
#: root, name).
#: This list must only shrink: remove a row when its function is split, never add one and never
#: raise a number. Each belongs to another piece of work under way (the lead sees it emptied).
ALLOWED_LONGER: dict[tuple[str, str], int] = {}


def _ignored_directories(root: Path) -> list[str]:
    """The directory patterns of ``root/.gitignore`` (lines ending in ``/``), without the slash."""
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        return []
    lines = (line.strip() for line in gitignore.read_text(encoding="utf-8").splitlines())
    return [line.rstrip("/") for line in lines if line.endswith("/") and not line.startswith("#")]


def python_files(root: Path) -> Iterator[Path]:
    """Every ``*.py`` below ``root`` outside ``root/tests`` and the directories named above."""
    ignored = [*_ignored_directories(root), ".git"]
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        kept = []
        for name in sorted(subdirectories):
            where = (here / name).relative_to(root).as_posix()
            if where == "tests" or (here / name / "pyvenv.cfg").exists():
                continue
            # A pattern holding a slash is anchored at the root; one without matches any level.
            if any(fnmatch(where if "/" in p else name, p.lstrip("/")) for p in ignored):
                continue
            kept.append(name)
        subdirectories[:] = kept
        yield from (here / name for name in sorted(files) if name.endswith(".py"))


def function_lengths(root: Path = ROOT) -> dict[tuple[str, str], int]:
    """(path below ``root``, qualified name) -> lines, for every function and method."""
    found: dict[tuple[str, str], int] = {}
    for path in python_files(root):
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


def test_every_python_file_outside_tests_is_measured(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("# output\nbuild/\nbench/.node/\n*.db\n", "utf-8")
    for where in (
        "src/p/m.py", "bench/b.py", "deploy/d.py", ".ci/c.py", "setup.py",  # measured
        "tests/t.py", "tests/sub/t.py", "build/x.py", "bench/.node/n/g.py",  # left out
        "venv/lib/site.py", ".git/hooks/h.py", "bench/notes.txt",
    ):  # fmt: skip
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / where).write_text("def f():\n    return 1\n", encoding="utf-8")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in python_files(tmp_path)) == [
        ".ci/c.py", "bench/b.py", "deploy/d.py", "setup.py", "src/p/m.py",
    ]  # fmt: skip


def test_the_repository_scan_reaches_the_service_and_the_benchmarks() -> None:
    measured = {where for where, _ in function_lengths()}
    assert {"src/papi_sandbox/cli.py", "bench/run.py", "bench/ledgerfill.py"} <= measured
    assert not any(where.startswith("tests/") for where in measured)
