"""Binance's user-data events built from a committed journal entry. Pure: no I/O, no clock.

Which events an entry produces and which reason code ``a.m`` an ``ACCOUNT_UPDATE`` carries is
decided by :data:`EVENT_RULES`, the one table of these choices (docs/semantics.md, "User data
stream events"); Binance documents the event shapes (Portfolio Margin user data streams:
"Futures Balance and Position Update", "Margin Account Update", "Margin Balance Update", "Listen
Key Expired"), not which event a repay or a collection produces.

Per entry, in this order:
1. ``balanceUpdate``, one per asset whose cross-margin ``free`` changed (``d``: the change);
2. ``outboundAccountPosition`` when cross-margin ``free`` or ``locked`` changed (``B``: each
   such asset's ``f`` free and ``l`` locked after the entry);
3. ``ACCOUNT_UPDATE`` with ``fs`` ``UM`` when a UM wallet changed, then with ``fs`` ``CM``
   (``B``: each such asset's ``wb`` wallet balance and ``cw`` cross wallet balance after the
   entry, ``bc`` the change except realized PnL and commission; ``P``: the positions a fill
   changed, on UM, as the fill left them: ``s``, ``pa`` amount, ``ep`` entry price, ``cr``
   accumulated realized PnL before fees, ``up`` unrealized PnL at the commit's mark price,
   ``ps``, ``bep`` break-even price; empty for every other entry, funding included, as Binance).
Amounts are strings with 8 fractional digits, except ``P``'s, plain decimals without trailing
zeros (``"0"``, ``"0.01"``, ``"-110"``, as Binance's example); ``E`` (event time) and ``T`` (the
entry's time) are integers in ms; ``U`` is the entry's ``tranId``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from papi_sandbox import money
from papi_sandbox.ledger.model import CommittedEntry, EntryType, Wallet
from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.trading.model import OrderUpdate, PositionReport, TradedEntry
from papi_sandbox.trading.positions import break_even_price, unrealized_pnl

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventRule:
    """How one entry type appears on the stream.

    ``reason``: the ``a.m`` of its ``ACCOUNT_UPDATE`` events. ``trading``: True when the change
    is realized PnL or commission, which Binance leaves out of ``bc`` (then ``bc`` is 0)."""

    reason: str
    trading: bool = False


#: entry type -> its stream rule: the sandbox's choices where Binance documents none
#: (docs/semantics.md, "User data stream events", mirrors this table).
EVENT_RULES: dict[str, EventRule] = {
    EntryType.DEPOSIT: EventRule("DEPOSIT"),
    EntryType.WITHDRAW: EventRule("WITHDRAW"),
    EntryType.REALIZED_PNL: EventRule("ORDER", trading=True),
    EntryType.COMMISSION: EventRule("ORDER", trading=True),
    EntryType.FUNDING_FEE: EventRule("FUNDING_FEE"),
    EntryType.REPAY_FUTURES_NEGATIVE_BALANCE: EventRule("MARGIN_TRANSFER"),
    EntryType.AUTO_REPAY_FUTURES: EventRule("MARGIN_TRANSFER"),
    EntryType.AUTO_COLLECTION: EventRule("MARGIN_TRANSFER"),
    EntryType.ASSET_COLLECTION: EventRule("MARGIN_TRANSFER"),
    EntryType.BNB_TRANSFER: EventRule("MARGIN_TRANSFER"),
    EntryType.NEGATIVE_BALANCE_INTEREST: EventRule("ADJUSTMENT"),
}
#: The rule of an entry type the table does not list yet.
DEFAULT_RULE = EventRule("ADJUSTMENT")

_FUTURES = ((Wallet.UM, "UM"), (Wallet.CM, "CM"))


def rule_for(entry_type: str) -> EventRule:
    return EVENT_RULES.get(entry_type, DEFAULT_RULE)


def entry_events(committed: CommittedEntry, event_ms: int) -> list[Event]:
    """The events of one committed entry, for its account's stream, in the order above.
    An entry that changes none of the account's reported wallets produces none."""
    entry = committed.entry
    # The entry's net change per (wallet, asset) of its own account, in first-posting order.
    nets: dict[tuple[Wallet, str], Decimal] = {}
    for p in entry.postings:
        if p.account_id == entry.account_id:
            key = (p.wallet, p.asset)
            nets[key] = money.add(nets.get(key, money.ZERO), p.amount)
    after = {(w, a): v for w, a, v in committed.balances}
    return [
        *_margin_events(committed, nets, after, event_ms),
        *_futures_events(committed, nets, after, event_ms),
    ]


_Amounts = dict[tuple[Wallet, str], Decimal]


def _margin_events(
    committed: CommittedEntry, nets: _Amounts, after: _Amounts, event_ms: int
) -> list[Event]:
    """``balanceUpdate`` per asset whose cross-margin free changed, then one
    ``outboundAccountPosition`` when free or locked changed."""
    entry, fmt, zero = committed.entry, money.format_amount, money.ZERO
    assets = list(dict.fromkeys(a for w, a in nets if w in (Wallet.MARGIN, Wallet.MARGIN_LOCKED)))
    events: list[Event] = []
    for asset in assets:
        if delta := nets.get((Wallet.MARGIN, asset), zero):
            events.append(
                {
                    "e": "balanceUpdate",
                    "E": event_ms,
                    "a": asset,
                    "d": fmt(delta),
                    "U": entry.tran_id,
                    "T": entry.time_ms,
                }
            )
    if assets:
        balances = [
            {
                "a": asset,
                "f": fmt(after.get((Wallet.MARGIN, asset), zero)),
                "l": fmt(after.get((Wallet.MARGIN_LOCKED, asset), zero)),
            }
            for asset in assets
        ]
        events.append(
            {
                "e": "outboundAccountPosition",
                "E": event_ms,
                "u": entry.time_ms,
                "U": entry.tran_id,
                "B": balances,
            }
        )
    return events


def _futures_events(
    committed: CommittedEntry, nets: _Amounts, after: _Amounts, event_ms: int
) -> list[Event]:
    """``ACCOUNT_UPDATE`` with ``fs`` UM, then CM, for each futures wallet that changed."""
    entry, fmt = committed.entry, money.format_amount
    rule = rule_for(entry.type)
    events: list[Event] = []
    for wallet, fs in _FUTURES:
        balances = []
        for (w, asset), delta in nets.items():
            if w is wallet:
                wallet_balance = fmt(after.get((wallet, asset), money.ZERO))
                balances.append(
                    {
                        "a": asset,
                        "wb": wallet_balance,
                        "cw": wallet_balance,  # PM futures wallets are cross-margined only
                        "bc": fmt(money.ZERO if rule.trading else delta),
                    }
                )
        if balances:
            positions = (
                [position_fields(r) for r in committed.positions]
                if wallet is Wallet.UM and isinstance(committed, TradedEntry)
                else []
            )
            events.append(
                {
                    "e": "ACCOUNT_UPDATE",
                    "fs": fs,
                    "E": event_ms,
                    "T": entry.time_ms,
                    "i": "",
                    "a": {"m": rule.reason, "B": balances, "P": positions},
                }
            )
    return events


def position_fields(report: PositionReport) -> Event:
    """One position of ``P`` (Binance: "Futures Balance and Position Update"): ``up`` at the
    commit's mark price and ``bep`` at the account's taker rate, by the same arithmetic as
    ``GET /papi/v1/um/positionRisk`` (trading/positions.py)."""
    p = report.position
    return {
        "s": p.symbol,
        "pa": _plain(p.amount),
        "ep": _plain(p.entry_price),
        "cr": _plain(p.accumulated_realized),
        "up": _plain(unrealized_pnl(p, report.mark_price)),
        "ps": p.position_side.value,
        "bep": _plain(break_even_price(p, report.taker_rate)),
    }


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``"0"``, ``"0.01"``, ``"60000"``."""
    return f"{value.normalize():f}" if value else "0"


def order_trade_update(update: OrderUpdate, spec: SymbolSpec | None, event_ms: int) -> Event:
    """The ``ORDER_TRADE_UPDATE`` of one order execution (Binance: Portfolio Margin user data
    streams, "Futures Order update"). Quantities and prices at the symbol's precision (8 digits
    when the symbol is no longer configured), amounts with 8 digits; ``N``/``n`` only with a
    fill, as Binance ("will not push if no commission")."""
    o, t, fmt = update.order, update.trade, money.format_amount
    qty_digits = spec.quantity_precision if spec else 8
    price_digits = spec.price_precision if spec else 8

    def qty(value: Decimal) -> str:
        return money.format_fixed(value, qty_digits)

    def price(value: Decimal) -> str:
        return money.format_fixed(value, price_digits) if value else "0"

    body: Event = {
        "s": o.symbol,
        "c": o.client_order_id,
        "S": o.side.value,
        "o": o.type.value,
        "f": o.time_in_force.value,
        "q": qty(o.orig_qty),
        "p": price(o.price),
        "ap": fmt(o.avg_price),
        "sp": "0",
        "x": update.execution.value,
        "X": o.status.value,
        "i": o.order_id,
        "l": qty(t.qty) if t else "0",
        "z": qty(o.executed_qty),
        "L": price(t.price) if t else "0",
    }
    if t is not None:
        body["N"] = t.commission_asset
        body["n"] = fmt(t.commission)
    body |= {
        "T": o.update_time_ms,
        "t": t.trade_id if t else 0,
        "b": fmt(update.bids_notional),
        "a": fmt(update.asks_notional),
        "m": t.maker if t else False,
        "R": o.reduce_only,
        "ps": o.position_side.value,
        "rp": fmt(t.realized_pnl) if t else "0",
        "V": o.self_trade_prevention_mode,
        "pm": "NONE",
        "gtd": o.good_till_date_ms,
    }
    return {
        "e": "ORDER_TRADE_UPDATE",
        "fs": "UM",
        "E": event_ms,
        "T": o.update_time_ms,
        "i": "",
        "o": body,
    }


def listen_key_expired(listen_key: str, event_ms: int) -> Event:
    """Sent when a listen key expires (or is closed), just before the server closes the
    connection (Binance: "Event: User Data Stream Expired")."""
    return {"e": "listenKeyExpired", "E": event_ms, "listenKey": listen_key}
