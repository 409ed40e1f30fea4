"""docs/design.md's two trees (the package under "Layout", the store under "The store") name
the real files: every module and package of ``src/papi_sandbox`` and every module of
``src/papi_sandbox/store`` appears in its tree, and every file a tree names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "papi_sandbox"
DESIGN = ROOT / "docs" / "design.md"
#: A file or folder name as a tree writes it: ``store/``, ``app.py``.
NAME = re.compile(r"(?<![\w.`/])([a-z_][a-z0-9_]*(?:\.py|/))(?![\w`])")


def _tree(heading: str) -> str:
    """The first fenced block after ``heading``."""
    text = DESIGN.read_text(encoding="utf-8")
    after = text.split(f"\n{heading}\n", 1)[1]
    return after.split("```\n", 2)[1]


def _names(block: str) -> set[str]:
    """The names a tree's lines start with (and list, several to a line), not its prose; a
    name listed twice fails (two lines describing one file drift apart)."""
    names: list[str] = []
    for line in block.splitlines():
        column = re.match(r"\s*((?:[a-z_][a-z0-9_]*(?:\.py|/)[ ,]*)+)", line)
        if column:
            names += NAME.findall(column.group(1))
    twice = sorted({name for name in names if names.count(name) > 1})
    assert twice == [], f"design.md's tree lists these twice: {twice}"
    return set(names)


def _modules(folder: Path) -> set[str]:
    found = {p.name for p in folder.glob("*.py") if not p.name.startswith("__")}
    found |= {f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").exists()}
    return found


def test_the_package_tree_names_every_module() -> None:
    block = _tree("## Layout")
    named = _names(block)
    top = {n for n in named if n in _modules(PACKAGE) or "/" in n}
    assert _modules(PACKAGE) - top == set(), "add these to design.md's Layout tree"
    for name in named:
        where = [PACKAGE / name, *PACKAGE.glob(f"*/{name}")]
        assert any(p.exists() for p in where), f"design.md's Layout tree names {name}"


def test_the_store_tree_names_every_store_module() -> None:
    named = _names(_tree("## The store: one set of statements, two thin dialects"))
    store = {p.name for p in (PACKAGE / "store").glob("*.py")}
    assert store - named == set(), "add these to design.md's store tree"
    assert named - store - {"store/"} == set(), "design.md's store tree names missing files"
