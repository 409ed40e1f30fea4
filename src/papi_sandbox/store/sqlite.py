"""The SQLite store: WAL mode, one writer thread with group commit, a small pool of readers.

One writer serialises every change, so concurrent requests give exactly the serial result; it
commits everything queued meanwhile as one transaction (one fsync), answering each caller only
after that COMMIT returned (``synchronous=FULL``). Consecutive operations of one grouped unit
(``write_grouped``; ``transact`` is one) are handed to one call of it, which plans them in memory
and writes them with one statement per table. Why, and the measurements: docs/design.md,
docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from papi_sandbox.files import make_private_dir, make_private_file
from papi_sandbox.ledger.model import (
    AccountBalances,
)
from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store import journal, outbox
from papi_sandbox.store.base import (
    DEFAULT_STORE_TIMEOUT_S,
    StoreDamaged,
    StoreUnavailable,
    VerifyReport,
)
from papi_sandbox.store.contract import GroupedUnit, ItemT, Store, run_alone
from papi_sandbox.store.dialect import SQLITE, Db
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
#: Prepared statements each connection keeps (sqlite3's default is 128). A unit of work that
#: reads or writes a group of accounts has statements whose text depends on the group's size
#: (``IN (?, ?, ...)``, multi-row VALUES): with 128 the writer prepared them anew batch after
#: batch (~50-130 µs each, against ~10 µs to run a cached one).
STATEMENT_CACHE = 1024
#: Longest a balance snapshot cached here may miss a commit made by ANOTHER process on the same
#: database file (seconds). Changes made through this process are seen at once.
EXTERNAL_CHANGE_CHECK_S = 0.002


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path.db``, ``sqlite://rel.db``, ``sqlite:rel.db`` or a bare path -> Path.

    ``sqlite:////abs/path.db`` (SQLAlchemy's spelling of an absolute path) is the same file as
    ``sqlite:///abs/path.db``: the leading slashes of an absolute path collapse to one."""
    rest = url.removeprefix("sqlite:")
    if rest != url and rest.startswith("//"):
        rest = rest[2:]
    return Path("/" + rest.lstrip("/") if rest.startswith("/") else rest)


def connect(
    path: Path,
    *,
    readonly: bool = False,
    durability: str = DEFAULT_DURABILITY,
    timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on; a
    statement waits at most ``timeout_s`` for a lock another process holds (busy timeout)."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=timeout_s,
        cached_statements=STATEMENT_CACHE,
    )  # fmt: skip
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a COMMIT returns only after the WAL is fsynced, so acknowledged means on disk.
    conn.execute(f"PRAGMA synchronous={DURABILITY_MODES[durability]}")
    conn.execute("PRAGMA foreign_keys=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


def open_writable(
    path: Path, *, durability: str = DEFAULT_DURABILITY, timeout_s: float = DEFAULT_STORE_TIMEOUT_S
) -> sqlite3.Connection:
    """:func:`connect`, the file made first if missing: 0600 in a folder made 0700 (not 0644)."""
    make_private_dir(path.parent)
    make_private_file(path)
    return connect(path, durability=durability, timeout_s=timeout_s)


def upgrade(path: Path, progress: Progress = NO_PROGRESS) -> tuple[int, int]:
    """Apply pending migrations to the file at ``path`` (created if missing); (before, after).
    ``progress``: one stage per pending migration."""
    conn = open_writable(path)
    try:
        return migrate(conn, SQLITE, progress)
    finally:
        conn.close()


def _unavailable(path: Path, exc: sqlite3.Error) -> BaseException:
    """StoreUnavailable for an error of the storage rather than of our SQL: locked, busy, disk
    full or read-only, I/O error, cannot open, damaged file (``OperationalError`` and plain
    ``DatabaseError``); constraint violations and misuse (``IntegrityError``,
    ``ProgrammingError``...) are bugs, returned as they are."""
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        return StoreUnavailable(f"{path}: {exc}")
    return exc


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
            orphans = conn.execute("PRAGMA foreign_key_check").fetchmany(MAX_INTEGRITY_PROBLEMS)
            problems += [f"foreign_key_check: {t} row {r} has no {p} row" for t, r, p, _ in orphans]
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
    conn = open_writable(path, durability=durability)
    try:
        damage = integrity_problems(conn, quick=True)
        if damage:
            raise StoreDamaged(
                f"{path} is damaged ({'; '.join(damage[:3])}); refusing to serve it. Run"
                f" `papi-sandbox verify --db sqlite:///{path}` for the full report, and restore"
                " a backup (docs/operations.md)"
            )
        migrate(conn, SQLITE)
        conn.execute("BEGIN IMMEDIATE")  # the write lock can be taken (not read-only)
        conn.execute("ROLLBACK")
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
    #: time.monotonic() past which the writer refuses the op unapplied (the store timeout).
    deadline: float = math.inf
    #: For ``write_grouped``: the unit and this op's item, so that consecutive items of the
    #: same unit are handed to one call (``fn`` runs the item alone, for the savepoint pass).
    group: tuple[GroupedUnit[Any], Any] | None = None


Outcome = tuple[Any, BaseException | None]


class SQLiteStore(Store):
    def __init__(
        self,
        path: Path,
        *,
        durability: str = DEFAULT_DURABILITY,
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}")
        super().__init__()
        self.path = path
        self.durability = durability
        #: Longest a write waits for the writer and for another process's lock (seconds).
        self.timeout_s = timeout_s
        self._batch_started = 0.0  # writer thread: time.monotonic() of the running batch, or 0
        self._busy_ms = round(timeout_s * 1000)  # writer thread: the connection's busy timeout
        self._queue: queue.Queue[_Op | None] = queue.Queue(MAX_QUEUED_OPS)
        self._writer: threading.Thread | None = None
        self._readers: ReadPool | None = None
        # Balance snapshots cached for readers, invalidated by the writer (store/versions.py).
        self.versions = ChangeVersions()
        self._snapshots = SnapshotCache(self.versions)
        self._watch: sqlite3.Connection | None = None  # event loop only: sees others' commits
        self._data_version = 0
        self._watched_at = -1.0
        self._tail = outbox.Tail(self._publish, self.versions.bump)  # the writer thread's

    # -- lifecycle ---------------------------------------------------------------------------

    def open_sync(self) -> None:
        conn = open_writable(self.path, durability=self.durability, timeout_s=self.timeout_s)
        migrate(conn, SQLITE)
        self._tail.start(Db(conn, SQLITE))
        self._writer = threading.Thread(
            target=self._writer_loop, args=(conn,), name="papi-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._readers = ReadPool(
            READER_THREADS,
            lambda: Db(connect(self.path, readonly=True, timeout_s=self.timeout_s), SQLITE),
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
        """Whether the file holds a ledger: its migrations table, or a schema version from
        before it (an empty file, or another SQLite database, holds none). A file SQLite cannot
        read counts as one: the command that reads it reports the damage (``verify``)."""
        if not self.path.exists():
            return False
        try:
            conn, _ = open_read_only(self.path)
        except sqlite3.Error:
            return True
        try:
            tables = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_migrations'"
            (migrations,) = conn.execute(tables).fetchone()
            (legacy,) = conn.execute("PRAGMA user_version").fetchone()
            return bool(migrations or legacy)
        except sqlite3.DatabaseError:
            return True
        finally:
            conn.close()

    def verify_sync(self, progress: Progress = NO_PROGRESS) -> VerifyReport:
        """The file's own integrity checks (physical damage, ``report.damage``) and the ledger
        replay (``report.problems``), on a connection that never writes (a read-only copy
        works)."""
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

    # -- the writer --------------------------------------------------------------------------

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                batch, stop = take_batch(self._queue, MAX_BATCH_OPS, outbox.TAIL_INTERVAL_S)
                batch = self._refuse_expired(conn, batch)
                if batch:
                    self._batch_started = time.monotonic()
                    try:
                        self._commit_batch(conn, batch)
                    finally:
                        self._batch_started = 0.0
                elif not stop:
                    self._tail.idle(Db(conn, SQLITE))
                if stop:
                    return
        finally:
            conn.close()

    def _refuse_expired(self, conn: sqlite3.Connection, batch: list[_Op]) -> list[_Op]:
        """Refuse, unapplied, the ops that waited past their deadline (a lock held elsewhere, a
        slow disk), and bound the busy wait of the batch's BEGIN by the earliest deadline left,
        so that no caller waits much longer than the store timeout."""
        now = time.monotonic()
        live = [op for op in batch if op.deadline > now]
        if len(live) < len(batch):
            error = StoreUnavailable(
                f"{self.path}: waited more than {self.timeout_s:g} s for the store"
            )
            answer([(op.loop, (op.future, None, error)) for op in batch if op.deadline <= now])
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
        db = Db(conn, SQLITE)
        outcomes = self._run_batch(db, batch, savepoints=False)
        if outcomes is None:
            db = Db(conn, SQLITE)
            outcomes = self._run_batch(db, batch, savepoints=True)
        assert outcomes is not None
        # Before anyone of the batch is answered: balances change only through append_entry,
        # which notes each account it changed; its entries are durable now, and leave here once,
        # after what other processes committed before them (the outbox, read in the batch).
        self.versions.bump(db.touched)
        self._tail.publish(db.committed)
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
        # Without savepoints, consecutive ops of one grouped unit run as one call of it.
        runs = itertools.groupby(
            batch, lambda op: None if savepoints or not op.group else op.group[0]
        )
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._tail.read(db)  # nothing else commits until this batch has
            for unit, run in runs:
                if unit is not None:
                    outcomes += _run_group(db, unit, [op.group[1] for op in run])  # type: ignore[index]
                    continue
                for op in run:
                    outcome = _run_one(db, op, savepoints=savepoints)
                    if outcome is None:
                        return None
                    outcomes.append(outcome)
            if db.committed:
                self._tail.write(db, db.committed)
            conn.execute("COMMIT")
        except _RunFailed:  # a grouped call failed: the attempt is rolled back whole
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return None
        except Exception as exc:  # the commit itself failed: nothing of the batch is applied
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            db.committed.clear()  # nothing of it may be announced
            return [(None, exc) for _ in batch]
        return outcomes

    async def _write(
        self,
        fn: Callable[[Db], T],
        group: tuple[GroupedUnit[Any], Any] | None = None,
    ) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.timeout_s
        op = _Op(fn, loop, loop.create_future(), deadline, group)
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

    async def write(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._write(lambda db: unit(db, *args, **kwargs))

    async def write_grouped(self, unit: GroupedUnit[ItemT], item: ItemT) -> Any:
        return await self._write(lambda db: run_alone(db, unit, item), group=(unit, item))

    async def read(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._readers is None:
            raise RuntimeError("store is not open")
        try:
            return await self._readers.run(lambda db: unit(db, *args, **kwargs))
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from exc

    async def readiness(self, deadline_s: float) -> dict[str, str | None]:
        """The store's probe, and ``writer``: the writer thread is gone, or one batch has run
        longer than ``deadline_s``."""
        checks: dict[str, str | None] = {"writer": None}
        started = self._batch_started
        if self._writer is None or not self._writer.is_alive():
            checks["writer"] = "the writer thread is not running"
        elif started and time.monotonic() - started > deadline_s:
            checks["writer"] = f"stalled: one batch has run for {time.monotonic() - started:.1f} s"
        probe = await super().readiness(deadline_s)
        if probe.get("store"):
            probe["store"] = f"{self.path}: {probe['store']}"
        return {**probe, **checks}

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


def _run_group(db: Db, unit: GroupedUnit[Any], items: list[Any]) -> list[Outcome]:
    """Consecutive ops' items of one grouped unit, as one call (its items' refusals wrote
    nothing). When the call itself fails, the attempt is rolled back and the batch runs again
    with savepoints, each op alone."""
    announced = len(db.committed)
    try:
        outcomes = unit(db, items)
    except Exception as exc:
        del db.committed[announced:]
        raise _RunFailed from exc
    if len(outcomes) != len(items):
        raise _RunFailed(f"{unit} answered {len(outcomes)} of {len(items)} items")
    return outcomes


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
        if not conn.in_transaction:  # SQLite ended it (disk full, I/O error): the batch fails
            raise
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
    """A grouped call failed: the batch must run again with savepoints, each operation alone."""
