"""The SQLite store: WAL mode, one writer thread with group commit, a small pool of readers.

Why one writer: SQLite allows one writer at a time anyway, and a single thread that owns the write
connection serialises every account change, so concurrent requests give exactly the serial result.
Why group commit: an fsync costs about a millisecond; the writer takes every operation queued
while the previous batch was committing and commits them together, each inside its own savepoint,
so a refused operation rolls back alone. Each caller is answered only after its batch's COMMIT
returned, so an acknowledged change has reached the disk (``synchronous=FULL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from papi_sandbox import money
from papi_sandbox.files import make_private_dir, make_private_file
from papi_sandbox.ledger.model import (
    SYSTEM_ACCOUNT_ID,
    AccountBalances,
    CommittedEntry,
    Entry,
    Posting,
    Wallet,
    committed_entry,
    is_balanced,
)
from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store.base import (
    DEFAULT_STORE_TIMEOUT_S,
    MAX_ACCOUNT_PAGE,
    MAX_INTEREST_PAGE,
    MAX_JOB_BATCH_ACCOUNTS,
    MAX_JOURNAL_PAGE,
    MAX_RECENT_ENTRIES,
    AccountInfo,
    AccountSearch,
    ApiKeyRecord,
    InterestRecord,
    JobAccount,
    JobBatchResult,
    JobPlanner,
    Planner,
    StoreDamaged,
    StoreUnavailable,
    VerifyReport,
)
from papi_sandbox.store.readpool import ReadPool, take_batch
from papi_sandbox.store.replay import LedgerReplay
from papi_sandbox.store.versions import ChangeVersions, SnapshotCache

T = TypeVar("T")

log = logging.getLogger("papi_sandbox.store.sqlite")

#: What :meth:`SQLiteStore.on_commit` callbacks receive: one batch's entries, in commit order.
CommitListener = Callable[[list[CommittedEntry]], None]

#: Most operations one group commit carries; bounds the time a batch holds the write lock.
MAX_BATCH_OPS = 256
#: Most operations waiting for the writer; past it callers wait to enqueue (back-pressure).
MAX_QUEUED_OPS = 10_000
#: API keys re-sealed per page when secrets are rewritten (bounded memory at any key count).
REWRITE_PAGE_ROWS = 1000
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

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        label TEXT,
        created_ms INTEGER NOT NULL,
        auto_repay INTEGER NOT NULL DEFAULT 1,
        vip_level INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        api_key TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        key_type TEXT NOT NULL,
        secret TEXT,
        public_key TEXT,
        can_read INTEGER NOT NULL,
        can_trade INTEGER NOT NULL,
        ip_whitelist TEXT NOT NULL DEFAULT '[]',
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE entries (
        tran_id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL,
        type TEXT NOT NULL,
        time_ms INTEGER NOT NULL
    );
    CREATE INDEX entries_account ON entries(account_id, tran_id);
    CREATE TABLE postings (
        tran_id INTEGER NOT NULL REFERENCES entries(tran_id),
        seq INTEGER NOT NULL,
        account_id INTEGER NOT NULL,
        wallet TEXT NOT NULL,
        asset TEXT NOT NULL,
        amount TEXT NOT NULL,
        PRIMARY KEY (tran_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE balances (
        account_id INTEGER NOT NULL,
        asset TEXT NOT NULL,
        wallet TEXT NOT NULL,
        amount TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, asset, wallet)
    ) WITHOUT ROWID;
    INSERT INTO accounts (id, label, created_ms, auto_repay) VALUES (0, 'SYSTEM', 0, 0);
    """,
    # 2: the negative-balance toolkit (issue 4): interest history, per-(job, slot, account)
    # markers that make scheduled jobs idempotent, and an index of negative futures wallets so a
    # sweep reads only the accounts it may act on. Amounts are canonical text, so "amount < '0'"
    # is exactly "starts with '-'" ('-' sorts before every digit).
    """
    CREATE TABLE interest_records (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL,
        asset TEXT NOT NULL,
        interest TEXT NOT NULL,
        rate TEXT NOT NULL,
        principal TEXT NOT NULL,
        accrued_ms INTEGER NOT NULL,
        tran_id INTEGER NOT NULL REFERENCES entries(tran_id)
    );
    CREATE INDEX interest_records_account ON interest_records(account_id, accrued_ms);
    CREATE TABLE job_marks (
        job TEXT NOT NULL,
        slot_ms INTEGER NOT NULL,
        account_id INTEGER NOT NULL,
        tran_id INTEGER,
        PRIMARY KEY (job, slot_ms, account_id)
    ) WITHOUT ROWID;
    CREATE INDEX balances_negative_futures ON balances(account_id)
        WHERE wallet IN ('UM', 'CM') AND amount < '0';
    """,
    # 3: ledger-wide settings that every process must agree on (the encryption key's id).
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
)


def is_storage_failure(exc: BaseException) -> bool:
    """An error of the storage rather than of our SQL: locked, busy, disk full or read-only,
    I/O error, cannot open, damaged file (``OperationalError`` and plain ``DatabaseError``).
    Constraint violations and misuse (``IntegrityError``, ``ProgrammingError``...) are bugs."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def _unavailable(path: Path, exc: sqlite3.Error) -> BaseException:
    if is_storage_failure(exc):
        return StoreUnavailable(f"{path}: {exc}")
    return exc


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path.db`` or ``sqlite:relative.db`` or a bare path -> Path."""
    if url.startswith("sqlite:///"):
        return Path("/" + url[len("sqlite:///") :])
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://") :])
    if url.startswith("sqlite:"):
        return Path(url[len("sqlite:") :])
    return Path(url)


def _connect(
    path: Path,
    *,
    readonly: bool = False,
    durability: str = DEFAULT_DURABILITY,
    timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
) -> sqlite3.Connection:
    # timeout: how long a statement waits for a lock another process holds (busy timeout).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout_s)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a COMMIT returns only after the WAL is fsynced, so acknowledged means on disk.
    conn.execute(f"PRAGMA synchronous={DURABILITY_MODES[durability]}")
    conn.execute("PRAGMA foreign_keys=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations; returns the schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    #: For ``transact``: what it does as data, so that a run of them is written together
    #: (``_TransactRun``); ``fn`` does the same alone (the savepoint pass uses it).
    change: _Change | None = None
    #: time.monotonic() past which the writer refuses the op unapplied (the store timeout).
    deadline: float = math.inf


@dataclass(slots=True)
class _Change:
    account_id: int
    entry_type: str
    plan: Planner


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        _settle(future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller went away (cancelled); the change stands regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteStore:
    def __init__(
        self,
        path: Path,
        *,
        clock_ms: Callable[[], int] = _now_ms,
        durability: str = DEFAULT_DURABILITY,
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}")
        self.path = path
        self.durability = durability
        #: Longest a write waits for the writer and for another process's lock (seconds).
        self.timeout_s = timeout_s
        self._batch_started = 0.0  # writer thread: time.monotonic() of the running batch, or 0
        self._busy_ms = round(timeout_s * 1000)  # writer thread: the connection's busy timeout
        self._clock_ms = clock_ms
        self._queue: queue.Queue[_Op | None] = queue.Queue(MAX_QUEUED_OPS)
        self._writer: threading.Thread | None = None
        self._readers: ReadPool | None = None
        # Balance snapshots cached for readers, invalidated by the writer (store/versions.py).
        self.versions = ChangeVersions()
        self._snapshots = SnapshotCache(self.versions)
        self._touched: set[int] = set()  # writer thread only: accounts changed in this batch
        self._batch_transacts = 0  # writer thread only: transact ops run in this batch
        self._committed: list[CommittedEntry] = []  # writer thread only: this batch's entries
        self._commit_listeners: list[CommitListener] = []
        self._watch: sqlite3.Connection | None = None  # event loop only: sees others' commits
        self._data_version = 0
        self._watched_at = -1.0

    # -- lifecycle ---------------------------------------------------------------------------

    def open_sync(self) -> None:
        make_private_dir(self.path.parent)
        make_private_file(self.path)  # before SQLite creates it 0644 (its -wal/-shm follow)
        conn = _connect(self.path, durability=self.durability, timeout_s=self.timeout_s)
        migrate(conn)
        self._writer = threading.Thread(
            target=self._writer_loop, args=(conn,), name="papi-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._readers = ReadPool(
            READER_THREADS,
            lambda: _connect(self.path, readonly=True, timeout_s=self.timeout_s),
            name="papi-sqlite-read",
        )
        self._watch = _connect(self.path, readonly=True)
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

    def on_commit(self, callback: CommitListener) -> None:
        """Call ``callback(entries)`` after each durable commit that appended journal entries,
        with those entries in commit order (never for a rolled-back one). Called on the writer
        thread, before the batch's callers are answered: it must only hand the entries over
        (e.g. :meth:`papi_sandbox.stream.hub.EventHub.publish`). Register before :meth:`open`."""
        self._commit_listeners.append(callback)

    # -- the writer --------------------------------------------------------------------------

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                batch, stop = take_batch(self._queue, MAX_BATCH_OPS)
                batch = self._refuse_expired(conn, batch)
                if batch:
                    self._batch_started = time.monotonic()
                    try:
                        self._commit_batch(conn, batch)
                    finally:
                        self._batch_started = 0.0
                if stop:
                    return
        finally:
            conn.close()

    def _refuse_expired(self, conn: sqlite3.Connection, batch: list[_Op]) -> list[_Op]:
        """Refuse, unapplied, the ops that waited past their deadline (a lock held elsewhere, a
        slow disk), and bound the busy wait of the batch's BEGIN by the earliest deadline left,
        so no caller waits much longer than the store timeout."""
        now = time.monotonic()
        live = [op for op in batch if op.deadline > now]
        if len(live) < len(batch):
            error = StoreUnavailable(
                f"{self.path}: waited more than {self.timeout_s:g} s for the store"
            )
            for op in batch:
                if op.deadline <= now:
                    op.loop.call_soon_threadsafe(_settle, op.future, None, error)
        if live:
            left_ms = max(1, round((min(op.deadline for op in live) - now) * 1000))
            busy_ms = min(left_ms, round(self.timeout_s * 1000))
            if abs(busy_ms - self._busy_ms) > 100:  # a pragma only when the wait must change
                conn.execute(f"PRAGMA busy_timeout={busy_ms}")
                self._busy_ms = busy_ms
        return live

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        # First without a savepoint per operation (two statements fewer each); an operation that
        # fails before it wrote anything (a refusal: the common failure) needs no rollback. One
        # that fails after writing rolls the whole attempt back, and the batch runs again with a
        # savepoint per operation, so that it is undone alone.
        outcomes = self._run_batch(conn, batch, savepoints=False)
        if outcomes is None:
            outcomes = self._run_batch(conn, batch, savepoints=True)
        assert outcomes is not None
        self._publish_changes(len(batch))  # before anyone of the batch is answered
        committed, self._committed = self._committed, []
        if committed:  # durable now (the batch's COMMIT returned): the one place entries leave
            for listener in self._commit_listeners:
                try:
                    listener(committed)
                except Exception:  # a listener's bug must not stop the writer
                    log.exception("commit listener failed")
        # One wake-up per event loop per batch, not one per operation: each call_soon_threadsafe
        # writes to the loop's self-pipe and takes the GIL from the writer once more.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
        for op, (result, error) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, result, error))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_Op], *, savepoints: bool
    ) -> list[tuple[Any, BaseException | None]] | None:
        """One transaction for the batch: each operation's outcome, or None when (without
        savepoints) an operation failed after writing and the attempt was rolled back whole.
        Nothing of a rolled-back attempt is answered or published."""
        self._touched = set()
        self._batch_transacts = 0
        self._committed = []
        outcomes: list[tuple[Any, BaseException | None]] = []
        run: _TransactRun | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if not savepoints and op.change is not None:
                    # Consecutive changes are planned in memory, in order, and written together.
                    if run is None:
                        run = _TransactRun(conn, self._clock_ms, len(outcomes))
                    outcomes.append(run.add(op.change))
                    continue
                if run is not None:  # what follows may read what the run changed: write it
                    self._finish_run(run, outcomes)
                    run = None
                if savepoints:
                    conn.execute("SAVEPOINT op")
                changes = conn.total_changes
                committed_mark = len(self._committed)
                try:
                    result = op.fn(conn)
                except Exception as exc:
                    del self._committed[committed_mark:]  # its entries were not written
                    if not conn.in_transaction:  # SQLite ended it (disk full, I/O): all fail
                        raise
                    if savepoints:  # the op is refused alone; its batch goes on
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    elif conn.total_changes != changes or not conn.in_transaction:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        return None
                    outcomes.append((None, exc))
                else:
                    if savepoints:
                        conn.execute("RELEASE op")
                    outcomes.append((result, None))
            if run is not None:
                self._finish_run(run, outcomes)
            conn.execute("COMMIT")
        except _RunFailed:  # a run's writes failed: the attempt is rolled back whole
            self._committed = []
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return None
        except Exception as exc:  # the commit itself failed: nothing of the batch is applied
            self._committed = []
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(None, exc) for _ in batch]
        return outcomes

    def _finish_run(
        self, run: _TransactRun, outcomes: list[tuple[Any, BaseException | None]]
    ) -> None:
        try:
            run.write()
        except Exception as exc:
            raise _RunFailed from exc
        self._batch_transacts += run.count
        self._touched.update(run.touched)
        self._committed.extend(run.committed)

    def _publish_changes(self, batch_ops: int) -> None:
        """Invalidate cached snapshots of what the batch changed: the accounts transact touched,
        or every account when the batch held an operation of another kind."""
        if self._batch_transacts < batch_ops:
            self.versions.bump_all()
        else:
            self.versions.bump(self._touched)

    async def _write(
        self, fn: Callable[[sqlite3.Connection], T], change: _Change | None = None
    ) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        op = _Op(fn, loop, loop.create_future(), change, time.monotonic() + self.timeout_s)
        try:
            self._queue.put_nowait(op)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, op)
        # shield: a client that disconnects must not cancel a change already queued
        try:
            result: T = await asyncio.shield(op.future)
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from exc
        return result

    # -- readers -----------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("store is not open")
        try:
            return await self._readers.run(fn)
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from exc

    # -- readiness -----------------------------------------------------------------------------

    async def readiness(self, deadline_s: float) -> dict[str, str | None]:
        """What keeps this store from serving now, by part (None = fine): ``store`` when a
        small write cannot commit within ``deadline_s`` (disk full or read-only, a lock held
        elsewhere), ``writer`` when the writer thread is gone or one batch has run longer than
        ``deadline_s``. Writes one row of ``meta`` (the probe's time)."""
        checks: dict[str, str | None] = {"store": None, "writer": None}
        started = self._batch_started
        if self._writer is None or not self._writer.is_alive():
            checks["writer"] = "the writer thread is not running"
        elif started and time.monotonic() - started > deadline_s:
            checks["writer"] = f"stalled: one batch has run for {time.monotonic() - started:.1f} s"
        now_ms = self._clock_ms()

        def probe(conn: sqlite3.Connection) -> None:
            self._batch_transacts += 1  # changes no balance: no snapshot needs dropping
            conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('readiness_probe_ms', ?)",
                (str(now_ms),),
            )

        try:
            await asyncio.wait_for(self._write(probe), deadline_s)
        except TimeoutError:
            checks["store"] = f"{self.path}: cannot commit within {deadline_s:g} s"
        except StoreUnavailable as exc:
            checks["store"] = f"cannot commit: {exc}"
        return checks

    # -- accounts and keys -------------------------------------------------------------------

    async def create_account(self, label: str | None, key: ApiKeyRecord | None) -> int:
        now = self._clock_ms()

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO accounts (label, created_ms) VALUES (?, ?)", (label, now)
            )
            account_id = int(cur.lastrowid or 0)
            if key is not None:
                _insert_key(conn, key, account_id, now)
            return account_id

        return await self._write(op)

    async def add_api_key(self, key: ApiKeyRecord) -> None:
        now = self._clock_ms()
        await self._write(lambda conn: _insert_key(conn, key, key.account_id, now))

    async def find_api_key(self, api_key: str) -> ApiKeyRecord | None:
        def op(conn: sqlite3.Connection) -> ApiKeyRecord | None:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE api_key = ?", (api_key,)
            ).fetchone()
            return None if row is None else _key_record(row)

        return await self._read(op)

    async def account(self, account_id: int) -> AccountInfo | None:
        def op(conn: sqlite3.Connection) -> AccountInfo | None:
            row = conn.execute(
                "SELECT id, label, created_ms, auto_repay, vip_level FROM accounts WHERE id = ?",
                (account_id,),
            ).fetchone()
            if row is None or row[0] == SYSTEM_ACCOUNT_ID:
                return None
            return AccountInfo(row[0], row[1], row[2], bool(row[3]), row[4])

        return await self._read(op)

    async def list_accounts(
        self, search: AccountSearch, after_account_id: int, limit: int
    ) -> list[AccountInfo]:
        def op(conn: sqlite3.Connection) -> list[AccountInfo]:
            rows = conn.execute(
                "SELECT id, label, created_ms, auto_repay, vip_level FROM accounts"
                " WHERE id > ? AND id != ?"
                " AND (? = '' OR id = ? OR lower(label) LIKE ? ESCAPE '\\')"
                " ORDER BY id LIMIT ?",
                (
                    after_account_id,
                    SYSTEM_ACCOUNT_ID,
                    search.text,
                    search.account_id,
                    search.like_pattern,
                    max(1, min(limit, MAX_ACCOUNT_PAGE)),
                ),
            ).fetchall()
            return [AccountInfo(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

        return await self._read(op)

    # -- balances and the journal ------------------------------------------------------------

    async def balances(self, account_id: int) -> AccountBalances:
        """The account's balances; served from the snapshot cache while nothing changed them.
        The snapshot is shared between callers: read it, never mutate it."""
        self._notice_other_commits()
        cached = self._snapshots.get(account_id)
        if cached is not None:
            return cached
        version = self.versions.of(account_id)
        snapshot = await self._read(lambda conn: _load_balances(conn, account_id))
        self._snapshots.put(account_id, version, snapshot)
        return snapshot

    def _notice_other_commits(self) -> None:
        """Trust no cached snapshot once another process committed to the same file (a job
        runner, an operator's script): SQLite changes ``data_version`` when any other connection
        commits. Reading it touches only the WAL index in shared memory (no disk I/O), so it runs
        on the event loop, at most every EXTERNAL_CHANGE_CHECK_S (it costs 5-15 µs). This
        process's own changes need no check: the writer invalidates them before answering."""
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
        def op(conn: sqlite3.Connection) -> Entry | None:
            self._batch_transacts += 1
            snapshot = _load_balances(conn, account_id)
            postings = plan(snapshot.amounts)
            if not postings:
                return None
            entry = _append_entry(
                conn, account_id, entry_type, postings, self._clock_ms(), known=snapshot.amounts
            )
            for p in postings:
                self._touched.add(p.account_id)
            self._committed.append(committed_entry(entry, snapshot.amounts))
            return entry

        return await self._write(op, _Change(account_id, entry_type, plan))

    async def journal(
        self, account_id: int, limit: int, before_tran_id: int | None = None
    ) -> list[Entry]:
        limit = max(1, min(limit, MAX_JOURNAL_PAGE))

        def op(conn: sqlite3.Connection) -> list[Entry]:
            before = before_tran_id if before_tran_id is not None else 2**62
            heads = conn.execute(
                "SELECT tran_id, type, time_ms FROM entries WHERE account_id = ? AND tran_id < ?"
                " ORDER BY tran_id DESC LIMIT ?",
                (account_id, before, limit),
            ).fetchall()
            entries = []
            for tran_id, entry_type, time_ms in heads:
                rows = conn.execute(
                    "SELECT account_id, wallet, asset, amount FROM postings WHERE tran_id = ?"
                    " ORDER BY seq",
                    (tran_id,),
                ).fetchall()
                postings = tuple(
                    Posting(r[0], Wallet(r[1]), r[2], money.from_storage(r[3])) for r in rows
                )
                entries.append(Entry(tran_id, entry_type, time_ms, account_id, postings))
            return entries

        return await self._read(op)

    async def verify(self) -> VerifyReport:
        return await asyncio.to_thread(self.verify_sync)

    def verify_sync(self, progress: Progress = NO_PROGRESS) -> VerifyReport:
        """Replay the whole journal and compare it with the stored balances (``progress``: see
        :mod:`papi_sandbox.progress`)."""
        conn, notes = open_read_only(self.path)
        try:
            damage = integrity_problems(conn, quick=False)
            try:
                report = verify_connection(conn, progress)
            except sqlite3.DatabaseError as exc:  # too damaged to replay
                report = VerifyReport()
                damage.append(f"the ledger cannot be read: {exc}")
        finally:
            conn.close()
        report.damage[:0] = damage
        report.notes.extend(notes)
        return report

    # -- the negative-balance toolkit (issue 4) ------------------------------------------------

    async def set_account_settings(
        self, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            exists = conn.execute(
                "SELECT 1 FROM accounts WHERE id = ? AND id != ?", (account_id, SYSTEM_ACCOUNT_ID)
            ).fetchone()
            if exists is None:
                return False
            if auto_repay is not None:
                conn.execute(
                    "UPDATE accounts SET auto_repay = ? WHERE id = ?", (int(auto_repay), account_id)
                )
            if vip_level is not None:
                conn.execute(
                    "UPDATE accounts SET vip_level = ? WHERE id = ?", (vip_level, account_id)
                )
            return True

        return await self._write(op)

    async def interest_history(
        self, account_id: int, asset: str | None, start_ms: int, end_ms: int, limit: int
    ) -> list[InterestRecord]:
        limit = max(1, min(limit, MAX_INTEREST_PAGE))
        sql = (
            "SELECT account_id, asset, interest, rate, principal, accrued_ms, tran_id"
            " FROM interest_records WHERE account_id = ? AND accrued_ms BETWEEN ? AND ?"
        )
        args: list[Any] = [account_id, start_ms, end_ms]
        if asset is not None:
            sql += " AND asset = ?"
            args.append(asset)
        sql += " ORDER BY accrued_ms DESC, id DESC LIMIT ?"
        args.append(limit)

        def op(conn: sqlite3.Connection) -> list[InterestRecord]:
            return [
                InterestRecord(
                    r[0],
                    r[1],
                    money.from_storage(r[2]),
                    money.from_storage(r[3]),
                    money.from_storage(r[4]),
                    r[5],
                    r[6],
                )
                for r in conn.execute(sql, args)
            ]

        return await self._read(op)

    async def job_candidates(self, after_account_id: int, limit: int) -> list[int]:
        limit = max(1, min(limit, MAX_JOB_BATCH_ACCOUNTS))

        def op(conn: sqlite3.Connection) -> list[int]:
            # The WHERE clause repeats the partial index's, so SQLite reads only that index.
            return [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT account_id FROM balances"
                    " WHERE wallet IN ('UM', 'CM') AND amount < '0' AND account_id > ?"
                    " ORDER BY account_id LIMIT ?",
                    (max(after_account_id, SYSTEM_ACCOUNT_ID), limit),
                )
            ]

        return await self._read(op)

    async def run_job_batch(
        self, job: str, slot_ms: int, entry_type: str, account_ids: list[int], plan: JobPlanner
    ) -> JobBatchResult:
        if len(account_ids) > MAX_JOB_BATCH_ACCOUNTS:
            raise ValueError(f"a job batch carries at most {MAX_JOB_BATCH_ACCOUNTS} accounts")

        def op(conn: sqlite3.Connection) -> JobBatchResult:
            result = JobBatchResult()
            for account_id in account_ids:
                if account_id == SYSTEM_ACCOUNT_ID:
                    continue
                result.accounts += 1
                done = conn.execute(
                    "SELECT 1 FROM job_marks WHERE job = ? AND slot_ms = ? AND account_id = ?",
                    (job, slot_ms, account_id),
                ).fetchone()
                if done is not None:
                    result.already_done += 1
                    continue
                settings = conn.execute(
                    "SELECT auto_repay, vip_level FROM accounts WHERE id = ?", (account_id,)
                ).fetchone()
                if settings is None:
                    continue
                snapshot = _load_balances(conn, account_id)
                decision = result.decide(
                    plan, JobAccount(account_id, bool(settings[0]), settings[1], snapshot.amounts)
                )
                tran_id: int | None = None
                if decision.postings:
                    entry = _append_entry(
                        conn,
                        account_id,
                        entry_type,
                        decision.postings,
                        self._clock_ms(),
                        known=snapshot.amounts,
                    )
                    tran_id = entry.tran_id
                    result.entries.append(entry)
                    self._committed.append(committed_entry(entry, snapshot.amounts))
                    conn.executemany(
                        "INSERT INTO interest_records (account_id, asset, interest, rate,"
                        " principal, accrued_ms, tran_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                account_id,
                                c.asset,
                                money.to_storage(c.interest),
                                money.to_storage(c.rate),
                                money.to_storage(c.principal),
                                slot_ms,
                                tran_id,
                            )
                            for c in decision.interest
                        ],
                    )
                # Same transaction as the entry: after a crash both exist or neither does.
                conn.execute(
                    "INSERT INTO job_marks (job, slot_ms, account_id, tran_id) VALUES (?, ?, ?, ?)",
                    (job, slot_ms, account_id, tran_id),
                )
            return result

        return await self._write(op)

    async def prune_job_marks(self, before_slot_ms: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM job_marks WHERE slot_ms < ?", (before_slot_ms,)
            ).rowcount

        return await self._write(op)

    # -- API key management and operations (security issue) ----------------------------------

    async def add_api_key_limited(self, key: ApiKeyRecord, max_keys_per_account: int) -> bool:
        now = self._clock_ms()

        def op(conn: sqlite3.Connection) -> bool:
            (live,) = conn.execute(
                "SELECT COUNT(*) FROM api_keys WHERE account_id = ? AND revoked_ms IS NULL",
                (key.account_id,),
            ).fetchone()
            if live >= max_keys_per_account:
                return False
            _insert_key(conn, key, key.account_id, now)
            return True

        return await self._write(op)

    async def revoke_api_key(self, account_id: int, api_key: str) -> bool:
        now = self._clock_ms()

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_ms = ?"
                " WHERE api_key = ? AND account_id = ? AND revoked_ms IS NULL",
                (now, api_key, account_id),
            )
            return cur.rowcount == 1

        return await self._write(op)

    async def api_keys(self, account_id: int) -> list[ApiKeyRecord]:
        def op(conn: sqlite3.Connection) -> list[ApiKeyRecord]:
            rows = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE account_id = ?"
                " ORDER BY created_ms, api_key",
                (account_id,),
            ).fetchall()
            return [_key_record(row) for row in rows]

        return await self._read(op)

    async def rewrite_api_key_secrets(self, transform: Callable[[str, str], str]) -> int:
        def op(conn: sqlite3.Connection) -> int:
            changed, after = 0, ""
            while True:  # keyset pages: memory stays flat however many keys there are
                rows = conn.execute(
                    "SELECT api_key, secret FROM api_keys WHERE secret IS NOT NULL AND api_key > ?"
                    " ORDER BY api_key LIMIT ?",
                    (after, REWRITE_PAGE_ROWS),
                ).fetchall()
                if not rows:
                    return changed
                for api_key, secret in rows:
                    new = transform(secret, api_key)
                    if new != secret:
                        conn.execute(
                            "UPDATE api_keys SET secret = ? WHERE api_key = ?", (new, api_key)
                        )
                        changed += 1
                after = rows[-1][0]

        return await self._write(op)

    async def claim_setting(self, name: str, value: str, *, replace: bool = False) -> str:
        def op(conn: sqlite3.Connection) -> str:
            verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
            conn.execute(f"{verb} INTO meta (name, value) VALUES (?, ?)", (name, value))
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
            return str(row[0])

        return await self._write(op)

    async def entry_counts(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT type, COUNT(*) FROM entries GROUP BY type").fetchall()
            return {str(t): int(n) for t, n in rows}

        return await self._read(op)

    async def recent_entries(
        self, entry_types: tuple[str, ...], since_ms: int
    ) -> list[tuple[str, int, int]]:
        marks = ",".join("?" * len(entry_types))

        def op(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
            # Newest first by tran_id (time order within a process) until past the window.
            rows = conn.execute(
                f"SELECT type, account_id, time_ms FROM entries WHERE type IN ({marks})"
                " AND time_ms >= ? ORDER BY tran_id DESC LIMIT ?",
                (*entry_types, since_ms, MAX_RECENT_ENTRIES),
            ).fetchall()
            return [(str(t), int(a), int(ms)) for t, a, ms in rows]

        return await self._read(op)


class _RunFailed(Exception):
    """Writing a run of changes failed: the batch must run again with savepoints."""


class _TransactRun:
    """Consecutive ``transact`` operations of one batch, written together: one SELECT for the
    balances of all their accounts, each plan run in order on balances kept in memory (so each
    sees the changes before it, exactly as one after the other in SQL), then one INSERT each for
    the entries, the postings and the balance rows. A refused plan changes nothing. Journal ids
    are assigned in order from the largest one, as SQLite would (the writer holds the lock)."""

    def __init__(self, conn: sqlite3.Connection, clock_ms: Callable[[], int], first: int) -> None:
        self.conn = conn
        self.clock_ms = clock_ms
        self.count = 0
        self.touched: set[int] = set()
        self.balances: dict[int, dict[tuple[Wallet, str], Decimal]] = {}
        self.updated: dict[tuple[int, Wallet, str], int] = {}  # row -> time of its last change
        self.entries: list[tuple[int, int, str, int]] = []
        self.postings: list[tuple[int, int, int, str, str, str]] = []
        self.committed: list[CommittedEntry] = []
        self.next_id = 0  # read at the first entry

    def _load(self, account_ids: set[int]) -> None:
        missing = [a for a in account_ids if a not in self.balances]
        if not missing:
            return
        for account_id in missing:
            self.balances[account_id] = {}
        marks = ",".join("?" * len(missing))
        for account_id, wallet, asset, amount in self.conn.execute(
            f"SELECT account_id, wallet, asset, amount FROM balances WHERE account_id IN ({marks})",
            missing,
        ):
            self.balances[account_id][(Wallet(wallet), asset)] = money.from_storage(amount)

    def add(self, change: _Change) -> tuple[Any, BaseException | None]:
        self.count += 1
        self._load({change.account_id})
        try:
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
            (last,) = self.conn.execute("SELECT COALESCE(MAX(tran_id), 0) FROM entries").fetchone()
            self.next_id = int(last) + 1
        tran_id, self.next_id = self.next_id, self.next_id + 1
        now = self.clock_ms()
        self.entries.append((tran_id, change.account_id, change.entry_type, now))
        for seq, p in enumerate(postings):
            self.postings.append(
                (tran_id, seq, p.account_id, p.wallet.value, p.asset, money.to_storage(p.amount))
            )
            rows = self.balances[p.account_id]
            key = (p.wallet, p.asset)
            rows[key] = money.add(rows.get(key, money.ZERO), p.amount)
            self.updated[(p.account_id, p.wallet, p.asset)] = now
            self.touched.add(p.account_id)
        entry = Entry(tran_id, change.entry_type, now, change.account_id, tuple(postings))
        own = self.balances[change.account_id]
        self.committed.append(
            CommittedEntry(
                entry,
                tuple(
                    (wallet, asset, own[(wallet, asset)])
                    for wallet, asset in dict.fromkeys(
                        (p.wallet, p.asset) for p in postings if p.account_id == change.account_id
                    )
                ),
            )
        )
        return entry

    def write(self) -> None:
        if not self.entries:
            return
        conn = self.conn
        conn.executemany(
            "INSERT INTO entries (tran_id, account_id, type, time_ms) VALUES (?, ?, ?, ?)",
            self.entries,
        )
        conn.executemany(
            "INSERT INTO postings (tran_id, seq, account_id, wallet, asset, amount)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            self.postings,
        )
        conn.executemany(
            "INSERT INTO balances (account_id, asset, wallet, amount, updated_ms)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, asset, wallet)"
            " DO UPDATE SET amount = excluded.amount, updated_ms = excluded.updated_ms",
            [
                (
                    account_id,
                    asset,
                    wallet.value,
                    money.to_storage(self.balances[account_id][(wallet, asset)]),
                    now,
                )
                for (account_id, wallet, asset), now in self.updated.items()
            ],
        )


def _append_entry(
    conn: sqlite3.Connection,
    account_id: int,
    entry_type: str,
    postings: list[Posting],
    now: int,
    *,
    known: Mapping[tuple[Wallet, str], Decimal] | None = None,
) -> Entry:
    """Journal one entry and apply it to the stored balances (the caller holds the write lock).
    ``known``: the balances of ``account_id`` as read in this same transaction (every row it
    has), which spares reading them again; other accounts' rows are read here."""
    # Assert where it is relied on: nothing unbalanced ever reaches the journal.
    if not is_balanced(postings):
        raise AssertionError(f"unbalanced postings from {entry_type}: {postings}")
    cur = conn.execute(
        "INSERT INTO entries (account_id, type, time_ms) VALUES (?, ?, ?)",
        (account_id, entry_type, now),
    )
    tran_id = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT INTO postings (tran_id, seq, account_id, wallet, asset, amount)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (tran_id, seq, p.account_id, p.wallet.value, p.asset, money.to_storage(p.amount))
            for seq, p in enumerate(postings)
        ],
    )
    # Each balance row the entry touches, once, with the net of its postings.
    nets: dict[tuple[int, Wallet, str], Decimal] = {}
    for p in postings:
        key = (p.account_id, p.wallet, p.asset)
        nets[key] = money.add(nets.get(key, money.ZERO), p.amount)
    updates: list[tuple[str, int, int, str, str]] = []
    for (owner, wallet, asset), net in nets.items():
        current: Decimal | None
        if known is not None and owner == account_id:
            current = known.get((wallet, asset))
        else:
            row = conn.execute(
                "SELECT amount FROM balances WHERE account_id = ? AND asset = ? AND wallet = ?",
                (owner, asset, wallet.value),
            ).fetchone()
            current = money.from_storage(row[0]) if row else None
        if current is None:
            conn.execute(
                "INSERT INTO balances (account_id, asset, wallet, amount, updated_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (owner, asset, wallet.value, money.to_storage(net), now),
            )
        else:
            new = money.to_storage(money.add(current, net))
            updates.append((new, now, owner, asset, wallet.value))
    if updates:
        conn.executemany(
            "UPDATE balances SET amount = ?, updated_ms = ?"
            " WHERE account_id = ? AND asset = ? AND wallet = ?",
            updates,
        )
    return Entry(tran_id, entry_type, now, account_id, tuple(postings))


_KEY_COLUMNS = (
    "api_key, account_id, key_type, secret, public_key, can_read, can_trade, ip_whitelist,"
    " revoked_ms"
)


def _key_record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        api_key=row[0],
        account_id=row[1],
        key_type=row[2],
        secret=row[3],
        public_key=row[4],
        can_read=bool(row[5]),
        can_trade=bool(row[6]),
        ip_whitelist=tuple(json.loads(row[7])),
        revoked=row[8] is not None,
    )


def _insert_key(conn: sqlite3.Connection, key: ApiKeyRecord, account_id: int, now: int) -> None:
    conn.execute(
        "INSERT INTO api_keys (api_key, account_id, key_type, secret, public_key, can_read,"
        " can_trade, ip_whitelist, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key.api_key,
            account_id,
            key.key_type,
            key.secret,
            key.public_key,
            int(key.can_read),
            int(key.can_trade),
            json.dumps(list(key.ip_whitelist)),
            now,
        ),
    )


def _load_balances(conn: sqlite3.Connection, account_id: int) -> AccountBalances:
    result = AccountBalances()
    for wallet, asset, amount, updated_ms in conn.execute(
        "SELECT wallet, asset, amount, updated_ms FROM balances WHERE account_id = ?",
        (account_id,),
    ):
        result.amounts[(Wallet(wallet), asset)] = money.from_storage(amount)
        if updated_ms > result.updated_ms.get(asset, -1):
            result.updated_ms[asset] = updated_ms
    return result


def verify_connection(conn: sqlite3.Connection, progress: Progress = NO_PROGRESS) -> VerifyReport:
    """Replay every posting; check entries balance, stored balances equal the replay, every asset
    sums to zero over the ledger, and no account's MARGIN free is negative."""
    replay = LedgerReplay(progress)
    conn.execute("BEGIN")  # one consistent snapshot for the journal and the balances
    try:
        replay.report.entries = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        for tran_id, account_id, wallet, asset, amount in conn.execute(
            "SELECT tran_id, account_id, wallet, asset, amount FROM postings ORDER BY tran_id, seq"
        ):
            replay.posting(tran_id, account_id, wallet, asset, money.from_storage(amount))
        for account_id, wallet, asset, amount in conn.execute(
            "SELECT account_id, wallet, asset, amount FROM balances"
        ):
            replay.stored_balance(account_id, wallet, asset, money.from_storage(amount))
        replay.report.accounts = conn.execute(
            "SELECT COUNT(*) FROM accounts WHERE id != ?", (SYSTEM_ACCOUNT_ID,)
        ).fetchone()[0]
    finally:
        conn.execute("ROLLBACK")
    return replay.finish()


#: Most problems one integrity check reports.
MAX_INTEGRITY_PROBLEMS = 100


def integrity_problems(conn: sqlite3.Connection, *, quick: bool) -> list[str]:
    """SQLite's own checks of the file: ``PRAGMA integrity_check`` (``quick_check`` with
    ``quick``: the page and b-tree structure without matching indexes to tables, O(size) but
    several times faster) and ``PRAGMA foreign_key_check``. Empty when the file is sound."""
    pragma = "quick_check" if quick else "integrity_check"
    try:
        rows = conn.execute(f"PRAGMA {pragma}({MAX_INTEGRITY_PROBLEMS})").fetchall()
        problems = [f"{pragma}: {r[0]}" for r in rows if r[0] != "ok"]
        if not quick:
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall()[
                :MAX_INTEGRITY_PROBLEMS
            ]:
                problems.append(f"foreign_key_check: {table} row {rowid} has no {parent} row")
    except sqlite3.DatabaseError as exc:
        problems = [f"{pragma}: {exc}"]
    return problems


def open_read_only(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    """A connection that never writes (no WAL switch, no -shm created where it can be
    avoided): for ``verify``, so that it works on a read-only copy. Refuses a missing file. A
    copy SQLite cannot open read-only in WAL mode (its folder is read-only and it has no -shm)
    is opened as immutable; then a -wal file next to it is not read, which the notes say."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    target = urllib.parse.quote(str(path.resolve()))
    conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn, []
    except sqlite3.OperationalError:
        conn.close()
    conn = sqlite3.connect(f"file:{target}?mode=ro&immutable=1", uri=True, isolation_level=None)
    notes = [f"{path}: opened as immutable (read-only place, no -shm file)"]
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        notes.append(
            f"{wal} was not read: changes still in it are not in this check; copy the database"
            " with `sqlite3 ... .backup` or after a clean stop to include them"
        )
    return conn, notes


def check_before_start(path: Path, *, durability: str = DEFAULT_DURABILITY) -> None:
    """What ``serve`` checks before it listens: the file can be created or opened for writing
    and migrated, and passes ``PRAGMA quick_check``. Raises StoreDamaged (a damaged file),
    sqlite3.Error or OSError (e.g. a read-only file system), each naming the path."""
    make_private_dir(path.parent)
    make_private_file(path)
    conn = _connect(path, durability=durability)
    try:
        damage = integrity_problems(conn, quick=True)
        if damage:
            raise StoreDamaged(
                f"{path} is damaged ({'; '.join(damage[:3])}); refusing to serve it. Run"
                f" `papi-sandbox verify --db sqlite:///{path}` for the full report, and restore"
                " a backup (docs/operations.md)"
            )
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")  # the write lock can be taken (not read-only)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
