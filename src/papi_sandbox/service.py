"""The account operations, shared by the public API, the operator API and the CLI.

No HTTP here: callers pass typed arguments and get domain objects or domain errors back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import (
    AccountBalances,
    BalanceRow,
    Entry,
    EntryType,
    LedgerError,
    Wallet,
)
from papi_sandbox.store.base import AccountInfo, ApiKeyRecord, Store
from papi_sandbox.wire.auth import new_api_key, new_hmac_secret


class UnknownAccount(LedgerError):
    pass


@dataclass(frozen=True, slots=True)
class IssuedKey:
    account_id: int
    api_key: str
    secret_key: str


class Service:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create_account(self, label: str | None) -> IssuedKey:
        api_key, secret = new_api_key(), new_hmac_secret()
        record = ApiKeyRecord(
            api_key=api_key,
            account_id=0,
            key_type="HMAC",
            secret=secret,
            public_key=None,
            can_read=True,
            can_trade=True,
            ip_whitelist=(),
        )
        account_id = await self.store.create_account(label, record)
        return IssuedKey(account_id, api_key, secret)

    async def require_account(self, account_id: int) -> AccountInfo:
        info = await self.store.account(account_id)
        if info is None:
            raise UnknownAccount(f"account {account_id} does not exist")
        return info

    async def balances(self, account_id: int) -> AccountBalances:
        """The account's snapshot (shared with other readers: never mutate it)."""
        return await self.store.balances(account_id)

    async def balance_rows(self, account_id: int) -> list[BalanceRow]:
        return (await self.store.balances(account_id)).rows()

    async def balance_row(self, account_id: int, asset: str) -> BalanceRow:
        return (await self.store.balances(account_id)).row(asset)

    async def repay_futures_negative_balance(self, account_id: int) -> Entry | None:
        """None when nothing was negative; raises InsufficientBalance when nothing could move."""
        return await self.store.transact(
            account_id,
            EntryType.REPAY_FUTURES_NEGATIVE_BALANCE,
            functools.partial(rules.plan_repay, account_id),
        )

    async def adjust(
        self, account_id: int, wallet: Wallet, asset: str, amount: Decimal, reason: EntryType
    ) -> Entry:
        await self.require_account(account_id)
        entry = await self.store.transact(
            account_id,
            reason,
            functools.partial(
                rules.plan_adjustment,
                account_id,
                wallet=wallet,
                asset=asset,
                amount=amount,
                reason=reason,
            ),
        )
        assert entry is not None  # an adjustment always has postings
        return entry

    async def journal(
        self, account_id: int, limit: int, before_tran_id: int | None = None
    ) -> list[Entry]:
        await self.require_account(account_id)
        return await self.store.journal(account_id, limit, before_tran_id)
