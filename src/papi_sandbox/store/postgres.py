"""The PostgreSQL store: one ledger shared by many server processes on many machines.

Concurrency. Every change of an account is one transaction that follows the same steps
(:meth:`PostgresStore._apply_locked`): lock the account's row (``SELECT ... FOR UPDATE``), read
its balances, run the pure rule, append the entry and its postings, add the postings to the
balance rows, commit. Two changes of one account, from any processes, therefore run one after the
other and give the serial result. Balance rows are updated in one global order - the account's own
rows first (already serialised by the account lock), then every other account's rows ordered by
(account_id, asset, wallet, bucket) - so two transactions never wait for each other in a cycle.
The system account's rows (the counter-side of every deposit and withdrawal) are a hot spot: they
come last, so each transaction holds them only from its last statement to its COMMIT, and each
(wallet, asset) of the system account is split over :data:`SYSTEM_BALANCE_BUCKETS` rows, summed
when read, so entries of different accounts rarely wait for the same row. Deadlocks and
serialization failures, which a future rule touching two user accounts could still cause, are
retried a bounded number of times (:data:`MAX_TX_ATTEMPTS`); lock waits are bounded by
``lock_timeout`` so no request hangs.

tranIds come from an identity sequence: unique, and increasing in commit order for any one account
(the sequence is read while the account lock is held). Across accounts a smaller tranId may commit
after a larger one; nothing relies on a global order.

Acknowledged means committed: a method returns only after COMMIT returned, and PostgreSQL's
default ``synchronous_commit=on`` has flushed the WAL by then.

Jobs. :meth:`PostgresStore.try_lease` elects one process for a job slot (a row with an expiry, on
the database's clock); :meth:`PostgresStore.sweep_batch` lets any number of processes share a sweep
over accounts: each call claims a batch with ``FOR UPDATE SKIP LOCKED``, applies the rule to each
account under a savepoint and records ``(job, slot, account)`` in ``sweep_claims`` in the same
transaction, so each account is swept exactly once per slot even if a worker dies mid-batch (its
uncommitted batch is claimed again by another worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from papi_sandbox import money
from papi_sandbox.ledger.model import (
    SYSTEM_ACCOUNT_ID,
    AccountBalances,
    CommittedEntry,
    Entry,
    LedgerError,
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
    StoreOutcomeUnknown,
    StoreUnavailable,
    VerifyReport,
)
from papi_sandbox.store.replay import LedgerReplay

T = TypeVar("T")
AConn = psycopg.AsyncConnection[Any]

log = logging.getLogger("papi_sandbox.store.postgres")

#: Connections per process. Each in-flight change holds one from its first statement to COMMIT;
#: N processes x this must stay below the server's max_connections (100 by default).
DEFAULT_POOL_MAX_CONNECTIONS = 10
#: Attempts of one transaction that hit a deadlock or a serialization failure.
MAX_TX_ATTEMPTS = 5
#: First retry delay; doubled per attempt, with jitter so colliding transactions drift apart.
RETRY_BASE_DELAY_S = 0.005
# A statement waits for a row lock at most the store timeout (lock_timeout), and a request for
# a pooled connection as long (PostgresStore.timeout_s, ``serve --store-timeout``, 5 s).
#: Longest any one statement runs.
STATEMENT_TIMEOUT_MS = 60_000
#: A connection left inside a transaction (a stopped process) loses its locks after this.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
#: Rows a server-side cursor fetches at a time while ``verify`` streams the journal.
VERIFY_FETCH_ROWS = 10_000
#: API keys re-sealed per page when secrets are rewritten (bounded memory at any key count).
REWRITE_PAGE_ROWS = 1000
#: Most accounts one sweep batch claims (one transaction; bounds the locks it holds).
MAX_SWEEP_BATCH = 500
#: The system account's balance of one (wallet, asset) is kept as this many rows (buckets), summed
#: when read: every deposit or withdrawal of every account updates it, so one row would let only
#: one transaction per asset commit at a time (~1 fsync each). An entry of account A uses bucket
#: A % SYSTEM_BALANCE_BUCKETS. Users' rows have only bucket 0 (their account lock serialises them).
SYSTEM_BALANCE_BUCKETS = 16
#: The LISTEN/NOTIFY channel on which revoked API keys are announced to every process.
KEY_REVOKED_CHANNEL = "papi_key_revoked"
#: The LISTEN/NOTIFY channel on which every committed journal entry is announced (with its
#: resulting balances), for the user data stream of every process (docs/design.md).
ENTRY_CHANNEL = "papi_entries"
#: Largest notification payload sent inline (PostgreSQL refuses 8000 bytes and more); a larger
#: entry is announced by its tranId and account, and each listener reads it from the journal.
NOTIFY_PAYLOAD_LIMIT = 7900
#: Seconds before the notification listener reconnects after losing its connection.
LISTENER_RETRY_S = 1.0
#: Serialises migrations of processes starting together (an advisory lock key, arbitrary).
MIGRATION_LOCK_KEY = 0x7061706953616E64  # "papiSand"

#: Versioned schema. Element i is version i+1; the applied versions are rows of
#: ``schema_migrations``. Append new versions; never edit an applied one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        label TEXT,
        created_ms BIGINT NOT NULL,
        auto_repay BOOLEAN NOT NULL DEFAULT TRUE,
        vip_level INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        api_key TEXT PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        key_type TEXT NOT NULL,
        secret TEXT,
        public_key TEXT,
        can_read BOOLEAN NOT NULL,
        can_trade BOOLEAN NOT NULL,
        ip_whitelist TEXT[] NOT NULL DEFAULT '{}',
        created_ms BIGINT NOT NULL,
        revoked_ms BIGINT
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE entries (
        tran_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL,
        type TEXT NOT NULL,
        time_ms BIGINT NOT NULL
    );
    CREATE INDEX entries_account ON entries(account_id, tran_id);
    CREATE TABLE postings (
        tran_id BIGINT NOT NULL REFERENCES entries(tran_id),
        seq INTEGER NOT NULL,
        account_id BIGINT NOT NULL,
        wallet TEXT NOT NULL,
        asset TEXT NOT NULL,
        amount NUMERIC(38, 8) NOT NULL,
        PRIMARY KEY (tran_id, seq)
    );
    CREATE TABLE balances (
        account_id BIGINT NOT NULL,
        asset TEXT NOT NULL,
        wallet TEXT NOT NULL,
        bucket SMALLINT NOT NULL DEFAULT 0,
        amount NUMERIC(38, 8) NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (account_id, asset, wallet, bucket)
    );
    INSERT INTO accounts (id, label, created_ms, auto_repay) VALUES (0, 'SYSTEM', 0, FALSE);
    """,
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    CREATE TABLE sweep_claims (
        job TEXT NOT NULL,
        slot BIGINT NOT NULL,
        account_id BIGINT NOT NULL,
        tran_id BIGINT,
        outcome TEXT NOT NULL,
        done_ms BIGINT NOT NULL,
        PRIMARY KEY (job, slot, account_id)
    );
    """,
    # 3: the negative-balance toolkit (issue 4), as SQLite's migration 2: interest history,
    # (job, slot, account) markers that make scheduled jobs idempotent, an index of negative
    # futures wallets so a sweep reads only the accounts it may act on.
    """
    CREATE TABLE interest_records (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL,
        asset TEXT NOT NULL,
        interest NUMERIC(38, 8) NOT NULL,
        rate NUMERIC(38, 8) NOT NULL,
        principal NUMERIC(38, 8) NOT NULL,
        accrued_ms BIGINT NOT NULL,
        tran_id BIGINT NOT NULL REFERENCES entries(tran_id)
    );
    CREATE INDEX interest_records_account ON interest_records(account_id, accrued_ms);
    CREATE TABLE job_marks (
        job TEXT NOT NULL,
        slot_ms BIGINT NOT NULL,
        account_id BIGINT NOT NULL,
        tran_id BIGINT,
        PRIMARY KEY (job, slot_ms, account_id)
    );
    CREATE INDEX balances_negative_futures ON balances(account_id)
        WHERE wallet IN ('UM', 'CM') AND amount < 0;
    """,
    # 4: ledger-wide settings that every process must agree on (the encryption key's id).
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)

#: The database's clock in ms, for leases: machines' clocks may disagree, the database's is one.
_DB_NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _session_options(timeout_s: float = DEFAULT_STORE_TIMEOUT_S) -> str:
    return (
        f"-c lock_timeout={round(timeout_s * 1000)} -c statement_timeout={STATEMENT_TIMEOUT_MS}"
        f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )


# -- migrations --------------------------------------------------------------------------------


def migrate_sync(url: str) -> tuple[int, int]:
    """Apply pending migrations in one transaction; returns (version before, version after).

    Processes that start together queue on an advisory lock, so each version is applied once.
    """
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)"
        )
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        before = int(row[0]) if row else 0
        if before > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {before} is newer than this program's {len(MIGRATIONS)}"
            )
        for number, script in enumerate(MIGRATIONS[before:], start=before + 1):
            conn.execute(script.encode())  # no parameters: sent as one multi-statement query
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (%s, %s)",
                (number, _now_ms()),
            )
        return before, len(MIGRATIONS)


# -- results of the job primitives -------------------------------------------------------------


@dataclass(slots=True)
class SweepBatch:
    """What one :meth:`PostgresStore.sweep_batch` call did."""

    claimed: list[int] = field(default_factory=list)  # account ids, ascending
    entries: list[Entry] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # account id -> the rule's refusal


_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def _unavailable(exc: psycopg.OperationalError, *, committing: bool) -> StoreUnavailable:
    """A failure of the database as StoreUnavailable (StoreOutcomeUnknown when the connection
    was lost while COMMIT was on its way)."""
    if committing:
        return StoreOutcomeUnknown(f"PostgreSQL: connection lost while committing: {exc}")
    return StoreUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}")


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        pool_max_connections: int = DEFAULT_POOL_MAX_CONNECTIONS,
        clock_ms: Callable[[], int] = _now_ms,
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    ) -> None:
        self.url = url
        #: Longest wait for a pooled connection, and for a row lock (lock_timeout), in seconds.
        self.timeout_s = timeout_s
        self._clock_ms = clock_ms
        self._pool_max = pool_max_connections
        self._pool: AsyncConnectionPool[AConn] | None = None
        #: Transactions retried after a deadlock or serialization failure (for metrics).
        self.retries_total = 0
        self._key_revoked_callbacks: list[Callable[[str], None]] = []
        self._commit_listeners: list[Callable[[list[CommittedEntry]], None]] = []
        self._listener: asyncio.Task[None] | None = None
        #: Set while the notification listener is connected and listening.
        self.listening = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(migrate_sync, self.url)
        pool: AsyncConnectionPool[AConn] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_max,
            timeout=self.timeout_s,
            kwargs={"autocommit": True, "options": _session_options(self.timeout_s)},
            open=False,
        )
        await pool.open(wait=True)
        self._pool = pool
        if self._key_revoked_callbacks or self._commit_listeners:
            self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- revocations reach every process ---------------------------------------------------

    def on_key_revoked(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(api_key)`` whenever any process revokes a key (register before
        :meth:`open`). Every process caches key records for a few seconds; this lets each one
        forget a revoked key as soon as the revoking transaction commits (PostgreSQL
        LISTEN/NOTIFY), not when its cache entry expires."""
        self._key_revoked_callbacks.append(callback)

    def on_commit(self, callback: Callable[[list[CommittedEntry]], None]) -> None:
        """Call ``callback(entries)`` for every journal entry committed by ANY process on this
        database (this one included), in commit order, never for a rolled-back one: each
        transaction that appends an entry announces it with NOTIFY, which PostgreSQL delivers
        only on commit and in commit order. Register before :meth:`open`. Entries committed
        while the listener is reconnecting (after a lost connection) are not announced."""
        self._commit_listeners.append(callback)

    async def _listen(self) -> None:
        while (
            True
        ):  # a lost connection is re-made; meanwhile the caches' TTL still bounds staleness
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    if self._key_revoked_callbacks:
                        await conn.execute(f"LISTEN {KEY_REVOKED_CHANNEL}")
                    if self._commit_listeners:
                        await conn.execute(f"LISTEN {ENTRY_CHANNEL}")
                    self.listening.set()
                    async for note in conn.notifies():
                        if note.channel == ENTRY_CHANNEL:
                            await self._announced(note.payload)
                            continue
                        for callback in self._key_revoked_callbacks:
                            callback(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("notification listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(LISTENER_RETRY_S)

    async def _announced(self, payload: str) -> None:
        """One entry announcement: decoded inline, or read from the journal when too large."""
        try:
            committed = _decode_committed(payload)
            if committed is None:
                ref = orjson.loads(payload)
                committed = await self._read(
                    lambda conn: _read_committed(conn, int(ref["t"]), int(ref["a"]))
                )
        except Exception:
            log.exception("cannot decode an entry announcement")
            return
        if committed is None:
            return
        for callback in self._commit_listeners:
            try:
                callback([committed])
            except Exception:
                log.exception("commit listener failed")

    # -- the transaction helpers every method goes through ----------------------------------

    async def _tx(self, fn: Callable[[AConn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction, retrying deadlocks and serialization failures.

        Shielded: a client that disconnects does not cancel a change half-way; it commits or
        rolls back on its own, and only then is it reported (to nobody).
        """
        return await asyncio.shield(self._tx_with_retries(fn))

    async def _tx_with_retries(self, fn: Callable[[AConn], Awaitable[T]]) -> T:
        """Deadlocks and serialization failures are retried, and so is a connection lost before
        COMMIT was sent (the transaction cannot have committed: PostgreSQL rolls back what a
        dead session left open), on a fresh connection, within the same MAX_TX_ATTEMPTS. Any
        other failure of the database (a connection lost during COMMIT, a lock or pooled
        connection not obtained within the store timeout, a full disk) is StoreUnavailable."""
        pool = self._require_pool()
        for attempt in range(1, MAX_TX_ATTEMPTS + 1):
            used: AConn | None = None
            committing = False
            try:
                async with pool.connection() as conn:
                    used = conn
                    async with conn.transaction():
                        result = await fn(conn)
                        committing = True  # leaving the block sends COMMIT
                return result
            except _RETRYABLE as exc:
                if attempt == MAX_TX_ATTEMPTS:
                    raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
                reason = type(exc).__name__
            except psycopg.OperationalError as exc:
                lost = used is not None and used.broken
                if not lost or committing or attempt == MAX_TX_ATTEMPTS:
                    raise _unavailable(exc, committing=lost and committing) from exc
                await pool.check()  # drop every other pooled connection the database lost
                reason = "connection lost before COMMIT"
            self.retries_total += 1
            delay = RETRY_BASE_DELAY_S * 2 ** (attempt - 1) * (0.5 + random.random())
            log.info("retrying transaction (%s), attempt %d", reason, attempt)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[[AConn], Awaitable[T]]) -> T:
        """One read; a read on a connection the database dropped is made once more on a fresh
        one (reads change nothing). Failures of the database are StoreUnavailable."""
        pool = self._require_pool()
        for attempt in (1, 2):
            used: AConn | None = None
            try:
                async with pool.connection() as conn:
                    used = conn
                    return await fn(conn)
            except psycopg.OperationalError as exc:
                if attempt == 2 or used is None or not used.broken:
                    raise _unavailable(exc, committing=False) from exc
                await pool.check()
        raise AssertionError("unreachable")

    async def readiness(self, deadline_s: float) -> dict[str, str | None]:
        """What keeps this store from serving now (None = fine): ``store`` when a small write
        transaction cannot commit within ``deadline_s``. Writes one row of ``meta``."""
        now_ms = self._clock_ms()

        async def probe(conn: AConn) -> None:
            await conn.execute(
                "INSERT INTO meta (name, value) VALUES ('readiness_probe_ms', %s)"
                " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                (str(now_ms),),
            )

        try:
            await asyncio.wait_for(self._tx(probe), deadline_s)
        except TimeoutError:
            return {"store": f"PostgreSQL: cannot commit within {deadline_s:g} s"}
        except StoreUnavailable as exc:
            return {"store": f"cannot commit: {exc}"}
        return {"store": None}

    def _require_pool(self) -> AsyncConnectionPool[AConn]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _apply_locked(
        self, conn: AConn, account_id: int, entry_type: str, plan: Planner
    ) -> Entry | None:
        """Lock the account, read its balances, plan, write the entry. The one path of change."""
        await _lock_account(conn, account_id)
        snapshot = await _load_balances(conn, account_id)
        postings = plan(snapshot.amounts)
        if not postings:
            return None
        # Assert where it is relied on: nothing unbalanced ever reaches the journal.
        if not is_balanced(postings):
            raise AssertionError(f"unbalanced postings from {entry_type}: {postings}")
        entry = await _write_entry(conn, account_id, entry_type, postings, self._clock_ms())
        await _announce(conn, committed_entry(entry, snapshot.amounts))
        return entry

    # -- accounts and keys -------------------------------------------------------------------

    async def create_account(self, label: str | None, key: ApiKeyRecord | None) -> int:
        now = self._clock_ms()

        async def op(conn: AConn) -> int:
            cur = await conn.execute(
                "INSERT INTO accounts (label, created_ms) VALUES (%s, %s) RETURNING id",
                (label, now),
            )
            row = await cur.fetchone()
            assert row is not None
            account_id = int(row[0])
            if key is not None:
                await _insert_key(conn, key, account_id, now)
            return account_id

        return await self._tx(op)

    async def add_api_key(self, key: ApiKeyRecord) -> None:
        now = self._clock_ms()
        await self._tx(lambda conn: _insert_key(conn, key, key.account_id, now))

    async def find_api_key(self, api_key: str) -> ApiKeyRecord | None:
        async def op(conn: AConn) -> ApiKeyRecord | None:
            cur = await conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE api_key = %s", (api_key,)
            )
            row = await cur.fetchone()
            return None if row is None else _key_record(row)

        return await self._read(op)

    async def account(self, account_id: int) -> AccountInfo | None:
        async def op(conn: AConn) -> AccountInfo | None:
            cur = await conn.execute(
                "SELECT id, label, created_ms, auto_repay, vip_level FROM accounts WHERE id = %s",
                (account_id,),
            )
            row = await cur.fetchone()
            if row is None or row[0] == SYSTEM_ACCOUNT_ID:
                return None
            return AccountInfo(int(row[0]), row[1], int(row[2]), bool(row[3]), int(row[4]))

        return await self._read(op)

    async def list_accounts(
        self, search: AccountSearch, after_account_id: int, limit: int
    ) -> list[AccountInfo]:
        async def op(conn: AConn) -> list[AccountInfo]:
            cur = await conn.execute(
                "SELECT id, label, created_ms, auto_repay, vip_level FROM accounts"
                " WHERE id > %s AND id != %s"
                " AND (%s = '' OR id = %s OR lower(label) LIKE %s ESCAPE '\\')"
                " ORDER BY id LIMIT %s",
                (
                    after_account_id,
                    SYSTEM_ACCOUNT_ID,
                    search.text,
                    search.account_id,
                    search.like_pattern,
                    max(1, min(limit, MAX_ACCOUNT_PAGE)),
                ),
            )
            return [
                AccountInfo(int(r[0]), r[1], int(r[2]), bool(r[3]), int(r[4]))
                for r in await cur.fetchall()
            ]

        return await self._read(op)

    # -- balances and the journal ------------------------------------------------------------

    async def balances(self, account_id: int) -> AccountBalances:
        return await self._read(lambda conn: _load_balances(conn, account_id))

    async def transact(self, account_id: int, entry_type: str, plan: Planner) -> Entry | None:
        return await self._tx(lambda conn: self._apply_locked(conn, account_id, entry_type, plan))

    async def journal(
        self, account_id: int, limit: int, before_tran_id: int | None = None
    ) -> list[Entry]:
        limit = max(1, min(limit, MAX_JOURNAL_PAGE))
        before = before_tran_id if before_tran_id is not None else 2**62

        async def op(conn: AConn) -> list[Entry]:
            cur = await conn.execute(
                "WITH heads AS (SELECT tran_id, type, time_ms FROM entries"
                "  WHERE account_id = %s AND tran_id < %s ORDER BY tran_id DESC LIMIT %s)"
                " SELECT h.tran_id, h.type, h.time_ms, p.account_id, p.wallet, p.asset, p.amount"
                " FROM heads h JOIN postings p ON p.tran_id = h.tran_id"
                " ORDER BY h.tran_id DESC, p.seq",
                (account_id, before, limit),
            )
            entries: list[Entry] = []
            head: tuple[int, str, int] | None = None
            postings: list[Posting] = []
            for (
                tran_id,
                entry_type,
                time_ms,
                p_account,
                wallet,
                asset,
                amount,
            ) in await cur.fetchall():
                if head is None or head[0] != tran_id:
                    if head is not None:
                        entries.append(Entry(*head, account_id, tuple(postings)))
                    head, postings = (int(tran_id), entry_type, int(time_ms)), []
                postings.append(Posting(int(p_account), Wallet(wallet), asset, amount))
            if head is not None:
                entries.append(Entry(*head, account_id, tuple(postings)))
            return entries

        return await self._read(op)

    # -- verify ------------------------------------------------------------------------------

    async def verify(self) -> VerifyReport:
        return await asyncio.to_thread(self.verify_sync)

    def verify_sync(self, progress: Progress = NO_PROGRESS) -> VerifyReport:
        """Replay the whole journal, streamed through a server-side cursor, against the stored
        balances, all in one REPEATABLE READ snapshot (consistent while writers go on).
        ``progress``: see :mod:`papi_sandbox.progress`."""
        replay = LedgerReplay(progress)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                row = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
                replay.report.entries = int(row[0]) if row else 0
                with conn.cursor(name="verify_postings") as cur:
                    cur.itersize = VERIFY_FETCH_ROWS
                    cur.execute(
                        "SELECT tran_id, account_id, wallet, asset, amount FROM postings"
                        " ORDER BY tran_id, seq"
                    )
                    for tran_id, account_id, wallet, asset, amount in cur:
                        replay.posting(int(tran_id), int(account_id), wallet, asset, amount)
                with conn.cursor(name="verify_balances") as cur:
                    cur.itersize = VERIFY_FETCH_ROWS
                    cur.execute(
                        "SELECT account_id, wallet, asset, SUM(amount) FROM balances"
                        " GROUP BY account_id, wallet, asset"
                    )
                    for account_id, wallet, asset, amount in cur:
                        replay.stored_balance(int(account_id), wallet, asset, amount)
                row = conn.execute(
                    "SELECT COUNT(*) FROM accounts WHERE id != %s", (SYSTEM_ACCOUNT_ID,)
                ).fetchone()
                replay.report.accounts = int(row[0]) if row else 0
                damage, notes = _physical_checks(conn)
            finally:
                conn.execute("ROLLBACK")
        report = replay.finish()
        report.damage.extend(damage)
        report.notes.extend(notes)
        return report

    # -- job primitives ----------------------------------------------------------------------

    async def try_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``ttl_ms`` (database clock).

        True when ``holder`` holds it now: it was free, expired, or already ``holder``'s. A
        holder that dies simply stops renewing; another takes over after the expiry. Use one
        lease per job and slot, or renew it while working on a long job.
        """
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")

        async def op(conn: AConn) -> bool:
            cur = await conn.execute(
                f"INSERT INTO leases (name, holder, expires_ms) VALUES (%s, %s, {_DB_NOW_MS} + %s)"
                " ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,"
                " expires_ms = EXCLUDED.expires_ms"
                f" WHERE leases.holder = EXCLUDED.holder OR leases.expires_ms <= {_DB_NOW_MS}"
                " RETURNING holder",
                (name, holder, ttl_ms),
            )
            return await cur.fetchone() is not None

        return await self._tx(op)

    async def lease_active(self, name: str) -> bool:
        """True while some holder holds an unexpired lease ``name`` (database clock)."""

        async def op(conn: AConn) -> bool:
            cur = await conn.execute(
                f"SELECT 1 FROM leases WHERE name = %s AND expires_ms > {_DB_NOW_MS}", (name,)
            )
            return await cur.fetchone() is not None

        return await self._read(op)

    async def release_lease(self, name: str, holder: str) -> bool:
        """Give the lease up early; False when ``holder`` did not hold it."""

        async def op(conn: AConn) -> bool:
            cur = await conn.execute(
                "DELETE FROM leases WHERE name = %s AND holder = %s RETURNING name", (name, holder)
            )
            return await cur.fetchone() is not None

        return await self._tx(op)

    @contextlib.asynccontextmanager
    async def advisory_lock(self, name: str) -> AsyncIterator[bool]:
        """Hold a session advisory lock on ``name`` for the block, without waiting; yields False
        when another session holds it. The lock lives on one pooled connection, kept for the
        block; if the process dies, PostgreSQL drops the connection and with it the lock."""
        pool = self._require_pool()
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)
            )
            row = await cur.fetchone()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    await conn.execute(
                        "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,)
                    )

    async def sweep_batch(
        self,
        job: str,
        slot: int,
        entry_type: str,
        plan_for: Callable[[int], Planner],
        *,
        limit: int,
        only_auto_repay: bool = False,
    ) -> SweepBatch:
        """Claim up to ``limit`` accounts not yet swept for ``(job, slot)`` and apply
        ``plan_for(account_id)`` to each, in one transaction.

        ``FOR UPDATE SKIP LOCKED`` lets several workers call this at once: each claims different
        accounts, and an account busy with a request is left for a later call. A rule that
        refuses (LedgerError) is recorded as refused; the account counts as swept. Call until
        :meth:`sweep_remaining` is 0 (an empty batch can mean "all left are busy right now").
        """
        limit = max(1, min(limit, MAX_SWEEP_BATCH))

        async def op(conn: AConn) -> SweepBatch:
            batch = SweepBatch()
            cur = await conn.execute(
                "SELECT a.id FROM accounts a WHERE a.id <> %s AND (a.auto_repay OR NOT %s)"
                " AND NOT EXISTS (SELECT 1 FROM sweep_claims c"
                "   WHERE c.job = %s AND c.slot = %s AND c.account_id = a.id)"
                " ORDER BY a.id LIMIT %s FOR UPDATE OF a SKIP LOCKED",
                (SYSTEM_ACCOUNT_ID, only_auto_repay, job, slot, limit),
            )
            locked = [int(r[0]) for r in await cur.fetchall()]
            # The claim query's snapshot predates its locks: a worker that committed an account
            # between the two is only visible to a new statement, so look again under the locks.
            cur = await conn.execute(
                "SELECT account_id FROM sweep_claims WHERE job = %s AND slot = %s"
                " AND account_id = ANY(%s)",
                (job, slot, locked),
            )
            swept = {int(r[0]) for r in await cur.fetchall()}
            batch.claimed = [a for a in locked if a not in swept]
            for account_id in batch.claimed:
                outcome, tran_id = "NOOP", None
                try:
                    async with conn.transaction():  # a savepoint: a refusal rolls back alone
                        entry = await self._apply_locked(
                            conn, account_id, entry_type, plan_for(account_id)
                        )
                except LedgerError as exc:
                    outcome = "REFUSED"
                    batch.refused[account_id] = str(exc)
                else:
                    if entry is not None:
                        outcome, tran_id = "APPLIED", entry.tran_id
                        batch.entries.append(entry)
                await conn.execute(
                    "INSERT INTO sweep_claims (job, slot, account_id, tran_id, outcome, done_ms)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (job, slot, account_id, tran_id, outcome, self._clock_ms()),
                )
            return batch

        return await self._tx(op)

    async def sweep_remaining(self, job: str, slot: int, *, only_auto_repay: bool = False) -> int:
        """Accounts not yet swept for ``(job, slot)``, busy or not."""

        async def op(conn: AConn) -> int:
            cur = await conn.execute(
                "SELECT COUNT(*) FROM accounts a WHERE a.id <> %s AND (a.auto_repay OR NOT %s)"
                " AND NOT EXISTS (SELECT 1 FROM sweep_claims c"
                "   WHERE c.job = %s AND c.slot = %s AND c.account_id = a.id)",
                (SYSTEM_ACCOUNT_ID, only_auto_repay, job, slot),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._read(op)

    # -- API key management and operations (security issue) ----------------------------------

    async def add_api_key_limited(self, key: ApiKeyRecord, max_keys_per_account: int) -> bool:
        now = self._clock_ms()

        async def op(conn: AConn) -> bool:
            # The account's lock makes count-then-insert atomic across processes.
            await _lock_account(conn, key.account_id)
            cur = await conn.execute(
                "SELECT COUNT(*) FROM api_keys WHERE account_id = %s AND revoked_ms IS NULL",
                (key.account_id,),
            )
            row = await cur.fetchone()
            if row is not None and int(row[0]) >= max_keys_per_account:
                return False
            await _insert_key(conn, key, key.account_id, now)
            return True

        return await self._tx(op)

    async def revoke_api_key(self, account_id: int, api_key: str) -> bool:
        now = self._clock_ms()

        async def op(conn: AConn) -> bool:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_ms = %s"
                " WHERE api_key = %s AND account_id = %s AND revoked_ms IS NULL RETURNING api_key",
                (now, api_key, account_id),
            )
            if await cur.fetchone() is None:
                return False
            # Delivered to every listening process when this transaction commits.
            await conn.execute("SELECT pg_notify(%s, %s)", (KEY_REVOKED_CHANNEL, api_key))
            return True

        return await self._tx(op)

    async def api_keys(self, account_id: int) -> list[ApiKeyRecord]:
        async def op(conn: AConn) -> list[ApiKeyRecord]:
            cur = await conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE account_id = %s"
                " ORDER BY created_ms, api_key",
                (account_id,),
            )
            return [_key_record(row) for row in await cur.fetchall()]

        return await self._read(op)

    async def rewrite_api_key_secrets(self, transform: Callable[[str, str], str]) -> int:
        async def op(conn: AConn) -> int:
            changed, after = 0, ""
            while True:  # keyset pages: memory stays flat however many keys there are
                # FOR UPDATE: a key being added by another process waits; none is left unsealed.
                cur = await conn.execute(
                    "SELECT api_key, secret FROM api_keys WHERE secret IS NOT NULL"
                    " AND api_key > %s ORDER BY api_key LIMIT %s FOR UPDATE",
                    (after, REWRITE_PAGE_ROWS),
                )
                rows = await cur.fetchall()
                if not rows:
                    return changed
                for api_key, secret in rows:
                    new = transform(secret, api_key)
                    if new != secret:
                        await conn.execute(
                            "UPDATE api_keys SET secret = %s WHERE api_key = %s", (new, api_key)
                        )
                        changed += 1
                after = rows[-1][0]

        return await self._tx(op)

    async def claim_setting(self, name: str, value: str, *, replace: bool = False) -> str:
        async def op(conn: AConn) -> str:
            action = "UPDATE SET value = EXCLUDED.value" if replace else "NOTHING"
            await conn.execute(
                f"INSERT INTO meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO {action}",
                (name, value),
            )
            cur = await conn.execute("SELECT value FROM meta WHERE name = %s", (name,))
            row = await cur.fetchone()
            assert row is not None
            return str(row[0])

        return await self._tx(op)

    async def entry_counts(self) -> dict[str, int]:
        async def op(conn: AConn) -> dict[str, int]:
            cur = await conn.execute("SELECT type, COUNT(*) FROM entries GROUP BY type")
            return {str(t): int(n) for t, n in await cur.fetchall()}

        return await self._read(op)

    async def recent_entries(
        self, entry_types: tuple[str, ...], since_ms: int
    ) -> list[tuple[str, int, int]]:
        async def op(conn: AConn) -> list[tuple[str, int, int]]:
            cur = await conn.execute(
                "SELECT type, account_id, time_ms FROM entries WHERE type = ANY(%s)"
                " AND time_ms >= %s ORDER BY tran_id DESC LIMIT %s",
                (list(entry_types), since_ms, MAX_RECENT_ENTRIES),
            )
            return [(str(t), int(a), int(ms)) for t, a, ms in await cur.fetchall()]

        return await self._read(op)

    # -- the negative-balance toolkit (issue 4) ------------------------------------------------

    async def set_account_settings(
        self, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
    ) -> bool:
        async def op(conn: AConn) -> bool:
            cur = await conn.execute(
                "UPDATE accounts SET auto_repay = COALESCE(%s, auto_repay),"
                " vip_level = COALESCE(%s, vip_level) WHERE id = %s AND id <> %s RETURNING id",
                (auto_repay, vip_level, account_id, SYSTEM_ACCOUNT_ID),
            )
            return await cur.fetchone() is not None

        return await self._tx(op)

    async def interest_history(
        self, account_id: int, asset: str | None, start_ms: int, end_ms: int, limit: int
    ) -> list[InterestRecord]:
        limit = max(1, min(limit, MAX_INTEREST_PAGE))

        async def op(conn: AConn) -> list[InterestRecord]:
            cur = await conn.execute(
                "SELECT account_id, asset, interest, rate, principal, accrued_ms, tran_id"
                " FROM interest_records WHERE account_id = %s AND accrued_ms BETWEEN %s AND %s"
                " AND (%s::text IS NULL OR asset = %s) ORDER BY accrued_ms DESC, id DESC LIMIT %s",
                (account_id, start_ms, end_ms, asset, asset, limit),
            )
            return [
                InterestRecord(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), int(r[6]))
                for r in await cur.fetchall()
            ]

        return await self._read(op)

    async def job_candidates(self, after_account_id: int, limit: int) -> list[int]:
        limit = max(1, min(limit, MAX_JOB_BATCH_ACCOUNTS))

        async def op(conn: AConn) -> list[int]:
            # The WHERE clause repeats the partial index's, so only that index is read.
            cur = await conn.execute(
                "SELECT DISTINCT account_id FROM balances"
                " WHERE wallet IN ('UM', 'CM') AND amount < 0 AND account_id > %s"
                " ORDER BY account_id LIMIT %s",
                (max(after_account_id, SYSTEM_ACCOUNT_ID), limit),
            )
            return [int(r[0]) for r in await cur.fetchall()]

        return await self._read(op)

    async def run_job_batch(
        self, job: str, slot_ms: int, entry_type: str, account_ids: list[int], plan: JobPlanner
    ) -> JobBatchResult:
        if len(account_ids) > MAX_JOB_BATCH_ACCOUNTS:
            raise ValueError(f"a job batch carries at most {MAX_JOB_BATCH_ACCOUNTS} accounts")

        async def op(conn: AConn) -> JobBatchResult:
            result = JobBatchResult()
            # Lock every account of the batch first, in id order, before touching any shared
            # (system) balance row: a request locks its one account first too, so no cycle of
            # waits can form. Then read the markers under those locks: a batch of another
            # process that handled an account has committed its marker before we got the lock.
            cur = await conn.execute(
                "SELECT id, auto_repay, vip_level FROM accounts WHERE id = ANY(%s) AND id <> %s"
                " ORDER BY id FOR UPDATE",
                (sorted(set(account_ids)), SYSTEM_ACCOUNT_ID),
            )
            settings = {int(r[0]): (bool(r[1]), int(r[2])) for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT account_id FROM job_marks WHERE job = %s AND slot_ms = %s"
                " AND account_id = ANY(%s)",
                (job, slot_ms, list(settings)),
            )
            done = {int(r[0]) for r in await cur.fetchall()}
            for account_id in account_ids:
                if account_id == SYSTEM_ACCOUNT_ID:
                    continue
                result.accounts += 1
                if account_id in done:
                    result.already_done += 1
                    continue
                if account_id not in settings:
                    continue
                auto_repay, vip_level = settings[account_id]
                snapshot = await _load_balances(conn, account_id)
                decision = result.decide(
                    plan, JobAccount(account_id, auto_repay, vip_level, snapshot.amounts)
                )
                tran_id: int | None = None
                if decision.postings:
                    if not is_balanced(decision.postings):
                        raise AssertionError(f"unbalanced postings from {entry_type}")
                    entry = await _write_entry(
                        conn, account_id, entry_type, decision.postings, self._clock_ms()
                    )
                    tran_id = entry.tran_id
                    result.entries.append(entry)
                    await _announce(conn, committed_entry(entry, snapshot.amounts))
                    for c in decision.interest:
                        await conn.execute(
                            "INSERT INTO interest_records (account_id, asset, interest, rate,"
                            " principal, accrued_ms, tran_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (
                                account_id,
                                c.asset,
                                c.interest,
                                c.rate,
                                c.principal,
                                slot_ms,
                                tran_id,
                            ),
                        )
                # Same transaction as the entry: after a crash both exist or neither does.
                await conn.execute(
                    "INSERT INTO job_marks (job, slot_ms, account_id, tran_id)"
                    " VALUES (%s, %s, %s, %s)",
                    (job, slot_ms, account_id, tran_id),
                )
                done.add(account_id)
            return result

        return await self._tx(op)

    async def prune_job_marks(self, before_slot_ms: int) -> int:
        async def op(conn: AConn) -> int:
            cur = await conn.execute("DELETE FROM job_marks WHERE slot_ms < %s", (before_slot_ms,))
            return cur.rowcount

        return await self._tx(op)


# -- statements shared by the methods ----------------------------------------------------------

#: Rows that must have a parent, as (what, query counting those without one).
_ORPHAN_CHECKS = (
    (
        "postings without their entry",
        "SELECT COUNT(*) FROM postings p WHERE NOT EXISTS"
        " (SELECT 1 FROM entries e WHERE e.tran_id = p.tran_id)",
    ),
    (
        "interest records without their entry",
        "SELECT COUNT(*) FROM interest_records r WHERE NOT EXISTS"
        " (SELECT 1 FROM entries e WHERE e.tran_id = r.tran_id)",
    ),
    (
        "API keys without their account",
        "SELECT COUNT(*) FROM api_keys k WHERE NOT EXISTS"
        " (SELECT 1 FROM accounts a WHERE a.id = k.account_id)",
    ),
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
    for what, query in _ORPHAN_CHECKS:
        row = conn.execute(query).fetchone()
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


async def _lock_account(conn: AConn, account_id: int) -> None:
    cur = await conn.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (account_id,))
    if await cur.fetchone() is None:
        raise LedgerError(f"account {account_id} does not exist")


async def _load_balances(conn: AConn, account_id: int) -> AccountBalances:
    result = AccountBalances()
    cur = await conn.execute(
        "SELECT wallet, asset, SUM(amount), MAX(updated_ms) FROM balances WHERE account_id = %s"
        " GROUP BY wallet, asset",
        (account_id,),
    )
    for wallet, asset, amount, updated_ms in await cur.fetchall():
        result.amounts[(Wallet(wallet), asset)] = amount
        if updated_ms > result.updated_ms.get(asset, -1):
            result.updated_ms[asset] = int(updated_ms)
    return result


async def _write_entry(
    conn: AConn, account_id: int, entry_type: str, postings: list[Posting], now_ms: int
) -> Entry:
    """Append the entry and its postings and add them to the balance rows, in lock order."""
    cur = await conn.execute(
        "INSERT INTO entries (account_id, type, time_ms) VALUES (%s, %s, %s) RETURNING tran_id",
        (account_id, entry_type, now_ms),
    )
    row = await cur.fetchone()
    assert row is not None
    tran_id = int(row[0])
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO postings (tran_id, seq, account_id, wallet, asset, amount)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (tran_id, seq, p.account_id, p.wallet.value, p.asset, p.amount)
                for seq, p in enumerate(postings)
            ],
        )
        await c.executemany(
            "INSERT INTO balances (account_id, asset, wallet, bucket, amount, updated_ms)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (account_id, asset, wallet, bucket)"
            " DO UPDATE SET amount = balances.amount + EXCLUDED.amount,"
            " updated_ms = EXCLUDED.updated_ms",
            [
                (acc, asset, wallet, bucket, delta, now_ms)
                for (acc, asset, wallet, bucket), delta in _deltas_in_lock_order(
                    account_id, postings
                )
            ],
        )
    return Entry(tran_id, entry_type, now_ms, account_id, tuple(postings))


async def _announce(conn: AConn, committed: CommittedEntry) -> None:
    """NOTIFY every process of an entry, inside its transaction: delivered only if (and when)
    the transaction commits, in commit order; discarded with a rolled-back savepoint."""
    payload = _encode_committed(committed)
    if len(payload) > NOTIFY_PAYLOAD_LIMIT:
        payload = orjson.dumps({"t": committed.entry.tran_id, "a": committed.entry.account_id})
    await conn.execute("SELECT pg_notify(%s, %s)", (ENTRY_CHANNEL, payload.decode()))


def _encode_committed(committed: CommittedEntry) -> bytes:
    entry = committed.entry
    return orjson.dumps(
        {
            "t": entry.tran_id,
            "y": entry.type,
            "m": entry.time_ms,
            "a": entry.account_id,
            "p": [
                [p.account_id, p.wallet.value, p.asset, money.to_storage(p.amount)]
                for p in entry.postings
            ],
            "b": [[w.value, a, money.to_storage(v)] for w, a, v in committed.balances],
        }
    )


def _decode_committed(payload: str) -> CommittedEntry | None:
    """The announced entry, or None when the announcement is only a reference (too large)."""
    data = orjson.loads(payload)
    if "p" not in data:
        return None
    entry = Entry(
        int(data["t"]),
        str(data["y"]),
        int(data["m"]),
        int(data["a"]),
        tuple(
            Posting(int(acc), Wallet(w), str(a), money.from_storage(v))
            for acc, w, a, v in data["p"]
        ),
    )
    return CommittedEntry(
        entry, tuple((Wallet(w), str(a), money.from_storage(v)) for w, a, v in data["b"])
    )


async def _read_committed(conn: AConn, tran_id: int, account_id: int) -> CommittedEntry | None:
    """An entry read back from the journal, with its account's resulting balances: the sum of
    the account's postings up to this tranId (tranIds of one account increase in commit order,
    so this is exactly the balance right after the entry, whatever committed since)."""
    cur = await conn.execute(
        "SELECT type, time_ms FROM entries WHERE tran_id = %s AND account_id = %s",
        (tran_id, account_id),
    )
    head = await cur.fetchone()
    if head is None:
        return None
    cur = await conn.execute(
        "SELECT account_id, wallet, asset, amount FROM postings WHERE tran_id = %s ORDER BY seq",
        (tran_id,),
    )
    postings = tuple(
        Posting(int(r[0]), Wallet(r[1]), r[2], r[3] + money.ZERO) for r in await cur.fetchall()
    )
    entry = Entry(tran_id, str(head[0]), int(head[1]), account_id, postings)
    touched = list(
        dict.fromkeys((p.wallet, p.asset) for p in postings if p.account_id == account_id)
    )
    cur = await conn.execute(
        "SELECT wallet, asset, SUM(amount) FROM postings"
        " WHERE account_id = %s AND tran_id <= %s"
        " AND (wallet, asset) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        " GROUP BY wallet, asset",
        (account_id, tran_id, [w.value for w, _ in touched], [a for _, a in touched]),
    )
    sums = {(Wallet(w), a): v + money.ZERO for w, a, v in await cur.fetchall()}
    return CommittedEntry(entry, tuple((w, a, sums.get((w, a), money.ZERO)) for w, a in touched))


def _deltas_in_lock_order(
    account_id: int, postings: list[Posting]
) -> list[tuple[tuple[int, str, str, int], Decimal]]:
    """One delta per balance row: the entry's own account first, then the others (the system
    account's hot rows among them) by (account_id, asset, wallet, bucket) - the global lock
    order."""
    system_bucket = account_id % SYSTEM_BALANCE_BUCKETS
    deltas: dict[tuple[int, str, str, int], Decimal] = {}
    for p in postings:
        bucket = system_bucket if p.account_id == SYSTEM_ACCOUNT_ID else 0
        key = (p.account_id, p.asset, p.wallet.value, bucket)
        deltas[key] = money.add(deltas.get(key, money.ZERO), p.amount)
    return sorted(deltas.items(), key=lambda item: (item[0][0] != account_id, item[0]))


_KEY_COLUMNS = (
    "api_key, account_id, key_type, secret, public_key, can_read, can_trade, ip_whitelist,"
    " revoked_ms"
)


def _key_record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        api_key=row[0],
        account_id=int(row[1]),
        key_type=row[2],
        secret=row[3],
        public_key=row[4],
        can_read=bool(row[5]),
        can_trade=bool(row[6]),
        ip_whitelist=tuple(row[7]),
        revoked=row[8] is not None,
    )


async def _insert_key(conn: AConn, key: ApiKeyRecord, account_id: int, now: int) -> None:
    await conn.execute(
        "INSERT INTO api_keys (api_key, account_id, key_type, secret, public_key, can_read,"
        " can_trade, ip_whitelist, created_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            key.api_key,
            account_id,
            key.key_type,
            key.secret,
            key.public_key,
            key.can_read,
            key.can_trade,
            list(key.ip_whitelist),
            now,
        ),
    )
