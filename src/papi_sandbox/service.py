"""The account operations, shared by the public API, the operator API and the CLI.

No HTTP here: callers pass typed arguments and get domain objects or domain errors back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox.jobs.config import MAX_VIP_LEVEL
from papi_sandbox.ledger import collection, rules
from papi_sandbox.ledger.account import AccountSummary
from papi_sandbox.ledger.model import (
    AccountBalances,
    AutoRepayOff,
    BadKeyRequest,
    BalanceRow,
    Entry,
    EntryType,
    KeyLimitReached,
    LedgerError,
    UnknownAccount,
    Wallet,
)
from papi_sandbox.market.state import Market
from papi_sandbox.secretbox import SecretBox
from papi_sandbox.store.base import AccountInfo, ApiKeyRecord, InterestRecord
from papi_sandbox.store.contract import Store
from papi_sandbox.stream.listen_keys import ListenKeys
from papi_sandbox.trading_service import Trading
from papi_sandbox.wire.auth import (
    KEY_TYPES,
    PublicKeyError,
    load_public_key,
    new_api_key,
    new_hmac_secret,
)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    account_id: int
    api_key: str
    secret_key: str


class Service:
    def __init__(
        self, store: Store, box: SecretBox | None = None, market: Market | None = None
    ) -> None:
        self.store = store
        # Seals HMAC secrets before they reach the store; None only in tests of the bare service.
        self.box = box
        #: The user data stream's listen keys (stream/listen_keys.py).
        self.listen_keys = ListenKeys(store)
        #: The UM market (symbols from configuration, prices from the store).
        self.market = market or Market()
        #: UM trading over the same store and market.
        self.trading = Trading(store, self.market)

    async def market_prices(self) -> Market:
        """The market with the ledger's current prices."""
        return await self.trading.prices()

    def _seal(self, secret: str, api_key: str) -> str:
        return self.box.seal(secret, api_key) if self.box is not None else secret

    async def create_account(self, label: str | None) -> IssuedKey:
        api_key, secret = new_api_key(), new_hmac_secret()
        record = ApiKeyRecord(
            api_key=api_key,
            account_id=0,
            key_type="HMAC",
            secret=self._seal(secret, api_key),
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
            raise UnknownAccount.of(account_id)
        return info

    async def balances(self, account_id: int) -> AccountBalances:
        """The account's snapshot (shared with other readers: never mutate it)."""
        return await self.store.balances(account_id)

    async def balance_rows(self, account_id: int) -> list[BalanceRow]:
        return (await self.store.balances(account_id)).rows()

    async def balance_row(self, account_id: int, asset: str) -> BalanceRow:
        return (await self.store.balances(account_id)).row(asset)

    async def _transact(
        self, account_id: int, entry_type: EntryType, plan: rules.Plan
    ) -> Entry | None:
        """Every balance change the service makes: ``plan`` with the balance bounds checked on
        its result (:func:`papi_sandbox.ledger.rules.bounded`), applied by the store as one
        entry, or nothing."""
        return await self.store.transact(account_id, entry_type, rules.bounded(account_id, plan))

    async def repay_futures_negative_balance(self, account_id: int) -> Entry | None:
        """None when nothing was negative; raises InsufficientBalance when nothing could move,
        and AutoRepayOff (nothing read or written past the switch) while the account's
        ``autoRepay`` is off (docs/semantics.md, "Auto-repay")."""
        if not (await self.require_account(account_id)).auto_repay:
            raise AutoRepayOff(
                "Manual repayment of futures negative balances is enabled only while auto-repay"
                " is on; turn it on with POST /papi/v1/repay-futures-switch autoRepay=true."
            )
        return await self._transact(
            account_id,
            EntryType.REPAY_FUTURES_NEGATIVE_BALANCE,
            functools.partial(rules.plan_repay, account_id),
        )

    async def adjust(
        self, account_id: int, wallet: Wallet, asset: str, amount: Decimal, reason: EntryType
    ) -> Entry:
        await self.require_account(account_id)
        entry = await self._transact(
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

    # -- the negative-balance toolkit (issue 4) ------------------------------------------------

    async def auto_repay(self, account_id: int) -> bool:
        return (await self.require_account(account_id)).auto_repay

    async def set_settings(
        self, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
    ) -> None:
        if vip_level is not None and not 0 <= vip_level <= MAX_VIP_LEVEL:
            raise LedgerError(f"vipLevel must be an integer from 0 to {MAX_VIP_LEVEL}")
        if not await self.store.set_account_settings(
            account_id, auto_repay=auto_repay, vip_level=vip_level
        ):
            raise UnknownAccount.of(account_id)

    async def collect(
        self,
        account_id: int,
        asset: str | None = None,
        amount: Decimal | None = None,
        wallet: Wallet | None = None,
    ) -> Entry | None:
        """Auto-collection (every asset) or asset collection (one; exactly ``amount`` from
        ``wallet`` when both are given); None when nothing moved."""
        if asset is not None and amount is not None and wallet is not None:
            return await self._transact(
                account_id,
                EntryType.ASSET_COLLECTION,
                functools.partial(
                    collection.plan_partial_collection,
                    account_id,
                    asset=asset,
                    amount=amount,
                    wallet=wallet,
                ),
            )
        return await self._transact(
            account_id,
            EntryType.AUTO_COLLECTION if asset is None else EntryType.ASSET_COLLECTION,
            functools.partial(collection.plan_collection, account_id, asset=asset),
        )

    async def bnb_transfer(
        self, account_id: int, amount: Decimal, side: collection.TransferSide
    ) -> Entry:
        entry = await self._transact(
            account_id,
            EntryType.BNB_TRANSFER,
            functools.partial(collection.plan_bnb_transfer, account_id, amount=amount, side=side),
        )
        assert entry is not None  # a transfer always has postings (or raises)
        return entry

    async def interest_history(
        self, account_id: int, asset: str | None, start_ms: int, end_ms: int, limit: int
    ) -> list[InterestRecord]:
        return await self.store.interest_history(account_id, asset, start_ms, end_ms, limit)

    async def account_summary(self, account_id: int) -> AccountSummary:
        """The account object's figures from balances, UM positions and prices."""
        return await self.trading.account_summary(account_id)

    async def issue_api_key(
        self,
        account_id: int,
        key_type: str,
        public_key: str | None,
        *,
        can_read: bool,
        can_trade: bool,
        ip_whitelist: tuple[str, ...],
        max_keys_per_account: int,
    ) -> tuple[str, str | None]:
        """A new key for the account: ``(apiKey, secretKey)``, the secret only for HMAC."""
        await self.require_account(account_id)
        if key_type not in KEY_TYPES:
            raise BadKeyRequest(f"type must be one of {', '.join(KEY_TYPES)}")
        api_key = new_api_key()
        secret: str | None = None
        if key_type == "HMAC":
            if public_key is not None:
                raise BadKeyRequest("publicKey is only for RSA and ED25519 keys")
            secret = new_hmac_secret()
        else:
            if public_key is None:
                raise BadKeyRequest(f"publicKey (PEM) is mandatory for {key_type} keys")
            try:
                load_public_key(key_type, public_key)
            except PublicKeyError as exc:
                raise BadKeyRequest(str(exc)) from None
        record = ApiKeyRecord(
            api_key=api_key,
            account_id=account_id,
            key_type=key_type,
            secret=self._seal(secret, api_key) if secret is not None else None,
            public_key=public_key,
            can_read=can_read,
            can_trade=can_trade,
            ip_whitelist=ip_whitelist,
        )
        if not await self.store.add_api_key_limited(record, max_keys_per_account):
            raise KeyLimitReached(
                f"account {account_id} already has {max_keys_per_account} API keys, the most"
                " allowed; revoke one first"
            )
        return api_key, secret

    async def revoke_api_key(self, account_id: int, api_key: str) -> bool:
        await self.require_account(account_id)
        return await self.store.revoke_api_key(account_id, api_key)
