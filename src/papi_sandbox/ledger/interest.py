"""Negative-balance interest as a pure rule (semantics.md, "Negative-balance interest").

Per account and asset::

    negative = min(totalWalletBalance + threshold(asset, vipLevel), 0)
    interest = round_up_8(abs(negative) * dailyRate(asset))        # when negative < 0

The interest is charged to the futures wallet holding the larger negative balance of that asset
(UM on a tie) and posted against the system account, like every fee.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from papi_sandbox import money
from papi_sandbox.ledger.model import (
    FUTURES_WALLETS,
    SYSTEM_ACCOUNT_ID,
    Balances,
    Posting,
    Wallet,
    is_balanced,
)

#: Documented defaults (semantics.md): no interest-free threshold, 0.05 % a day.
DEFAULT_THRESHOLD = Decimal("0")
DEFAULT_DAILY_RATE = Decimal("0.0005")


@dataclass(frozen=True, slots=True)
class InterestPolicy:
    """Thresholds per VIP tier and asset, daily rates per asset, each with a default."""

    default_threshold: Decimal = DEFAULT_THRESHOLD
    default_daily_rate: Decimal = DEFAULT_DAILY_RATE
    #: vipLevel -> asset -> threshold (an interest-free amount of negative balance)
    thresholds: Mapping[int, Mapping[str, Decimal]] = field(default_factory=dict)
    #: asset -> daily rate
    daily_rates: Mapping[str, Decimal] = field(default_factory=dict)

    def threshold(self, asset: str, vip_level: int) -> Decimal:
        return self.thresholds.get(vip_level, {}).get(asset, self.default_threshold)

    def daily_rate(self, asset: str) -> Decimal:
        return self.daily_rates.get(asset, self.default_daily_rate)


@dataclass(frozen=True, slots=True)
class InterestCharge:
    """One row of the interest history."""

    asset: str
    interest: Decimal
    rate: Decimal
    principal: Decimal  # abs(negative)
    wallet: Wallet  # the futures wallet charged


def total_wallet_balance(balances: Balances, asset: str) -> Decimal:
    """free + locked + UM + CM of one asset (the balance endpoint's totalWalletBalance)."""
    total = money.ZERO
    for wallet in (Wallet.MARGIN, Wallet.MARGIN_LOCKED, Wallet.UM, Wallet.CM):
        total = money.add(total, balances.get((wallet, asset), money.ZERO))
    return total


def interest_charges(
    balances: Balances, vip_level: int, policy: InterestPolicy
) -> list[InterestCharge]:
    """The charges for one account, in asset order; ``[]`` when nothing is owed."""
    # MARGIN free and locked are never negative, so only an asset with a negative futures wallet
    # can have a negative total; the others need no look.
    assets = sorted(
        {asset for (wallet, asset), amount in balances.items() if wallet in FUTURES_WALLETS}
    )
    charges: list[InterestCharge] = []
    for asset in assets:
        threshold = policy.threshold(asset, vip_level)
        negative = min(money.add(total_wallet_balance(balances, asset), threshold), money.ZERO)
        if negative >= 0:
            continue
        principal = -negative
        rate = policy.daily_rate(asset)
        interest = money.round_up(money.CONTEXT.multiply(principal, rate))
        if interest <= 0:
            continue  # a zero rate charges nothing and records nothing
        um = balances.get((Wallet.UM, asset), money.ZERO)
        cm = balances.get((Wallet.CM, asset), money.ZERO)
        wallet = Wallet.CM if cm < um else Wallet.UM  # the larger negative; UM on a tie
        charges.append(InterestCharge(asset, interest, rate, principal, wallet))
    return charges


def plan_interest(
    account_id: int, balances: Balances, vip_level: int, policy: InterestPolicy
) -> tuple[list[Posting], list[InterestCharge]]:
    """Postings for the day's interest (futures wallet -interest, system account +interest) and
    the history rows that go with them."""
    charges = interest_charges(balances, vip_level, policy)
    postings: list[Posting] = []
    for charge in charges:
        postings.append(Posting(account_id, charge.wallet, charge.asset, -charge.interest))
        postings.append(Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, charge.asset, charge.interest))
    assert is_balanced(postings)
    return postings, charges
