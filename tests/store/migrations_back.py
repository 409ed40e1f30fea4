"""Take a ledger of today back to an earlier schema version, with its own SQL (another process
on the same file or database), for the tests of each migration on a ledger of its day."""

from __future__ import annotations

import sqlite3

import psycopg

from papi_sandbox.store.schema import MIGRATIONS
from papi_sandbox.store.sqlite import path_from_url

#: What each migration added, removed (newest first when taken back); every version past the
#: oldest one a test starts from is here, so a new migration is added in one place.
UNDO: dict[int, list[str]] = {
    11: ["ALTER TABLE um_orders DROP COLUMN modify_count"],
    10: [
        "DROP INDEX um_orders_expiring",
        "ALTER TABLE um_orders DROP COLUMN good_till_date_ms",
        "ALTER TABLE um_orders DROP COLUMN self_trade_prevention_mode",
    ],
    9: ["ALTER TABLE um_positions DROP COLUMN accumulated_realized"],
}


def back_to(version: int) -> list[str]:
    """The statements that take a ledger of today back to ``version``."""
    latest = MIGRATIONS[-1].version
    assert set(UNDO) >= set(range(version + 1, latest + 1)), "a migration has no undo here"
    statements: list[str] = []
    for v in range(latest, version, -1):
        statements += [*UNDO[v], f"DELETE FROM schema_migrations WHERE version = {v}"]
    return statements


def run(url: str, statements: list[str]) -> None:
    """Run ``statements`` on the ledger at ``url`` (SQLite file or PostgreSQL database)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(path_from_url(url), isolation_level=None) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())
