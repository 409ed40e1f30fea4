"""The client recipes of docs/testing.md, run as written: each code block that starts with a file
name becomes that file in a fresh folder outside the project, and pytest runs there in a new
process with the kit's plugin loaded from its entry point, as in a user's own suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.docs.test_translations import named_code_blocks

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"
#: The Node package the Node recipe uses, installed once into NODE_DIR.
NODE_PACKAGE, NODE_VERSION = "binance", "3.6.5"
NODE_DIR = Path(__file__).resolve().parent / ".node"
INNER_TIMEOUT_S = 240


#: File name -> text of every block of the page that starts with a file name.
RECIPES = named_code_blocks(DOC.read_text())
TESTS = sorted(name for name in RECIPES if name.startswith("test_"))


def test_the_page_has_every_recipe() -> None:
    assert TESTS == [
        "test_papi_repay.py",
        "test_with_binance_sdk.py",
        "test_with_ccxt.py",
        "test_with_node_binance.py",
        "test_with_python_binance.py",
        "test_with_unittest.py",
    ]
    assert "papi_repay.js" in RECIPES


def node_modules() -> tuple[Path | None, str]:
    """The Node package installed with npm into tests/clients/.node (once), or None and the
    reason where node or npm is missing."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return None, f"{tool} is not installed: the Node binance recipe does not run"
    manifest = NODE_DIR / "node_modules" / NODE_PACKAGE / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != NODE_VERSION:
        done = subprocess.run(
            [
                *("npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"),
                *("--no-save", "--loglevel", "error", f"{NODE_PACKAGE}@{NODE_VERSION}"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return NODE_DIR / "node_modules", ""


@dataclass
class SuiteRun:
    """One pytest run over every recipe: its output, and each test's outcome by file name."""

    output: str
    outcomes: dict[str, str]
    node_skip_reason: str


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    """Every recipe in one folder, run once by a new pytest process (one sandbox for all)."""
    folder = tmp_path_factory.mktemp("user-suite")
    for name, text in RECIPES.items():
        (folder / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    modules, node_skip_reason = node_modules()
    args = ["--deselect", "test_with_node_binance.py"] if modules is None else []
    if modules is not None:
        env["NODE_PATH"] = str(modules)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider"),
            *("--junitxml", "report.xml", *args),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=INNER_TIMEOUT_S,
    )
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(folder / "report.xml").iter("testcase"):
        name = case.get("classname", "").partition(".")[0] + ".py"  # module[.Class]
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            if case.find(kind) is not None:
                outcome = kind
        if outcomes.get(name, "passed") == "passed":  # a file passes when all its tests do
            outcomes[name] = outcome
    return SuiteRun(done.stdout[-8000:] + done.stderr[-2000:], outcomes, node_skip_reason)


@pytest.mark.parametrize("recipe", TESTS)
def test_recipe_passes_in_a_suite_of_its_own(recipe: str, suite: SuiteRun) -> None:
    if recipe == "test_with_node_binance.py" and suite.node_skip_reason:
        pytest.skip(suite.node_skip_reason)
    assert suite.outcomes.get(recipe) == "passed", suite.output
