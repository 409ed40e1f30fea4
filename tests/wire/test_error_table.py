"""One error table: every domain refusal maps to one Binance code and status, on every surface,
and no Binance code is written anywhere else in the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from papi_sandbox.ledger.collection import AssetNotCollectable
from papi_sandbox.ledger.model import (
    AmountLimitExceeded,
    BadKeyRequest,
    InsufficientBalance,
    KeyLimitReached,
    LedgerError,
    UnknownAccount,
)
from papi_sandbox.wire import errors

SRC = Path(__file__).resolve().parents[2] / "src" / "papi_sandbox"


@pytest.mark.parametrize(
    ("exc", "status", "code", "msg"),
    [
        (InsufficientBalance("MARGIN holds 1 USDT"), 400, -2018, "Balance is insufficient."),
        (LedgerError("amount must not be zero"), 400, -1102, "amount must not be zero"),
        (AmountLimitExceeded("over 10^15"), 400, -1102, "over 10^15"),
        (UnknownAccount.of(7), 404, -1000, "account 7 does not exist"),
        (KeyLimitReached("30 live keys"), 400, -1101, "Too many API keys: 30 live keys."),
        (BadKeyRequest("publicKey is mandatory"), 400, -1102, "publicKey is mandatory."),
        (AssetNotCollectable("BNB is not collected"), 400, -1130, None),
    ],
)
def test_each_refusal_has_one_answer(
    exc: LedgerError, status: int, code: int, msg: str | None
) -> None:
    error = errors.refusal(exc)
    assert (error.status, error.code) == (status, code)
    if msg is not None:
        assert error.msg == msg


def test_the_operator_sees_why() -> None:
    exc = InsufficientBalance("MARGIN free balance may not go below zero")
    assert errors.refusal(exc).msg == "Balance is insufficient."  # Binance's, exactly
    explained = errors.refusal(exc, explain=True)
    assert explained.msg == "Balance is insufficient: MARGIN free balance may not go below zero."
    assert explained.code == errors.refusal(exc).code


def _code_literals(path: Path) -> list[int]:
    """Negative integer literals in Binance's code range (-1000..-9999), outside docstrings."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int)
            and 1000 <= node.operand.value <= 9999
        ):
            found.append(-node.operand.value)
    return found


def test_no_binance_code_is_written_outside_the_error_table() -> None:
    offenders = {
        str(path.relative_to(SRC)): codes
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "wire" / "errors.py" and (codes := _code_literals(path))
    }
    assert offenders == {}


def _domain_refusal_names() -> set[str]:
    """The names of LedgerError and every subclass of it in the package (TradingRefused too)."""
    import importlib
    import pkgutil

    import papi_sandbox
    from papi_sandbox.ledger.model import LedgerError

    for module in pkgutil.walk_packages(papi_sandbox.__path__, "papi_sandbox."):
        if module.name.endswith("__main__"):  # runs the command line
            continue
        importlib.import_module(module.name)
    names, todo = set(), [LedgerError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def test_the_public_path_maps_a_domain_refusal_in_one_place() -> None:
    """PublicApi._handle turns every LedgerError into its answer (errors.refusal); an endpoint
    handler that catches one itself maps it a second time on the same path (issue 12:
    "InsufficientBalance is mapped twice on the same path"; asset-collection did so for
    AssetNotCollectable)."""
    domain = _domain_refusal_names()
    assert {"LedgerError", "InsufficientBalance", "AssetNotCollectable"} <= domain
    caught = {}
    for path in sorted((SRC / "api").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                kinds = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                for kind in kinds:
                    name = kind.id if isinstance(kind, ast.Name) else getattr(kind, "attr", "")
                    if name in domain:
                        caught.setdefault(path.name, []).append((node.lineno, name))
    assert [name for _, name in caught.pop("public.py", [])] == ["LedgerError"]
    assert caught == {}
