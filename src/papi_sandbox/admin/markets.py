"""The operator's market and UM trading actions under ``/admin/v1`` (same guard and error shape
as the rest of the operator API):

- ``GET /markets``: every symbol's state;
- ``PUT /markets/{symbol}/price`` ``{"markPrice": "60000", "indexPrice"?: ...}``: set the prices,
  then fill the resting orders the new mark crosses, before answering;
- ``PUT /markets/{symbol}/funding-rate`` ``{"fundingRate": "0.0001"}``;
- ``GET /accounts/{id}/positions``: positions, open orders and margin figures;
- ``PUT /accounts/{id}/commission`` ``{"maker": "0.0002", "taker": "0.0005"}``;
- ``POST /orders/expire`` ``{"asOf"?: ISO-8601 text or ms}``: every open GTD order whose
  goodTillDate is at or before ``asOf`` (default now) expires, before answering
  ``{"asOf": ms, "expired": n}``; a later ``asOf`` is how a test makes time pass.

The funding job runs through ``POST /admin/v1/jobs/funding`` like every job.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from papi_sandbox import grammar, money
from papi_sandbox.api.http import AdminHandler, json_response
from papi_sandbox.jobs.runner import parse_as_of
from papi_sandbox.market.prices import MarketPrice, next_funding_time
from papi_sandbox.market.state import Market
from papi_sandbox.trading.margin import position_figures
from papi_sandbox.trading_service import Trading, UmAccount, now_ms
from papi_sandbox.wire import errors
from papi_sandbox.wire.errors import ApiError

if TYPE_CHECKING:
    from papi_sandbox.api.state import AppState


def _bad(msg: str) -> ApiError:
    return errors.bad_operator_request(msg)


def parse_decimal(data: dict[str, Any], name: str, *, signed: bool = False) -> Decimal:
    """A decimal string field of an operator body (never a JSON number); raises ApiError."""
    text = data.get(name)
    if not isinstance(text, str):
        raise _bad(f"'{name}' must be a decimal string such as \"60000\" (never a number).")
    if not signed and text.startswith("-"):
        raise _bad(f"'{name}' must be greater than 0.")
    try:
        value = money.parse_amount(text, signed=signed, what=f"'{name}'")
    except money.AmountError as exc:
        raise _bad(f"{exc}.") from None
    if not signed and value <= 0:
        raise _bad(f"'{name}' must be greater than 0.")
    return value


def parse_price_change(data: dict[str, Any]) -> tuple[Decimal, Decimal | None]:
    """``(markPrice, indexPrice)`` of ``PUT /markets/{symbol}/price``."""
    unknown = set(data) - {"markPrice", "indexPrice"}
    if unknown:
        raise _bad(f"Unknown field(s): {', '.join(sorted(unknown))[:200]}.")
    mark = parse_decimal(data, "markPrice")
    index = parse_decimal(data, "indexPrice") if "indexPrice" in data else None
    return mark, index


def market_object(price: MarketPrice) -> dict[str, Any]:
    """A symbol's state as the operator API shows it."""
    return {
        "symbol": price.symbol,
        "markPrice": money.format_amount(price.mark_price),
        "indexPrice": money.format_amount(price.index_price),
        "fundingRate": money.format_amount(price.funding_rate),
        "nextFundingTime": next_funding_time(now_ms()),
        "updateTime": price.update_time_ms,
    }


def positions_object(view: UmAccount, market: Market) -> dict[str, Any]:
    """``GET /accounts/{id}/positions``: open positions with their figures, open orders, and
    the account's margin summary."""
    positions = []
    for position in view.positions:
        if not position.amount:
            continue
        spec = market.specs.get(position.symbol)
        price = market.prices.get(position.symbol)
        if spec is None or price is None:
            continue
        f = position_figures(position, spec, price.mark_price, view.settings)
        positions.append(
            {
                "symbol": position.symbol,
                "positionSide": position.position_side.value,
                "positionAmt": money.format_amount(position.amount),
                "entryPrice": money.format_amount(position.entry_price),
                "breakEvenPrice": money.format_amount(f.break_even_price),
                "markPrice": money.format_amount(price.mark_price),
                "unRealizedProfit": money.format_amount(f.unrealized_pnl),
                "notional": money.format_amount(f.notional),
                "leverage": f.leverage,
                "initialMargin": money.format_amount(f.initial_margin),
                "maintMargin": money.format_amount(f.maint_margin),
            }
        )
    m = view.margin
    return {
        "positions": positions,
        "openOrders": [
            {
                "orderId": o.order_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "positionSide": o.position_side.value,
                "type": o.type.value,
                "price": money.format_amount(o.price),
                "origQty": money.format_amount(o.orig_qty),
                "executedQty": money.format_amount(o.executed_qty),
                "status": o.status.value,
            }
            for o in view.open_orders
        ],
        "dualSidePosition": view.settings.dual_side,
        "makerCommissionRate": f"{view.settings.maker_rate.normalize():f}",
        "takerCommissionRate": f"{view.settings.taker_rate.normalize():f}",
        "accountEquity": money.format_amount(m.account_equity),
        "actualEquity": money.format_amount(m.actual_equity),
        "accountInitialMargin": money.format_amount(m.initial_margin),
        "accountMaintMargin": money.format_amount(m.maint_margin),
        "uniMMR": money.format_amount(m.uni_mmr),
        "accountStatus": m.status,
    }


def market_symbol(trading: Trading, symbol: str) -> str:
    """``symbol`` when the market lists it; raises the unknown-market ApiError otherwise (the
    operator API and the dashboard share it)."""
    if symbol not in trading.market.specs:
        raise errors.unknown_market(symbol)
    return symbol


async def expire_orders_as_of(trading: Trading, data: dict[str, Any]) -> dict[str, int]:
    """``POST /orders/expire`` (``{"asOf"?: ISO-8601 text or ms}``, default now): every open
    GTD order whose goodTillDate is at or before ``asOf`` expires. Returns ``{"asOf": ms,
    "expired": n}``; raises ApiError (-1102) for an unknown field or a bad ``asOf``."""
    unknown = set(data) - {"asOf"}
    if unknown:
        raise _bad(f"Unknown field(s): {', '.join(sorted(unknown))[:200]}.")
    try:
        as_of = parse_as_of(data.get("asOf"))
    except grammar.GrammarError as exc:
        raise _bad(f"{exc}.") from None
    as_of_ms = int(as_of.timestamp()) * 1000 + as_of.microsecond // 1000
    return {"asOf": as_of_ms, "expired": await trading.expire_orders(as_of_ms)}


async def _expire_orders(
    trading: Trading, json_body: Callable[[Request], Any], request: Request
) -> Response:
    return json_response(200, await expire_orders_as_of(trading, await json_body(request)))


def market_routes(
    state: AppState,
    route: Callable[[str, AdminHandler, str], Route],
    json_body: Callable[[Request], Any],
    path_account_id: Callable[[Request], int],
) -> list[Route]:
    trading = state.service.trading

    def symbol_of(request: Request) -> str:
        return market_symbol(trading, request.path_params["symbol"])

    async def markets(request: Request) -> Response:
        market = await trading.prices()
        return json_response(200, [market_object(p) for p in market.prices.values()])

    async def set_price(request: Request) -> Response:
        symbol = symbol_of(request)
        mark, index = parse_price_change(await json_body(request))
        change = await trading.set_price(symbol, mark, index)
        return json_response(200, market_object(change.price))

    async def set_funding_rate(request: Request) -> Response:
        symbol = symbol_of(request)
        data = await json_body(request)
        unknown = set(data) - {"fundingRate"}
        if unknown:
            raise _bad(f"Unknown field(s): {', '.join(sorted(unknown))[:200]}.")
        rate = parse_decimal(data, "fundingRate", signed=True)
        if not -1 <= rate <= 1:
            raise _bad("'fundingRate' must be from -1 to 1.")
        return json_response(200, market_object(await trading.set_funding_rate(symbol, rate)))

    async def positions(request: Request) -> Response:
        account_id = path_account_id(request)
        await state.service.require_account(account_id)
        view = await trading.account(account_id)
        return json_response(200, positions_object(view, trading.market))

    async def commission(request: Request) -> Response:
        account_id = path_account_id(request)
        await state.service.require_account(account_id)
        data = await json_body(request)
        unknown = set(data) - {"maker", "taker"}
        if unknown:
            raise _bad(f"Unknown field(s): {', '.join(sorted(unknown))[:200]}.")
        maker = parse_decimal(data, "maker", signed=True)
        taker = parse_decimal(data, "taker", signed=True)
        try:
            await trading.set_commission(account_id, maker, taker)
        except ValueError as exc:
            raise _bad(f"{exc}.") from None
        settings = await trading.settings(account_id)
        return json_response(
            200,
            {
                "accountId": account_id,
                "maker": f"{settings.maker_rate.normalize():f}",
                "taker": f"{settings.taker_rate.normalize():f}",
            },
        )

    return [
        route("/markets", markets, "GET"),
        route("/markets/{symbol}/price", set_price, "PUT"),
        route("/markets/{symbol}/funding-rate", set_funding_rate, "PUT"),
        route("/accounts/{account_id}/positions", positions, "GET"),
        route("/accounts/{account_id}/commission", commission, "PUT"),
        route("/orders/expire", partial(_expire_orders, trading, json_body), "POST"),
    ]
