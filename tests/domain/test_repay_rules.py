"""The repay and adjustment rules as pure functions: examples from semantics.md and properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papi_sandbox import money
from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import (
    SYSTEM_ACCOUNT_ID,
    EntryType,
    InsufficientBalance,
    LedgerError,
    Posting,
    Wallet,
    is_balanced,
)

ACCOUNT = 7
D = Decimal


def balances(**by_key: str) -> dict[tuple[Wallet, str], Decimal]:
    """balances(MARGIN_USDT="10", UM_USDT="-3") -> {(MARGIN, USDT): 10, (UM, USDT): -3}"""
    result = {}
    for key, value in by_key.items():
        wallet, asset = key.rsplit("_", 1)
        result[(Wallet(wallet), asset)] = D(value)
    return result


def test_repay_um_first_then_cm() -> None:
    plan = rules.plan_repay(ACCOUNT, balances(MARGIN_USDT="100", UM_USDT="-60", CM_USDT="-70"))
    assert plan == [
        Posting(ACCOUNT, Wallet.MARGIN, "USDT", D("-60")),
        Posting(ACCOUNT, Wallet.UM, "USDT", D("60")),
        Posting(ACCOUNT, Wallet.MARGIN, "USDT", D("-40")),
        Posting(ACCOUNT, Wallet.CM, "USDT", D("40")),
    ]


def test_repay_assets_in_sorted_order_and_same_asset_only() -> None:
    plan = rules.plan_repay(
        ACCOUNT, balances(MARGIN_USDT="5", UM_USDT="-1", MARGIN_BTC="1", CM_BTC="-0.5", UM_ETH="-2")
    )
    assert [(p.wallet, p.asset, p.amount) for p in plan] == [
        (Wallet.MARGIN, "BTC", D("-0.5")),
        (Wallet.CM, "BTC", D("0.5")),
        (Wallet.MARGIN, "USDT", D("-1")),
        (Wallet.UM, "USDT", D("1")),
    ]  # ETH has no margin ETH: left negative, never paid with USDT or BTC


def test_repay_nothing_negative_is_an_empty_plan() -> None:
    assert rules.plan_repay(ACCOUNT, balances(MARGIN_USDT="5", UM_USDT="3")) == []
    assert rules.plan_repay(ACCOUNT, {}) == []


def test_repay_negative_without_margin_is_insufficient() -> None:
    with pytest.raises(InsufficientBalance):
        rules.plan_repay(ACCOUNT, balances(UM_USDT="-1", MARGIN_BTC="3"))


def test_repay_never_uses_locked() -> None:
    with pytest.raises(InsufficientBalance):
        rules.plan_repay(ACCOUNT, balances(UM_USDT="-1", MARGIN_LOCKED_USDT="100"))


def test_repay_partial() -> None:
    plan = rules.plan_repay(ACCOUNT, balances(MARGIN_USDT="0.00000001", UM_USDT="-5"))
    assert [p.amount for p in plan] == [D("-0.00000001"), D("0.00000001")]


def test_repay_at_ten_to_the_fifteen() -> None:
    big = D("999999999999999.99999999")
    after = rules.apply(
        balances(MARGIN_USDT=str(money.MAX_AMOUNT), UM_USDT=str(-big)),
        rules.plan_repay(ACCOUNT, balances(MARGIN_USDT=str(money.MAX_AMOUNT), UM_USDT=str(-big))),
    )
    assert after[(Wallet.MARGIN, "USDT")] == D("0.00000001")
    assert after[(Wallet.UM, "USDT")] == 0


def test_adjustment_posts_against_the_system_account() -> None:
    plan = rules.plan_adjustment(ACCOUNT, {}, Wallet.UM, "USDT", D("-2.5"), EntryType.COMMISSION)
    assert plan == [
        Posting(ACCOUNT, Wallet.UM, "USDT", D("-2.5")),
        Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, "USDT", D("2.5")),
    ]


@pytest.mark.parametrize(
    ("wallet", "amount", "reason", "error"),
    [
        (Wallet.MARGIN, "-0.00000001", EntryType.WITHDRAW, InsufficientBalance),
        (Wallet.UM, "0", EntryType.REALIZED_PNL, LedgerError),
        (Wallet.UM, "-1", EntryType.DEPOSIT, LedgerError),
        (Wallet.UM, "1", EntryType.WITHDRAW, LedgerError),
        (Wallet.UM, "1000000000000000", EntryType.DEPOSIT, LedgerError),  # 1 + 10^15 > limit
    ],
)
def test_adjustment_refusals(
    wallet: Wallet, amount: str, reason: EntryType, error: type[Exception]
) -> None:
    with pytest.raises(error):
        rules.plan_adjustment(ACCOUNT, balances(UM_USDT="1"), wallet, "USDT", D(amount), reason)


# -- properties ---------------------------------------------------------------------------------

ASSETS = ("BTC", "USDT", "ETH")
amounts = st.decimals(
    min_value=D("-1000000000000000"),
    max_value=D("1000000000000000"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)
free_amounts = st.decimals(min_value=0, max_value=D("1000000000000000"), places=8)


@st.composite
def account_balances(draw: st.DrawFn) -> dict[tuple[Wallet, str], Decimal]:
    result: dict[tuple[Wallet, str], Decimal] = {}
    for asset in draw(st.sets(st.sampled_from(ASSETS), max_size=3)):
        result[(Wallet.MARGIN, asset)] = draw(free_amounts)
        result[(Wallet.MARGIN_LOCKED, asset)] = draw(free_amounts)
        result[(Wallet.UM, asset)] = draw(amounts)
        result[(Wallet.CM, asset)] = draw(amounts)
    return result


def negative_total(b: dict[tuple[Wallet, str], Decimal], asset: str) -> Decimal:
    return sum((max(D(0), -b.get((w, asset), D(0))) for w in (Wallet.UM, Wallet.CM)), start=D(0))


@settings(max_examples=300)
@given(account_balances())
def test_repay_properties(b: dict[tuple[Wallet, str], Decimal]) -> None:
    try:
        plan = rules.plan_repay(ACCOUNT, b)
    except InsufficientBalance:
        # Refused only when something is negative and no such asset has margin free.
        negative = [a for a in ASSETS if negative_total(b, a) > 0]
        assert negative
        assert all(b.get((Wallet.MARGIN, a), 0) == 0 for a in negative)
        return
    assert is_balanced(plan)
    after = rules.apply(b, plan)
    for asset in ASSETS:
        # Conservation per asset; locked untouched; free never negative.
        assert sum((v for (w, a), v in after.items() if a == asset), start=D(0)) == sum(
            (v for (w, a), v in b.items() if a == asset), start=D(0)
        )
        assert after.get((Wallet.MARGIN_LOCKED, asset)) == b.get((Wallet.MARGIN_LOCKED, asset))
        assert after.get((Wallet.MARGIN, asset), D(0)) >= 0
        # Exactly min(negative, free) moved; no futures wallet overshoots zero.
        moved = b.get((Wallet.MARGIN, asset), D(0)) - after.get((Wallet.MARGIN, asset), D(0))
        assert moved == min(negative_total(b, asset), b.get((Wallet.MARGIN, asset), D(0)))
        for w in (Wallet.UM, Wallet.CM):
            before_w, after_w = b.get((w, asset), D(0)), after.get((w, asset), D(0))
            assert after_w >= before_w
            assert after_w <= max(before_w, D(0))
    # Idempotent retry: right after a repay, another one moves nothing or is refused.
    try:
        again = rules.plan_repay(ACCOUNT, after)
    except InsufficientBalance:
        again = []
    assert again == []


@given(amounts)
def test_amounts_round_trip_the_wire_format(value: Decimal) -> None:
    text = money.format_amount(value)
    assert len(text.split(".")[1]) == 8
    assert money.parse_amount(text) == value
