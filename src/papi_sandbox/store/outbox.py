"""How a commit's announcements leave their process: the SQLite stream outbox, PostgreSQL's
NOTIFY payloads, one encoding of both, and the stream's horizon.

**SQLite.** Every announcement of a commit (journal entries, order executions) is also written,
in the same transaction, as a row of ``stream_outbox``, so that a server process learns of what
another process committed to the same database file (the ``jobs run`` CLI, a second server) and
streams it to its clients, in commit order, once. SQLite serialises writers, so row ids follow
commit order across processes. A process's writer thread (its :class:`Tail`) keeps the highest
id it has published: before each of its own batches (inside the write transaction, so that
nothing commits in between) and whenever it is idle for :data:`TAIL_INTERVAL_S`, it reads the
rows above that id (``PRAGMA data_version`` says whether another connection committed at all),
publishes them, then its own. Rows older than :data:`KEEP_S` are deleted, by id (the writer
notes its last id every :data:`PRUNE_INTERVAL_S`; the newest row always stays, so ids never
restart).

**PostgreSQL** needs no table: each announcement is a ``pg_notify`` in the committing
transaction (:mod:`papi_sandbox.store.announcements`, which also encodes the rows here),
delivered at COMMIT, in commit order, to every listening process; an entry too large for it is
read back from the journal (:func:`received`, :func:`read_back`).

**Marks and the horizon.** Each published announcement carries a *mark*: its outbox row id
(SQLite) or its transaction's id (PostgreSQL ``pg_current_xact_id()``). A new subscription reads
the store's :class:`Horizon` (:func:`horizon`: the newest outbox id, or a transaction snapshot)
once it is registered and before the client is told it is subscribed, and skips every
announcement whose commit the horizon already saw: a client never receives a change that was
durable before it subscribed, however late this process learns of it (an idle SQLite tail, a
lagging PostgreSQL listener), and loses none committed after.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from papi_sandbox.ledger.model import CommittedEntry
from papi_sandbox.store import journal
from papi_sandbox.store.announcements import (
    ENTRY_CHANNEL,
    NOTIFY_SQL,
    decode_committed,
    encode_committed,
    notify_payload,
    parse_notification,
    report_from,
)
from papi_sandbox.trading.model import Announcement, TradedEntry

if TYPE_CHECKING:
    from papi_sandbox.store.contract import Store
    from papi_sandbox.store.dialect import Db

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

log = logging.getLogger("papi_sandbox.store")


@dataclass(frozen=True, slots=True)
class Horizon:
    """What was durable when a subscription started: the commit of mark ``m`` was iff
    ``m < below``, or ``m < upto`` and ``m`` not in ``running``. SQLite: ``below == upto`` is
    the newest outbox id + 1. PostgreSQL: a snapshot's ``xmin``, ``xmax`` and in-progress
    transaction ids (PostgreSQL's own visibility rule, ``pg_visible_in_snapshot``)."""

    below: int
    upto: int
    running: frozenset[int] = frozenset()

    def durable(self, mark: int) -> bool:
        return mark < self.below or (mark < self.upto and mark not in self.running)


def horizon(db: Db) -> Horizon:
    """The store's horizon now (a read unit: ``store.read(outbox.horizon)``)."""
    if db.dialect.name == "postgresql":
        xmin, xmax, running = str(db.one("SELECT pg_current_snapshot()::text")[0]).split(":")
        ids = frozenset(int(x) for x in running.split(",") if x)
        return Horizon(int(xmin), int(xmax), ids)
    newest = last_id(db) + 1
    return Horizon(newest, newest)


async def durable_now(store: Store) -> Callable[[int], bool]:
    """Whether a mark's commit was durable now: the stream's horizon reader
    (``hub.subscribe_from_now``). Raises StoreUnavailable."""
    return (await store.read(horizon)).durable


# -- SQLite: the outbox table ------------------------------------------------------------------


def write(db: Db, items: Sequence[Announcement]) -> None:
    """Append ``items`` (in commit order) in the caller's transaction. Their ids are
    consecutive, the last being ``last_insert_rowid()`` (one writer holds the file's lock)."""
    db.many(
        "INSERT INTO stream_outbox (payload) VALUES (?)",
        [(encode_committed(item).decode(),) for item in items],
    )


def last_id(db: Db) -> int:
    """The highest row id (0 for none)."""
    row = db.one("SELECT MAX(id) FROM stream_outbox")
    return int(row[0]) if row and row[0] is not None else 0


def read_after(db: Db, after_id: int) -> tuple[int, list[tuple[int, Announcement]], int]:
    """Rows above ``after_id``, oldest first, at most MAX_TAIL_ROWS: (the last id read, their
    ``(id, announcement)``, rows missing between ``after_id`` and the first row read)."""
    rows = db.all(
        "SELECT id, payload FROM stream_outbox WHERE id > ? ORDER BY id LIMIT ?",
        (after_id, MAX_TAIL_ROWS),
    )
    if not rows:
        return after_id, [], 0
    items = [
        (int(row_id), item)
        for row_id, payload in rows
        if (item := decode_committed(payload)) is not None
    ]
    missing = int(rows[0][0]) - after_id - 1
    return int(rows[-1][0]), items, missing


def prune(db: Db, below_id: int) -> None:
    """Delete the rows below ``below_id`` (that row itself stays)."""
    db.execute("DELETE FROM stream_outbox WHERE id < ?", (below_id,))


class Tail:
    """The SQLite writer thread's side of the outbox (used by that thread only): it writes each
    batch's own rows, reads the rows other processes committed, and publishes both, theirs
    first, through ``publish(items, marks)``, after ``bump(accounts)`` of the accounts their
    entries changed (this process's cached balances). Call :meth:`start` on the writer's
    connection before the first batch; then, per batch, :meth:`read` right after its
    ``BEGIN IMMEDIATE``, :meth:`write` before its COMMIT, :meth:`publish` once it committed (or
    failed); :meth:`idle` when the writer had nothing to do."""

    def __init__(
        self,
        publish: Callable[[list[Announcement], list[int]], None],
        bump: Callable[[Iterable[int]], None],
    ) -> None:
        self._publish, self._bump = publish, bump
        self._published = 0  # the highest outbox id published
        self._version = 0  # the connection's data_version when it last looked for others' rows
        # What the running batch read of others' rows: (the last id read, (id, item)s).
        self._foreign: tuple[int, list[tuple[int, Announcement]]] | None = None
        self._own_last: int | None = None  # the id of the batch's last own row
        self._checkpoints: list[tuple[float, int]] = []  # (time.monotonic(), outbox id)

    def start(self, db: Db) -> None:
        """Stream from here on: what other processes committed before is not news."""
        self._published = last_id(db)
        self._version = db.conn.execute("PRAGMA data_version").fetchone()[0]

    def read(self, db: Db) -> None:
        """Inside a transaction: the rows other processes committed since the last look, kept
        for the batch to publish before its own (nothing is read when ``data_version`` says no
        other connection committed)."""
        version = db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version and self._foreign is None:
            return
        self._version = version
        after = self._foreign[0] if self._foreign is not None else self._published
        last, items, missing = read_after(db, after)
        if missing > 0:
            log.warning("stream outbox: %d events of other processes were pruned unread", missing)
        if last != after or self._foreign is None:
            earlier = self._foreign[1] if self._foreign is not None else []
            self._foreign = (last, earlier + items)

    def write(self, db: Db, own: Sequence[Announcement]) -> None:
        """The batch's own rows, in its transaction (:func:`write`); their last id is noted."""
        write(db, own)
        self._own_last = int(db.one("SELECT last_insert_rowid()")[0])

    def publish(self, own: list[Announcement]) -> None:
        """Publish the other processes' rows read, then the batch's own ``own`` (empty when it
        failed: the rows noted by :meth:`write` were rolled back), and move past both. Marks:
        the rows' outbox ids."""
        foreign, own_last = self._foreign, self._own_last if own else None
        self._foreign = self._own_last = None
        items, marks = own, list(range((own_last or 0) - len(own) + 1, (own_last or 0) + 1))
        if foreign is not None:
            self._published = max(self._published, foreign[0])
            items = [item for _, item in foreign[1]] + own
            marks = [mark for mark, _ in foreign[1]] + marks
            self._bump({item.account_id for _, item in foreign[1]})
        if own_last is not None:
            self._published = max(self._published, own_last)
        if items:
            self._publish(items, marks)

    def idle(self, db: Db) -> None:
        """The writer had nothing to do: publish what other processes committed meanwhile, and
        delete rows older than KEEP_S."""
        conn: sqlite3.Connection = db.conn
        try:
            if conn.execute("PRAGMA data_version").fetchone()[0] != self._version:
                conn.execute("BEGIN")
                try:
                    self.read(db)
                finally:
                    conn.execute("COMMIT")
                self.publish([])
            self._prune(db)
        except sqlite3.Error as exc:  # the next look tries again
            self._foreign = None
            log.warning("stream outbox: cannot read other processes' commits (%s)", exc)

    def _prune(self, db: Db) -> None:
        now = time.monotonic()
        if self._checkpoints and now - self._checkpoints[-1][0] < PRUNE_INTERVAL_S:
            return
        self._checkpoints.append((now, self._published))
        old = [c for c in self._checkpoints if now - c[0] >= KEEP_S]
        if not old:
            return
        self._checkpoints = [c for c in self._checkpoints if now - c[0] < KEEP_S]
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            prune(db, old[-1][1])
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")


# -- PostgreSQL: NOTIFY ------------------------------------------------------------------------


def notify(db: Db, item: Announcement) -> None:
    """Announce ``item`` at COMMIT (the PostgreSQL dialect's ``announce``; payload and statement:
    :mod:`papi_sandbox.store.announcements`)."""
    db.execute(NOTIFY_SQL, (ENTRY_CHANNEL, notify_payload(item)))


# -- PostgreSQL: a notification past the payload limit --------------------------------------


def read_back(db: Db, reference: str) -> CommittedEntry | None:
    """A read unit: the entry a reference payload names, from the journal (postings, and the
    resulting balances as the sum of the account's postings up to it), with the positions the
    reference carried. None when the journal has no such entry."""
    ref = orjson.loads(reference)
    committed = journal.read_committed(db, int(ref["t"]), int(ref["a"]))
    if committed is None or "P" not in ref:
        return committed
    reports = tuple(report_from(committed.account_id, f) for f in ref["P"])
    return TradedEntry(committed.entry, committed.balances, reports)


async def received(store: Store, payload: str) -> tuple[int, Announcement] | None:
    """One NOTIFY payload of ENTRY_CHANNEL (PostgreSQL's listener) as ``(mark, announcement)``:
    decoded inline, or read back from the journal when it was too large (:func:`read_back`).
    None when the journal has no such entry, or when it cannot be decoded or read (logged)."""
    try:
        mark, committed, reference = parse_notification(payload)
        if committed is None:
            committed = await store.read(read_back, reference)
    except Exception:
        log.exception("cannot decode an entry announcement")
        return None
    return None if committed is None else (mark, committed)
