"""The PostgreSQL store: one ledger shared by many server processes (docs/scaling.md).

It runs the same units of work as SQLite on psycopg's connection pool, through as many threads as
pooled connections, so the event loop never waits on the database. Every change of an account
locks the account's row first (:func:`papi_sandbox.store.journal.transact`), so changes of one
account from any processes give the serial result; balance rows are updated in one global order
(:meth:`papi_sandbox.store.dialect.PostgresDialect.apply_many`). Deadlocks and serialization
failures are retried :data:`MAX_TX_ATTEMPTS` times; ``lock_timeout`` bounds every wait. A write
returns after COMMIT, which (``synchronous_commit=on``) has flushed the WAL. tranIds come from an
identity sequence, increasing in commit order for any one account (read under its lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store import announcements, jobs, journal, outbox
from papi_sandbox.store.base import (
    DEFAULT_STORE_TIMEOUT_S,
    StoreOutcomeUnknown,
    StoreUnavailable,
    VerifyReport,
    redact,
)
from papi_sandbox.store.contract import Store
from papi_sandbox.store.dialect import KEY_REVOKED_CHANNEL, Db, PostgresDialect
from papi_sandbox.store.schema import migrate

P = ParamSpec("P")
T = TypeVar("T")

#: The PostgreSQL dialect; its commits are announced by NOTIFY.
POSTGRES = PostgresDialect(outbox.notify)

log = logging.getLogger("papi_sandbox.store.postgres")

#: Connections (and threads) per process. Each in-flight unit of work holds one from its first
#: statement to COMMIT; N processes x this must stay below the server's max_connections (100).
DEFAULT_POOL_MAX_CONNECTIONS = 10
#: Attempts of one transaction that hit a deadlock or a serialization failure.
MAX_TX_ATTEMPTS = 5
#: First retry delay; doubled per attempt, with jitter so colliding transactions drift apart.
RETRY_BASE_DELAY_S = 0.005
# A statement waits for a row lock at most the store timeout (lock_timeout), and a unit of work
# for a pooled connection as long (PostgresStore.timeout_s, ``serve --store-timeout``, 5 s).
#: Longest any one statement runs.
STATEMENT_TIMEOUT_MS = 60_000
#: A connection left inside a transaction (a stopped process) loses its locks after this.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
#: Seconds before the notification listener reconnects after losing its connection.
LISTENER_RETRY_S = 1.0

_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def _unavailable(exc: psycopg.OperationalError, *, committing: bool) -> StoreUnavailable:
    """A failure of the database as StoreUnavailable (StoreOutcomeUnknown when the connection
    was lost while COMMIT was on its way)."""
    if committing:
        return StoreOutcomeUnknown(f"PostgreSQL: connection lost while committing: {exc}")
    return StoreUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}")


#: Rows that must have a parent: (what, child table, its column, parent table, its column).
_ORPHAN_CHECKS = (
    ("postings without their entry", "postings", "tran_id", "entries", "tran_id"),
    ("interest records without their entry", "interest_records", "tran_id", "entries", "tran_id"),
    ("API keys without their account", "api_keys", "account_id", "accounts", "id"),
)


def _physical_checks(conn: psycopg.Connection[Any]) -> tuple[list[str], list[str]]:
    """PostgreSQL's counterparts of SQLite's integrity and foreign-key checks, read-only: every
    constraint of the schema validated, no row without its parent, and (where the ``amcheck``
    extension is installed) every B-tree index's structure. Returns (damage, notes)."""
    damage: list[str] = []
    notes: list[str] = []
    for name, table in conn.execute(
        "SELECT conname, conrelid::regclass::text FROM pg_constraint"
        " WHERE connamespace = current_schema()::regnamespace AND NOT convalidated"
    ).fetchall():
        damage.append(f"constraint {name} of {table} is not validated")
    for what, child, column, parent, key in _ORPHAN_CHECKS:
        row = conn.execute(
            f"SELECT COUNT(*) FROM {child} c WHERE NOT EXISTS"
            f" (SELECT 1 FROM {parent} p WHERE p.{key} = c.{column})"
        ).fetchone()
        if row and int(row[0]):
            damage.append(f"{int(row[0])} {what}")
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone() is None:
        notes.append(
            "amcheck is not installed in this database: index structure not checked"
            " (CREATE EXTENSION amcheck, as a superuser, to include it)"
        )
        return damage, notes
    for (index,) in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'btree'"
        " AND c.relnamespace = current_schema()::regnamespace ORDER BY 1"
    ).fetchall():
        try:
            with conn.transaction():  # a savepoint: one failed check does not end the others
                conn.execute("SELECT bt_index_check(%s::regclass)", (index,))
        except psycopg.Error as exc:
            damage.append(f"index {index}: {exc}")
    return damage, notes


def connect_checked(url: str, timeout_s: float) -> psycopg.Connection[Any]:
    """A connection to the database at ``url``, or StoreUnavailable with the server's reason in
    one line and never the URL (it may hold a password)."""
    try:
        return psycopg.connect(url, connect_timeout=max(1, round(timeout_s)), autocommit=True)
    except psycopg.Error as exc:
        reason = " ".join(redact(str(exc), url).split())
        raise StoreUnavailable(f"cannot connect to the PostgreSQL database: {reason}") from None


def upgrade(url: str, progress: Progress = NO_PROGRESS) -> tuple[int, int]:
    """Apply pending migrations in one transaction; (versions before, versions after).
    ``progress``: one stage per pending migration."""
    with psycopg.connect(url, autocommit=True) as conn:
        return migrate(conn, POSTGRES, progress)


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        *,
        pool_max_connections: int = DEFAULT_POOL_MAX_CONNECTIONS,
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.url = url
        #: Longest wait for a pooled connection, and for a row lock (lock_timeout), in seconds.
        self.timeout_s = timeout_s
        self._pool_max = pool_max_connections
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._threads: ThreadPoolExecutor | None = None
        #: Transactions retried after a deadlock or serialization failure (for metrics).
        self.retries_total = 0
        self._key_revoked_callbacks: list[Callable[[str], None]] = []
        self._listener: asyncio.Task[None] | None = None
        #: Set while the notification listener is connected and listening.
        self.listening = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(upgrade, self.url)
        options = (
            f"-c lock_timeout={round(self.timeout_s * 1000)}"
            f" -c statement_timeout={STATEMENT_TIMEOUT_MS}"
            f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
        )
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_max,
            timeout=self.timeout_s,
            kwargs={"autocommit": True, "options": options},
            open=False,
        )
        await asyncio.to_thread(pool.open, True)
        self._pool = pool
        self._threads = ThreadPoolExecutor(self._pool_max, thread_name_prefix="papi-pg")
        if self._key_revoked_callbacks or self._commit_listeners:
            self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._threads is not None:
            await asyncio.to_thread(self._threads.shutdown)
            self._threads = None
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
            self._pool = None

    def exists_sync(self) -> bool:
        """Whether the database holds a ledger (its migrations table): an empty database is
        none. Raises StoreUnavailable when it cannot be reached (:func:`connect_checked`)."""
        with connect_checked(self.url, self.timeout_s) as conn:
            row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def verify_sync(self, progress: Progress = NO_PROGRESS) -> VerifyReport:
        """The journal streamed through a server-side cursor, all in one REPEATABLE READ
        snapshot (consistent while writers go on)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                report = journal.verify(Db(conn, POSTGRES), progress)
                damage, notes = _physical_checks(conn)
            finally:
                conn.execute("ROLLBACK")
        report.damage.extend(damage)
        report.notes.extend(notes)
        return report

    # -- units of work -------------------------------------------------------------------------

    async def read(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._run(lambda: self._attempts(unit, args, kwargs, write=False))

    async def write(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Shielded: a client that disconnects does not cancel a change half-way; it commits or
        rolls back on its own, and only then is it reported (to nobody)."""
        return await asyncio.shield(
            self._run(lambda: self._attempts(unit, args, kwargs, write=True))
        )

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._threads is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn)

    def _attempts(
        self, unit: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *, write: bool
    ) -> T:
        """``unit`` on a pooled connection, in one transaction when ``write``. A connection lost
        before COMMIT was sent is retried on a fresh one (the transaction cannot have committed:
        PostgreSQL rolls back what a dead session left open; a read changes nothing), and so are
        deadlocks and serialization failures, within MAX_TX_ATTEMPTS (a read: one retry, at
        once). Any other failure of the database (a connection lost during COMMIT, a lock or
        pooled connection not obtained within the store timeout, a full disk) is
        StoreUnavailable."""
        pool = self._require_pool()
        attempts = MAX_TX_ATTEMPTS if write else 2
        for attempt in range(1, attempts + 1):
            used: psycopg.Connection[Any] | None = None
            committing = False
            try:
                with pool.connection() as conn:
                    used = conn
                    with conn.transaction() if write else contextlib.nullcontext():
                        result = unit(Db(conn, POSTGRES), *args, **kwargs)
                        committing = write  # leaving the block sends COMMIT
                return result
            except _RETRYABLE as exc:
                if attempt == attempts:
                    raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
                reason = type(exc).__name__
            except psycopg.OperationalError as exc:
                lost = used is not None and used.broken
                if not lost or committing or attempt == attempts:
                    raise _unavailable(exc, committing=lost and committing) from exc
                pool.check()  # drop every other pooled connection the database lost
                reason = "connection lost before COMMIT"
            if write:
                self.retries_total += 1
                delay = RETRY_BASE_DELAY_S * 2 ** (attempt - 1) * (0.5 + random.random())
                log.info("retrying transaction (%s), attempt %d", reason, attempt)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _require_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # -- revocations and committed entries reach every process --------------------------------

    def on_key_revoked(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(api_key)`` whenever any process revokes a key (register before
        :meth:`open`). Every process caches key records for a few seconds; this lets each one
        forget a revoked key as soon as the revoking transaction commits (PostgreSQL
        LISTEN/NOTIFY), not when its cache entry expires."""
        self._key_revoked_callbacks.append(callback)

    async def _listen(self) -> None:
        # A lost connection is re-made; meanwhile the key caches' TTL still bounds staleness,
        # and once it listens again the commit listeners are told what they may have missed.
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    if self._key_revoked_callbacks:
                        await conn.execute(f"LISTEN {KEY_REVOKED_CHANNEL}")
                    if self._commit_listeners:
                        await conn.execute(f"LISTEN {announcements.ENTRY_CHANNEL}")
                    self.listening.set()
                    if lost:
                        lost = False
                        self._announcements_lost()
                    async for note in conn.notifies():
                        if note.channel == announcements.ENTRY_CHANNEL:
                            await self._announced(note.payload)
                            continue
                        for callback in self._key_revoked_callbacks:
                            callback(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                lost = True
                log.warning("notification listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(LISTENER_RETRY_S)

    async def _announced(self, payload: str) -> None:
        """One announcement (:func:`~papi_sandbox.store.outbox.received`), published."""
        if (received := await outbox.received(self, payload)) is not None:
            self._publish([received[1]], [received[0]])

    # -- one job slot across processes (SharedJobStore) ----------------------------------------

    async def try_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        return await self.write(jobs.try_lease, name, holder, ttl_ms)

    async def lease_active(self, name: str) -> bool:
        return await self.read(jobs.lease_active, name)

    @contextlib.asynccontextmanager
    async def advisory_lock(self, name: str) -> AsyncIterator[bool]:
        """Hold a session advisory lock on ``name`` for the block, without waiting; yields False
        when another session holds it. The lock lives on one pooled connection, kept for the
        block; if the process dies, PostgreSQL drops the connection and with it the lock."""
        pool = self._require_pool()
        conn = await asyncio.to_thread(pool.getconn)
        key = "hashtextextended(%s, 0)"
        try:
            row = await asyncio.to_thread(
                lambda: conn.execute(f"SELECT pg_try_advisory_lock({key})", (name,)).fetchone()
            )
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    await asyncio.to_thread(
                        conn.execute, f"SELECT pg_advisory_unlock({key})", (name,)
                    )
        finally:
            await asyncio.to_thread(pool.putconn, conn)
