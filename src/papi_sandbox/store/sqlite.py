"""The SQLite store: WAL mode, one writer thread with group commit, a small pool of readers.

One writer serialises every change, so concurrent requests give exactly the serial result; it
commits everything queued meanwhile as one transaction (one fsync), answering each caller only
after that COMMIT returned (``synchronous=FULL``). Consecutive ``transact`` operations of a batch
are planned in memory and written with one statement per table (:class:`_TransactRun`). Why, and
the measurements: docs/design.md, docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from papi_sandbox import money
from papi_sandbox.ledger.model import (
    AccountBalances,
    Entry,
    LedgerError,
    Posting,
    Wallet,
    committed_entry,
    is_balanced,
    reported_rows,
)
from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store import journal
from papi_sandbox.store.base import Planner, VerifyReport
from papi_sandbox.store.contract import Store, now_ms
from papi_sandbox.store.dialect import SQLITE, UPSERT_BALANCE, Db
from papi_sandbox.store.readpool import ReadPool, answer, take_batch
from papi_sandbox.store.schema import migrate
from papi_sandbox.store.versions import ChangeVersions, SnapshotCache

P = ParamSpec("P")
T = TypeVar("T")

#: Most operations one group commit carries; bounds the time a batch holds the write lock.
MAX_BATCH_OPS = 256
#: Most operations waiting for the writer; past it callers wait to enqueue (back-pressure).
MAX_QUEUED_OPS = 10_000
#: Reader threads for balance and journal reads.
READER_THREADS = 4
#: ``--durability`` -> SQLite ``synchronous`` of the write connection. ``full`` (the default):
#: every COMMIT fsyncs the WAL before callers are answered. ``normal``: no fsync per commit (WAL
#: is synced at checkpoints; a power loss may drop the last commits, a process crash does not).
#: ``off``: never fsyncs.
DURABILITY_MODES = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}
DEFAULT_DURABILITY = "full"
#: Longest a balance snapshot cached here may miss a commit made by ANOTHER process on the same
#: database file (seconds). Changes made through this process are seen at once.
EXTERNAL_CHANGE_CHECK_S = 0.002


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path.db``, ``sqlite://rel.db``, ``sqlite:rel.db`` or a bare path -> Path."""
    rest = url.removeprefix("sqlite:")
    return Path(rest[2:] if rest != url and rest.startswith("//") else rest)


def connect(
    path: Path, *, readonly: bool = False, durability: str = DEFAULT_DURABILITY
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a COMMIT returns only after the WAL is fsynced, so acknowledged means on disk.
    conn.execute(f"PRAGMA synchronous={DURABILITY_MODES[durability]}")
    conn.execute("PRAGMA foreign_keys=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


def upgrade(path: Path, progress: Progress = NO_PROGRESS) -> tuple[int, int]:
    """Apply pending migrations to the file at ``path`` (created if missing); (before, after).
    ``progress``: one stage per pending migration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        return migrate(conn, SQLITE, progress)
    finally:
        conn.close()


def verify_connection(conn: sqlite3.Connection, progress: Progress = NO_PROGRESS) -> VerifyReport:
    """Replay the journal of ``conn``'s file in one read snapshot."""
    conn.execute("BEGIN")  # one consistent snapshot for the journal and the balances
    try:
        return journal.verify(Db(conn, SQLITE), progress)
    finally:
        conn.execute("ROLLBACK")


@dataclass(slots=True)
class _Op:
    fn: Callable[[Db], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    #: For ``transact``: what it does as data, so that a run of them is written together
    #: (``_TransactRun``); ``fn`` does the same alone (the savepoint pass uses it).
    change: _Change | None = None


@dataclass(slots=True)
class _Change:
    account_id: int
    entry_type: str
    plan: Planner


Outcome = tuple[Any, BaseException | None]


class SQLiteStore(Store):
    def __init__(
        self,
        path: Path,
        *,
        clock_ms: Callable[[], int] = now_ms,
        durability: str = DEFAULT_DURABILITY,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}")
        super().__init__(clock_ms)
        self.path = path
        self.durability = durability
        self._queue: queue.Queue[_Op | None] = queue.Queue(MAX_QUEUED_OPS)
        self._writer: threading.Thread | None = None
        self._readers: ReadPool | None = None
        # Balance snapshots cached for readers, invalidated by the writer (store/versions.py).
        self.versions = ChangeVersions()
        self._snapshots = SnapshotCache(self.versions)
        self._watch: sqlite3.Connection | None = None  # event loop only: sees others' commits
        self._data_version = 0
        self._watched_at = -1.0

    # -- lifecycle ---------------------------------------------------------------------------

    def open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, durability=self.durability)
        migrate(conn, SQLITE)
        self._writer = threading.Thread(
            target=self._writer_loop, args=(conn,), name="papi-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._readers = ReadPool(
            READER_THREADS,
            lambda: Db(connect(self.path, readonly=True), SQLITE),
            name="papi-sqlite-read",
        )
        self._watch = connect(self.path, readonly=True)
        self._data_version = self._watch.execute("PRAGMA data_version").fetchone()[0]

    async def open(self) -> None:
        await asyncio.to_thread(self.open_sync)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.to_thread(self._queue.put, None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown)
            self._readers = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def exists_sync(self) -> bool:
        return self.path.exists()

    def verify_sync(self, progress: Progress = NO_PROGRESS) -> VerifyReport:
        if not os.path.exists(self.path):
            raise FileNotFoundError(self.path)
        conn = connect(self.path, readonly=True)
        try:
            return verify_connection(conn, progress)
        finally:
            conn.close()

    # -- the writer --------------------------------------------------------------------------

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                batch, stop = take_batch(self._queue, MAX_BATCH_OPS)
                if batch:
                    self._commit_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        # First without a savepoint per operation (two statements fewer each); an operation that
        # fails before it wrote anything (a refusal: the common failure) needs no rollback. One
        # that fails after writing rolls the whole attempt back, and the batch runs again with a
        # savepoint per operation, so that it is undone alone.
        db = Db(conn, SQLITE)
        outcomes = self._run_batch(db, batch, savepoints=False)
        if outcomes is None:
            db = Db(conn, SQLITE)
            outcomes = self._run_batch(db, batch, savepoints=True)
        assert outcomes is not None
        # Before anyone of the batch is answered: balances change only through append_entry,
        # which notes each account it changed; its entries are durable now, and leave here once.
        self.versions.bump(db.touched)
        if db.committed:
            self._publish(db.committed)
        answer(
            [
                (op.loop, (op.future, result, error))
                for op, (result, error) in zip(batch, outcomes, strict=True)
            ]
        )

    def _run_batch(self, db: Db, batch: list[_Op], *, savepoints: bool) -> list[Outcome] | None:
        """One transaction for the batch: each operation's outcome, or None when (without
        savepoints) an operation failed after writing and the attempt was rolled back whole.
        Nothing of a rolled-back attempt is answered or published."""
        conn: sqlite3.Connection = db.conn
        outcomes: list[Outcome] = []
        run: _TransactRun | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if not savepoints and op.change is not None:
                    # Consecutive changes are planned in memory, in order, and written together.
                    if run is None:
                        run = _TransactRun(db, self._clock_ms)
                    outcomes.append(run.add(op.change))
                    continue
                if run is not None:  # what follows may read what the run changed: write it
                    _write_run(run)
                    run = None
                outcome = _run_one(db, op, savepoints=savepoints)
                if outcome is None:
                    return None
                outcomes.append(outcome)
            if run is not None:
                _write_run(run)
            conn.execute("COMMIT")
        except _RunFailed:  # a run's writes failed: the attempt is rolled back whole
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return None
        except Exception as exc:  # the commit itself failed: nothing of the batch is applied
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(None, exc) for _ in batch]
        return outcomes

    async def _write(self, fn: Callable[[Db], T], change: _Change | None = None) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        op = _Op(fn, loop, loop.create_future(), change)
        try:
            self._queue.put_nowait(op)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, op)
        # shield: a client that disconnects must not cancel a change already queued
        result: T = await asyncio.shield(op.future)
        return result

    async def write(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._write(lambda db: unit(db, *args, **kwargs))

    async def read(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._readers is None:
            raise RuntimeError("store is not open")
        return await self._readers.run(lambda db: unit(db, *args, **kwargs))

    # -- balances: the hot read, cached --------------------------------------------------------

    async def balances(self, account_id: int) -> AccountBalances:
        """The account's balances; served from the snapshot cache while nothing changed them.
        The snapshot is shared between callers: read it, never mutate it."""
        self._notice_other_commits()
        cached = self._snapshots.get(account_id)
        if cached is not None:
            return cached
        version = self.versions.of(account_id)
        snapshot = await self.read(journal.load_balances, account_id)
        self._snapshots.put(account_id, version, snapshot)
        return snapshot

    def _notice_other_commits(self) -> None:
        """Trust no cached snapshot once another process committed to the same file: SQLite
        changes ``data_version`` then. Reading it touches only shared memory (5-15 µs), so it runs
        on the event loop, at most every EXTERNAL_CHANGE_CHECK_S. This process's own changes are
        invalidated by the writer before it answers."""
        if self._watch is None:
            return
        now = time.monotonic()
        if now - self._watched_at < EXTERNAL_CHANGE_CHECK_S:
            return
        self._watched_at = now
        version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self.versions.bump_all()

    async def transact(self, account_id: int, entry_type: str, plan: Planner) -> Entry | None:
        def alone(db: Db) -> Entry | None:
            return journal.transact(db, account_id, entry_type, plan, self._clock_ms())

        return await self._write(alone, _Change(account_id, entry_type, plan))


def _write_run(run: _TransactRun) -> None:
    try:
        run.write()
    except Exception as exc:
        raise _RunFailed from exc


def _run_one(db: Db, op: _Op, *, savepoints: bool) -> Outcome | None:
    """One operation of a batch: its outcome, or None when (without savepoints) it failed
    after writing, and the attempt has been rolled back."""
    conn: sqlite3.Connection = db.conn
    if savepoints:
        conn.execute("SAVEPOINT op")
    changes = conn.total_changes
    announced = len(db.committed)
    try:
        result = op.fn(db)
    except Exception as exc:
        del db.committed[announced:]  # its entries were not written
        if savepoints:  # the op is refused alone; its batch goes on
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        elif conn.total_changes != changes or not conn.in_transaction:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return None
        return None, exc
    if savepoints:
        conn.execute("RELEASE op")
    return result, None


class _RunFailed(Exception):
    """Writing a run of changes failed: the batch must run again with savepoints."""


class _TransactRun:
    """Consecutive ``transact`` operations of one batch, written together: one SELECT for the
    balances of all their accounts (and whether each exists), each plan run in order on balances
    kept in memory (so each sees the changes before it, exactly as one after the other in SQL),
    then one INSERT each for the entries, the postings and the balance rows. A refused plan
    changes nothing. Journal ids are assigned in order from the largest one, as SQLite would
    (the writer holds the lock)."""

    def __init__(self, db: Db, clock_ms: Callable[[], int]) -> None:
        self.db = db
        self.clock_ms = clock_ms
        self.existing: set[int] = set()
        self.balances: dict[int, dict[tuple[Wallet, str], Decimal]] = {}
        self.updated: dict[tuple[int, Wallet, str], int] = {}  # row -> time of its last change
        self.entries: list[tuple[int, int, str, int]] = []
        self.postings: list[tuple[int, int, int, str, str, str]] = []
        self.next_id = 0  # read at the first entry

    def _load(self, account_ids: set[int]) -> None:
        missing = [a for a in account_ids if a not in self.balances]
        if not missing:
            return
        for account_id in missing:
            self.balances[account_id] = {}
        marks = ",".join("?" * len(missing))
        for account_id, wallet, asset, amount in self.db.execute(
            "SELECT a.id, b.wallet, b.asset, b.amount FROM accounts a"
            f" LEFT JOIN balances b ON b.account_id = a.id WHERE a.id IN ({marks})",
            missing,
        ):
            self.existing.add(account_id)
            if wallet is not None:
                self.balances[account_id][(Wallet(wallet), asset)] = money.from_storage(amount)

    def add(self, change: _Change) -> Outcome:
        self._load({change.account_id})
        try:
            if change.account_id not in self.existing:
                raise LedgerError(f"account {change.account_id} does not exist")
            postings = change.plan(dict(self.balances[change.account_id]))
        except Exception as exc:  # refused: nothing was applied
            return None, exc
        if not postings:
            return None, None
        try:
            return self._apply(change, postings), None
        except Exception as exc:  # memory may be half-updated: the batch runs again, with SQL
            raise _RunFailed from exc

    def _apply(self, change: _Change, postings: list[Posting]) -> Entry:
        if not is_balanced(postings):  # nothing unbalanced ever reaches the journal
            raise AssertionError(f"unbalanced postings from {change.entry_type}: {postings}")
        self._load({p.account_id for p in postings})
        if not self.next_id:
            (last,) = self.db.one("SELECT COALESCE(MAX(tran_id), 0) FROM entries")
            self.next_id = int(last) + 1
        tran_id, self.next_id = self.next_id, self.next_id + 1
        now = self.clock_ms()
        own = self.balances[change.account_id]
        # What the stream reports, as it was before this entry (committed_entry adds it up).
        before = {
            key: own.get(key, money.ZERO)
            for key in reported_rows(Entry(tran_id, "", now, change.account_id, tuple(postings)))
        }
        self.entries.append((tran_id, change.account_id, change.entry_type, now))
        for seq, p in enumerate(postings):
            self.postings.append(
                (tran_id, seq, p.account_id, p.wallet.value, p.asset, money.to_storage(p.amount))
            )
            rows = self.balances[p.account_id]
            key = (p.wallet, p.asset)
            rows[key] = money.add(rows.get(key, money.ZERO), p.amount)
            self.updated[(p.account_id, p.wallet, p.asset)] = now
            self.db.touched.add(p.account_id)
        entry = Entry(tran_id, change.entry_type, now, change.account_id, tuple(postings))
        self.db.committed.append(committed_entry(entry, before))
        return entry

    def write(self) -> None:
        """Write what the run planned (one statement per table)."""
        if not self.entries:
            return
        db = self.db
        db.many(
            "INSERT INTO entries (tran_id, account_id, type, time_ms) VALUES (?, ?, ?, ?)",
            self.entries,
        )
        db.many(journal.INSERT_POSTING, self.postings)
        db.many(
            UPSERT_BALANCE,
            [
                (
                    owner,
                    asset,
                    wallet.value,
                    money.to_storage(self.balances[owner][(wallet, asset)]),
                    now,
                )
                for (owner, wallet, asset), now in self.updated.items()
            ],
        )
