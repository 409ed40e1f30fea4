"""The account operations, shared by the public API, the operator API and the CLI.

No HTTP here: callers pass typed arguments and get domain objects or domain errors back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import (
    BalanceRow,
    Entry,
    EntryType,
    LedgerError,
    Wallet,
)
from papi_sandbox.secretbox import SecretBox
from papi_sandbox.store.base import AccountInfo, ApiKeyRecord, Store
from papi_sandbox.wire.auth import KEY_TYPES, load_public_key, new_api_key, new_hmac_secret


class UnknownAccount(LedgerError):
    pass


@dataclass(frozen=True, slots=True)
class IssuedKey:
    account_id: int
    api_key: str
    secret_key: str


class KeyLimitReached(LedgerError):
    pass


class BadKeyRequest(LedgerError):
    pass


class Service:
    def __init__(self, store: Store, box: SecretBox | None = None) -> None:
        self.store = store
        # Seals HMAC secrets before they reach the store; None only in tests of the bare service.
        self.box = box

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
            raise UnknownAccount(f"account {account_id} does not exist")
        return info

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
            load_public_key(key_type, public_key)  # raises PublicKeyError (a ValueError)
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
