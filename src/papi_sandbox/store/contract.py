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
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, runtime_checkable

from papi_sandbox.ledger.model import AccountBalances, Entry
from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store import accounts, jobs
from papi_sandbox.store import journal as ledger
from papi_sandbox.store.base import (
    DEFAULT_STORE_TIMEOUT_S,
    Planner,
    StoreUnavailable,
    VerifyReport,
    now_ms,
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


def run_alone(db: Db, unit: GroupedUnit[ItemT], item: ItemT) -> Any:
    """``unit`` for one item: its result, or its refusal raised."""
    ((result, error),) = unit(db, [item])
    if error is not None:
        raise error
    return result


class _Unit(Generic[P, T]):
    """A :class:`Store` method that runs one unit of work: ``store.name(*args)`` is
    ``store.read(unit, *args)`` (``store.write`` when ``write``); the unit documents it."""

    def __init__(self, unit: Callable[Concatenate[Db, P], T], *, write: bool = False) -> None:
        self.unit, self.writes, self.__doc__ = unit, write, unit.__doc__

    def __get__(self, store: Store, owner: type[Store]) -> Callable[P, Coroutine[Any, Any, T]]:
        unit, run = self.unit, store.write if self.writes else store.read

        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run(unit, *args, **kwargs)

        method.__doc__ = self.__doc__
        return method


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

    def __init__(self) -> None:
        self._commit_listeners: list[CommitListener] = []
        self._lost_listeners: list[Callable[[], None]] = []

    def on_commit(self, callback: CommitListener) -> None:
        """Call ``callback(items, marks)`` for journal entries and order executions
        (:data:`~papi_sandbox.trading.model.Announcement`) once they are durable, in commit
        order, never for a rolled-back one; register before :meth:`open`. SQLite: this
        process's commits, on the writer thread before the batch's callers are answered (the
        callback must only hand them over, e.g. ``EventHub.publish``). PostgreSQL: every
        process's commits (LISTEN/NOTIFY), on the event loop; entries committed while the
        listener reconnects are not announced: :meth:`on_announcements_lost` says so."""
        self._commit_listeners.append(callback)

    def on_announcements_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the event loop when announcements may have been lost
        (PostgreSQL: the listener lost its connection; called once it listens again, so that
        what the callback reads afterwards misses nothing). A listener that keeps state from
        announcements reads it again from the store. SQLite never loses one (its outbox is
        durable). Register before :meth:`open`."""
        self._lost_listeners.append(callback)

    def _announcements_lost(self) -> None:
        for listener in self._lost_listeners:
            try:
                listener()
            except Exception:  # one listener's bug must not stop the others or the listener
                log.exception("announcements-lost listener failed")

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
        """Whether the ledger exists already (a SQLite file; a PostgreSQL database with the
        ledger's tables), so that offline commands never create an empty one. Raises
        StoreUnavailable when the database cannot be reached (its reason, never the URL)."""

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
        return await self.write(run_alone, unit, item)

    @abc.abstractmethod
    def verify_sync(self, progress: Progress = NO_PROGRESS) -> VerifyReport:
        """:meth:`verify` without opening the store (offline commands); ``progress`` counts the
        entries and balances replayed (:mod:`papi_sandbox.progress`). Raises FileNotFoundError
        for a SQLite file that does not exist."""

    async def verify(self) -> VerifyReport:
        """Replay the whole journal against the stored balances in one consistent snapshot."""
        return await asyncio.to_thread(self.verify_sync)

    async def balances(self, account_id: int) -> AccountBalances:
        """Every balance row of the account (empty for an unknown one). May be a shared
        cached snapshot: read it, never mutate it."""
        return await self.read(ledger.load_balances, account_id)

    async def transact(self, account_id: int, entry_type: str, plan: Planner) -> Entry | None:
        """Atomically: read the account's balances, run ``plan``, append the entry and update
        the balances; durable before it returns. Returns None (and writes nothing) when the plan
        has no postings. Raises LedgerError (nothing written) when the plan refuses or the
        account does not exist."""
        change = ledger.Change(account_id, entry_type, plan, now_ms())
        entry: Entry | None = await self.write_grouped(ledger.transact, change)
        return entry

    async def readiness(self, deadline_s: float) -> dict[str, str | None]:
        """What keeps this store from serving now, by part (None = fine): ``store`` when a
        one-row write (``meta.readiness_probe_ms``) cannot commit within ``deadline_s`` (disk
        full or read-only, a lock held elsewhere, the database unreachable). Stores with more
        parts add them (SQLite: ``writer``)."""
        probe = self.claim_setting("readiness_probe_ms", str(now_ms()), replace=True)
        try:
            await asyncio.wait_for(probe, deadline_s)
        except TimeoutError:
            return {"store": f"cannot commit within {deadline_s:g} s"}
        except StoreUnavailable as exc:
            return {"store": f"cannot commit: {exc}"}
        return {"store": None}

    # The units every caller needs, as methods: ``store.account(7)`` is
    # ``await store.read(accounts.account, 7)``; each unit's docstring says what it returns and
    # raises.
    create_account = _Unit(accounts.create_account, write=True)
    find_api_key = _Unit(accounts.find_api_key)
    account = _Unit(accounts.account)
    list_accounts = _Unit(accounts.list_accounts)
    set_account_settings = _Unit(accounts.set_account_settings, write=True)
    add_api_key_limited = _Unit(accounts.add_api_key_limited, write=True)
    revoke_api_key = _Unit(accounts.revoke_api_key, write=True)
    api_keys = _Unit(accounts.api_keys)
    rewrite_api_key_secrets = _Unit(accounts.rewrite_api_key_secrets, write=True)
    claim_setting = _Unit(accounts.claim_setting, write=True)
    journal = _Unit(ledger.journal)
    entry_counts = _Unit(ledger.entry_counts)
    recent_entries = _Unit(ledger.recent_entries)
    interest_history = _Unit(jobs.interest_history)
    job_candidates = _Unit(jobs.job_candidates)
    run_job_batch = _Unit(jobs.run_job_batch, write=True)
    prune_job_marks = _Unit(jobs.prune_job_marks, write=True)


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
