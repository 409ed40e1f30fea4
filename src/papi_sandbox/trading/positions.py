"""Position arithmetic (pure): a fill in, the new position and the realized PnL out; unrealized
PnL, notional and the break-even price of a position at a mark price.

Rounding (docs/semantics.md, "Trading arithmetic"): entry prices keep 8 fractional digits
(half-even); realized PnL and funding are rounded half-even to 8 digits; commission is rounded
up to 8 digits, so a fee is never understated.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox import money
from papi_sandbox.trading.model import ZERO, Position, PositionSide, Side

#: Wide enough that every product and quotient here is exact before the final rounding.
_WIDE = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


def round_half_even(value: Decimal) -> Decimal:
    """8 fractional digits, half to even (realized PnL, funding, entry prices)."""
    return value.quantize(money.QUANTUM, rounding=decimal.ROUND_HALF_EVEN, context=_WIDE) + ZERO


def commission(notional: Decimal, rate: Decimal) -> Decimal:
    """The fee on a fill: ``notional × rate`` rounded up to 8 digits (never understated)."""
    return money.round_up(_WIDE.multiply(notional, rate)) + ZERO


@dataclass(frozen=True, slots=True)
class FillEffect:
    """What one fill did to a position."""

    position: Position
    realized_pnl: Decimal  # rounded to 8 digits


def signed(side: Side, qty: Decimal) -> Decimal:
    return qty if side is Side.BUY else -qty


def reducible(position: Position, side: Side) -> Decimal:
    """How much of ``position`` a fill on ``side`` would reduce (0 when it would add)."""
    if position.amount > 0 and side is Side.SELL:
        return position.amount
    if position.amount < 0 and side is Side.BUY:
        return -position.amount
    return ZERO


def apply_fill(
    position: Position, side: Side, qty: Decimal, price: Decimal, fee: Decimal, time_ms: int
) -> FillEffect:
    """The position after a fill of ``qty`` at ``price`` on ``side``, paying ``fee``.

    Adding to a position (or opening one) moves the entry price to the quantity-weighted average
    and adds the fee to ``open_fee``. Reducing realizes ``closed × (price − entry)`` for a long
    (the opposite for a short), keeps the entry price, releases ``open_fee`` in proportion and
    adds the realized PnL to ``accumulated_realized`` (never reset, not even when flat).
    A one-way (BOTH) fill larger than the position closes it and opens the rest the other way
    at ``price``. Hedge-mode callers never pass a fill that would flip a LONG or SHORT row.
    """
    amount, entry = position.amount, position.entry_price
    delta = signed(side, qty)
    closed = min(qty, reducible(position, side))
    realized = ZERO
    open_fee = position.open_fee
    if closed > 0:
        direction = Decimal(1) if amount > 0 else Decimal(-1)
        realized = round_half_even(_WIDE.multiply(closed * direction, price - entry))
        remaining = abs(amount) - closed
        open_fee = (
            round_half_even(_WIDE.divide(_WIDE.multiply(open_fee, remaining), abs(amount)))
            if remaining
            else ZERO
        )
    new_amount = amount + delta
    opened = qty - closed
    if new_amount == 0:
        entry = ZERO
        open_fee = ZERO
    elif opened > 0:
        kept = abs(amount) - closed  # what stays of the old position on the same side
        opening_fee = fee if closed == 0 else round_half_even(_WIDE.divide(fee * opened, qty))
        entry = round_half_even(
            _WIDE.divide(_WIDE.multiply(kept, entry) + _WIDE.multiply(opened, price), kept + opened)
        )
        open_fee = open_fee + opening_fee
    new_position = Position(
        position.account_id,
        position.symbol,
        position.position_side,
        new_amount + ZERO,
        entry,
        open_fee,
        time_ms,
        position.accumulated_realized + realized,
    )
    return FillEffect(new_position, realized)


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    """``amount × (mark − entry)``, rounded half-even to 8 digits (Binance's unRealizedProfit)."""
    if not position.amount:
        return ZERO
    return round_half_even(_WIDE.multiply(position.amount, mark - position.entry_price))


def notional(position: Position, mark: Decimal) -> Decimal:
    """Signed ``amount × mark`` (Binance's ``notional``), rounded half-even to 8 digits."""
    return round_half_even(_WIDE.multiply(position.amount, mark))


def break_even_price(position: Position, taker_rate: Decimal) -> Decimal:
    """The mark at which closing the whole position as taker leaves a total PnL of zero, counting
    the commission already paid to open it (``open_fee``) and the taker fee of closing it:
    long ``(q·e + F) / (q·(1 − t))``, short ``(q·e − F) / (q·(1 + t))``, with q = |amount|.
    The sandbox's formula (Binance publishes none); 0 for a flat position."""
    if not position.amount:
        return ZERO
    q = abs(position.amount)
    cost = _WIDE.multiply(q, position.entry_price)
    if position.amount > 0:
        value = _WIDE.divide(cost + position.open_fee, _WIDE.multiply(q, 1 - taker_rate))
    else:
        value = _WIDE.divide(cost - position.open_fee, _WIDE.multiply(q, 1 + taker_rate))
    return round_half_even(value)


def flat(account_id: int, symbol: str, position_side: PositionSide) -> Position:
    """A flat position row (what an account holds before its first fill on a symbol)."""
    return Position(account_id, symbol, position_side, ZERO, ZERO, ZERO, 0)
