"""The one encoding of an announcement (a committed entry, a fill's entry with its positions,
an order execution) as it leaves its process: a SQLite ``stream_outbox`` row
(:mod:`papi_sandbox.store.outbox`) and a PostgreSQL notification (the dialect's ``announce``),
and back. Pure: no I/O.

A notification is ``<transaction id> <payload>`` on :data:`ENTRY_CHANNEL`, sent by
:data:`NOTIFY_SQL` inside the committing transaction: PostgreSQL delivers it only if (and when)
that commits, in commit order, to every listening process (this one included), and drops it with
a rolled-back savepoint. The transaction id is the announcement's mark (store/outbox.py,
"Marks and the horizon").
"""

from __future__ import annotations

from typing import Any

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
    Position,
    PositionReport,
    PositionSide,
    Side,
    TimeInForce,
    Trade,
    TradedEntry,
)

#: The LISTEN/NOTIFY channel on which every announcement is announced (PostgreSQL), for the
#: user data stream of every process (docs/design.md).
ENTRY_CHANNEL = "papi_entries"
#: Largest notification payload sent inline (PostgreSQL refuses 8000 bytes and more, and the
#: transaction id prefix takes at most 21); a larger entry is announced by its tranId and
#: account, and each listener reads it from the journal.
NOTIFY_PAYLOAD_LIMIT = 7900
#: The statement that announces: ``(ENTRY_CHANNEL, notify_payload(item))``.
NOTIFY_SQL = "SELECT pg_notify(?, pg_current_xact_id()::text || ' ' || ?)"


def notify_payload(item: Announcement) -> str:
    """What PostgreSQL's NOTIFY carries of ``item`` (after its transaction id, which the
    dialect's statement puts in front: :data:`NOTIFY_SQL`). An order execution is at most ~1 KB
    (bounded symbol and client order id); a larger entry goes by reference."""
    payload = encode_committed(item)
    if len(payload) > NOTIFY_PAYLOAD_LIMIT and isinstance(item, CommittedEntry):
        # The postings and balances stay behind (the journal has them); a fill's positions
        # (one, a few hundred bytes) travel along: nothing else records them as they were.
        ref: dict[str, Any] = {"t": item.entry.tran_id, "a": item.entry.account_id}
        if isinstance(item, TradedEntry):
            ref["P"] = [_report_fields(r) for r in item.positions]
        payload = orjson.dumps(ref)
    return payload.decode()


def parse_notification(text: str) -> tuple[int, Announcement | None, str]:
    """A notification of :data:`NOTIFY_SQL`: (its transaction id, the announcement, or None
    when it came by reference, and then the reference for ``outbox.read_back``)."""
    mark, _, payload = text.partition(" ")
    return int(mark), decode_committed(payload), payload


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
    fields: dict[str, Any] = {"t": e.tran_id, "y": e.type, "m": e.time_ms, "a": e.account_id,
                              "p": postings, "b": balances}  # fmt: skip
    if isinstance(item, TradedEntry):
        fields["P"] = [_report_fields(r) for r in item.positions]
    return orjson.dumps(fields)


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
    balances = tuple((Wallet(w), str(a), amount(v)) for w, a, v in d["b"])
    if "P" in d:
        reports = tuple(report_from(entry.account_id, f) for f in d["P"])
        return TradedEntry(entry, balances, reports)
    return CommittedEntry(entry, balances)


def _report_fields(r: PositionReport) -> list[Any]:
    p, text = r.position, money.to_storage
    return [p.symbol, p.position_side.value, text(p.amount), text(p.entry_price),
            text(p.open_fee), p.update_time_ms, text(p.accumulated_realized),
            text(r.mark_price), text(r.taker_rate)]  # fmt: skip


def report_from(account_id: int, f: list[Any]) -> PositionReport:
    """A position report of ``account_id`` as encoded (a reference payload's ``P``)."""
    m = money.from_storage
    position = Position(account_id, str(f[0]), PositionSide(f[1]), m(f[2]), m(f[3]), m(f[4]),
                        int(f[5]), m(f[6]))  # fmt: skip
    return PositionReport(position, m(f[7]), m(f[8]))


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
        o.modify_count,
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
        int(f[19]),
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
