"""The toolkit's pure rules: collection, BNB transfer, interest (semantics.md)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from papi_sandbox.ledger.collection import (
    AssetNotCollectable,
    TransferSide,
    plan_bnb_transfer,
    plan_collection,
)
from papi_sandbox.ledger.interest import InterestPolicy, plan_interest
from papi_sandbox.ledger.model import SYSTEM_ACCOUNT_ID, InsufficientBalance, Posting, Wallet
from papi_sandbox.ledger.rules import apply

ACC = 7


def test_auto_collection_moves_every_positive_futures_balance_except_bnb_in_um() -> None:
    balances = {
        (Wallet.UM, "USDT"): D("100"),
        (Wallet.CM, "BTC"): D("0.5"),
        (Wallet.CM, "ETH"): D("-2"),  # negative: nothing to collect
        (Wallet.UM, "BNB"): D("5"),  # stays: pays UM fees
        (Wallet.CM, "BNB"): D("2"),  # CM BNB is collected
        (Wallet.MARGIN, "USDT"): D("1"),
    }
    after = apply(balances, plan_collection(ACC, balances))
    assert after[(Wallet.UM, "USDT")] == 0 and after[(Wallet.MARGIN, "USDT")] == D("101")
    assert after[(Wallet.CM, "BTC")] == 0 and after[(Wallet.MARGIN, "BTC")] == D("0.5")
    assert after[(Wallet.CM, "ETH")] == D("-2")
    assert after[(Wallet.UM, "BNB")] == D("5")
    assert after[(Wallet.CM, "BNB")] == 0 and after[(Wallet.MARGIN, "BNB")] == D("2")


def test_collection_with_nothing_to_move_plans_nothing() -> None:
    assert plan_collection(ACC, {(Wallet.UM, "USDT"): D("-1"), (Wallet.UM, "BNB"): D("3")}) == []


def test_asset_collection_takes_one_asset_and_refuses_bnb() -> None:
    balances = {(Wallet.UM, "USDT"): D("100"), (Wallet.CM, "BTC"): D("1")}
    assert plan_collection(ACC, balances, "USDT") == [
        Posting(ACC, Wallet.UM, "USDT", D("-100")),
        Posting(ACC, Wallet.MARGIN, "USDT", D("100")),
    ]
    with pytest.raises(AssetNotCollectable):
        plan_collection(ACC, {(Wallet.CM, "BNB"): D("1")}, "BNB")


def test_bnb_transfer_both_ways_and_insufficient() -> None:
    balances = {(Wallet.MARGIN, "BNB"): D("10"), (Wallet.UM, "BNB"): D("1")}
    after = apply(balances, plan_bnb_transfer(ACC, balances, D("4"), TransferSide.TO_UM))
    assert (after[(Wallet.MARGIN, "BNB")], after[(Wallet.UM, "BNB")]) == (D("6"), D("5"))
    after = apply(balances, plan_bnb_transfer(ACC, balances, D("1"), TransferSide.FROM_UM))
    assert (after[(Wallet.MARGIN, "BNB")], after[(Wallet.UM, "BNB")]) == (D("11"), D("0"))
    with pytest.raises(InsufficientBalance):
        plan_bnb_transfer(ACC, balances, D("1.00000001"), TransferSide.FROM_UM)
    with pytest.raises(InsufficientBalance):
        plan_bnb_transfer(ACC, balances, D("10.00000001"), TransferSide.TO_UM)
    with pytest.raises(InsufficientBalance):  # a negative UM balance is nothing to take back
        plan_bnb_transfer(ACC, {(Wallet.UM, "BNB"): D("-1")}, D("1"), TransferSide.FROM_UM)


# -- interest: negative = min(totalWalletBalance + threshold, 0); interest = ceil8(|neg| * rate) --


def test_interest_default_policy_charges_the_um_wallet_and_the_system_account() -> None:
    # total = 200 (free) - 1200 (UM) = -1000; 1000 * 0.0005 = 0.5
    balances = {(Wallet.MARGIN, "USDT"): D("200"), (Wallet.UM, "USDT"): D("-1200")}
    postings, charges = plan_interest(ACC, balances, 0, InterestPolicy())
    assert postings == [
        Posting(ACC, Wallet.UM, "USDT", D("-0.5")),
        Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, "USDT", D("0.5")),
    ]
    assert [(c.principal, c.rate, c.interest) for c in charges] == [
        (D("1000"), D("0.0005"), D("0.5"))
    ]


def test_interest_threshold_per_vip_tier() -> None:
    policy = InterestPolicy(thresholds={1: {"USDT": D("1000")}})
    balances = {(Wallet.UM, "USDT"): D("-1500")}
    # VIP 1: -1500 + 1000 = -500 -> principal 500, interest 0.25
    _, charges = plan_interest(ACC, balances, 1, policy)
    assert [(c.principal, c.interest) for c in charges] == [(D("500"), D("0.25"))]
    # VIP 0 (default threshold 0): the whole 1500 -> 0.75
    _, charges = plan_interest(ACC, balances, 0, policy)
    assert [(c.principal, c.interest) for c in charges] == [(D("1500"), D("0.75"))]
    # Within the threshold: nothing owed, nothing recorded
    assert plan_interest(ACC, {(Wallet.UM, "USDT"): D("-1000")}, 1, policy) == ([], [])


def test_interest_rounds_up_to_8_digits() -> None:
    # 0.00000003 * 0.0005 = 0.000000000015 -> 0.00000001 (up, never to zero)
    _, charges = plan_interest(ACC, {(Wallet.UM, "BTC"): D("-0.00000003")}, 0, InterestPolicy())
    assert charges[0].interest == D("0.00000001")
    # 100.00000001 * 0.0005 = 0.050000000005 -> 0.05000001
    _, charges = plan_interest(ACC, {(Wallet.UM, "USDT"): D("-100.00000001")}, 0, InterestPolicy())
    assert charges[0].interest == D("0.05000001")
    # exact products are not rounded: 1000 * 0.0005 = 0.5
    _, charges = plan_interest(ACC, {(Wallet.CM, "USDT"): D("-1000")}, 0, InterestPolicy())
    assert charges[0].interest == D("0.5")


def test_interest_goes_to_the_wallet_with_the_larger_negative_balance() -> None:
    balances = {(Wallet.UM, "ETH"): D("-1"), (Wallet.CM, "ETH"): D("-3")}
    postings, charges = plan_interest(
        ACC, balances, 0, InterestPolicy(daily_rates={"ETH": D("0.001")})
    )
    assert charges[0].wallet is Wallet.CM and charges[0].principal == D("4")
    assert postings[0] == Posting(ACC, Wallet.CM, "ETH", D("-0.004"))


def test_interest_sees_the_whole_asset_not_one_wallet() -> None:
    # UM is negative but MARGIN covers it: total >= 0, no interest
    balances = {(Wallet.MARGIN, "USDT"): D("500"), (Wallet.UM, "USDT"): D("-400")}
    assert plan_interest(ACC, balances, 0, InterestPolicy()) == ([], [])
