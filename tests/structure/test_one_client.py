"""One signing client: ``papi_sandbox.client`` is the only code of the repository that signs a
PAPI request; the CLI, the tests and the benchmarks go through it (issue 12: "an operator client
module replaces the copies in the CLI, the tests and the benchmarks"). An HMAC computed anywhere
else is a copy of the signer, except where the server itself checks a signature or seals its own
cookie."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.structure.test_function_length import ROOT, python_files

#: Files that may compute an HMAC, and why.
HMAC_ALLOWED = {
    "src/papi_sandbox/client.py": "the one signer of PAPI requests",
    "src/papi_sandbox/wire/auth.py": "the server checks a request's signature",
    "src/papi_sandbox/ui/session.py": "the dashboard's session cookie, not a PAPI request",
}


def _hmac_calls(path: Path) -> list[int]:
    """Lines of ``hmac.new``/``hmac.digest``/``hmac.HMAC`` calls (or those names imported from
    ``hmac``) in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "hmac"
        for alias in node.names
    }
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "hmac"
            and func.attr in {"new", "digest", "HMAC"}
        ) or (isinstance(func, ast.Name) and func.id in imported - {"compare_digest"}):
            lines.append(node.lineno)
    return lines


def test_only_the_client_signs_requests() -> None:
    files = [*python_files(ROOT), *sorted((ROOT / "tests").rglob("*.py"))]
    found = {}
    for path in files:
        where = path.relative_to(ROOT).as_posix()
        if where in HMAC_ALLOWED:
            continue
        lines = _hmac_calls(path)
        if lines:
            found[where] = lines
    assert found == {}, (
        "these files compute an HMAC of their own: sign through papi_sandbox.client"
        " (hmac_signature, signed_query, PapiClient) instead"
    )


def test_the_allowed_files_still_compute_one() -> None:
    """The list may only name files that need it."""
    for where in HMAC_ALLOWED:
        assert _hmac_calls(ROOT / where), where
