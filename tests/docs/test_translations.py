"""The Chinese docs stay in step with the English ones.

Rule (docs/design.md, "Docs in two languages"): every heading of ``X.zh-CN.md`` ends with
``<a id="SLUG"></a>``, SLUG being the GitHub anchor of the English heading it translates, and the
Chinese file has exactly the English file's headings, as (level, anchor) pairs in the same order.
So an English heading added, renamed, moved or removed without its Chinese counterpart fails here,
and ``X.zh-CN.md#quick-start`` links the same section as ``X.md#quick-start``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: User-facing docs that must have a Chinese version (any other doc with one is checked too).
REQUIRED = (
    "README.md",
    "docs/semantics.md",
    "docs/operations.md",
    "docs/jobs.md",
    "docs/security.md",
    "docs/scaling.md",
    "docs/testing.md",
)

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_ATX = re.compile(r"^\s{0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_ANCHOR = re.compile(r'[ \t]*<a id="([^"]+)"></a>[ \t]*$')
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_MAX_DOC_BYTES = 1_000_000


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    key: str  # the English heading's GitHub anchor (for a Chinese heading: its <a id>)
    line: int

    def show(self) -> str:
        return f"{'#' * self.level} {self.text}"


def github_slug(text: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, every character that is not
    a letter, digit, '_', '-' or space dropped, spaces made '-'."""
    rendered = _LINK.sub(r"\1", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", rendered.strip().lower()).replace(" ", "-")


def headings(markdown: str, *, translated: bool) -> tuple[list[Heading], list[str]]:
    """The ATX headings of a document outside fenced code, and the problems found (a translated
    heading without its anchor). English keys get GitHub's -1, -2 suffixes for repeats."""
    found: list[Heading] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    fence: str | None = None
    for number, line in enumerate(markdown.splitlines(), start=1):
        opened = _FENCE.match(line)
        if opened:
            if fence is None:
                fence = opened.group(1)
            elif opened.group(1) == fence:
                fence = None
            continue
        if fence is not None:
            continue
        match = _ATX.match(line)
        if not match:
            continue
        level, text = len(match.group(1)), match.group(2)
        if translated:
            anchor = _ANCHOR.search(text)
            if not anchor:
                problems.append(f'line {number}: "{line}" has no <a id="..."></a> anchor')
                continue
            text, key = text[: anchor.start()], anchor.group(1)
        else:
            key = github_slug(text)
            repeats = seen.get(key, 0)
            seen[key] = repeats + 1
            if repeats:
                key = f"{key}-{repeats}"
        found.append(Heading(level, text, key, number))
    return found, problems


def compare(english: str, chinese: str, en_name: str, zh_name: str) -> list[str]:
    """Every way the Chinese headings differ from the English ones, as readable problems (empty
    when they correspond one to one, in order, level by level)."""
    en, _ = headings(english, translated=False)
    zh, problems = headings(chinese, translated=True)
    problems = [f"{zh_name} {p}" for p in problems]
    en_keys = [(h.level, h.key) for h in en]
    zh_keys = [(h.level, h.key) for h in zh]
    matcher = difflib.SequenceMatcher(a=en_keys, b=zh_keys, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        for i in range(a0, a1):
            h = en[i]
            after = f'after the counterpart of "{en[i - 1].show()}"' if i else "first"
            problems.append(
                f'{en_name} line {h.line}: English heading "{h.show()}" has no Chinese counterpart'
                f' in {zh_name}: add "{"#" * h.level} <translation> <a id="{h.key}"></a>" {after}'
            )
        for j in range(b0, b1):
            h = zh[j]
            problems.append(
                f'{zh_name} line {h.line}: "{h.show()}" (level {h.level}, anchor "{h.key}") matches'
                f" no English heading of {en_name} at that place: remove, move or re-anchor it"
            )
    return problems


def translated_pairs() -> list[tuple[Path, Path]]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    english = [p for p in docs if not p.name.endswith(".zh-CN.md")]
    return [(p, p.with_name(p.stem + ".zh-CN.md")) for p in english]


def _read(path: Path) -> str:
    data = path.read_bytes()
    assert len(data) <= _MAX_DOC_BYTES, f"{path} is larger than {_MAX_DOC_BYTES} bytes"
    return data.decode("utf-8")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


PAIRS = [(en, zh) for en, zh in translated_pairs() if zh.exists()]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_docs_have_a_chinese_version(name: str) -> None:
    english = ROOT / name
    chinese = english.with_name(english.stem + ".zh-CN.md")
    assert english.exists(), name
    assert chinese.exists(), f"{name} has no Chinese version {_rel(chinese)}"


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=[_rel(en) for en, _ in PAIRS])
def test_every_english_heading_has_its_chinese_counterpart(english: Path, chinese: Path) -> None:
    problems = compare(_read(english), _read(chinese), _rel(english), _rel(chinese))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=[_rel(en) for en, _ in PAIRS])
def test_each_language_links_to_the_other(english: Path, chinese: Path) -> None:
    en_targets = {t for _, t in _LINK.findall(_read(english))}
    zh_targets = {t for _, t in _LINK.findall(_read(chinese))}
    assert chinese.name in en_targets, f"{_rel(english)} does not link to {chinese.name}"
    assert english.name in zh_targets, f"{_rel(chinese)} does not link to {english.name}"


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=[_rel(en) for en, _ in PAIRS])
def test_relative_links_of_a_translation_resolve(english: Path, chinese: Path) -> None:
    """A link of a Chinese doc to a file of the project (and its #anchor, for a translated doc)
    points at something that exists."""
    broken = []
    for _, target in _LINK.findall(_read(chinese)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path_part, _, fragment = target.partition("#")
        resolved = (chinese.parent / path_part).resolve() if path_part else chinese
        if not resolved.exists():
            broken.append(target)
        elif fragment and resolved.suffix == ".md":
            found, _ = headings(_read(resolved), translated=resolved.name.endswith(".zh-CN.md"))
            if fragment not in {h.key for h in found}:
                broken.append(target)
    assert not broken, f"{_rel(chinese)}: broken links {broken}"


_FILE_NAMED = re.compile(r"^(?:#|//) ([\w.-]+\.\w+)$")


def named_code_blocks(markdown: str) -> dict[str, str]:
    """Fenced code blocks whose first line names a file (``# test_x.py``, ``// x.js``): the
    runnable recipes, by file name, dedented."""
    blocks: dict[str, str] = {}
    lines: list[str] | None = None
    fence = indent = ""
    for line in markdown.splitlines():
        opened = _FENCE.match(line)
        if lines is None:
            if opened:
                lines, fence, indent = [], opened.group(1), line[: len(line) - len(line.lstrip())]
            continue
        if opened and line.strip() == fence:
            named = _FILE_NAMED.match(lines[0].strip()) if lines else None
            if named:
                blocks[named.group(1)] = "\n".join(x.removeprefix(indent) for x in lines)
            lines = None
            continue
        lines.append(line)
    return blocks


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=[_rel(en) for en, _ in PAIRS])
def test_runnable_recipes_are_the_same_in_both_languages(english: Path, chinese: Path) -> None:
    """A code block that names its file is a recipe the tests run from the English page; the
    Chinese page carries it verbatim, so what a Chinese reader copies is what was tested."""
    en, zh = named_code_blocks(_read(english)), named_code_blocks(_read(chinese))
    assert sorted(zh) == sorted(en), f"{_rel(chinese)}: recipes {sorted(zh)}, English {sorted(en)}"
    for name, code in en.items():
        assert zh[name] == code, f"{_rel(chinese)}: {name} differs from {_rel(english)}"


_PROJECT_PATH = re.compile(r"`((?:tests|bench|src|deploy|docs)/[\w/.-]+\.\w+)(?:::\w+)?`")


#: Outputs a command writes (``make bench``), ignored by git: absent from a fresh clone.
GENERATED = ("bench/results/",)


@pytest.mark.parametrize(
    "doc", [en for en, _ in translated_pairs()] + [zh for _, zh in PAIRS], ids=_rel
)
def test_files_a_doc_names_exist(doc: Path) -> None:
    """A project file named in backticks (`tests/jobs/test_jobs.py`) exists, so a move is seen in
    both languages."""
    named = [p for p in _PROJECT_PATH.findall(_read(doc)) if not p.startswith(GENERATED)]
    missing = [p for p in named if not (ROOT / p).exists()]
    assert not missing, f"{_rel(doc)} names files that do not exist: {missing}"


# -- the rule itself --------------------------------------------------------------------------

EN = """# Title
Text.
## Quick start
```sh
# a shell comment, not a heading
```
### `verify` on a large ledger
## Quick start
"""

ZH = """# 标题 <a id="title"></a>
正文。
## 快速开始 <a id="quick-start"></a>
### 在大账本上运行 `verify` <a id="verify-on-a-large-ledger"></a>
## 快速开始 <a id="quick-start-1"></a>
"""


def test_the_rule_accepts_a_faithful_translation() -> None:
    assert compare(EN, ZH, "en.md", "zh.md") == []


def test_the_rule_catches_a_heading_left_untranslated() -> None:
    problems = compare(EN + "## Backups\n", ZH, "en.md", "zh.md")
    assert len(problems) == 1
    assert 'English heading "## Backups" has no Chinese counterpart' in problems[0]
    assert '<a id="backups"></a>' in problems[0]


def test_the_rule_catches_a_removed_level_change_and_reorder() -> None:
    removed = EN.replace("### `verify` on a large ledger\n", "")
    assert any("matches no English heading" in p for p in compare(removed, ZH, "en", "zh"))
    demoted = ZH.replace("### 在大账本", "## 在大账本")
    assert compare(EN, demoted, "en", "zh")
    swapped = ZH.replace('"quick-start"', '"x"').replace('"quick-start-1"', '"quick-start"')
    assert compare(EN, swapped.replace('"x"', '"quick-start-1"'), "en", "zh")


def test_the_rule_wants_an_anchor_on_every_chinese_heading() -> None:
    problems = compare(EN, ZH + "## 备份\n", "en", "zh")
    assert any("has no <a id=" in p for p in problems)


def test_named_code_blocks() -> None:
    doc = (
        "```python\n# test_a.py\nx = 1\n```\n```sh\nmake run\n```\n"
        "  ```js\n  // b.js\n  go()\n  ```\n"
    )
    assert named_code_blocks(doc) == {"test_a.py": "# test_a.py\nx = 1", "b.js": "// b.js\ngo()"}


def test_github_slugs() -> None:
    assert github_slug("Repay futures negative balance") == "repay-futures-negative-balance"
    assert github_slug("Weight and timing (where Binance leaves a choice)") == (
        "weight-and-timing-where-binance-leaves-a-choice"
    )
    assert github_slug("Worked example: curl and openssl") == "worked-example-curl-and-openssl"
    assert github_slug("`papi-sandbox verify`") == "papi-sandbox-verify"
