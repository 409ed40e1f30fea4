"""The store contract (:class:`Store`), its optional capabilities, and the records it returns.

Both stores implement it (:mod:`papi_sandbox.store.sqlite`, :mod:`papi_sandbox.store.postgres`)
through the same units of work; nothing here knows SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar, runtime_checkable

from papi_sandbox.ledger.interest import InterestCharge
from papi_sandbox.ledger.model import (
    AccountBalances,
    Balances,
    CommittedEntry,
    Entry,
    LedgerError,
    Posting,
)

if TYPE_CHECKING:
    from papi_sandbox.store.dialect import Db

P = ParamSpec("P")
T = TypeVar("T")

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
    """Everything the service needs from persistence, and nothing about SQL.

    Implemented once for both databases by :class:`papi_sandbox.store.shared.SharedStore`
    (the statements live in the state's own module, over a dialect); the two stores differ only
    in how a unit of work reaches its connection (SQLite's writer thread and readers, or
    PostgreSQL's pool with row locks and retries). Every method may raise the database's own
    error (``sqlite3.Error``, ``psycopg.Error``) when storage fails, and RuntimeError when the
    store is not open. Changes are durable when a write method returns.
    """

    #: Transactions retried after a deadlock or serialization failure (0 where none can occur).
    retries_total: int

    async def open(self) -> None:
        """Migrate the schema to this program's version, then start serving. Raises
        RuntimeError when the ledger's schema is newer than this program."""
        ...

    async def close(self) -> None:
        """Finish queued work and release every connection and thread."""
        ...

    def on_commit(self, callback: Callable[[list[CommittedEntry]], None]) -> None:
        """Call ``callback(entries)`` for journal entries once they are durable, in commit
        order, never for a rolled-back one; register before :meth:`open`. SQLite: this
        process's commits, on the writer thread before the batch's callers are answered (the
        callback must only hand them over, e.g. ``EventHub.publish``). PostgreSQL: every
        process's commits (LISTEN/NOTIFY), on the event loop; entries committed while the
        listener reconnects are not announced."""
        ...

    async def read(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``unit(db, *args, **kwargs)`` on a read connection; its result. The primitive under
        every read method; a feature's own state is read through it."""
        ...

    async def write(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``unit(db, *args, **kwargs)`` in one write transaction, committed durably before it
        returns; its result. Whatever the unit raises rolls its writes back and propagates. Balances
        change only through :func:`papi_sandbox.store.journal.append_entry`."""
        ...

    async def create_account(self, label: str | None, key: ApiKeyRecord | None) -> int:
        """A new account (and optionally its first API key, whose account_id is ignored); its
        id."""
        ...

    async def find_api_key(self, api_key: str) -> ApiKeyRecord | None:
        """The key's record (secret still sealed), revoked or not; None when unknown."""
        ...

    async def account(self, account_id: int) -> AccountInfo | None:
        """The account's settings; None for an unknown id and for the system account."""
        ...

    async def balances(self, account_id: int) -> AccountBalances:
        """Every balance row of the account (empty for an unknown one). May be a shared
        cached snapshot: read it, never mutate it."""
        ...

    async def transact(self, account_id: int, entry_type: str, plan: Planner) -> Entry | None:
        """Atomically: read the account's balances, run ``plan``, append the entry and update
        the balances; durable before it returns. Returns None (and writes nothing) when the plan
        has no postings. Raises LedgerError (nothing written) when the plan refuses or the
        account does not exist."""
        ...

    async def journal(
        self, account_id: int, limit: int, before_tran_id: int | None = None
    ) -> list[Entry]:
        """The account's entries with tranId < ``before_tran_id``, newest first, at most
        ``limit`` (clamped to 1..MAX_JOURNAL_PAGE)."""
        ...

    async def verify(self) -> VerifyReport:
        """Replay the whole journal against the stored balances in one consistent snapshot."""
        ...

    def verify_sync(self) -> VerifyReport:
        """:meth:`verify` without opening the store (offline commands). Raises
        FileNotFoundError for a SQLite file that does not exist."""
        ...

    def exists_sync(self) -> bool:
        """Whether the ledger exists already (a SQLite file; a reachable PostgreSQL database),
        so that offline commands never create an empty one."""
        ...

    # -- the negative-balance toolkit --

    async def set_account_settings(
        self, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
    ) -> bool:
        """Change the settings given; False when the account does not exist."""
        ...

    async def interest_history(
        self, account_id: int, asset: str | None, start_ms: int, end_ms: int, limit: int
    ) -> list[InterestRecord]:
        """Rows with start_ms <= accrued_ms <= end_ms, newest first, at most ``limit`` (clamped
        to 1..MAX_INTEREST_PAGE)."""
        ...

    async def job_candidates(self, after_account_id: int, limit: int) -> list[int]:
        """Keyset page of accounts with a negative UM or CM wallet, id > after_account_id,
        ascending, at most ``limit`` (clamped to 1..MAX_JOB_BATCH_ACCOUNTS). Both jobs only ever
        act on such accounts (MARGIN free is never negative, so no other account can owe
        interest or need a repay)."""
        ...

    async def run_job_batch(
        self, job: str, slot_ms: int, entry_type: str, account_ids: list[int], plan: JobPlanner
    ) -> JobBatchResult:
        """In one write transaction, for each account not yet marked for (job, slot): run the
        rule on its balances, append its entry (and interest rows), and mark it, the marker in
        the same transaction as the entry, so a re-run after a crash never applies twice.
        Raises ValueError for more than MAX_JOB_BATCH_ACCOUNTS accounts."""
        ...

    async def prune_job_marks(self, before_slot_ms: int) -> int:
        """Forget (job, slot, account) markers of slots older than ``before_slot_ms``; how
        many."""
        ...

    # -- API keys and operations --

    async def add_api_key_limited(self, key: ApiKeyRecord, max_keys_per_account: int) -> bool:
        """Add ``key`` unless its account already has ``max_keys_per_account`` live (unrevoked)
        keys; the count and the insert are one atomic step. True when added. Raises LedgerError
        when the account does not exist."""
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

    async def claim_setting(self, name: str, value: str, *, replace: bool = False) -> str:
        """The ledger-wide setting ``name``: set to ``value`` if absent (or if ``replace``), and
        returned as stored. Processes sharing a database agree through it (e.g. on which
        encryption key seals the secrets)."""
        ...


@runtime_checkable
class KeyRevocations(Protocol):
    """A store shared by several processes (PostgreSQL) announces revoked keys to all."""

    def on_key_revoked(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(api_key)`` whenever any process revokes a key (register before
        ``open``)."""
        ...


@runtime_checkable
class SharedJobStore(Protocol):
    """A store shared by several processes (PostgreSQL): a lock per job slot and a record that
    the slot is done, so each slot runs once across processes."""

    def advisory_lock(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold a lock on ``name`` for the block without waiting; yields False when another
        session holds it. Released if the process dies."""
        ...

    async def lease_active(self, name: str) -> bool:
        """True while some holder holds an unexpired lease ``name`` (database clock)."""
        ...

    async def try_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take or renew the lease for ``holder`` for ``ttl_ms``; True when ``holder`` holds
        it now. Raises ValueError for a ttl_ms <= 0."""
        ...


# -- the negative-balance toolkit (issue 4): settings, interest history, scheduled jobs -----------

#: Most interest-history rows one read returns (the endpoint's own maximum is 100).
MAX_INTEREST_PAGE = 1000
#: Most accounts one job batch carries: bounds the time a batch holds the write lock (about
#: 0.1 ms per account) and the memory a sweep needs, whatever the number of accounts.
MAX_JOB_BATCH_ACCOUNTS = 5000


@dataclass(frozen=True, slots=True)
class InterestRecord:
    """One row of ``GET /papi/v1/portfolio/interest-history``."""

    account_id: int
    asset: str
    interest: Decimal
    rate: Decimal
    principal: Decimal
    accrued_ms: int  # the job's scheduled slot (interestAccuredTime)
    tran_id: int


@dataclass(frozen=True, slots=True)
class JobAccount:
    """What a job's rule sees of one account, read inside the batch's write transaction."""

    account_id: int
    auto_repay: bool
    vip_level: int
    balances: Balances


@dataclass(frozen=True, slots=True)
class JobPlan:
    """A job's decision for one account: its entry's postings and the interest rows to record."""

    postings: list[Posting]
    interest: list[InterestCharge] = field(default_factory=list)


#: A job's pure rule bound to its arguments. A LedgerError means "nothing to do for this account".
JobPlanner = Callable[[JobAccount], JobPlan]


@dataclass(slots=True)
class JobBatchResult:
    accounts: int = 0  # accounts looked at in this batch
    already_done: int = 0  # accounts this (job, slot) had already handled: skipped
    refused: int = 0  # accounts the rule refused (e.g. nothing in MARGIN to repay with)
    entries: list[Entry] = field(default_factory=list)

    def decide(self, plan: JobPlanner, account: JobAccount) -> JobPlan:
        """The rule's plan for one account; a refusal (LedgerError) is counted and plans
        nothing. Shared by every store's ``run_job_batch``."""
        try:
            return plan(account)
        except LedgerError:
            self.refused += 1
            return JobPlan([])
