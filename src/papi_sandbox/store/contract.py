"""The store contract: :class:`Store` (every method documented and written once, each one a unit
of work run as a read or as a write) and the optional capabilities, as typed protocols.

A store (:mod:`~papi_sandbox.store.sqlite`, :mod:`~papi_sandbox.store.postgres`) supplies only
how a unit reaches its connection (:meth:`Store.read`, :meth:`Store.write`) and its lifecycle;
the units live in the module that owns the state (:mod:`~papi_sandbox.store.accounts`,
:mod:`~papi_sandbox.store.journal`, :mod:`~papi_sandbox.store.jobs`)."""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, runtime_checkable

from papi_sandbox.ledger.model import AccountBalances, Entry
from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store import accounts, jobs, journal
from papi_sandbox.store.base import (
    DEFAULT_STORE_TIMEOUT_S,
    AccountInfo,
    AccountSearch,
    ApiKeyRecord,
    InterestRecord,
    JobBatchResult,
    JobPlanner,
    Planner,
    StoreUnavailable,
    VerifyReport,
)
from papi_sandbox.store.dialect import Db
from papi_sandbox.trading.model import Announcement

P = ParamSpec("P")
T = TypeVar("T")
ItemT = TypeVar("ItemT")

#: A write unit that takes several items at once: each item's ``(result, None)`` or
#: ``(None, exception)``, in order (:meth:`Store.write_grouped`).
GroupedUnit = Callable[[Db, list[ItemT]], list[tuple[Any, BaseException | None]]]

log = logging.getLogger("papi_sandbox.store")

#: What :meth:`Store.on_commit` callbacks receive: committed entries and order executions, in
#: commit order, and each one's mark (store/outbox.py: what a subscription's horizon judges).
CommitListener = Callable[[list[Announcement], list[int]], None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Store(abc.ABC):
    """Everything the service needs from persistence, and nothing about SQL.

    Every method raises StoreUnavailable (nothing applied; the caller answers 503 -1001) when
    storage fails (disk full or read-only, a lock held elsewhere past ``timeout_s``, a lost
    connection, a damaged file), and RuntimeError when the store is not open. A write is
    durable when its method returns.
    """

    #: Longest a request waits for the store, in seconds (``serve --store-timeout``).
    timeout_s = DEFAULT_STORE_TIMEOUT_S

    #: Transactions retried after a deadlock or serialization failure (0 where none can occur).
    retries_total = 0

    def __init__(self, clock_ms: Callable[[], int] = now_ms) -> None:
        self._clock_ms = clock_ms
        self._commit_listeners: list[CommitListener] = []

    def on_commit(self, callback: CommitListener) -> None:
        """Call ``callback(items, marks)`` for journal entries and order executions
        (:data:`~papi_sandbox.trading.model.Announcement`) once they are durable, in commit
        order, never for a rolled-back one; register before :meth:`open`. SQLite: this
        process's commits, on the writer thread before the batch's callers are answered (the
        callback must only hand them over, e.g. ``EventHub.publish``). PostgreSQL: every
        process's commits (LISTEN/NOTIFY), on the event loop; entries committed while the
        listener reconnects are not announced."""
        self._commit_listeners.append(callback)

    def _publish(self, committed: list[Announcement], marks: list[int]) -> None:
        for listener in self._commit_listeners:
            try:
                listener(committed, marks)
            except Exception:  # a listener's bug must not stop the writer or the listener
                log.exception("commit listener failed")

    @abc.abstractmethod
    async def open(self) -> None:
        """Migrate the schema to this program's version, then start serving. Raises
        RuntimeError when the ledger's schema is newer than this program."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued work and release every connection and thread."""

    @abc.abstractmethod
    def exists_sync(self) -> bool:
        """Whether the ledger exists already (a SQLite file; a reachable PostgreSQL database),
        so that offline commands never create an empty one."""

    @abc.abstractmethod
    async def read(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``unit(db, *args, **kwargs)`` on a read connection; its result. The primitive under
        every read method; a feature's own state is read through it."""

    @abc.abstractmethod
    async def write(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``unit(db, *args, **kwargs)`` in one write transaction, committed durably before it
        returns; its result. Whatever the unit raises rolls its writes back and propagates. Balances
        change only through :func:`papi_sandbox.store.journal.append_entry`."""

    async def write_grouped(self, unit: GroupedUnit[ItemT], item: ItemT) -> Any:
        """``unit(db, [item])`` in one write transaction, committed durably before it returns;
        the item's result, or its refusal raised. A grouped unit takes a list of items and
        returns each one's outcome ``(result, None)`` or ``(None, exception)``; an item refused
        wrote nothing. The SQLite writer hands one call all the consecutive items of its batch
        for the same unit (one read of their state, one write of their rows); PostgreSQL runs
        each alone."""
        ((result, error),) = await self.write(unit, [item])
        if error is not None:
            raise error
        return result

    @abc.abstractmethod
    def verify_sync(self, progress: Progress = NO_PROGRESS) -> VerifyReport:
        """:meth:`verify` without opening the store (offline commands); ``progress`` counts the
        entries and balances replayed (:mod:`papi_sandbox.progress`). Raises FileNotFoundError
        for a SQLite file that does not exist."""

    async def verify(self) -> VerifyReport:
        """Replay the whole journal against the stored balances in one consistent snapshot."""
        return await asyncio.to_thread(self.verify_sync)

    # -- accounts and keys ---------------------------------------------------------------------

    async def create_account(self, label: str | None, key: ApiKeyRecord | None) -> int:
        """A new account (and optionally its first API key, whose account_id is ignored); its
        id."""
        return await self.write(accounts.create_account, label, key, self._clock_ms())

    async def find_api_key(self, api_key: str) -> ApiKeyRecord | None:
        """The key's record (secret still sealed), revoked or not; None when unknown."""
        return await self.read(accounts.find_api_key, api_key)

    async def account(self, account_id: int) -> AccountInfo | None:
        """The account's settings; None for an unknown id and for the system account."""
        return await self.read(accounts.account, account_id)

    async def list_accounts(
        self, search: AccountSearch, after_account_id: int, limit: int
    ) -> list[AccountInfo]:
        """Keyset page of accounts (never the system account) with id > ``after_account_id``,
        ascending, at most ``limit`` (capped at MAX_ACCOUNT_PAGE), matching ``search``."""
        return await self.read(accounts.list_accounts, search, after_account_id, limit)

    async def set_account_settings(
        self, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
    ) -> bool:
        """Change the settings given; False when the account does not exist."""
        return await self.write(accounts.set_account_settings, account_id, auto_repay, vip_level)

    async def add_api_key_limited(self, key: ApiKeyRecord, max_keys_per_account: int) -> bool:
        """Add ``key`` unless its account already has ``max_keys_per_account`` live (unrevoked)
        keys; the count and the insert are one atomic step. True when added. Raises LedgerError
        when the account does not exist."""
        return await self.write(
            accounts.add_api_key_limited, key, max_keys_per_account, self._clock_ms()
        )

    async def revoke_api_key(self, account_id: int, api_key: str) -> bool:
        """Mark the account's key revoked; False when the account has no such live key."""
        return await self.write(accounts.revoke_api_key, account_id, api_key, self._clock_ms())

    async def api_keys(self, account_id: int) -> list[ApiKeyRecord]:
        """The account's keys, revoked ones included, oldest first."""
        return await self.read(accounts.api_keys, account_id)

    async def rewrite_api_key_secrets(self, transform: Callable[[str, str], str]) -> int:
        """Replace every stored HMAC secret ``s`` of key ``k`` by ``transform(s, k)`` in one
        transaction (encryption-key rotation); returns how many rows changed."""
        return await self.write(accounts.rewrite_api_key_secrets, transform)

    async def claim_setting(self, name: str, value: str, *, replace: bool = False) -> str:
        """The ledger-wide setting ``name``: set to ``value`` if absent (or if ``replace``), and
        returned as stored. Processes sharing a database agree through it (e.g. on which
        encryption key seals the secrets)."""
        return await self.write(accounts.claim_setting, name, value, replace)

    # -- balances and the journal --------------------------------------------------------------

    async def balances(self, account_id: int) -> AccountBalances:
        """Every balance row of the account (empty for an unknown one). May be a shared
        cached snapshot: read it, never mutate it."""
        return await self.read(journal.load_balances, account_id)

    async def transact(self, account_id: int, entry_type: str, plan: Planner) -> Entry | None:
        """Atomically: read the account's balances, run ``plan``, append the entry and update
        the balances; durable before it returns. Returns None (and writes nothing) when the plan
        has no postings. Raises LedgerError (nothing written) when the plan refuses or the
        account does not exist."""
        change = journal.Change(account_id, entry_type, plan, self._clock_ms())
        entry: Entry | None = await self.write_grouped(journal.transact, change)
        return entry

    async def journal(
        self, account_id: int, limit: int, before_tran_id: int | None = None
    ) -> list[Entry]:
        """The account's entries with tranId < ``before_tran_id``, newest first, at most
        ``limit`` (clamped to 1..MAX_JOURNAL_PAGE)."""
        return await self.read(journal.journal, account_id, limit, before_tran_id)

    async def entry_counts(self) -> dict[str, int]:
        """Journal entries by type over the whole ledger (read once at start for metrics,
        which then count entries as they commit)."""
        return await self.read(journal.entry_counts)

    async def recent_entries(
        self, entry_types: tuple[str, ...], since_ms: int
    ) -> list[tuple[str, int, int]]:
        """``(type, account_id, time_ms)`` of the entries of these types since ``since_ms``,
        newest first, at most MAX_RECENT_ENTRIES."""
        return await self.read(journal.recent_entries, entry_types, since_ms)

    # -- readiness -----------------------------------------------------------------------------

    async def readiness(self, deadline_s: float) -> dict[str, str | None]:
        """What keeps this store from serving now, by part (None = fine): ``store`` when a
        one-row write (``meta.readiness_probe_ms``) cannot commit within ``deadline_s`` (disk
        full or read-only, a lock held elsewhere, the database unreachable). Stores with more
        parts add them (SQLite: ``writer``)."""
        try:
            await asyncio.wait_for(
                self.write(
                    accounts.claim_setting, "readiness_probe_ms", str(self._clock_ms()), True
                ),
                deadline_s,
            )
        except TimeoutError:
            return {"store": f"cannot commit within {deadline_s:g} s"}
        except StoreUnavailable as exc:
            return {"store": f"cannot commit: {exc}"}
        return {"store": None}

    # -- scheduled jobs ------------------------------------------------------------------------

    async def interest_history(
        self, account_id: int, asset: str | None, start_ms: int, end_ms: int, limit: int
    ) -> list[InterestRecord]:
        """Rows with start_ms <= accrued_ms <= end_ms, newest first, at most ``limit`` (clamped
        to 1..MAX_INTEREST_PAGE)."""
        return await self.read(jobs.interest_history, account_id, asset, start_ms, end_ms, limit)

    async def job_candidates(self, after_account_id: int, limit: int) -> list[int]:
        """Keyset page of accounts with a negative UM or CM wallet, id > after_account_id,
        ascending, at most ``limit`` (clamped to 1..MAX_JOB_BATCH_ACCOUNTS). Both jobs only ever
        act on such accounts (MARGIN free is never negative, so no other account can owe
        interest or need a repay)."""
        return await self.read(jobs.job_candidates, after_account_id, limit)

    async def run_job_batch(
        self, job: str, slot_ms: int, entry_type: str, account_ids: list[int], plan: JobPlanner
    ) -> JobBatchResult:
        """In one write transaction, for each account not yet marked for (job, slot): run the
        rule on its balances, append its entry (and interest rows), and mark it, the marker in
        the same transaction as the entry, so a re-run after a crash never applies twice.
        Raises ValueError for more than MAX_JOB_BATCH_ACCOUNTS accounts."""
        return await self.write(
            jobs.run_job_batch, job, slot_ms, entry_type, account_ids, plan, self._clock_ms
        )

    async def prune_job_marks(self, before_slot_ms: int) -> int:
        """Forget (job, slot, account) markers of slots older than ``before_slot_ms``; how
        many."""
        return await self.write(jobs.prune_job_marks, before_slot_ms)


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
