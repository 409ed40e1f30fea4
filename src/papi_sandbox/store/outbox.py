"""The stream outbox (SQLite): every announcement of a commit (journal entries, order executions)
is also written, in the same transaction, as a row of ``stream_outbox``, so that a server process
learns of what another process committed to the same database file (the ``jobs run`` CLI, a
second server) and streams it to its clients, in commit order, once.

SQLite serialises writers, so row ids follow commit order across processes. A process's writer
thread keeps the highest id it has published: before each of its own batches (inside the write
transaction, so that nothing commits in between) and whenever it is idle for
:data:`TAIL_INTERVAL_S`, it reads the rows above that id (``PRAGMA data_version`` says whether
another connection committed at all), publishes them, then its own. Rows older than
:data:`KEEP_S` are deleted, by id (the writer notes its last id every
:data:`PRUNE_INTERVAL_S`; the newest row always stays, so ids never restart). PostgreSQL needs
none of this: its announcements travel by NOTIFY (store/dialect.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from papi_sandbox.store.dialect import Db, decode_committed, encode_committed
from papi_sandbox.trading.model import Announcement

#: The DDL (migration 8 of papi_sandbox.store.schema); PostgreSQL has the table but never uses it.
SCHEMA = """
    CREATE TABLE stream_outbox (id {serial_key}, payload TEXT NOT NULL)
"""
#: How long the writer waits for work before it looks for other processes' commits (s): the
#: longest an idle process takes to stream another process's commit.
TAIL_INTERVAL_S = 0.05
#: Rows one tail reads at most; more wait for the next read, in order.
MAX_TAIL_ROWS = 10_000
#: Age past which outbox rows are deleted (s); a process that falls further behind than this
#: loses events (it logs how many).
KEEP_S = 60.0
#: How often the writer deletes old rows (s).
PRUNE_INTERVAL_S = 5.0


def write(db: Db, items: Sequence[Announcement]) -> None:
    """Append ``items`` (in commit order) in the caller's transaction."""
    db.many(
        "INSERT INTO stream_outbox (payload) VALUES (?)",
        [(encode_committed(item).decode(),) for item in items],
    )


def last_id(db: Db) -> int:
    """The highest row id (0 for none)."""
    row = db.one("SELECT MAX(id) FROM stream_outbox")
    return int(row[0]) if row and row[0] is not None else 0


def read_after(db: Db, after_id: int) -> tuple[int, list[Announcement], int]:
    """Rows above ``after_id``, oldest first, at most MAX_TAIL_ROWS: (the last id read, their
    announcements, rows missing between ``after_id`` and the first row read)."""
    rows = db.all(
        "SELECT id, payload FROM stream_outbox WHERE id > ? ORDER BY id LIMIT ?",
        (after_id, MAX_TAIL_ROWS),
    )
    if not rows:
        return after_id, [], 0
    items = [item for _, payload in rows if (item := decode_committed(payload)) is not None]
    missing = int(rows[0][0]) - after_id - 1
    return int(rows[-1][0]), items, missing


def prune(db: Db, below_id: int) -> None:
    """Delete the rows below ``below_id`` (that row itself stays)."""
    db.execute("DELETE FROM stream_outbox WHERE id < ?", (below_id,))
