"""The README's configuration table (and its Chinese twin) lists every option of the one
settings spec (``papi_sandbox.settings.Settings``), as ``papi-sandbox serve --help`` does, with
its flag, its variable and, for a number, its default; and names no option that does not exist.

An option added to the spec without its row (or a row left behind by a renamed option) fails
here, so the table a user reads and ``--help`` cannot drift apart.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from papi_sandbox import secretbox, settings

ROOT = Path(__file__).resolve().parents[2]
READMES = ("README.md", "README.zh-CN.md")
_FLAG = re.compile(r"--(?:no-)?([a-z0-9-]+)")
_ENV = re.compile(r"PAPI_SANDBOX_[A-Z0-9_]+")
_NUMBER = re.compile(r"`([0-9]+(?:\.[0-9]+)?)`")
#: Variables of the table that are not options of ``serve`` (read by the key box itself).
OTHER_VARIABLES = {secretbox.SECRET_KEY_ENV}


def _rows(readme: str) -> list[list[str]]:
    """The configuration table's rows (cells), the header and rule left out."""
    lines = (ROOT / readme).read_text(encoding="utf-8").splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line == "## Configuration" or line.endswith('<a id="configuration"></a>')
    )
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    return table[2:]


def _options(readme: str) -> dict[str, list[str]]:
    """Option name (``max_connections``) -> its row's cells, from flags and variables."""
    found: dict[str, list[str]] = {}
    for cells in _rows(readme):
        names = {m.replace("-", "_") for m in _FLAG.findall(cells[0])}
        names |= {
            env.removeprefix(settings.ENV_PREFIX).lower()
            for env in _ENV.findall(cells[1])
            if env not in OTHER_VARIABLES
        }
        for name in names:
            found[name] = cells
    return found


@pytest.mark.parametrize("readme", READMES)
def test_the_table_lists_every_option_with_its_flag_and_variable(readme: str) -> None:
    options = _options(readme)
    missing = sorted(set(settings.Settings.model_fields) - set(options))
    assert not missing, f"{readme}'s configuration table lacks {missing}"
    for name, cells in options.items():
        assert settings.env_name(name) in cells[1], (readme, name, cells)
        if name not in settings.ENV_ONLY:
            assert settings.flag_name(name) in cells[0], (readme, name, cells)


@pytest.mark.parametrize("readme", READMES)
def test_the_table_names_no_option_that_does_not_exist(readme: str) -> None:
    unknown = sorted(set(_options(readme)) - set(settings.Settings.model_fields))
    assert not unknown, f"{readme}'s configuration table names {unknown}, not in the spec"


@pytest.mark.parametrize("readme", READMES)
def test_a_numeric_default_in_the_table_is_the_spec_s(readme: str) -> None:
    for name, cells in _options(readme).items():
        default = settings.Settings.model_fields[name].default
        numbers = _NUMBER.findall(cells[2])
        if len(_FLAG.findall(cells[0])) != 1 or isinstance(default, bool):
            continue  # a row of two options (host / port) or a switch (on / off)
        if isinstance(default, int | float):
            assert [Decimal(n) for n in numbers] == [Decimal(str(default))], (readme, name)
