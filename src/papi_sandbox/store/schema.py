"""The one ordered list of schema migrations, and the one runner, for both stores.

A migration is SQL written once with ``{placeholders}`` for the column types that differ
(:attr:`papi_sandbox.store.dialect.Dialect.ddl`). Applied versions are rows of
``schema_migrations`` in both stores. Append new versions; never edit an applied one.

Ledgers from before this list: PostgreSQL already numbered its versions as here. SQLite counted
its own (``PRAGMA user_version`` 1, 2, 3 = versions 1, 3, 4 here); the runner records those and
applies what is missing, in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store import listen_keys, outbox, trading
from papi_sandbox.store.dialect import Db, Dialect

#: Serialises PostgreSQL migrations of processes starting together (advisory lock key).
MIGRATION_LOCK_KEY = 0x7061706953616E64  # "papiSand"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    sql: str
    #: A data step run after the statements, in the same transaction (Python: exact decimals).
    then: Callable[[Db], None] | None = None

    def statements(self, dialect: Dialect) -> list[str]:
        text = self.sql.format_map(dialect.ddl)
        return [s for s in (part.strip() for part in text.split(";")) if s]


LEDGER = """
    CREATE TABLE accounts (
        id {id_key}, label TEXT, created_ms {bigint} NOT NULL,
        auto_repay {bool} NOT NULL DEFAULT {true}, vip_level INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        api_key TEXT PRIMARY KEY, account_id {bigint} NOT NULL REFERENCES accounts(id),
        key_type TEXT NOT NULL, secret TEXT, public_key TEXT,
        can_read {bool} NOT NULL, can_trade {bool} NOT NULL, ip_whitelist {text_list},
        created_ms {bigint} NOT NULL, revoked_ms {bigint}
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE entries (
        tran_id {serial_key}, account_id {bigint} NOT NULL, type TEXT NOT NULL,
        time_ms {bigint} NOT NULL
    );
    CREATE INDEX entries_account ON entries(account_id, tran_id);
    CREATE TABLE postings (
        tran_id {bigint} NOT NULL REFERENCES entries(tran_id), seq INTEGER NOT NULL,
        account_id {bigint} NOT NULL, wallet TEXT NOT NULL, asset TEXT NOT NULL,
        amount {money} NOT NULL, PRIMARY KEY (tran_id, seq)
    ){without_rowid};
    CREATE TABLE balances (
        account_id {bigint} NOT NULL, asset TEXT NOT NULL, wallet TEXT NOT NULL, {bucket_column}
        amount {money} NOT NULL, updated_ms {bigint} NOT NULL,
        PRIMARY KEY (account_id, asset, wallet{bucket_key})
    ){without_rowid};
    INSERT INTO accounts (id, label, created_ms, auto_repay) VALUES (0, 'SYSTEM', 0, {false})
"""

# Leases (a row with an expiry on the database's clock) mark a job slot done across processes.
LEASES = """
    CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms {bigint} NOT NULL)
"""

# The negative-balance toolkit: interest history, per-(job, slot, account) markers that make
# scheduled jobs idempotent, and an index of negative futures wallets so a job reads only the
# accounts it may act on (its predicate is repeated verbatim by the query that uses it).
TOOLKIT = """
    CREATE TABLE interest_records (
        id {serial_key}, account_id {bigint} NOT NULL, asset TEXT NOT NULL,
        interest {money} NOT NULL, rate {money} NOT NULL, principal {money} NOT NULL,
        accrued_ms {bigint} NOT NULL, tran_id {bigint} NOT NULL REFERENCES entries(tran_id)
    );
    CREATE INDEX interest_records_account ON interest_records(account_id, accrued_ms);
    CREATE TABLE job_marks (
        job TEXT NOT NULL, slot_ms {bigint} NOT NULL, account_id {bigint} NOT NULL,
        tran_id {bigint}, PRIMARY KEY (job, slot_ms, account_id)
    ){without_rowid};
    CREATE INDEX balances_negative_futures ON balances(account_id)
        WHERE wallet IN ('UM', 'CM') AND amount < {money_zero}
"""

# Ledger-wide settings that every process must agree on (the encryption key's id).
META = "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL){without_rowid}"

# PostgreSQL ledgers of the first releases have an unused table of a removed job sweep.
DROP_SWEEP_CLAIMS = "DROP TABLE IF EXISTS sweep_claims"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger: accounts, API keys, journal, balances", LEDGER),
    Migration(2, "leases", LEASES),
    Migration(3, "negative-balance toolkit: interest, job marks", TOOLKIT),
    Migration(4, "ledger-wide settings", META),
    Migration(5, "drop the removed sweep's claims", DROP_SWEEP_CLAIMS),
    Migration(6, "listen keys of the user data stream", listen_keys.SCHEMA),
    Migration(7, "UM trading: markets, settings, orders, trades, positions", trading.SCHEMA),
    Migration(
        8, "stream outbox: SQLite commits of other processes reach the stream", outbox.SCHEMA
    ),
    Migration(
        9,
        "UM positions: accumulated realized PnL (the stream's cr)",
        trading.ACCUMULATED_REALIZED,
        trading.backfill_accumulated_realized,
    ),
    Migration(
        10,
        "UM orders: goodTillDate and self-trade prevention mode",
        trading.ORDER_TIME_LIMITS,
    ),
    Migration(11, "UM orders: amendments taken", trading.ORDER_MODIFICATIONS),
)

#: SQLite's ``user_version`` before this list -> the versions here it had applied.
LEGACY_SQLITE_VERSIONS = {1: (1,), 2: (1, 3), 3: (1, 3, 4)}


def migrate(conn: Any, dialect: Dialect, progress: Progress = NO_PROGRESS) -> tuple[int, int]:
    """Apply every pending migration in one transaction on ``conn`` (autocommit mode);
    returns (versions applied before, versions applied after). ``progress`` gets one stage per
    pending migration, counting its statements (:mod:`papi_sandbox.progress`).

    Raises RuntimeError when the ledger has a version this program does not know (it is
    newer), and the database's error when a statement fails (then nothing is applied)."""
    conn.execute("BEGIN IMMEDIATE" if dialect.name == "sqlite" else "BEGIN")
    try:
        if dialect.name != "sqlite":  # processes starting together apply each version once
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        applied = _applied(conn, dialect)
        unknown = applied - {m.version for m in MIGRATIONS}
        if unknown:
            raise RuntimeError(
                f"the ledger has schema version(s) {sorted(unknown)} this program does not know"
            )
        before = len(applied)
        insert = dialect.sql("INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)")
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            statements = migration.statements(dialect)
            done = progress.stage(
                f"migration {migration.version}: {migration.summary}", total=len(statements)
            )
            for statement in statements:
                conn.execute(statement)
                done(1)
            if migration.then is not None:
                migration.then(Db(conn, dialect))
            conn.execute(insert, (migration.version, time.time_ns() // 1_000_000))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return before, len(MIGRATIONS)


def _applied(conn: Any, dialect: Dialect) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        f" version INTEGER PRIMARY KEY, applied_ms {dialect.ddl['bigint']} NOT NULL)"
    )
    applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
    if not applied and dialect.name == "sqlite":
        legacy = int(conn.execute("PRAGMA user_version").fetchone()[0])
        insert = "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, 0)"
        for version in LEGACY_SQLITE_VERSIONS.get(legacy, ()):
            conn.execute(insert, (version,))
            applied.add(version)
    return applied
