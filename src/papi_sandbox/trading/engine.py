"""The trading rules (pure): a request and an account's book in, a :class:`TradingCommit` out.

The fill model (docs/semantics.md, "Fill model"), deterministic:

- a MARKET order fills in full at the mark price, as taker;
- a LIMIT order marketable on arrival (BUY with mark ≤ price, SELL with mark ≥ price) fills in
  full at once at the mark price, as taker; with timeInForce GTX it is rejected instead (-5022);
- otherwise GTC, GTX and GTD orders rest; IOC expires (EXPIRED, nothing filled); FOK is rejected
  (-5021); a resting GTD order expires at its goodTillDate (:func:`expire_due`);
- a resting order fills in full at its own price, as maker, when a later mark crosses it
  (BUY: mark ≤ price; SELL: mark ≥ price);
- a reduce-only fill (and a hedge-mode closing fill) never exceeds the position it reduces: the
  excess expires (status EXPIRED with what filled); a reduce-only order with nothing to reduce,
  and a hedge-mode close (SELL LONG, BUY SHORT) for more than its position, are refused on
  arrival (-2022).

Every fill books a COMMISSION entry (notional × the account's maker or taker rate, rounded up to
8 digits) and, when it reduced a position, a REALIZED_PNL entry, both against the system account
on the UM wallet of the symbol's margin asset.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from papi_sandbox.ledger.model import SYSTEM_ACCOUNT_ID, AccountBalances, EntryType, Posting, Wallet
from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.trading import filters
from papi_sandbox.trading.margin import MarketView, leverage_of, summarize
from papi_sandbox.trading.model import (
    ZERO,
    Booking,
    Execution,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionSide,
    Refusal,
    Side,
    TimeInForce,
    Trade,
    TradingCommit,
    TradingRefused,
    TradingSettings,
)
from papi_sandbox.trading.positions import (
    _WIDE,
    FillEffect,
    apply_fill,
    commission,
    flat,
    reducible,
    round_half_even,
)


class IdBlock:
    """Allocates order and trade ids (global, increasing; the store backs them with a sequence,
    tests with counters). Rules take ids only for orders and fills they keep."""

    def __init__(self, next_order: Callable[[], int], next_trade: Callable[[], int]) -> None:
        #: The next order id / trade id (the callables themselves: one call per id).
        self.order_id = next_order
        self.trade_id = next_trade

    @classmethod
    def counting(cls, first_order: int = 1, first_trade: int = 1) -> IdBlock:
        orders = itertools.count(first_order)
        trades = itertools.count(first_trade)
        return cls(lambda: next(orders), lambda: next(trades))


@dataclass(slots=True)
class AccountBook:
    """One account's trading state, as the store read it inside the write transaction."""

    account_id: int
    settings: TradingSettings
    balances: AccountBalances
    positions: dict[tuple[str, PositionSide], Position] = field(default_factory=dict)
    open_orders: list[Order] = field(default_factory=list)

    def position(self, symbol: str, side: PositionSide) -> Position:
        return self.positions.get((symbol, side)) or flat(self.account_id, symbol, side)


def _bookings(
    account_id: int, spec: SymbolSpec, trade_id: int | None, fee: Decimal, effect: FillEffect
) -> list[Booking]:
    """A fill's entries: its realized PnL, then its commission, each with the position after."""
    symbol, asset, pnl = spec.symbol, spec.margin_asset, effect.realized_pnl
    result = []
    for entry_type, amount in ((EntryType.REALIZED_PNL, pnl), (EntryType.COMMISSION, -fee)):
        if amount:
            result.append(
                _booking(account_id, entry_type, symbol, asset, amount, trade_id, effect.position)
            )
    return result


def _booking(
    account_id: int,
    entry_type: str,
    symbol: str,
    asset: str,
    amount: Decimal,
    trade_id: int | None,
    position: Position | None = None,
) -> Booking:
    """``amount`` to the account's UM wallet, its opposite to the system account."""
    postings = (
        Posting(account_id, Wallet.UM, asset, amount),
        Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, asset, -amount),
    )
    return Booking(entry_type, postings, symbol, asset, amount, trade_id, position)


def _fill(
    book: AccountBook,
    spec: SymbolSpec,
    order: Order,
    qty: Decimal,
    price: Decimal,
    maker: bool,
    ids: IdBlock,
    now_ms: int,
    commit: TradingCommit,
) -> Order:
    """Fill ``qty`` of ``order`` at ``price``: the trade, its bookings and the position."""
    settings = book.settings
    rate = settings.maker_rate if maker else settings.taker_rate
    exact_quote = _WIDE.multiply(qty, price)
    fee = commission(exact_quote, rate)
    quote = round_half_even(exact_quote)  # quoteQty and cumQuote keep 8 digits
    key = (order.symbol, order.position_side)
    effect = apply_fill(book.position(*key), order.side, qty, price, fee, now_ms)
    book.positions[key] = effect.position
    trade = Trade(
        trade_id=ids.trade_id(),
        account_id=book.account_id,
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        position_side=order.position_side,
        price=price,
        qty=qty,
        quote_qty=quote,
        realized_pnl=effect.realized_pnl,
        commission=fee,
        commission_asset=spec.margin_asset,
        maker=maker,
        time_ms=now_ms,
    )
    commit.trades.append(trade)
    commit.bookings.extend(_bookings(book.account_id, spec, trade.trade_id, fee, effect))
    _replace_position(commit, effect.position)
    executed = order.executed_qty + qty
    cum_quote = order.cum_quote + quote
    return order.progressed(
        OrderStatus.FILLED if executed == order.orig_qty else OrderStatus.PARTIALLY_FILLED,
        executed,
        cum_quote,
        round_half_even(_WIDE.divide(cum_quote, executed)),
        now_ms,
    )


def _replace_position(commit: TradingCommit, position: Position) -> None:
    for index, existing in enumerate(commit.positions):
        if (existing.symbol, existing.position_side) == (position.symbol, position.position_side):
            commit.positions[index] = position
            return
    commit.positions.append(position)


def _closing_limit(book: AccountBook, order: Order) -> Decimal | None:
    """How much ``order`` may fill when it may only reduce (reduce-only, or a hedge-mode close):
    the size of the position it reduces. None when it may also open."""
    if order.reduce_only or _hedge_close(order):
        return reducible(book.position(order.symbol, order.position_side), order.side)
    return None


def _hedge_close(order: Order) -> bool:
    return (order.position_side is PositionSide.LONG and order.side is Side.SELL) or (
        order.position_side is PositionSide.SHORT and order.side is Side.BUY
    )


def _fill_or_expire(
    book: AccountBook,
    spec: SymbolSpec,
    order: Order,
    price: Decimal,
    maker: bool,
    ids: IdBlock,
    now_ms: int,
    commit: TradingCommit,
) -> Order:
    """Fill what is left of ``order`` (clipped to the position when it may only reduce); what
    cannot fill expires."""
    remaining = order.orig_qty - order.executed_qty
    limit = _closing_limit(book, order)
    qty = remaining if limit is None else min(remaining, limit)
    if qty > 0:
        order = _fill(book, spec, order, qty, price, maker, ids, now_ms, commit)
    if order.status.is_open and (limit is not None or qty == 0):
        order = dataclasses.replace(order, status=OrderStatus.EXPIRED, update_time_ms=now_ms)
    return order


def resolve_position_side(
    settings: TradingSettings, position_side: str | None, reduce_only: bool | None
) -> PositionSide:
    """Binance's position-side rules: BOTH (or nothing) in one-way mode; LONG or SHORT, and no
    reduceOnly, in hedge mode."""
    if settings.dual_side:
        if position_side not in (PositionSide.LONG, PositionSide.SHORT):
            raise TradingRefused(Refusal.POSITION_SIDE_MISMATCH)
        if reduce_only is not None:
            raise TradingRefused(Refusal.NOT_REQUIRED, "reduceonly")
        return PositionSide(position_side)
    if position_side not in (None, PositionSide.BOTH):
        raise TradingRefused(Refusal.POSITION_SIDE_MISMATCH)
    return PositionSide.BOTH


def place_order(
    book: AccountBook,
    market: MarketView,
    request: filters.OrderRequest,
    ids: IdBlock,
    now_ms: int,
) -> tuple[TradingCommit, Order]:
    """A new order: validated, margin-checked, then filled, rested or expired by the fill model.
    Returns the commit and the order as it stands after it. Raises TradingRefused (nothing is
    written, no order id is used)."""
    spec = market.specs.get(request.symbol)
    price_state = market.prices.get(request.symbol)
    if spec is None or price_state is None:
        raise TradingRefused(Refusal.INVALID_SYMBOL)
    mark = price_state.mark_price
    position_side = resolve_position_side(book.settings, request.position_side, request.reduce_only)
    qty, tif, good_till_date_ms = filters.validate(spec, request, mark, now_ms)
    if request.client_order_id is not None and any(
        o.client_order_id == request.client_order_id for o in book.open_orders
    ):
        raise TradingRefused(Refusal.DUPLICATE_CLIENT_ORDER_ID)
    reduce_only = bool(request.reduce_only)
    position = book.position(request.symbol, position_side)
    closable = reducible(position, request.side)
    hedge_close = book.settings.dual_side and (
        (position_side is PositionSide.LONG and request.side is Side.SELL)
        or (position_side is PositionSide.SHORT and request.side is Side.BUY)
    )
    # Nothing to reduce; or, in hedge mode, a close past its position (Binance refuses both).
    if (reduce_only and closable == 0) or (hedge_close and qty > closable):
        raise TradingRefused(Refusal.REDUCE_ONLY_REJECTED)
    limit_price = request.price if request.type is OrderType.LIMIT else None
    marketable, rests = _on_arrival(request.side, limit_price, tif, mark)
    if rests and sum(1 for o in book.open_orders if o.symbol == spec.symbol) >= spec.max_num_orders:
        raise TradingRefused(Refusal.TOO_MANY_OPEN_ORDERS)
    if not (reduce_only or hedge_close) and (marketable or rests):
        _check_margin(book, market, spec, position, request.side, qty, limit_price or mark)
    order_id = ids.order_id()
    order = Order(
        order_id=order_id,
        account_id=book.account_id,
        symbol=spec.symbol,
        client_order_id=request.client_order_id or f"papi-sandbox-{order_id}",
        side=request.side,
        position_side=position_side,
        type=request.type,
        time_in_force=tif,
        orig_qty=qty,
        price=limit_price if limit_price is not None else ZERO,
        reduce_only=reduce_only,
        status=OrderStatus.NEW,
        executed_qty=ZERO,
        cum_quote=ZERO,
        avg_price=ZERO,
        time_ms=now_ms,
        update_time_ms=now_ms,
        good_till_date_ms=good_till_date_ms,
        self_trade_prevention_mode=request.self_trade_prevention_mode,
    )
    commit = TradingCommit(placed=order)
    if marketable:
        order = _fill_or_expire(book, spec, order, mark, False, ids, now_ms, commit)
    elif not rests:  # IOC that cannot fill
        order = dataclasses.replace(order, status=OrderStatus.EXPIRED)
    if order.status.is_open:
        book.open_orders.append(order)
    commit.orders.append(order)
    return commit, order


#: What rests when the mark does not reach it on arrival (IOC expires, FOK is refused).
RESTING_TIME_IN_FORCE = (TimeInForce.GTC, TimeInForce.GTX, TimeInForce.GTD)


def _on_arrival(
    side: Side, limit_price: Decimal | None, tif: TimeInForce, mark: Decimal
) -> tuple[bool, bool]:
    """Whether a new order is marketable (a MARKET order, or a LIMIT the mark reaches) and
    whether it rests; refuses a FOK that cannot fill (-5021) and a GTX that would (-5022)."""
    marketable = limit_price is None or (
        mark <= limit_price if side is Side.BUY else mark >= limit_price
    )
    if not marketable and tif is TimeInForce.FOK:
        raise TradingRefused(Refusal.FOK_REJECTED)
    if marketable and tif is TimeInForce.GTX:
        raise TradingRefused(Refusal.GTX_REJECTED)
    return marketable, not marketable and tif in RESTING_TIME_IN_FORCE


def _check_margin(
    book: AccountBook,
    market: MarketView,
    spec: SymbolSpec,
    position: Position,
    side: Side,
    qty: Decimal,
    price: Decimal,
) -> None:
    """-2019 when the part of the order that opens or adds to a position needs more initial
    margin than the account has available; -2027 when the position would outgrow the notional
    its leverage allows."""
    opening = qty - min(qty, reducible(position, side))
    if opening == 0:
        return
    leverage = leverage_of(book.settings, spec.symbol)
    required = _WIDE.divide(_WIDE.multiply(opening, price), leverage)
    summary = summarize(
        book.balances, book.positions.values(), book.open_orders, book.settings, market
    )
    if required > summary.total_available:
        raise TradingRefused(Refusal.MARGIN_INSUFFICIENT)
    after = abs(position.amount + (qty if side is Side.BUY else -qty)) * price
    if after > spec.max_notional(leverage):
        raise TradingRefused(Refusal.MAX_POSITION_EXCEEDED)


def find_order(
    orders: Iterable[Order], order_id: int | None, client_order_id: str | None
) -> Order | None:
    """The order with ``order_id`` (when given) or ``client_order_id``."""
    for order in orders:
        if order_id is not None:
            if order.order_id == order_id:
                return order
        elif order.client_order_id == client_order_id:
            return order
    return None


def cancel_orders(
    book: AccountBook,
    orders: Iterable[Order],
    now_ms: int,
    status: OrderStatus = OrderStatus.CANCELED,
) -> TradingCommit:
    """Close open orders of the book with ``status``: CANCELED (a cancel) or EXPIRED (a GTD
    order at its goodTillDate). No money moves: open orders hold margin, not funds, and the
    margin they held is free once they are no longer open."""
    commit = TradingCommit()
    cancelled = {o.order_id for o in orders}
    for order in book.open_orders:
        if order.order_id in cancelled:
            commit.orders.append(dataclasses.replace(order, status=status, update_time_ms=now_ms))
    book.open_orders = [o for o in book.open_orders if o.order_id not in cancelled]
    return commit


def due_to_expire(order: Order, as_of_ms: int) -> bool:
    """True for an open GTD order whose goodTillDate is at or before ``as_of_ms``."""
    return (
        order.time_in_force is TimeInForce.GTD
        and order.status.is_open
        and 0 < order.good_till_date_ms <= as_of_ms
    )


def expire_due(book: AccountBook, as_of_ms: int, now_ms: int) -> TradingCommit:
    """Binance's GTD rule: every open GTD order of the book whose goodTillDate is at or before
    ``as_of_ms`` expires (status EXPIRED at ``now_ms``; the stream reports EXPIRED)."""
    due = [o for o in book.open_orders if due_to_expire(o, as_of_ms)]
    return cancel_orders(book, due, now_ms, OrderStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class Amendment:
    """A modify request (``PUT /papi/v1/um/order``): the order by id (prevails) or client id,
    and its side, new quantity and new price, as the endpoint parsed them."""

    symbol: str
    order_id: int | None
    client_order_id: str | None
    side: Side
    quantity: Decimal
    price: Decimal


#: Binance's Modify UM Order: "one order can only be modified for less than 10000 times"; the
#: amendment that would be the 10,000th cancels the order instead, as the doc lists it among the
#: cases that cancel (docs/semantics.md, "The sandbox's choices").
MAX_ORDER_MODIFICATIONS = 10_000


def modify_order(
    book: AccountBook, market: MarketView, amendment: Amendment, ids: IdBlock, now_ms: int
) -> tuple[TradingCommit, Order]:
    """Binance's Modify UM Order on the fill model: an open LIMIT order of the book takes a new
    price and quantity and keeps its id. Refused, the order stays as it is: an unknown or closed
    order (-2013), another side (-1130), the filters (as for a new order), nothing changed
    (-5027), margin (-2019), a hedge-mode close left for more than its position (-2022). The
    amendment cancels the order when the new quantity is not above what already filled, when a
    GTX order's new price would take, or when the order took MAX_ORDER_MODIFICATIONS - 1
    amendments already. A new price the mark reaches fills at once at the mark as taker, as a
    new order would (docs/semantics.md)."""
    spec = market.specs.get(amendment.symbol)
    price_state = market.prices.get(amendment.symbol)
    if spec is None or price_state is None:
        raise TradingRefused(Refusal.INVALID_SYMBOL)
    mark = price_state.mark_price
    candidates = [o for o in book.open_orders if o.symbol == spec.symbol]
    found = find_order(candidates, amendment.order_id, amendment.client_order_id)
    if found is None:
        raise TradingRefused(Refusal.NO_SUCH_ORDER)
    if amendment.side is not found.side:
        raise TradingRefused(Refusal.INVALID_PARAMETER, "side")
    qty, price = amendment.quantity, amendment.price
    filters.check_quantity(spec, OrderType.LIMIT, qty)
    filters.check_price(spec, price, mark)
    filters.check_notional(spec, qty, price, found.reduce_only)
    if qty == found.orig_qty and price == found.price:
        raise TradingRefused(Refusal.NO_NEED_TO_MODIFY)
    others = [o for o in book.open_orders if o.order_id != found.order_id]
    marketable = mark <= price if found.side is Side.BUY else mark >= price
    spent = found.modify_count + 1 >= MAX_ORDER_MODIFICATIONS
    if (
        spent
        or qty <= found.executed_qty
        or (marketable and found.time_in_force is TimeInForce.GTX)
    ):
        commit = cancel_orders(book, [found], now_ms)
        return commit, commit.orders[0]
    position = book.position(found.symbol, found.position_side)
    hedge_close = _hedge_close(found)
    if hedge_close and qty - found.executed_qty > reducible(position, found.side):
        raise TradingRefused(Refusal.REDUCE_ONLY_REJECTED)  # as a new close past its position
    if not (found.reduce_only or hedge_close):
        held, book.open_orders = book.open_orders, others  # its own margin is what it replaces
        try:
            remaining = qty - found.executed_qty
            at = mark if marketable else price
            _check_margin(book, market, spec, position, found.side, remaining, at)
        finally:
            book.open_orders = held
    amended = dataclasses.replace(
        found, orig_qty=qty, price=price, update_time_ms=now_ms, modify_count=found.modify_count + 1
    )
    commit = TradingCommit(amended=amended)
    book.open_orders = others
    order = amended
    if marketable:
        order = _fill_or_expire(book, spec, amended, mark, False, ids, now_ms, commit)
    if order.status.is_open:
        book.open_orders.append(order)
    commit.orders.append(order)
    return commit, order


def crossed(order: Order, mark: Decimal) -> bool:
    """True when ``mark`` reaches a resting order's price (BUY: mark ≤ price; SELL: ≥)."""
    return mark <= order.price if order.side is Side.BUY else mark >= order.price


def fill_crossed(
    book: AccountBook, market: MarketView, symbol: str, ids: IdBlock, now_ms: int
) -> TradingCommit:
    """After a mark change: every resting order of the book on ``symbol`` that the new mark
    crosses fills in full at its own price as maker, oldest order first."""
    spec = market.specs[symbol]
    mark = market.prices[symbol].mark_price
    commit = TradingCommit()
    still_open: list[Order] = []
    for order in sorted(book.open_orders, key=lambda o: o.order_id):
        if order.symbol != symbol or not crossed(order, mark):
            still_open.append(order)
            continue
        filled = _fill_or_expire(book, spec, order, order.price, True, ids, now_ms, commit)
        commit.orders.append(filled)
        if filled.status.is_open:
            still_open.append(filled)
    book.open_orders = still_open
    return commit


def funding_fee(position: Position, mark: Decimal, rate: Decimal) -> Decimal:
    """The funding income of a position: ``−positionAmt × mark × rate`` rounded half-even to 8
    digits (longs pay a positive rate, shorts receive it)."""
    return round_half_even(-_WIDE.multiply(_WIDE.multiply(position.amount, mark), rate))


def plan_funding(book: AccountBook, market: MarketView) -> TradingCommit:
    """One funding slot for one account: a FUNDING_FEE entry per open position, at the mark
    price and funding rate in force when the job runs."""
    commit = TradingCommit()
    for (symbol, _side), position in sorted(book.positions.items()):
        spec = market.specs.get(symbol)
        price = market.prices.get(symbol)
        if not position.amount or spec is None or price is None:
            continue
        fee = funding_fee(position, price.mark_price, price.funding_rate)
        if fee:
            asset = spec.margin_asset
            commit.bookings.append(
                _booking(book.account_id, EntryType.FUNDING_FEE, symbol, asset, fee, None)
            )
    return commit


def check_leverage(book: AccountBook, market: MarketView, symbol: str, leverage: int) -> None:
    """Binance's rules for a new initial leverage: 1 to the symbol's maximum (-4028), and the
    open position's notional within what that leverage allows (-2027)."""
    spec = market.specs.get(symbol)
    if spec is None:
        raise TradingRefused(Refusal.INVALID_SYMBOL)
    if not 1 <= leverage <= spec.max_leverage:
        raise TradingRefused(Refusal.INVALID_LEVERAGE, str(leverage))
    mark = market.prices[symbol].mark_price
    for side in PositionSide:
        position = book.positions.get((symbol, side))
        if position is not None and abs(position.amount) * mark > spec.max_notional(leverage):
            raise TradingRefused(Refusal.LEVERAGE_TOO_HIGH_FOR_POSITION)


def check_position_mode(book: AccountBook, dual_side: bool) -> None:
    """Binance's rules for switching one-way/hedge mode: a change (-4059), no open orders
    (-4067), no open position (-4068)."""
    if book.settings.dual_side == dual_side:
        raise TradingRefused(Refusal.NO_NEED_TO_CHANGE_POSITION_SIDE)
    if book.open_orders:
        raise TradingRefused(Refusal.POSITION_SIDE_CHANGE_OPEN_ORDERS)
    if any(p.amount for p in book.positions.values()):
        raise TradingRefused(Refusal.POSITION_SIDE_CHANGE_POSITION)


def order_updates(commit: TradingCommit, open_orders: Iterable[Order]) -> list[OrderUpdate]:
    """The executions a commit reports on the user data stream, per order in commit order: NEW
    for the order it places (AMENDMENT for the order it amends), a TRADE per fill (the order's
    progress after that fill), then CANCELED or EXPIRED when it ended so; a commit that only
    cancels reports CANCELED alone.
    ``open_orders``: the account's open orders once the commit is applied (for ``b``/``a``)."""
    notional: dict[tuple[str, Side], Decimal] = {}
    for o in open_orders:
        key = (o.symbol, o.side)
        notional[key] = notional.get(key, ZERO) + o.price * (o.orig_qty - o.executed_qty)
    fills: dict[int, list[Trade]] = {}
    for t in commit.trades:
        fills.setdefault(t.order_id, []).append(t)
    books: dict[str, tuple[Decimal, Decimal]] = {}
    updates: list[OrderUpdate] = []
    for order in commit.orders:
        if (book := books.get(order.symbol)) is None:
            book = books[order.symbol] = (
                round_half_even(notional.get((order.symbol, Side.BUY), ZERO)),
                round_half_even(notional.get((order.symbol, Side.SELL), ZERO)),
            )
        trades = fills.get(order.order_id, [])
        first = commit.placed or commit.amended
        if first is not None and first.order_id == order.order_id:
            execution = Execution.NEW if first is commit.placed else Execution.AMENDMENT
            updates.append(OrderUpdate(execution, first, None, *book))
            executed, cum = first.executed_qty, first.cum_quote
        else:  # what it was before this commit's fills
            executed, cum = order.executed_qty, order.cum_quote
            for t in trades:
                executed, cum = executed - t.qty, cum - t.quote_qty
        for index, trade in enumerate(trades):
            executed, cum = executed + trade.qty, cum + trade.quote_qty
            state = _after_fill(order, trade, executed, cum, last=index == len(trades) - 1)
            updates.append(OrderUpdate(Execution.TRADE, state, trade, *book))
        if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
            updates.append(OrderUpdate(Execution(order.status.value), order, None, *book))
    return updates


def _after_fill(order: Order, trade: Trade, executed: Decimal, cum: Decimal, last: bool) -> Order:
    """``order`` as it stood right after ``trade`` (``executed``/``cum`` filled by then); the
    last fill of a commit leaves the order's own figures."""
    if last:
        executed, cum, avg = order.executed_qty, order.cum_quote, order.avg_price
    else:
        avg = round_half_even(_WIDE.divide(cum, executed))
    status = OrderStatus.FILLED if executed == order.orig_qty else OrderStatus.PARTIALLY_FILLED
    if last and status is order.status and trade.time_ms == order.update_time_ms:
        return order  # exactly the order as committed
    return order.progressed(status, executed, cum, avg, trade.time_ms)
