"""The public market data clients call to boot (ccxt's ``load_markets``, the SDKs' time sync),
served on the same port with Binance's paths, shapes and weights:

- ``/fapi/v1/{ping,time,exchangeInfo,premiumIndex,ticker/price}``: the UM symbols and prices;
- ``/api/v3/{ping,time,exchangeInfo}``: the spot symbols of the same assets;
- ``/dapi/v1/exchangeInfo``: COIN-M, with no symbols yet;
- signed ``/sapi/v1/capital/config/getall``, ``/sapi/v1/margin/allPairs``,
  ``/sapi/v1/margin/isolated/allPairs``: the assets and pairs the sandbox knows.

Every value comes from the market configuration (:mod:`papi_sandbox.market`).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from papi_sandbox.api.endpoint import Call, Endpoint, Security
from papi_sandbox.market.prices import MarketPrice, next_funding_time
from papi_sandbox.market.state import Market
from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.money import format_amount
from papi_sandbox.wire import errors
from papi_sandbox.wire.params import Kind, Param

#: Binance's published request limits of the USDⓈ-M API (shown in exchangeInfo; the sandbox
#: enforces its own IP weight limit, docs/operations.md).
FAPI_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]
SPOT_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]
#: Order types and time-in-force values Binance lists for a UM perpetual. The sandbox serves
#: LIMIT and MARKET with GTC/IOC/FOK/GTX on /papi/v1/um/order; the rest are refused there
#: (docs/semantics.md, "What is refused").
UM_ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]
UM_TIME_IN_FORCE = ["GTC", "IOC", "FOK", "GTX", "GTD"]
SPOT_ORDER_TYPES = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]
#: Binance's perpetual contracts carry this deliveryDate (year 2100).
PERPETUAL_DELIVERY_DATE_MS = 4133404800000
#: Full names of the assets the default market knows (capital/config/getall ``name``).
ASSET_NAMES = {"USDT": "TetherUS", "BTC": "Bitcoin", "ETH": "Ethereum", "BNB": "BNB"}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _plain(value: Decimal) -> str:
    """A filter value as Binance prints it in exchangeInfo (no exponent, no forced digits)."""
    text = f"{value:f}"
    return text


def _um_filters(spec: SymbolSpec) -> list[dict[str, Any]]:
    return [
        {
            "filterType": "PRICE_FILTER",
            "maxPrice": _plain(spec.max_price),
            "minPrice": _plain(spec.min_price),
            "tickSize": _plain(spec.tick_size),
        },
        {
            "filterType": "LOT_SIZE",
            "maxQty": _plain(spec.max_qty),
            "minQty": _plain(spec.min_qty),
            "stepSize": _plain(spec.step_size),
        },
        {
            "filterType": "MARKET_LOT_SIZE",
            "maxQty": _plain(spec.market_max_qty),
            "minQty": _plain(spec.market_min_qty),
            "stepSize": _plain(spec.market_step_size),
        },
        {"filterType": "MAX_NUM_ORDERS", "limit": spec.max_num_orders},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": spec.max_num_algo_orders},
        {"filterType": "MIN_NOTIONAL", "notional": _plain(spec.min_notional)},
        {
            "filterType": "PERCENT_PRICE",
            "multiplierUp": _plain(spec.multiplier_up),
            "multiplierDown": _plain(spec.multiplier_down),
            "multiplierDecimal": str(spec.multiplier_decimal),
        },
    ]


def um_symbol_object(spec: SymbolSpec) -> dict[str, Any]:
    """One symbol of ``GET /fapi/v1/exchangeInfo``."""
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_DATE_MS,
        "onboardDate": spec.onboard_date_ms,
        "status": "TRADING",
        "maintMarginPercent": _plain(spec.maint_margin_percent),
        "requiredMarginPercent": _plain(spec.required_margin_percent),
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": spec.margin_asset,
        "pricePrecision": spec.price_precision,
        "quantityPrecision": spec.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": list(spec.underlying_sub_type),
        "settlePlan": 0,
        "triggerProtect": _plain(spec.trigger_protect),
        "liquidationFee": _plain(spec.liquidation_fee),
        "marketTakeBound": _plain(spec.market_take_bound),
        "maxMoveOrderLimit": 10000,
        "filters": _um_filters(spec),
        "orderTypes": UM_ORDER_TYPES,
        "timeInForce": UM_TIME_IN_FORCE,
        "permissionSets": ["GRID", "COPY"],
    }


def _market(call: Call) -> Market:
    return call.service.market


async def _ping(call: Call) -> Any:
    return {}


async def _time(call: Call) -> Any:
    return {"serverTime": _now_ms()}


async def _fapi_exchange_info(call: Call) -> Any:
    market = _market(call)
    return {
        "timezone": "UTC",
        "serverTime": _now_ms(),
        "futuresType": "U_MARGINED",
        "rateLimits": FAPI_RATE_LIMITS,
        "exchangeFilters": [],
        "assets": [
            {"asset": asset, "marginAvailable": True, "autoAssetExchange": "0"}
            for asset in market.assets()
        ],
        "symbols": [um_symbol_object(spec) for spec in market.specs.values()],
    }


def _symbol_arg(call: Call, market: Market) -> str | None:
    symbol: str | None = call.args.get("symbol")
    if symbol is not None and symbol not in market.specs:
        raise errors.invalid_symbol()
    return symbol


def premium_index_object(price: MarketPrice, now_ms: int) -> dict[str, Any]:
    """One row of ``GET /fapi/v1/premiumIndex`` (the sandbox's mark is also its settle price;
    ``interestRate`` is Binance's constant 0.01 %)."""
    return {
        "symbol": price.symbol,
        "markPrice": format_amount(price.mark_price),
        "indexPrice": format_amount(price.index_price),
        "estimatedSettlePrice": format_amount(price.mark_price),
        "lastFundingRate": format_amount(price.funding_rate),
        "interestRate": "0.00010000",
        "nextFundingTime": next_funding_time(now_ms),
        "time": price.update_time_ms,
    }


async def _premium_index(call: Call) -> Any:
    market = await call.service.market_prices()
    symbol = _symbol_arg(call, market)
    now = _now_ms()
    if symbol is not None:
        return premium_index_object(market.prices[symbol], now)
    return [premium_index_object(p, now) for p in market.prices.values()]


async def _ticker_price(call: Call) -> Any:
    market = await call.service.market_prices()
    symbol = _symbol_arg(call, market)

    def row(price: MarketPrice) -> dict[str, Any]:
        # The sandbox has no order book: the last price is the mark price.
        return {
            "symbol": price.symbol,
            "price": format_amount(price.mark_price),
            "time": price.update_time_ms,
        }

    if symbol is not None:
        return row(market.prices[symbol])
    return [row(p) for p in market.prices.values()]


def spot_symbol_object(spec: SymbolSpec) -> dict[str, Any]:
    """The spot pair of a UM symbol's assets (``GET /api/v3/exchangeInfo``); its filters mirror
    the UM symbol's tick and step sizes (the sandbox serves no spot trading)."""
    return {
        "symbol": f"{spec.base_asset}{spec.quote_asset}",
        "status": "TRADING",
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": SPOT_ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": format_amount(spec.tick_size),
                "maxPrice": format_amount(spec.max_price),
                "tickSize": format_amount(spec.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": format_amount(spec.step_size),
                "maxQty": format_amount(spec.max_qty),
                "stepSize": format_amount(spec.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _spot_specs(market: Market, only: str | None = None) -> list[SymbolSpec]:
    """One UM symbol per spot pair of its assets; only the pair ``only`` when given."""
    seen: dict[str, SymbolSpec] = {}
    for spec in market.specs.values():
        seen.setdefault(f"{spec.base_asset}{spec.quote_asset}", spec)
    if only is not None:
        if only not in seen:
            raise errors.invalid_symbol()
        return [seen[only]]
    return list(seen.values())


async def _spot_exchange_info(call: Call) -> Any:
    market = _market(call)
    specs = _spot_specs(market, call.args.get("symbol"))
    return {
        "timezone": "UTC",
        "serverTime": _now_ms(),
        "rateLimits": SPOT_RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [spot_symbol_object(spec) for spec in specs],
    }


async def _dapi_exchange_info(call: Call) -> Any:
    return {
        "timezone": "UTC",
        "serverTime": _now_ms(),
        "rateLimits": FAPI_RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [],
    }


async def _capital_config(call: Call) -> Any:
    """``GET /sapi/v1/capital/config/getall``: every asset the sandbox knows, one network each.
    Deposits and withdrawals are the operator's (the sandbox has no chain): both disabled."""
    result = []
    for asset in _market(call).assets():
        name = ASSET_NAMES.get(asset, asset)
        result.append(
            {
                "coin": asset,
                "depositAllEnable": False,
                "withdrawAllEnable": False,
                "name": name,
                "free": "0",
                "locked": "0",
                "freeze": "0",
                "withdrawing": "0",
                "ipoing": "0",
                "ipoable": "0",
                "storage": "0",
                "isLegalMoney": False,
                "trading": True,
                "networkList": [
                    {
                        "network": asset,
                        "coin": asset,
                        "withdrawIntegerMultiple": "0.00000001",
                        "isDefault": True,
                        "depositEnable": False,
                        "withdrawEnable": False,
                        "depositDesc": "",
                        "withdrawDesc": "",
                        "specialTips": "",
                        "name": name,
                        "resetAddressStatus": False,
                        "addressRegex": "",
                        "memoRegex": "",
                        "withdrawFee": "0",
                        "withdrawMin": "0",
                        "withdrawMax": "0",
                        "minConfirm": 1,
                        "unLockConfirm": 1,
                        "sameAddress": False,
                        "busy": False,
                        "depositDust": "0.00000001",
                    }
                ],
            }
        )
    return result


async def _margin_all_pairs(call: Call) -> Any:
    return [
        {
            "id": str(index),
            "symbol": f"{spec.base_asset}{spec.quote_asset}",
            "base": spec.base_asset,
            "quote": spec.quote_asset,
            "isMarginTrade": True,
            "isBuyAllowed": True,
            "isSellAllowed": True,
        }
        for index, spec in enumerate(_spot_specs(_market(call), call.args.get("symbol")), 1)
    ]


async def _isolated_all_pairs(call: Call) -> Any:
    return [
        {
            "symbol": f"{spec.base_asset}{spec.quote_asset}",
            "base": spec.base_asset,
            "quote": spec.quote_asset,
            "isMarginTrade": True,
            "isBuyAllowed": True,
            "isSellAllowed": True,
        }
        for spec in _spot_specs(_market(call), call.args.get("symbol"))
    ]


SYMBOL_PARAM = Param("symbol", Kind.STRING, description="one symbol; every symbol when absent")

MARKET_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/fapi/v1/ping", 1, Security.NONE, (), _ping, "UM: test connectivity"),
    Endpoint("GET", "/fapi/v1/time", 1, Security.NONE, (), _time, "UM: server time"),
    Endpoint(
        "GET",
        "/fapi/v1/exchangeInfo",
        1,
        Security.NONE,
        (),
        _fapi_exchange_info,
        "UM: symbols, filters and limits",
    ),
    Endpoint(
        "GET",
        "/fapi/v1/premiumIndex",
        1,
        Security.NONE,
        (SYMBOL_PARAM,),
        _premium_index,
        "UM: mark price, index price and funding rate",
        weight_without_symbol=10,
    ),
    Endpoint(
        "GET",
        "/fapi/v1/ticker/price",
        1,
        Security.NONE,
        (SYMBOL_PARAM,),
        _ticker_price,
        "UM: latest price (the mark price)",
        weight_without_symbol=2,
    ),
    Endpoint("GET", "/api/v3/ping", 1, Security.NONE, (), _ping, "Spot: test connectivity"),
    Endpoint("GET", "/api/v3/time", 1, Security.NONE, (), _time, "Spot: server time"),
    Endpoint(
        "GET",
        "/api/v3/exchangeInfo",
        20,
        Security.NONE,
        (Param("symbol", Kind.STRING, description="one spot symbol"),),
        _spot_exchange_info,
        "Spot: the spot pairs of the market's assets",
    ),
    Endpoint(
        "GET",
        "/dapi/v1/exchangeInfo",
        1,
        Security.NONE,
        (),
        _dapi_exchange_info,
        "COIN-M: exchange information (no symbols yet)",
    ),
    Endpoint(
        "GET",
        "/sapi/v1/capital/config/getall",
        10,
        Security.USER_DATA,
        (),
        _capital_config,
        "Wallet: every asset the sandbox knows",
    ),
    Endpoint(
        "GET",
        "/sapi/v1/margin/allPairs",
        1,
        Security.USER_DATA,
        (Param("symbol", Kind.STRING, description="one pair"),),
        _margin_all_pairs,
        "Margin: cross-margin pairs",
    ),
    Endpoint(
        "GET",
        "/sapi/v1/margin/isolated/allPairs",
        10,
        Security.USER_DATA,
        (Param("symbol", Kind.STRING, description="one pair"),),
        _isolated_all_pairs,
        "Margin: isolated-margin pairs",
    ),
)
