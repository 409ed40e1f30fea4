"""The ledger's vocabulary: wallets, postings, entries and per-asset balance rows.

Pure data, no I/O. Every balance change is an :class:`Entry` whose postings sum to zero per asset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from papi_sandbox import money

#: The account that stands for the world outside: deposits come from it, withdrawals, fees and
#: interest go to it, so that over the whole ledger every asset sums to zero.
SYSTEM_ACCOUNT_ID = 0


class Wallet(StrEnum):
    """A balance bucket of one account and asset.

    Liabilities (``MARGIN_BORROWED``, ``MARGIN_INTEREST``) are stored with a non-positive sign so
    that a borrow is a balanced entry inside the account (free +x, borrowed -x); the wire shows
    their magnitude.
    """

    MARGIN = "MARGIN"  # cross-margin free
    MARGIN_LOCKED = "MARGIN_LOCKED"
    MARGIN_BORROWED = "MARGIN_BORROWED"
    MARGIN_INTEREST = "MARGIN_INTEREST"
    UM = "UM"
    CM = "CM"
    EXTERNAL = "EXTERNAL"  # only on the system account


#: Wallets an operator adjustment may touch.
ADJUSTABLE_WALLETS = (Wallet.MARGIN, Wallet.UM, Wallet.CM)
#: Futures wallets in the order the repay rule serves them.
FUTURES_WALLETS = (Wallet.UM, Wallet.CM)


class EntryType(StrEnum):
    REPAY_FUTURES_NEGATIVE_BALANCE = "REPAY_FUTURES_NEGATIVE_BALANCE"
    DEPOSIT = "DEPOSIT"
    WITHDRAW = "WITHDRAW"
    REALIZED_PNL = "REALIZED_PNL"
    FUNDING_FEE = "FUNDING_FEE"
    COMMISSION = "COMMISSION"
    AUTO_REPAY_FUTURES = "AUTO_REPAY_FUTURES"
    NEGATIVE_BALANCE_INTEREST = "NEGATIVE_BALANCE_INTEREST"
    AUTO_COLLECTION = "AUTO_COLLECTION"
    ASSET_COLLECTION = "ASSET_COLLECTION"
    BNB_TRANSFER = "BNB_TRANSFER"


#: Reasons an operator may give for an adjustment; each becomes the entry's type.
ADJUSTMENT_REASONS = (
    EntryType.DEPOSIT,
    EntryType.WITHDRAW,
    EntryType.REALIZED_PNL,
    EntryType.FUNDING_FEE,
    EntryType.COMMISSION,
)


class LedgerError(Exception):
    """A rule refused the change; nothing is written."""


class InsufficientBalance(LedgerError):
    pass


class AmountLimitExceeded(LedgerError):
    pass


class UnknownAccount(LedgerError):
    """No such account (or the system account, which no one may address)."""

    @classmethod
    def of(cls, account: object) -> UnknownAccount:
        """The refusal for ``account`` (an id, or a path's text cut to 32 characters), in the
        one wording every surface shows (HTTP 404 -1000: wire/errors.py)."""
        return cls(f"account {str(account)[:32]} does not exist")


class KeyLimitReached(LedgerError):
    """The account holds the most live API keys it may."""


class BadKeyRequest(LedgerError):
    """A new API key's type, public key or permissions are not acceptable."""


class AutoRepayOff(LedgerError):
    """The manual repay was asked for while the account's ``autoRepay`` switch is off: Binance's
    Portfolio Margin FAQ enables manual repayment only while Auto Repay is on."""


@dataclass(frozen=True, slots=True)
class Posting:
    account_id: int
    wallet: Wallet
    asset: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Entry:
    tran_id: int
    type: str
    time_ms: int
    account_id: int
    postings: tuple[Posting, ...]


#: One account's balances: (wallet, asset) -> amount. Missing keys are zero.
Balances = Mapping[tuple[Wallet, str], Decimal]


def is_balanced(postings: Iterable[Posting]) -> bool:
    """True when the postings sum to zero for every asset."""
    totals: dict[str, Decimal] = {}
    for p in postings:
        totals[p.asset] = money.add(totals.get(p.asset, money.ZERO), p.amount)
    return all(v == 0 for v in totals.values())


@dataclass(frozen=True, slots=True)
class BalanceRow:
    """One asset of one account, as the balance endpoint reports it."""

    asset: str
    margin_free: Decimal = money.ZERO
    margin_locked: Decimal = money.ZERO
    margin_borrowed: Decimal = money.ZERO  # magnitude of the liability
    margin_interest: Decimal = money.ZERO  # magnitude of the liability
    um_wallet: Decimal = money.ZERO
    cm_wallet: Decimal = money.ZERO
    update_time_ms: int = 0

    @property
    def cross_margin_asset(self) -> Decimal:
        return money.add(self.margin_free, self.margin_locked)

    @property
    def total_wallet_balance(self) -> Decimal:
        return money.add(money.add(self.cross_margin_asset, self.um_wallet), self.cm_wallet)

    @property
    def negative_balance(self) -> Decimal:
        """What repay would still need for this asset."""
        return money.add(max(money.ZERO, -self.um_wallet), max(money.ZERO, -self.cm_wallet))


@dataclass(slots=True)
class AccountBalances:
    """A snapshot of one account: amounts and, per asset, the time of the last change."""

    amounts: dict[tuple[Wallet, str], Decimal] = field(default_factory=dict)
    updated_ms: dict[str, int] = field(default_factory=dict)

    def assets(self) -> list[str]:
        return sorted({asset for _, asset in self.amounts} | set(self.updated_ms))

    def row(self, asset: str) -> BalanceRow:
        get = self.amounts.get
        zero = money.ZERO
        return BalanceRow(
            asset=asset,
            margin_free=get((Wallet.MARGIN, asset), zero),
            margin_locked=get((Wallet.MARGIN_LOCKED, asset), zero),
            margin_borrowed=-get((Wallet.MARGIN_BORROWED, asset), zero) + zero,
            margin_interest=-get((Wallet.MARGIN_INTEREST, asset), zero) + zero,
            um_wallet=get((Wallet.UM, asset), zero),
            cm_wallet=get((Wallet.CM, asset), zero),
            update_time_ms=self.updated_ms.get(asset, 0),
        )

    def rows(self) -> list[BalanceRow]:
        return [self.row(a) for a in self.assets()]


@dataclass(frozen=True, slots=True)
class CommittedEntry:
    """A journal entry as it was committed, with what the user data stream needs besides it:
    the resulting amount of every (wallet, asset) of ``entry.account_id`` that the entry touched,
    in first-posting order, plus, for an asset whose cross-margin ``free`` or ``locked`` changed,
    both of them (an ``outboundAccountPosition`` carries both). Built by the store inside the
    entry's transaction and handed to the stream only after the transaction committed
    (docs/design.md, "The event hub")."""

    entry: Entry
    balances: tuple[tuple[Wallet, str, Decimal], ...]

    @property
    def account_id(self) -> int:
        """The account whose stream reports the entry."""
        return self.entry.account_id


#: Wallets reported together: a change of one reports the other's amount too.
_MARGIN_PAIR = (Wallet.MARGIN, Wallet.MARGIN_LOCKED)


def reported_rows(entry: Entry) -> list[tuple[Wallet, str]]:
    """The (wallet, asset) rows of the entry's own account whose resulting amounts a
    :class:`CommittedEntry` carries, in order."""
    rows: dict[tuple[Wallet, str], None] = {}
    for p in entry.postings:
        if p.account_id != entry.account_id:
            continue
        if p.wallet in _MARGIN_PAIR:
            for wallet in _MARGIN_PAIR:
                rows[(wallet, p.asset)] = None
        else:
            rows[(p.wallet, p.asset)] = None
    return list(rows)


def committed_entry(entry: Entry, before: Balances) -> CommittedEntry:
    """``entry`` with the resulting balances of its own account's reported rows, computed from
    ``before`` (the account's balances read in the same transaction, under its lock: exact).
    ``before`` needs only the keys of :func:`reported_rows`."""
    after = {key: before.get(key, money.ZERO) for key in reported_rows(entry)}
    for p in entry.postings:
        if p.account_id == entry.account_id:
            key = (p.wallet, p.asset)
            after[key] = money.add(after[key], p.amount)
    return CommittedEntry(entry, tuple((w, a, v) for (w, a), v in after.items()))
