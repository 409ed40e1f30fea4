"""The account rules as pure functions: balances in, postings out.

A rule never writes; the store applies what it returns in one transaction. A rule that refuses
raises a :class:`~papi_sandbox.ledger.model.LedgerError` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from papi_sandbox import money
from papi_sandbox.ledger.model import (
    FUTURES_WALLETS,
    SYSTEM_ACCOUNT_ID,
    AmountLimitExceeded,
    Balances,
    EntryType,
    InsufficientBalance,
    LedgerError,
    Posting,
    Wallet,
    is_balanced,
)


def plan_repay(account_id: int, balances: Balances) -> list[Posting]:
    """Repay futures negative balances from MARGIN.free of the same asset (semantics.md).

    Returns ``[]`` when no futures wallet is negative (a harmless no-op). Raises
    :class:`InsufficientBalance` when some futures wallet is negative but MARGIN.free is zero in
    every such asset. A partial repay is a plan like any other.
    """
    negative_assets = sorted(
        {
            asset
            for (wallet, asset), amount in balances.items()
            if wallet in FUTURES_WALLETS and amount < 0
        }
    )
    postings: list[Posting] = []
    for asset in negative_assets:
        free = balances.get((Wallet.MARGIN, asset), money.ZERO)
        for wallet in FUTURES_WALLETS:  # UM first
            wallet_balance = balances.get((wallet, asset), money.ZERO)
            deficit = -wallet_balance if wallet_balance < 0 else money.ZERO
            amount = min(deficit, free)
            if amount > 0:
                postings.append(Posting(account_id, Wallet.MARGIN, asset, -amount))
                postings.append(Posting(account_id, wallet, asset, amount))
                free = money.add(free, -amount)
    if negative_assets and not postings:
        raise InsufficientBalance("no margin balance in any asset with a negative futures wallet")
    assert is_balanced(postings)
    return postings


def plan_adjustment(
    account_id: int,
    balances: Balances,
    wallet: Wallet,
    asset: str,
    amount: Decimal,
    reason: EntryType,
) -> list[Posting]:
    """An operator change (deposit, withdrawal, realized PnL, funding, commission).

    The counter-posting goes to the system account, so money entering or leaving is balanced.
    MARGIN.free may not go below zero; no balance may pass 10^15 in magnitude.
    """
    if amount == 0:
        raise LedgerError("amount must not be zero")
    if reason is EntryType.DEPOSIT and amount < 0:
        raise LedgerError("a DEPOSIT amount must be positive")
    if reason is EntryType.WITHDRAW and amount > 0:
        raise LedgerError("a WITHDRAW amount must be negative")
    after = money.add(balances.get((wallet, asset), money.ZERO), amount)
    if wallet is Wallet.MARGIN and after < 0:
        raise InsufficientBalance("MARGIN free balance may not go below zero")
    postings = [
        Posting(account_id, wallet, asset, amount),
        Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, asset, -amount),
    ]
    check_bounds(account_id, balances, postings)
    return postings


def check_bounds(account_id: int, balances: Balances, postings: Iterable[Posting]) -> None:
    """Refuse a plan that would leave any wallet balance of ``account_id`` past 10^15 in
    magnitude (docs/semantics.md, "Balance bounds"): every wallet, MARGIN free, locked, borrowed
    and interest, UM and CM, checked on the balance *after all* the plan's postings, so that
    two postings into one wallet (auto-collection of UM and CM) are counted together. A balance
    already past the bound may still move toward zero. The system account, which holds the
    counterpart of every account, is not bound. Raises :class:`AmountLimitExceeded`."""
    after: dict[tuple[Wallet, str], Decimal] = {}
    for p in postings:
        if p.account_id != account_id:
            continue
        key = (p.wallet, p.asset)
        after[key] = money.add(after.get(key, balances.get(key, money.ZERO)), p.amount)
    for (wallet, asset), value in sorted(after.items()):
        before = balances.get((wallet, asset), money.ZERO)
        if not money.within_limit(value) and abs(value) > abs(before):
            raise AmountLimitExceeded(
                f"the resulting {wallet.value} balance of {asset} would be"
                f" {money.format_amount(value)}, past the bound of 10^15 in magnitude; nothing"
                " was changed"
            )


Plan = Callable[[Balances], list[Posting]]


def bounded(account_id: int, plan: Plan) -> Plan:
    """``plan`` with :func:`check_bounds` applied to what it returns: the one place every
    operation's plan passes through before a store writes it."""

    def checked(balances: Balances) -> list[Posting]:
        postings = plan(balances)
        check_bounds(account_id, balances, postings)
        return postings

    return checked


def apply(balances: Balances, postings: Iterable[Posting]) -> dict[tuple[Wallet, str], Decimal]:
    """The balances of one account after its postings (other accounts' postings are ignored
    by the caller passing only this account's)."""
    result = dict(balances)
    for p in postings:
        key = (p.wallet, p.asset)
        result[key] = money.add(result.get(key, money.ZERO), p.amount)
    return result
