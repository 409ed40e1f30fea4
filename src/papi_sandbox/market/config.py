"""The ``[market]`` section of the TOML configuration: symbols, starting prices, funding rates,
collateral rates and the optional price feed (docs/semantics.md, "Market").

```toml
[market]
collateral_rates = { BTC = "0.95" }      # per asset; USDT is 1

[market.symbols.BTCUSDT]                 # change any published value, or add a symbol
mark_price = "60000"                     # the starting mark (and index) price
funding_rate = "0.0001"
min_notional = "100"
brackets = [[125, "0", "50000", "0.004"], [100, "50000", "600000", "0.005"]]

[market.symbols.SOLUSDT]                 # a new symbol names its base asset and every filter
base_asset = "SOL"
...

[market.feed]                            # off unless this table is present
kind = "random_walk"                     # or "replay"
symbols = ["BTCUSDT"]
interval_ms = 1000
seed = 7                                 # random_walk: the same seed gives the same path
step = "0.001"                           # random_walk: largest relative move per tick
path = "btc.csv"                         # replay: lines "time,price" (time in ms from start)
```

Amounts are exact decimals (strings, or TOML numbers read by their own text, never floats).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from papi_sandbox import grammar
from papi_sandbox.market.symbols import DEFAULT_SYMBOLS, SymbolSpec, brackets_from

#: Most symbols one configuration may declare (each costs a row per price change).
MAX_SYMBOLS = 200
#: Most brackets per symbol (Binance's largest table has about 20).
MAX_BRACKETS = 40
#: Feed tick bounds (ms): faster than 50 ms would only burn CPU.
MIN_FEED_INTERVAL_MS = 50
MAX_FEED_INTERVAL_MS = 86_400_000

#: Starting marks of the default symbols (the sandbox's choice, docs/semantics.md).
DEFAULT_MARKS = {"BTCUSDT": Decimal("60000"), "ETHUSDT": Decimal("3000"), "BNBUSDT": Decimal("600")}
#: Binance's base funding rate (0.01 % per 8 hours), every symbol's starting rate.
DEFAULT_FUNDING_RATE = Decimal("0.0001")
#: Portfolio Margin collateral rates (the sandbox's defaults); assets not listed count at 0.
DEFAULT_COLLATERAL_RATES = {
    "USDT": Decimal("1"),
    "BTC": Decimal("0.95"),
    "ETH": Decimal("0.95"),
    "BNB": Decimal("0.95"),
}
#: Funding slots per day (UTC hours), Binance's schedule for these symbols.
FUNDING_HOURS_UTC = (0, 8, 16)


class MarketConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class FeedConfig:
    kind: str  # "random_walk" or "replay"
    symbols: tuple[str, ...]
    interval_ms: int = 1000
    seed: int = 0
    step: Decimal = Decimal("0.001")
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class MarketConfig:
    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    initial_marks: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_MARKS))
    funding_rates: Mapping[str, Decimal] = field(default_factory=dict)
    collateral_rates: Mapping[str, Decimal] = field(
        default_factory=lambda: dict(DEFAULT_COLLATERAL_RATES)
    )
    feed: FeedConfig | None = None

    def spec(self, symbol: str) -> SymbolSpec | None:
        for spec in self.symbols:
            if spec.symbol == symbol:
                return spec
        return None

    def funding_rate(self, symbol: str) -> Decimal:
        return self.funding_rates.get(symbol, DEFAULT_FUNDING_RATE)

    def assets(self) -> list[str]:
        """Every asset the market knows: margin, base and quote assets, sorted."""
        names = {"USDT"}
        for spec in self.symbols:
            names |= {spec.base_asset, spec.quote_asset, spec.margin_asset}
        return sorted(names)


_DECIMAL_FIELDS = {
    f.name
    for f in dataclasses.fields(SymbolSpec)
    if f.type in ("Decimal", Decimal) and f.name != "brackets"
}
_INT_FIELDS = {
    "price_precision",
    "quantity_precision",
    "multiplier_decimal",
    "max_num_orders",
    "max_num_algo_orders",
    "onboard_date_ms",
}
_ASSET_FIELDS = {"base_asset", "quote_asset", "margin_asset"}


def _decimal(value: Any, what: str, *, positive: bool = True) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise MarketConfigError(f"{what} must be a decimal number")
    text = str(value)
    if not grammar.is_decimal(text):  # the one grammar: plain ASCII, no sign, no exponent
        raise MarketConfigError(f"{what}: '{text}' is not a plain non-negative decimal")
    try:
        result = Decimal(text)
    except InvalidOperation:
        raise MarketConfigError(f"{what}: '{text}' is not a decimal") from None
    if positive and result <= 0:
        raise MarketConfigError(f"{what} must be greater than 0")
    return result


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MarketConfigError(f"{what} must be an integer from {low} to {high}")
    return value


def _signed_rate(value: Any, what: str) -> Decimal:
    text = str(value) if not isinstance(value, bool) else ""
    negative = text.startswith("-")
    rate = _decimal(text[1:] if negative else value, what, positive=False)
    if rate > 1:
        raise MarketConfigError(f"{what} must be between -1 and 1")
    return -rate if negative else rate


def _symbol(name: str, table: Mapping[str, Any], base: SymbolSpec | None) -> SymbolSpec:
    where = f"[market.symbols.{name}]"
    known = _DECIMAL_FIELDS | _INT_FIELDS | _ASSET_FIELDS | {"brackets", "mark_price"}
    unknown = set(table) - known - {"funding_rate"}
    if unknown:
        raise MarketConfigError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in _DECIMAL_FIELDS:
            changes[key] = _decimal(value, f"{where} {key}")
        elif key in _INT_FIELDS:
            changes[key] = _int(value, f"{where} {key}", 0, 10**13)
        elif key in _ASSET_FIELDS:
            if not grammar.is_asset(value):
                raise MarketConfigError(f"{where} {key} must be an asset code")
            changes[key] = value
        elif key == "brackets":
            changes[key] = _brackets(value, where)
    if base is not None:
        spec = dataclasses.replace(base, **changes)
    else:
        required = (_DECIMAL_FIELDS - set(_OPTIONAL_DECIMALS)) | {"base_asset", "brackets"}
        missing = required - set(changes)
        if missing:
            needed = ", ".join(sorted(missing))
            raise MarketConfigError(f"{where} is a new symbol and needs {needed}")
        changes.setdefault("quote_asset", "USDT")
        changes.setdefault("margin_asset", changes["quote_asset"])
        changes.setdefault("price_precision", max(0, -changes["tick_size"].as_tuple().exponent))
        changes.setdefault("quantity_precision", max(0, -changes["step_size"].as_tuple().exponent))
        changes.setdefault("multiplier_decimal", 4)
        spec = SymbolSpec(symbol=name, **changes)
    _check_spec(spec, where)
    return spec


#: Decimal fields a new symbol may leave to SymbolSpec's defaults.
_OPTIONAL_DECIMALS = (
    "liquidation_fee",
    "market_take_bound",
    "trigger_protect",
    "required_margin_percent",
    "maint_margin_percent",
)


def _check_spec(spec: SymbolSpec, where: str) -> None:
    if spec.min_price >= spec.max_price:
        raise MarketConfigError(f"{where}: min_price must be below max_price")
    if spec.min_qty > spec.max_qty or spec.market_min_qty > spec.market_max_qty:
        raise MarketConfigError(f"{where}: min quantities must not exceed max quantities")
    if not spec.multiplier_down < 1 < spec.multiplier_up:
        raise MarketConfigError(f"{where}: multiplier_down < 1 < multiplier_up is required")


def _brackets(value: Any, where: str) -> Any:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BRACKETS:
        raise MarketConfigError(f"{where} brackets must be a list of 1 to {MAX_BRACKETS} rows")
    rows = []
    for row in value:
        if not isinstance(row, list) or len(row) != 4:
            raise MarketConfigError(
                f"{where} each bracket is [initialLeverage, notionalFloor, notionalCap,"
                " maintMarginRatio]"
            )
        rows.append(
            (
                _int(row[0], f"{where} bracket leverage", 1, 125),
                _decimal(row[1], f"{where} notionalFloor", positive=False),
                _decimal(row[2], f"{where} notionalCap"),
                _decimal(row[3], f"{where} maintMarginRatio"),
            )
        )
    try:
        return brackets_from(rows)
    except ValueError as exc:
        raise MarketConfigError(f"{where}: {exc}") from None


def _feed(table: Mapping[str, Any], symbols: set[str], base_dir: Path | None) -> FeedConfig:
    allowed = {"kind", "symbols", "interval_ms", "seed", "step", "path"}
    unknown = set(table) - allowed
    if unknown:
        raise MarketConfigError(f"unknown key(s) in [market.feed]: {', '.join(sorted(unknown))}")
    kind = table.get("kind")
    if kind not in ("random_walk", "replay"):
        raise MarketConfigError("[market.feed] kind must be 'random_walk' or 'replay'")
    names = table.get("symbols", [])
    if not isinstance(names, list) or not names or any(n not in symbols for n in names):
        raise MarketConfigError("[market.feed] symbols must list configured symbols")
    path = None
    if kind == "replay":
        raw = table.get("path")
        if not isinstance(raw, str) or not raw:
            raise MarketConfigError("[market.feed] replay needs path = 'file.csv'")
        path = Path(raw) if base_dir is None or Path(raw).is_absolute() else base_dir / raw
    step = _decimal(table.get("step", "0.001"), "[market.feed] step")
    if step >= 1:
        raise MarketConfigError("[market.feed] step must be below 1")
    return FeedConfig(
        kind=kind,
        symbols=tuple(names),
        interval_ms=_int(
            table.get("interval_ms", 1000),
            "[market.feed] interval_ms",
            MIN_FEED_INTERVAL_MS,
            MAX_FEED_INTERVAL_MS,
        ),
        seed=_int(table.get("seed", 0), "[market.feed] seed", 0, 2**63 - 1),
        step=step,
        path=path,
    )


def parse_market(data: Mapping[str, Any] | None, base_dir: Path | None = None) -> MarketConfig:
    """The market from the ``[market]`` table of the configuration (None: the defaults).
    Raises :class:`MarketConfigError` naming the first bad value."""
    if not data:
        return MarketConfig()
    if not isinstance(data, Mapping):
        raise MarketConfigError("[market] must be a table")
    unknown = set(data) - {"symbols", "collateral_rates", "feed"}
    if unknown:
        raise MarketConfigError(f"unknown key(s) in [market]: {', '.join(sorted(unknown))}")
    symbols = {spec.symbol: spec for spec in DEFAULT_SYMBOLS}
    marks = dict(DEFAULT_MARKS)
    rates: dict[str, Decimal] = {}
    tables = data.get("symbols", {})
    if not isinstance(tables, dict) or len(tables) > MAX_SYMBOLS:
        raise MarketConfigError(f"[market.symbols] must be a table of at most {MAX_SYMBOLS}")
    for name, table in tables.items():
        if not grammar.is_asset(name) or not isinstance(table, dict):  # [A-Z0-9]{1,20}
            raise MarketConfigError(f"[market.symbols.{name}] is not a symbol table")
        symbols[name] = _symbol(name, table, symbols.get(name))
        if "mark_price" in table:
            marks[name] = _decimal(table["mark_price"], f"[market.symbols.{name}] mark_price")
        if "funding_rate" in table:
            rates[name] = _signed_rate(
                table["funding_rate"], f"[market.symbols.{name}] funding_rate"
            )
        if name not in marks:
            raise MarketConfigError(f"[market.symbols.{name}] needs a mark_price")
    collateral = dict(DEFAULT_COLLATERAL_RATES)
    raw_rates = data.get("collateral_rates", {})
    if not isinstance(raw_rates, dict):
        raise MarketConfigError("[market] collateral_rates must be a table of asset = rate")
    for asset, value in raw_rates.items():
        if not grammar.is_asset(asset):
            raise MarketConfigError(f"collateral_rates: '{asset}' is not an asset")
        rate = _decimal(value, f"collateral rate of {asset}", positive=False)
        if rate > 1:
            raise MarketConfigError(f"collateral rate of {asset} must be from 0 to 1")
        collateral[asset] = rate
    feed = data.get("feed")
    return MarketConfig(
        symbols=tuple(symbols.values()),
        initial_marks=marks,
        funding_rates=rates,
        collateral_rates=collateral,
        feed=_feed(feed, set(symbols), base_dir) if isinstance(feed, dict) else None,
    )
