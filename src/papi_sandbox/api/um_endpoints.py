"""The UM (USDⓈ-M futures) endpoints of PAPI: orders, trades, positions, account, leverage,
position mode, commission and income, with Binance's parameters, weights and JSON shapes.

Handlers only translate: typed arguments in, one trading operation
(:class:`papi_sandbox.trading_service.Trading`), JSON out. Refusals are
:class:`~papi_sandbox.trading.model.TradingRefused`, mapped to Binance's codes in one table
(:func:`papi_sandbox.wire.errors.trading_refusal`).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson

from papi_sandbox.api.endpoint import Call, Endpoint, Security
from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.money import format_amount, format_fixed
from papi_sandbox.trading.engine import Amendment
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.margin import position_figures
from papi_sandbox.trading.model import (
    ALGO_ORDER_TYPES,
    PRICE_MATCH_MODES,
    SELF_TRADE_PREVENTION_MODES,
    HistoryPage,
    IncomePage,
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    Refusal,
    Side,
    TimeInForce,
    Trade,
    TradingRefused,
)
from papi_sandbox.trading.positions import flat
from papi_sandbox.trading_service import Trading
from papi_sandbox.wire import errors
from papi_sandbox.wire.params import Kind, Param

#: History windows and pages (Binance's): 7 days by default and at most; pages of 500 (orders,
#: trades) or 100 (income), at most 1000.
WINDOW_MS = 7 * 86_400_000
DEFAULT_PAGE = 500
DEFAULT_INCOME_PAGE = 100
MAX_PAGE = 1000
#: Highest income ``page`` (bounds the rows skipped: 1000 pages of 1000).
MAX_INCOME_PAGES = 1000
#: Binance's income types (``incomeType``).
INCOME_TYPES = (
    "TRANSFER",
    "WELCOME_BONUS",
    "REALIZED_PNL",
    "FUNDING_FEE",
    "COMMISSION",
    "INSURANCE_CLEAR",
    "REFERRAL_KICKBACK",
    "COMMISSION_REBATE",
    "API_REBATE",
    "CONTEST_REWARD",
    "CROSS_COLLATERAL_TRANSFER",
    "OPTIONS_PREMIUM_FEE",
    "OPTIONS_SETTLE_PROFIT",
    "INTERNAL_TRANSFER",
    "AUTO_EXCHANGE",
    "DELIVERED_SETTELMENT",
    "COIN_SWAP_DEPOSIT",
    "COIN_SWAP_WITHDRAW",
    "POSITION_LIMIT_INCREASE_FEE",
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _trading(call: Call) -> Trading:
    return call.service.trading


def _spec(call: Call, symbol: str) -> SymbolSpec:
    spec = call.service.market.spec(symbol)
    if spec is None:
        raise errors.invalid_symbol()
    return spec


def _number(value: Decimal) -> orjson.Fragment:
    """A JSON number written from the exact decimal (no float on the way)."""
    return orjson.Fragment(f"{value.normalize():f}".encode())


def order_object(order: Order, spec: SymbolSpec) -> dict[str, Any]:
    """Binance's UM order object (new, query, cancel, open and all orders share it)."""
    qty = spec.quantity_precision
    return {
        "avgPrice": format_amount(order.avg_price),
        "clientOrderId": order.client_order_id,
        "cumQty": format_fixed(order.executed_qty, qty),
        "cumQuote": format_amount(order.cum_quote),
        "executedQty": format_fixed(order.executed_qty, qty),
        "orderId": order.order_id,
        "origQty": format_fixed(order.orig_qty, qty),
        "origType": order.type.value,
        "price": format_fixed(order.price, spec.price_precision) if order.price else "0",
        "reduceOnly": order.reduce_only,
        "side": order.side.value,
        "positionSide": order.position_side.value,
        "status": order.status.value,
        "symbol": order.symbol,
        "time": order.time_ms,
        "timeInForce": order.time_in_force.value,
        "type": order.type.value,
        "updateTime": order.update_time_ms,
        "selfTradePreventionMode": order.self_trade_prevention_mode,
        "goodTillDate": order.good_till_date_ms,
        "priceMatch": "NONE",  # the only one served (docs/semantics.md)
    }


def trade_object(trade: Trade, spec: SymbolSpec) -> dict[str, Any]:
    """One row of ``GET /papi/v1/um/userTrades`` (commission as the positive fee charged)."""
    return {
        "symbol": trade.symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "side": trade.side.value,
        "price": format_fixed(trade.price, spec.price_precision),
        "qty": format_fixed(trade.qty, spec.quantity_precision),
        "realizedPnl": format_amount(trade.realized_pnl),
        "quoteQty": format_amount(trade.quote_qty),
        "commission": format_amount(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time_ms,
        "buyer": trade.buyer,
        "maker": trade.maker,
        "positionSide": trade.position_side.value,
    }


# -- parameters ------------------------------------------------------------------------------


def _enum(value: str, choices: type[Any], refusal: Refusal) -> Any:
    try:
        return choices(value)
    except ValueError:
        raise TradingRefused(refusal) from None


def _reduce_only(text: str | None) -> bool | None:
    if text is None:
        return None
    if text not in ("true", "false"):
        raise TradingRefused(Refusal.INVALID_PARAMETER, "reduceOnly")
    return text == "true"


def _price_match(args: dict[str, Any]) -> None:
    """``priceMatch`` of a new or modified order: one of Binance's modes (-5037 otherwise);
    NONE only, since the others need an order book the sandbox has none of (-1130,
    docs/semantics.md, "The sandbox's choices")."""
    value = args.get("priceMatch", "NONE")
    if value not in PRICE_MATCH_MODES:
        raise TradingRefused(Refusal.INVALID_PRICE_MATCH)
    if value != "NONE":
        raise TradingRefused(Refusal.INVALID_PARAMETER, "priceMatch")


def _self_trade_prevention(args: dict[str, Any]) -> str:
    """``selfTradePreventionMode``: one of Binance's modes, NONE by default (PAPI's New UM
    Order), -5039 otherwise."""
    value: str = args.get("selfTradePreventionMode", "NONE")
    if value not in SELF_TRADE_PREVENTION_MODES:
        raise TradingRefused(Refusal.INVALID_SELF_TRADE_PREVENTION_MODE)
    return value


def _order_request(args: dict[str, Any]) -> OrderRequest:
    type_text = args["type"]
    if type_text in ALGO_ORDER_TYPES or type_text not in OrderType.__members__:
        raise TradingRefused(Refusal.INVALID_ORDER_TYPE)
    tif = args.get("timeInForce")
    _price_match(args)
    return OrderRequest(
        symbol=args["symbol"],
        side=_enum(args["side"], Side, Refusal.INVALID_SIDE),
        type=OrderType(type_text),
        quantity=args.get("quantity"),
        price=args.get("price"),
        time_in_force=_enum(tif, TimeInForce, Refusal.INVALID_TIME_IN_FORCE) if tif else None,
        reduce_only=_reduce_only(args.get("reduceOnly")),
        position_side=args.get("positionSide"),
        client_order_id=args.get("newClientOrderId"),
        good_till_date_ms=args.get("goodTillDate"),
        self_trade_prevention_mode=_self_trade_prevention(args),
    )


def _order_ref(args: dict[str, Any]) -> tuple[int | None, str | None]:
    order_id, client_id = args.get("orderId"), args.get("origClientOrderId")
    if order_id is None and client_id is None:
        raise errors.order_reference_missing()
    return order_id, client_id


def _limit(args: dict[str, Any], default: int) -> int:
    limit: int = args.get("limit", default)
    if not 1 <= limit <= MAX_PAGE:
        raise errors.invalid_parameter("limit", f"It must be from 1 to {MAX_PAGE}.")
    return limit


def _window(args: dict[str, Any], now_ms: int) -> tuple[int | None, int | None]:
    """Binance's 7-day window: start and end at most 7 days apart; neither sent: the last 7
    days; one sent: 7 days from (or up to) it."""
    start, end = args.get("startTime"), args.get("endTime")
    if start is not None and end is not None:
        if start > end:
            raise errors.invalid_parameter("startTime", "startTime must not be after endTime.")
        if end - start > WINDOW_MS:
            raise errors.interval_too_big("startTime and endTime must be at most 7 days apart.")
        return start, end
    if start is not None:
        return start, start + WINDOW_MS
    if end is not None:
        return end - WINDOW_MS, end
    return now_ms - WINDOW_MS, now_ms


def _income_window(args: dict[str, Any], now_ms: int) -> tuple[int, int]:
    """Binance's income window: the last 7 days when neither time is sent; otherwise from
    ``startTime`` (the beginning when absent) to ``endTime`` (now when absent), with no limit on
    the span (its docs set none: income history is kept three months)."""
    start, end = args.get("startTime"), args.get("endTime")
    if start is None and end is None:
        return now_ms - WINDOW_MS, now_ms
    start = 0 if start is None else start
    end = max(now_ms, start) if end is None else end
    if start > end:
        raise errors.invalid_parameter("startTime", "startTime must not be after endTime.")
    return start, end


# -- handlers --------------------------------------------------------------------------------


async def _new_order(call: Call) -> Any:
    request = _order_request(call.args)
    spec = _spec(call, request.symbol)
    resp_type = call.args.get("newOrderRespType", "ACK")
    order, _trades = await _trading(call).place_order(call.account_id, request)
    if resp_type == "ACK":
        # The order as it was accepted, before the fill model ran (Binance's ACK).
        accepted = order.progressed(
            OrderStatus.NEW, Decimal(0), Decimal(0), Decimal(0), order.time_ms
        )
        return order_object(accepted, spec)
    return order_object(order, spec)


async def _modify_order(call: Call) -> Any:
    """Binance's Modify UM Order: an open LIMIT order's new price and quantity (both needed);
    ``priceMatch`` needs an order book the sandbox has none of (docs/semantics.md)."""
    args = call.args
    symbol = args["symbol"]
    spec = _spec(call, symbol)
    order_id, client_id = _order_ref(args)
    side = _enum(args["side"], Side, Refusal.INVALID_SIDE)
    _price_match(args)
    if "price" not in args:
        raise TradingRefused(Refusal.MANDATORY_MISSING, "price")
    amendment = Amendment(symbol, order_id, client_id, side, args["quantity"], args["price"])
    order, _trades = await _trading(call).modify_order(call.account_id, amendment)
    result = order_object(order, spec)
    if "modifyId" in args:
        result["modifyId"] = args["modifyId"]
    return result


async def _query_order(call: Call) -> Any:
    symbol = call.args["symbol"]
    spec = _spec(call, symbol)
    order_id, client_id = _order_ref(call.args)
    return order_object(
        await _trading(call).order(call.account_id, symbol, order_id, client_id), spec
    )


async def _query_open_order(call: Call) -> Any:
    symbol = call.args["symbol"]
    spec = _spec(call, symbol)
    order_id, client_id = _order_ref(call.args)
    order = await _trading(call).order(call.account_id, symbol, order_id, client_id)
    if not order.status.is_open:
        raise TradingRefused(Refusal.NO_SUCH_ORDER)
    return order_object(order, spec)


async def _cancel_order(call: Call) -> Any:
    symbol = call.args["symbol"]
    spec = _spec(call, symbol)
    order_id, client_id = _order_ref(call.args)
    order = await _trading(call).cancel_order(call.account_id, symbol, order_id, client_id)
    return order_object(order, spec)


async def _cancel_all(call: Call) -> Any:
    symbol = call.args["symbol"]
    _spec(call, symbol)
    await _trading(call).cancel_all(call.account_id, symbol)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


async def _open_orders(call: Call) -> Any:
    symbol = call.args.get("symbol")
    if symbol is not None:
        _spec(call, symbol)
    orders = await _trading(call).open_orders(call.account_id, symbol)
    return [order_object(o, _spec(call, o.symbol)) for o in orders]


async def _all_orders(call: Call) -> Any:
    symbol = call.args["symbol"]
    spec = _spec(call, symbol)
    limit = _limit(call.args, DEFAULT_PAGE)
    start, end = (
        _window(call.args, _now_ms())
        if "startTime" in call.args or "endTime" in call.args
        else (None, None)
    )
    page = HistoryPage(call.args.get("orderId"), start, end, limit)
    orders = await _trading(call).all_orders(call.account_id, symbol, page)
    return [order_object(o, spec) for o in orders]


async def _user_trades(call: Call) -> Any:
    symbol = call.args["symbol"]
    spec = _spec(call, symbol)
    limit = _limit(call.args, DEFAULT_PAGE)
    from_id = call.args.get("fromId")
    if from_id is not None and ("startTime" in call.args or "endTime" in call.args):
        raise errors.bad_parameter_combination()
    start, end = (None, None) if from_id is not None else _window(call.args, _now_ms())
    trades = await _trading(call).trades(
        call.account_id, symbol, HistoryPage(from_id, start, end, limit)
    )
    return [trade_object(t, spec) for t in trades]


async def _income(call: Call) -> Any:
    symbol = call.args.get("symbol")
    if symbol is not None:
        _spec(call, symbol)
    income_type = call.args.get("incomeType")
    if income_type is not None and income_type not in INCOME_TYPES:
        raise errors.invalid_parameter("incomeType")
    limit = _limit(call.args, DEFAULT_INCOME_PAGE)
    start, end = _income_window(call.args, _now_ms())
    page = call.args.get("page", 1)
    if not 1 <= page <= MAX_INCOME_PAGES:
        raise errors.invalid_parameter("page", f"It must be from 1 to {MAX_INCOME_PAGES}.")
    rows = await _trading(call).income(
        call.account_id, IncomePage(symbol, income_type, start, end, limit, (page - 1) * limit)
    )
    return [
        {
            "symbol": row_symbol,
            "incomeType": kind,
            "income": format_amount(amount),
            "asset": asset,
            "info": kind,
            "time": time_ms,
            "tranId": str(tran_id),
            "tradeId": str(trade_id) if trade_id is not None else "",
        }
        for tran_id, kind, row_symbol, asset, amount, trade_id, time_ms in rows
    ]


def _rows_of(call: Call, positions: list[Position], dual: bool) -> list[Position]:
    """Every symbol's rows as Binance lists them: BOTH in one-way mode; LONG and SHORT in
    hedge mode; a flat row where the account holds nothing."""
    held = {(p.symbol, p.position_side): p for p in positions}
    sides = (PositionSide.LONG, PositionSide.SHORT) if dual else (PositionSide.BOTH,)
    return [
        held.get((symbol, side)) or flat(call.account_id, symbol, side)
        for symbol in call.service.market.specs
        for side in sides
    ]


async def _position_risk(call: Call) -> Any:
    symbol = call.args.get("symbol")
    if symbol is not None:
        _spec(call, symbol)
    view = await _trading(call).account(call.account_id)
    market = call.service.market
    result = []
    for position in _rows_of(call, view.positions, view.settings.dual_side):
        if symbol is not None and position.symbol != symbol:
            continue
        if view.settings.dual_side and not position.amount:
            continue  # hedge mode lists only rows with a position (Binance)
        spec = market.specs[position.symbol]
        mark = market.prices[position.symbol].mark_price
        figures = position_figures(position, spec, mark, view.settings)
        result.append(
            {
                "entryPrice": format_amount(position.entry_price),
                "leverage": str(figures.leverage),
                "markPrice": format_amount(mark),
                "maxNotionalValue": f"{figures.max_notional.normalize():f}",
                "positionAmt": format_fixed(position.amount, spec.quantity_precision),
                "notional": format_amount(figures.notional),
                "symbol": position.symbol,
                "unRealizedProfit": format_amount(figures.unrealized_pnl),
                "liquidationPrice": "0",  # the sandbox liquidates nothing (docs/semantics.md)
                "positionSide": position.position_side.value,
                "updateTime": position.update_time_ms,
                "breakEvenPrice": format_amount(figures.break_even_price),
            }
        )
    return result


async def _um_account(call: Call, version: int) -> Any:
    view = await _trading(call).account(call.account_id)
    balances = await call.service.balances(call.account_id)
    market = call.service.market
    margin = view.margin
    open_im: dict[str, Decimal] = {}
    from papi_sandbox.trading.margin import order_initial_margin

    for order in view.open_orders:
        open_im[order.symbol] = open_im.get(order.symbol, Decimal(0)) + order_initial_margin(
            order, view.settings
        )
    margin_assets = sorted({s.margin_asset for s in market.specs.values()})
    assets = []
    for asset in margin_assets:
        m = margin.assets.get(asset)
        assets.append(
            {
                "asset": asset,
                "crossWalletBalance": format_amount(balances.row(asset).um_wallet),
                "crossUnPnl": format_amount(m.unrealized_pnl if m else Decimal(0)),
                "maintMargin": format_amount(m.maint_margin if m else Decimal(0)),
                "initialMargin": format_amount(m.initial_margin if m else Decimal(0)),
                "positionInitialMargin": format_amount(
                    m.position_initial_margin if m else Decimal(0)
                ),
                "openOrderInitialMargin": format_amount(
                    m.open_order_initial_margin if m else Decimal(0)
                ),
                "updateTime": balances.updated_ms.get(asset, 0),
            }
        )
    positions = []
    for position in _rows_of(call, view.positions, view.settings.dual_side):
        spec = market.specs[position.symbol]
        figures = position_figures(
            position, spec, market.prices[position.symbol].mark_price, view.settings
        )
        order_im = open_im.get(position.symbol, Decimal(0))
        row: dict[str, Any] = {
            "symbol": position.symbol,
            "initialMargin": format_amount(figures.initial_margin + order_im),
            "maintMargin": format_amount(figures.maint_margin),
            "unrealizedProfit": format_amount(figures.unrealized_pnl),
        }
        if version == 1:
            row |= {
                "positionInitialMargin": format_amount(figures.initial_margin),
                "openOrderInitialMargin": format_amount(order_im),
                "leverage": str(figures.leverage),
                "entryPrice": format_amount(position.entry_price),
                "maxNotional": f"{figures.max_notional.normalize():f}",
                "bidNotional": "0",
                "askNotional": "0",
            }
        row |= {
            "positionSide": position.position_side.value,
            "positionAmt": format_fixed(position.amount, spec.quantity_precision),
            "updateTime": position.update_time_ms,
        }
        if version == 2:
            row["notional"] = format_amount(figures.notional)
        positions.append(row)
    return {"assets": assets, "positions": positions}


async def _um_account_v1(call: Call) -> Any:
    return await _um_account(call, 1)


async def _um_account_v2(call: Call) -> Any:
    return await _um_account(call, 2)


async def _set_leverage(call: Call) -> Any:
    symbol = call.args["symbol"]
    spec = _spec(call, symbol)
    leverage = call.args["leverage"]
    await _trading(call).set_leverage(call.account_id, symbol, leverage)
    return {
        "leverage": leverage,
        "maxNotionalValue": f"{spec.max_notional(leverage).normalize():f}",
        "symbol": symbol,
    }


async def _leverage_bracket(call: Call) -> Any:
    symbol = call.args.get("symbol")
    specs = (
        [_spec(call, symbol)] if symbol is not None else list(call.service.market.specs.values())
    )
    return [
        {
            "symbol": spec.symbol,
            "notionalCoef": "1.0",
            "brackets": [
                {
                    "bracket": b.bracket,
                    "initialLeverage": b.initial_leverage,
                    "notionalCap": _number(b.notional_cap),
                    "notionalFloor": _number(b.notional_floor),
                    "maintMarginRatio": _number(b.maint_margin_ratio),
                    "cum": _number(b.cum),
                }
                for b in spec.brackets
            ],
        }
        for spec in specs
    ]


async def _get_position_mode(call: Call) -> Any:
    return {"dualSidePosition": (await _trading(call).settings(call.account_id)).dual_side}


async def _set_position_mode(call: Call) -> Any:
    text = call.args["dualSidePosition"]
    if text not in ("true", "false"):
        raise errors.invalid_parameter("dualSidePosition")
    await _trading(call).set_position_mode(call.account_id, text == "true")
    return {"code": 200, "msg": "success"}


async def _commission_rate(call: Call) -> Any:
    symbol = call.args["symbol"]
    _spec(call, symbol)
    settings = await _trading(call).settings(call.account_id)
    return {
        "symbol": symbol,
        "makerCommissionRate": f"{settings.maker_rate.normalize():f}",
        "takerCommissionRate": f"{settings.taker_rate.normalize():f}",
    }


async def _account_config(call: Call) -> Any:
    settings = await _trading(call).settings(call.account_id)
    info = await call.service.require_account(call.account_id)
    return {
        "feeTier": info.vip_level,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "dualSidePosition": settings.dual_side,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
    }


async def _symbol_config(call: Call) -> Any:
    symbol = call.args.get("symbol")
    specs = (
        [_spec(call, symbol)] if symbol is not None else list(call.service.market.specs.values())
    )
    settings = await _trading(call).settings(call.account_id)
    from papi_sandbox.trading.margin import leverage_of

    result = []
    for spec in specs:
        leverage = leverage_of(settings, spec.symbol)
        result.append(
            {
                "symbol": spec.symbol,
                "marginType": "CROSSED",
                "isAutoAddMargin": "false",
                "leverage": leverage,
                "maxNotionalValue": f"{spec.max_notional(leverage).normalize():f}",
            }
        )
    return result


# -- the table ---------------------------------------------------------------------------------

SYMBOL = Param("symbol", Kind.STRING, mandatory=True, description="e.g. BTCUSDT")
SYMBOL_OPTIONAL = Param("symbol", Kind.STRING, description="one symbol; every symbol when absent")
ORDER_ID = Param("orderId", Kind.LONG, description="the order; or origClientOrderId")
ORIG_CLIENT_ORDER_ID = Param("origClientOrderId", Kind.STRING, description="the client order id")
START = Param("startTime", Kind.LONG, description="ms, inclusive")
END = Param("endTime", Kind.LONG, description="ms, inclusive; at most 7 days after startTime")
LIMIT = Param("limit", Kind.LONG, description="rows; at most 1000")
PRICE_MATCH = Param("priceMatch", Kind.STRING, description="NONE only (no order book)")

UM_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/papi/v1/um/order",
        1,
        Security.TRADE,
        (
            SYMBOL,
            Param("side", Kind.STRING, mandatory=True, description="BUY or SELL"),
            Param("type", Kind.STRING, mandatory=True, description="LIMIT or MARKET"),
            Param("positionSide", Kind.STRING, description="BOTH (one-way); LONG/SHORT (hedge)"),
            Param("timeInForce", Kind.STRING, description="GTC, IOC, FOK, GTX, GTD (LIMIT only)"),
            Param("quantity", Kind.DECIMAL, description="base asset quantity"),
            Param("reduceOnly", Kind.STRING, description="true or false (one-way mode)"),
            Param("price", Kind.DECIMAL, description="LIMIT only"),
            Param("newClientOrderId", Kind.STRING, description="^[.A-Z:/a-z0-9_-]{1,32}$"),
            Param(
                "newOrderRespType",
                Kind.ENUM,
                choices=("ACK", "RESULT"),
                description="ACK (default) or RESULT",
            ),
            PRICE_MATCH,
            Param(
                "selfTradePreventionMode",
                Kind.STRING,
                description="NONE (default), EXPIRE_TAKER, EXPIRE_MAKER or EXPIRE_BOTH",
            ),
            Param(
                "goodTillDate",
                Kind.LONG,
                description="ms, with GTD (mandatory): over 600 s ahead, whole seconds kept",
            ),
        ),
        _new_order,
        "New UM order (MARKET or LIMIT; the sandbox's fill model: docs/semantics.md)",
    ),
    Endpoint(
        "PUT",
        "/papi/v1/um/order",
        1,
        Security.TRADE,
        (
            SYMBOL,
            Param("side", Kind.STRING, mandatory=True, description="BUY or SELL: the order's"),
            ORDER_ID,
            ORIG_CLIENT_ORDER_ID,
            Param("quantity", Kind.DECIMAL, mandatory=True, description="the new quantity"),
            Param("price", Kind.DECIMAL, description="the new price"),
            PRICE_MATCH,
            Param("modifyId", Kind.LONG, description="returned as sent"),
        ),
        _modify_order,
        "Modify an open UM LIMIT order's price and quantity (it keeps its orderId)",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/order",
        1,
        Security.USER_DATA,
        (SYMBOL, ORDER_ID, ORIG_CLIENT_ORDER_ID),
        _query_order,
        "Query a UM order",
    ),
    Endpoint(
        "DELETE",
        "/papi/v1/um/order",
        1,
        Security.TRADE,
        (SYMBOL, ORDER_ID, ORIG_CLIENT_ORDER_ID),
        _cancel_order,
        "Cancel an open UM order",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/openOrder",
        1,
        Security.USER_DATA,
        (SYMBOL, ORDER_ID, ORIG_CLIENT_ORDER_ID),
        _query_open_order,
        "Query a current open UM order",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/openOrders",
        1,
        Security.USER_DATA,
        (SYMBOL_OPTIONAL,),
        _open_orders,
        "Every open UM order (of one symbol)",
        weight_without_symbol=40,
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/allOrders",
        5,
        Security.USER_DATA,
        (SYMBOL, ORDER_ID, START, END, LIMIT),
        _all_orders,
        "UM orders: open, canceled, expired or filled",
    ),
    Endpoint(
        "DELETE",
        "/papi/v1/um/allOpenOrders",
        1,
        Security.TRADE,
        (SYMBOL,),
        _cancel_all,
        "Cancel every open UM order of a symbol",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/userTrades",
        5,
        Security.USER_DATA,
        (SYMBOL, START, END, Param("fromId", Kind.LONG, description="trade id to start at"), LIMIT),
        _user_trades,
        "UM trades of a symbol",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/positionRisk",
        5,
        Security.USER_DATA,
        (SYMBOL_OPTIONAL,),
        _position_risk,
        "UM positions at the mark price",
    ),
    Endpoint("GET", "/papi/v1/um/account", 5, Security.USER_DATA, (), _um_account_v1, "UM account"),
    Endpoint(
        "GET", "/papi/v2/um/account", 5, Security.USER_DATA, (), _um_account_v2, "UM account (v2)"
    ),
    Endpoint(
        "POST",
        "/papi/v1/um/leverage",
        1,
        Security.TRADE,
        (
            SYMBOL,
            Param("leverage", Kind.LONG, mandatory=True, description="1 to the symbol's maximum"),
        ),
        _set_leverage,
        "Change a symbol's initial leverage",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/leverageBracket",
        1,
        Security.USER_DATA,
        (SYMBOL_OPTIONAL,),
        _leverage_bracket,
        "Notional and leverage brackets",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/positionSide/dual",
        30,
        Security.USER_DATA,
        (),
        _get_position_mode,
        "Position mode (hedge or one-way)",
    ),
    Endpoint(
        "POST",
        "/papi/v1/um/positionSide/dual",
        1,
        Security.TRADE,
        (
            Param(
                "dualSidePosition",
                Kind.STRING,
                mandatory=True,
                description="true: hedge mode; false: one-way mode",
            ),
        ),
        _set_position_mode,
        "Change the position mode",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/commissionRate",
        20,
        Security.USER_DATA,
        (SYMBOL,),
        _commission_rate,
        "The account's UM commission rates",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/income",
        30,
        Security.USER_DATA,
        (
            SYMBOL_OPTIONAL,
            Param(
                "incomeType", Kind.STRING, description="REALIZED_PNL, FUNDING_FEE, COMMISSION..."
            ),
            START,
            END,
            Param("page", Kind.LONG, description="page of `limit` rows, from 1"),
            LIMIT,
        ),
        _income,
        "UM income history (realized PnL, commission, funding)",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/accountConfig",
        5,
        Security.USER_DATA,
        (),
        _account_config,
        "UM account configuration",
    ),
    Endpoint(
        "GET",
        "/papi/v1/um/symbolConfig",
        5,
        Security.USER_DATA,
        (SYMBOL_OPTIONAL,),
        _symbol_config,
        "UM symbol configuration (leverage, margin type)",
    ),
)
