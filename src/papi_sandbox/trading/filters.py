"""Order validation against a symbol's filters (pure), with Binance's reasons.

The checks and their order follow Binance's USDⓈ-M filter rules (``PRICE_FILTER``, ``LOT_SIZE``,
``MARKET_LOT_SIZE``, ``MIN_NOTIONAL``, ``PERCENT_PRICE``); each failure is a
:class:`~papi_sandbox.trading.model.TradingRefused` whose reason the wire maps to Binance's code
(-1111 precision, -4013/-4014/-4016/-4024 price, -4003/-4004/-4005/-4023 quantity, -4164 notional,
-5040 goodTillDate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.trading.model import (
    ZERO,
    OrderType,
    Refusal,
    Side,
    TimeInForce,
    TradingRefused,
)

#: Binance's rule for newClientOrderId.
CLIENT_ORDER_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,32}$")
#: Binance's bounds for ``goodTillDate`` (New UM Order): more than 600 s after the request,
#: before 253402300799000 (9999-12-31 23:59:59 UTC); only whole seconds are kept.
GOOD_TILL_DATE_MIN_AHEAD_MS = 600_000
GOOD_TILL_DATE_MAX_MS = 253_402_300_799_000


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order as the endpoint received it, typed but not yet checked against filters."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal | None
    price: Decimal | None
    time_in_force: TimeInForce | None
    reduce_only: bool | None  # None: not sent
    position_side: str | None  # None: not sent
    client_order_id: str | None
    good_till_date_ms: int | None = None  # None: not sent
    self_trade_prevention_mode: str = "NONE"


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _multiple_of(value: Decimal, step: Decimal, base: Decimal = ZERO) -> bool:
    return step == 0 or (value - base) % step == 0


def check_price(spec: SymbolSpec, price: Decimal, mark: Decimal) -> None:
    """PRICE_FILTER and PERCENT_PRICE for a LIMIT price, as Binance checks them."""
    if price <= 0:
        raise TradingRefused(Refusal.PRICE_BELOW_MIN)
    if _decimals(price) > spec.price_precision:
        raise TradingRefused(Refusal.BAD_PRECISION)
    if price < spec.min_price:
        raise TradingRefused(Refusal.PRICE_BELOW_MIN)
    if price > spec.max_price:
        raise TradingRefused(Refusal.PRICE_ABOVE_MAX, str(spec.max_price))
    if not _multiple_of(price, spec.tick_size, spec.min_price):
        raise TradingRefused(Refusal.PRICE_NOT_TICK)
    cap = (mark * spec.multiplier_up).quantize(spec.tick_size)
    floor = (mark * spec.multiplier_down).quantize(spec.tick_size)
    if price > cap:
        raise TradingRefused(Refusal.PRICE_ABOVE_MULTIPLIER, f"{cap}")
    if price < floor:
        raise TradingRefused(Refusal.PRICE_BELOW_MULTIPLIER, f"{floor}")


def check_quantity(spec: SymbolSpec, order_type: OrderType, qty: Decimal) -> None:
    """LOT_SIZE (LIMIT) or MARKET_LOT_SIZE (MARKET) for a quantity."""
    if qty <= 0:
        raise TradingRefused(Refusal.QTY_NOT_POSITIVE)
    if _decimals(qty) > spec.quantity_precision:
        raise TradingRefused(Refusal.BAD_PRECISION)
    if order_type is OrderType.MARKET:
        low, high, step = spec.market_min_qty, spec.market_max_qty, spec.market_step_size
    else:
        low, high, step = spec.min_qty, spec.max_qty, spec.step_size
    if qty < low:
        raise TradingRefused(Refusal.QTY_BELOW_MIN)
    if qty > high:
        raise TradingRefused(Refusal.QTY_ABOVE_MAX)
    if not _multiple_of(qty, step, low):
        raise TradingRefused(Refusal.QTY_NOT_STEP)


def check_notional(spec: SymbolSpec, qty: Decimal, price: Decimal, reduce_only: bool) -> None:
    """MIN_NOTIONAL: ``qty × price`` at least the minimum, unless the order is reduce-only."""
    if not reduce_only and qty * price < spec.min_notional:
        raise TradingRefused(Refusal.MIN_NOTIONAL, f"{spec.min_notional.normalize():f}")


def check_shape(request: OrderRequest) -> tuple[Decimal, TimeInForce]:
    """The parameters each type needs (Binance: LIMIT needs timeInForce, quantity, price;
    MARKET needs quantity and takes no price). Returns ``(quantity, timeInForce)``."""
    if request.quantity is None:
        raise TradingRefused(Refusal.MANDATORY_MISSING, "quantity")
    if request.client_order_id is not None and not CLIENT_ORDER_ID_RE.fullmatch(
        request.client_order_id
    ):
        raise TradingRefused(Refusal.INVALID_CLIENT_ORDER_ID)
    if request.type is OrderType.MARKET:
        if request.price is not None:
            raise TradingRefused(Refusal.NOT_REQUIRED, "price")
        if request.time_in_force is not None:
            raise TradingRefused(Refusal.NOT_REQUIRED, "timeInForce")
        return request.quantity, TimeInForce.GTC
    if request.time_in_force is None:
        raise TradingRefused(Refusal.MANDATORY_MISSING, "timeInForce")
    if request.price is None:
        raise TradingRefused(Refusal.MANDATORY_MISSING, "price")
    return request.quantity, request.time_in_force


def good_till_date(request: OrderRequest, tif: TimeInForce, now_ms: int) -> int:
    """The stored ``goodTillDate`` (ms) of a new order: for GTD, the one sent (mandatory,
    -1102) with its milliseconds dropped, which must be more than 600 s after ``now_ms`` and
    before 253402300799000 (-5040; Binance's New UM Order); 0 for any other time in force,
    whatever was sent (docs/semantics.md, "The sandbox's choices")."""
    if tif is not TimeInForce.GTD:
        return 0
    if request.good_till_date_ms is None:
        raise TradingRefused(Refusal.MANDATORY_MISSING, "goodTillDate")
    kept = request.good_till_date_ms - request.good_till_date_ms % 1000
    if not now_ms + GOOD_TILL_DATE_MIN_AHEAD_MS < kept < GOOD_TILL_DATE_MAX_MS:
        raise TradingRefused(Refusal.INVALID_GOOD_TILL_DATE)
    return kept


def validate(
    spec: SymbolSpec, request: OrderRequest, mark: Decimal, now_ms: int
) -> tuple[Decimal, TimeInForce, int]:
    """Every filter for a new order, in Binance's order; returns ``(quantity, timeInForce,
    goodTillDate)``. The notional of a MARKET order is taken at the mark price, a LIMIT one at
    its price; ``now_ms`` is the request's time (for goodTillDate)."""
    qty, tif = check_shape(request)
    gtd = good_till_date(request, tif, now_ms)
    check_quantity(spec, request.type, qty)
    if request.type is OrderType.LIMIT:
        assert request.price is not None
        check_price(spec, request.price, mark)
        check_notional(spec, qty, request.price, bool(request.reduce_only))
    else:
        check_notional(spec, qty, mark, bool(request.reduce_only))
    return qty, tif, gtd
