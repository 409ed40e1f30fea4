"""How a commit's announcements leave their process: the SQLite stream outbox, PostgreSQL's
NOTIFY payloads, one encoding of both, and the stream's horizon.

**SQLite.** Every announcement of a commit (journal entries, order executions) is also written,
in the same transaction, as a row of ``stream_outbox``, so that a server process learns of what
another process committed to the same database file (the ``jobs run`` CLI, a second server) and
streams it to its clients, in commit order, once. SQLite serialises writers, so row ids follow
commit order across processes. A process's writer thread keeps the highest id it has published:
before each of its own batches (inside the write transaction, so that nothing commits in
between) and whenever it is idle for :data:`TAIL_INTERVAL_S`, it reads the rows above that id
(``PRAGMA data_version`` says whether another connection committed at all), publishes them, then
its own. Rows older than :data:`KEEP_S` are deleted, by id (the writer notes its last id every
:data:`PRUNE_INTERVAL_S`; the newest row always stays, so ids never restart).

**PostgreSQL** needs no table: each announcement is a ``pg_notify`` on :data:`ENTRY_CHANNEL` in
the committing transaction (:func:`notify`), delivered at COMMIT, in commit order, to every
listening process.

**Marks and the horizon.** Each published announcement carries a *mark*: its outbox row id
(SQLite) or its transaction's id (PostgreSQL ``pg_current_xact_id()``). A new subscription reads
the store's :class:`Horizon` (:func:`horizon`: the newest outbox id, or a transaction snapshot)
once it is registered and before the client is told it is subscribed, and skips every
announcement whose commit the horizon already saw: a client never receives a change that was
durable before it subscribed, however late this process learns of it (an idle SQLite tail, a
lagging PostgreSQL listener), and loses none committed after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from papi_sandbox import money
from papi_sandbox.ledger.model import CommittedEntry, Entry, Posting, Wallet
from papi_sandbox.trading.model import (
    Announcement,
    Execution,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionSide,
    Side,
    TimeInForce,
    Trade,
)

if TYPE_CHECKING:
    from collections.abc import Callable

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
#: The LISTEN/NOTIFY channel on which every announcement is announced (PostgreSQL), for the
#: user data stream of every process (docs/design.md).
ENTRY_CHANNEL = "papi_entries"
#: Largest notification payload sent inline (PostgreSQL refuses 8000 bytes and more, and the
#: transaction id prefix takes at most 21); a larger entry is announced by its tranId and
#: account, and each listener reads it from the journal.
NOTIFY_PAYLOAD_LIMIT = 7900


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


# -- PostgreSQL: NOTIFY ------------------------------------------------------------------------


def notify(db: Db, item: Announcement) -> None:
    """Announce ``item`` at COMMIT: ``<transaction id> <payload>`` on ENTRY_CHANNEL. NOTIFY
    inside the transaction is delivered only if (and when) it commits, in commit order, to every
    process (this one included), and dropped with a rolled-back savepoint. An order execution
    is at most ~1 KB (bounded symbol and client order id); a larger entry goes by reference."""
    payload = encode_committed(item)
    if len(payload) > NOTIFY_PAYLOAD_LIMIT and isinstance(item, CommittedEntry):
        payload = orjson.dumps({"t": item.entry.tran_id, "a": item.entry.account_id})
    db.execute(
        "SELECT pg_notify(?, pg_current_xact_id()::text || ' ' || ?)",
        (ENTRY_CHANNEL, payload.decode()),
    )


def parse_notification(text: str) -> tuple[int, Announcement | None, tuple[int, int] | None]:
    """A notification of :func:`notify`: (its transaction id, the announcement or None, and
    when it came by reference the entry's (tranId, account) to read from the journal)."""
    mark, _, payload = text.partition(" ")
    item = decode_committed(payload)
    if item is not None:
        return int(mark), item, None
    ref = orjson.loads(payload)
    return int(mark), None, (int(ref["t"]), int(ref["a"]))


# -- the payload: one encoding for both ----------------------------------------------------------


def encode_committed(item: Announcement) -> bytes:
    """An announcement as a notification payload (:func:`decode_committed` reads it back)."""
    if isinstance(item, OrderUpdate):
        trade = _trade_fields(item.trade) if item.trade else None
        return orjson.dumps({"k": "o", "x": item.execution.value, "o": _order_fields(item.order),
                             "f": trade, "b": money.to_storage(item.bids_notional),
                             "a": money.to_storage(item.asks_notional)})  # fmt: skip
    e, text = item.entry, money.to_storage
    postings = [[p.account_id, p.wallet.value, p.asset, text(p.amount)] for p in e.postings]
    balances = [[w.value, a, text(v)] for w, a, v in item.balances]
    return orjson.dumps({"t": e.tran_id, "y": e.type, "m": e.time_ms, "a": e.account_id,
                         "p": postings, "b": balances})  # fmt: skip


def decode_committed(payload: str) -> Announcement | None:
    """The announcement, or None when it is only a reference to an entry (too large)."""
    d, amount = orjson.loads(payload), money.from_storage
    if d.get("k") == "o":
        trade = _trade_from(d["f"]) if d["f"] is not None else None
        return OrderUpdate(
            Execution(d["x"]), _order_from(d["o"]), trade, amount(d["b"]), amount(d["a"])
        )
    if "p" not in d:
        return None
    postings = tuple(Posting(int(n), Wallet(w), str(a), amount(v)) for n, w, a, v in d["p"])
    entry = Entry(int(d["t"]), str(d["y"]), int(d["m"]), int(d["a"]), postings)
    return CommittedEntry(entry, tuple((Wallet(w), str(a), amount(v)) for w, a, v in d["b"]))


def _order_fields(o: Order) -> list[Any]:
    text = money.to_storage
    return [
        o.order_id,
        o.account_id,
        o.symbol,
        o.client_order_id,
        o.side.value,
        o.position_side.value,
        o.type.value,
        o.time_in_force.value,
        text(o.orig_qty),
        text(o.price),
        o.reduce_only,
        o.status.value,
        text(o.executed_qty),
        text(o.cum_quote),
        text(o.avg_price),
        o.time_ms,
        o.update_time_ms,
        o.good_till_date_ms,
        o.self_trade_prevention_mode,
    ]


def _order_from(f: list[Any]) -> Order:
    m = money.from_storage
    return Order(
        int(f[0]),
        int(f[1]),
        str(f[2]),
        str(f[3]),
        Side(f[4]),
        PositionSide(f[5]),
        OrderType(f[6]),
        TimeInForce(f[7]),
        m(f[8]),
        m(f[9]),
        bool(f[10]),
        OrderStatus(f[11]),
        m(f[12]),
        m(f[13]),
        m(f[14]),
        int(f[15]),
        int(f[16]),
        int(f[17]),
        str(f[18]),
    )


def _trade_fields(t: Trade) -> list[Any]:
    text = money.to_storage
    return [
        t.trade_id,
        t.account_id,
        t.order_id,
        t.symbol,
        t.side.value,
        t.position_side.value,
        text(t.price),
        text(t.qty),
        text(t.quote_qty),
        text(t.realized_pnl),
        text(t.commission),
        t.commission_asset,
        t.maker,
        t.time_ms,
    ]


def _trade_from(f: list[Any]) -> Trade:
    m = money.from_storage
    return Trade(
        int(f[0]),
        int(f[1]),
        int(f[2]),
        str(f[3]),
        Side(f[4]),
        PositionSide(f[5]),
        m(f[6]),
        m(f[7]),
        m(f[8]),
        m(f[9]),
        m(f[10]),
        str(f[11]),
        bool(f[12]),
        int(f[13]),
    )
