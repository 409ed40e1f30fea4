"""Event building (stream/events.py), table-tested: each kind of journal entry -> the exact
Binance user-data events it produces (docs/semantics.md, "User data stream events")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from papi_sandbox.ledger.model import (
    SYSTEM_ACCOUNT_ID,
    Entry,
    EntryType,
    Posting,
    Wallet,
    committed_entry,
)
from papi_sandbox.stream.events import EVENT_RULES, entry_events, listen_key_expired

D = Decimal
A = 7  # the account
S = SYSTEM_ACCOUNT_ID
E_MS, T_MS, TRAN = 1_700_000_000_123, 1_700_000_000_100, 42


def P(account: int, wallet: Wallet, asset: str, amount: str) -> Posting:
    return Posting(account, wallet, asset, D(amount))


def um(reason: str, *rows: tuple[str, str, str], fs: str = "UM") -> dict[str, Any]:
    return {
        "e": "ACCOUNT_UPDATE",
        "fs": fs,
        "E": E_MS,
        "T": T_MS,
        "i": "",
        "a": {
            "m": reason,
            "B": [{"a": a, "wb": wb, "cw": wb, "bc": bc} for a, wb, bc in rows],
            "P": [],
        },
    }


def bu(asset: str, delta: str) -> dict[str, Any]:
    return {"e": "balanceUpdate", "E": E_MS, "a": asset, "d": delta, "U": TRAN, "T": T_MS}


def oap(*rows: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "e": "outboundAccountPosition",
        "E": E_MS,
        "u": T_MS,
        "U": TRAN,
        "B": [{"a": a, "f": free, "l": locked} for a, free, locked in rows],
    }


BEFORE = {
    (Wallet.MARGIN, "USDT"): D("100"),
    (Wallet.MARGIN_LOCKED, "USDT"): D("5"),
    (Wallet.UM, "USDT"): D("-30.5"),
    (Wallet.CM, "USDT"): D("-2"),
    (Wallet.MARGIN, "BNB"): D("1"),
    (Wallet.UM, "BNB"): D("0.5"),
    (Wallet.CM, "BTC"): D("0.1"),
}

CASES: list[tuple[str, EntryType, list[Posting], list[dict[str, Any]]]] = [
    (
        "operator UM loss",
        EntryType.REALIZED_PNL,
        [P(A, Wallet.UM, "USDT", "-12.25"), P(S, Wallet.EXTERNAL, "USDT", "12.25")],
        [um("ORDER", ("USDT", "-42.75000000", "0.00000000"))],
    ),
    (
        "commission",
        EntryType.COMMISSION,
        [P(A, Wallet.UM, "USDT", "-0.01"), P(S, Wallet.EXTERNAL, "USDT", "0.01")],
        [um("ORDER", ("USDT", "-30.51000000", "0.00000000"))],
    ),
    (
        "funding fee",
        EntryType.FUNDING_FEE,
        [P(A, Wallet.UM, "USDT", "-0.5"), P(S, Wallet.EXTERNAL, "USDT", "0.5")],
        [um("FUNDING_FEE", ("USDT", "-31.00000000", "-0.50000000"))],
    ),
    (
        "deposit into cross margin",
        EntryType.DEPOSIT,
        [P(A, Wallet.MARGIN, "USDT", "0.00000001"), P(S, Wallet.EXTERNAL, "USDT", "-0.00000001")],
        [bu("USDT", "0.00000001"), oap(("USDT", "100.00000001", "5.00000000"))],
    ),
    (
        "withdraw from CM",
        EntryType.WITHDRAW,
        [P(A, Wallet.CM, "BTC", "-0.1"), P(S, Wallet.EXTERNAL, "BTC", "0.1")],
        [um("WITHDRAW", ("BTC", "0.00000000", "-0.10000000"), fs="CM")],
    ),
    (
        "manual repay, UM then CM",
        EntryType.REPAY_FUTURES_NEGATIVE_BALANCE,
        [
            P(A, Wallet.MARGIN, "USDT", "-30.5"),
            P(A, Wallet.UM, "USDT", "30.5"),
            P(A, Wallet.MARGIN, "USDT", "-2"),
            P(A, Wallet.CM, "USDT", "2"),
        ],
        [
            bu("USDT", "-32.50000000"),
            oap(("USDT", "67.50000000", "5.00000000")),
            um("MARGIN_TRANSFER", ("USDT", "0.00000000", "30.50000000")),
            um("MARGIN_TRANSFER", ("USDT", "0.00000000", "2.00000000"), fs="CM"),
        ],
    ),
    (
        "auto-repay",
        EntryType.AUTO_REPAY_FUTURES,
        [P(A, Wallet.MARGIN, "USDT", "-30.5"), P(A, Wallet.UM, "USDT", "30.5")],
        [
            bu("USDT", "-30.50000000"),
            oap(("USDT", "69.50000000", "5.00000000")),
            um("MARGIN_TRANSFER", ("USDT", "0.00000000", "30.50000000")),
        ],
    ),
    (
        "auto-collection of two assets",
        EntryType.AUTO_COLLECTION,
        [
            P(A, Wallet.CM, "BTC", "-0.1"),
            P(A, Wallet.MARGIN, "BTC", "0.1"),
            P(A, Wallet.UM, "BNB", "-0.5"),
            P(A, Wallet.MARGIN, "BNB", "0.5"),
        ],
        [
            bu("BTC", "0.10000000"),
            bu("BNB", "0.50000000"),
            oap(("BTC", "0.10000000", "0.00000000"), ("BNB", "1.50000000", "0.00000000")),
            um("MARGIN_TRANSFER", ("BNB", "0.00000000", "-0.50000000")),
            um("MARGIN_TRANSFER", ("BTC", "0.00000000", "-0.10000000"), fs="CM"),
        ],
    ),
    (
        "asset collection",
        EntryType.ASSET_COLLECTION,
        [P(A, Wallet.CM, "BTC", "-0.05"), P(A, Wallet.MARGIN, "BTC", "0.05")],
        [
            bu("BTC", "0.05000000"),
            oap(("BTC", "0.05000000", "0.00000000")),
            um("MARGIN_TRANSFER", ("BTC", "0.05000000", "-0.05000000"), fs="CM"),
        ],
    ),
    (
        "BNB transfer to UM",
        EntryType.BNB_TRANSFER,
        [P(A, Wallet.MARGIN, "BNB", "-1"), P(A, Wallet.UM, "BNB", "1")],
        [
            bu("BNB", "-1.00000000"),
            oap(("BNB", "0.00000000", "0.00000000")),
            um("MARGIN_TRANSFER", ("BNB", "1.50000000", "1.00000000")),
        ],
    ),
    (
        "negative-balance interest",
        EntryType.NEGATIVE_BALANCE_INTEREST,
        [P(A, Wallet.UM, "USDT", "-0.01525"), P(S, Wallet.EXTERNAL, "USDT", "0.01525")],
        [um("ADJUSTMENT", ("USDT", "-30.51525000", "-0.01525000"))],
    ),
]


@pytest.mark.parametrize(
    ("name", "entry_type", "postings", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_entry_events(
    name: str, entry_type: EntryType, postings: list[Posting], expected: list[dict[str, Any]]
) -> None:
    entry = Entry(TRAN, entry_type, T_MS, A, tuple(postings))
    assert entry_events(committed_entry(entry, BEFORE), E_MS) == expected


def test_every_entry_type_has_a_rule() -> None:
    assert set(EVENT_RULES) == set(EntryType)
    assert {c[1] for c in CASES} == set(EntryType)


def test_unknown_entry_type_is_an_adjustment_and_other_accounts_are_not_reported() -> None:
    entry = Entry(
        TRAN,
        "SOMETHING_NEW",
        T_MS,
        A,
        (P(A, Wallet.UM, "USDT", "1"), P(S, Wallet.EXTERNAL, "USDT", "-1")),
    )
    assert entry_events(committed_entry(entry, {}), E_MS) == [
        um("ADJUSTMENT", ("USDT", "1.00000000", "1.00000000"))
    ]


def test_listen_key_expired() -> None:
    assert listen_key_expired("abc", E_MS) == {
        "e": "listenKeyExpired",
        "E": E_MS,
        "listenKey": "abc",
    }


def test_a_fills_entry_reports_its_positions_in_p_and_funding_reports_none() -> None:
    from papi_sandbox.trading.model import Position, PositionReport, PositionSide, TradedEntry

    loss = (P(A, Wallet.UM, "USDT", "-110"), P(S, Wallet.EXTERNAL, "USDT", "110"))
    pnl = Entry(TRAN, EntryType.REALIZED_PNL, T_MS, A, loss)
    short = Position(A, "ETHUSDT", PositionSide.SHORT, D("-0.5"), D("3000"), D("0.75"), T_MS,
                     D("12.5"))  # fmt: skip
    traded = TradedEntry(
        pnl, committed_entry(pnl, {}).balances, (PositionReport(short, D("3100"), D("0.0005")),)
    )
    (event,) = entry_events(traded, E_MS)
    # up = -0.5 x (3100 - 3000); bep (short) = (0.5 x 3000 - 0.75) / (0.5 x 1.0005)
    assert event["a"]["P"] == [
        {"s": "ETHUSDT", "pa": "-0.5", "ep": "3000", "cr": "12.5", "up": "-50", "ps": "SHORT",
         "bep": "2997.00149925"}
    ]  # fmt: skip
    fee = (P(A, Wallet.UM, "USDT", "-1"), P(S, Wallet.EXTERNAL, "USDT", "1"))
    funding = Entry(TRAN, EntryType.FUNDING_FEE, T_MS, A, fee)
    (event,) = entry_events(committed_entry(funding, {}), E_MS)
    assert (event["a"]["m"], event["a"]["P"]) == ("FUNDING_FEE", [])
