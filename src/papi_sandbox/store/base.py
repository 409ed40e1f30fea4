"""The store interface: everything the service needs from persistence, and nothing about SQL.

SQLite implements it now (:mod:`papi_sandbox.store.sqlite`); PostgreSQL can implement it later
without touching the rules or the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from papi_sandbox.ledger.model import AccountBalances, Balances, Entry, Posting

#: A pure rule bound to its arguments: the account's balances in, postings out (or a LedgerError).
Planner = Callable[[Balances], list[Posting]]

#: Most journal entries one read returns.
MAX_JOURNAL_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    api_key: str
    account_id: int
    key_type: str  # "HMAC", "RSA" or "ED25519"
    secret: str | None  # HMAC only; sealed (secretbox) in the store, opened in the key cache
    public_key: str | None
    can_read: bool
    can_trade: bool
    ip_whitelist: tuple[str, ...]
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_id: int
    label: str | None
    created_ms: int
    auto_repay: bool
    vip_level: int


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    postings: int = 0
    balances: int = 0
    accounts: int = 0
    assets: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_account(self, label: str | None, key: ApiKeyRecord | None) -> int:
        """Create an account (and optionally its first API key, whose account_id is ignored)."""
        ...

    async def add_api_key(self, key: ApiKeyRecord) -> None: ...

    async def find_api_key(self, api_key: str) -> ApiKeyRecord | None: ...

    async def account(self, account_id: int) -> AccountInfo | None: ...

    async def balances(self, account_id: int) -> AccountBalances: ...

    async def transact(self, account_id: int, entry_type: str, plan: Planner) -> Entry | None:
        """Atomically: read the account's balances, run ``plan``, append the entry and update
        the balances; durable before it returns. Returns None (and writes nothing) when the plan
        has no postings. A LedgerError from the plan propagates and nothing is written."""
        ...

    async def journal(
        self, account_id: int, limit: int, before_tran_id: int | None = None
    ) -> list[Entry]:
        """The account's entries, newest first."""
        ...

    async def verify(self) -> VerifyReport: ...

    # -- API key management and operations (security issue) ----------------------------------

    async def add_api_key_limited(self, key: ApiKeyRecord, max_keys_per_account: int) -> bool:
        """Add ``key`` unless its account already has ``max_keys_per_account`` live (unrevoked)
        keys; the count and the insert are one atomic step. True when added."""
        ...

    async def revoke_api_key(self, account_id: int, api_key: str) -> bool:
        """Mark the account's key revoked; False when the account has no such live key."""
        ...

    async def api_keys(self, account_id: int) -> list[ApiKeyRecord]:
        """The account's keys, revoked ones included, oldest first."""
        ...

    async def rewrite_api_key_secrets(self, transform: Callable[[str, str], str]) -> int:
        """Replace every stored HMAC secret ``s`` of key ``k`` by ``transform(s, k)`` in one
        transaction (encryption-key rotation); returns how many rows changed."""
        ...

    async def entry_counts(self) -> dict[str, int]:
        """Journal entries by type over the whole ledger (for metrics)."""
        ...
