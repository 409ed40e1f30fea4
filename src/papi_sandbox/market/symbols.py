"""USDⓈ-M perpetual symbols: Binance's published filters, leverage brackets and maintenance
margin ratios, as data.

The defaults are a snapshot of what ``GET https://fapi.binance.com/fapi/v1/exchangeInfo`` and the
leverage-bracket page published for ``BTCUSDT``, ``ETHUSDT`` and ``BNBUSDT``; the ``[market]``
section of the TOML configuration changes them or adds symbols (:mod:`papi_sandbox.market.config`).
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

D = Decimal


@dataclass(frozen=True, slots=True)
class Bracket:
    """One notional bracket (Binance's ``leverageBracket`` row). ``cum`` is derived from the
    floors and ratios so that maintenance margin is continuous across brackets:
    ``cum[n] = cum[n-1] + floor[n] × (mmr[n] − mmr[n-1])``."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal


def brackets_from(rows: Iterable[tuple[int, Decimal, Decimal, Decimal]]) -> tuple[Bracket, ...]:
    """Brackets from ``(initialLeverage, notionalFloor, notionalCap, maintMarginRatio)`` rows in
    ascending notional order; numbers them from 1 and computes ``cum``."""
    result: list[Bracket] = []
    cum = D(0)
    previous_mmr = D(0)
    for number, (leverage, floor, cap, mmr) in enumerate(rows, start=1):
        if result and floor != result[-1].notional_cap:
            raise ValueError(f"bracket {number}: floor {floor} is not the previous cap")
        if cap <= floor:
            raise ValueError(f"bracket {number}: cap {cap} must be above floor {floor}")
        cum = cum + floor * (mmr - previous_mmr)
        previous_mmr = mmr
        result.append(Bracket(number, leverage, floor, cap, mmr, cum))
    if not result:
        raise ValueError("a symbol needs at least one bracket")
    return tuple(result)


#: Binance's values of these fields for the default symbols.
_LIQUIDATION_FEE = D("0.012500")
_MARKET_TAKE_BOUND = D("0.05")
_TRIGGER_PROTECT = D("0.0500")
_REQUIRED_MARGIN_PERCENT = D("5.0000")
_MAINT_MARGIN_PERCENT = D("2.5000")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One UM perpetual contract and its filters (Binance's ``filterType`` names in comments)."""

    symbol: str
    base_asset: str
    quote_asset: str
    margin_asset: str
    price_precision: int
    quantity_precision: int
    # PRICE_FILTER
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal
    # LOT_SIZE (LIMIT orders)
    min_qty: Decimal
    max_qty: Decimal
    step_size: Decimal
    # MARKET_LOT_SIZE (MARKET orders)
    market_min_qty: Decimal
    market_max_qty: Decimal
    market_step_size: Decimal
    # MIN_NOTIONAL
    min_notional: Decimal
    # PERCENT_PRICE: a LIMIT price must lie within mark × [down, up]
    multiplier_up: Decimal
    multiplier_down: Decimal
    multiplier_decimal: int
    brackets: tuple[Bracket, ...]
    max_num_orders: int = 200
    max_num_algo_orders: int = 10
    onboard_date_ms: int = 1569398400000
    liquidation_fee: Decimal = _LIQUIDATION_FEE
    market_take_bound: Decimal = _MARKET_TAKE_BOUND
    trigger_protect: Decimal = _TRIGGER_PROTECT
    required_margin_percent: Decimal = _REQUIRED_MARGIN_PERCENT
    maint_margin_percent: Decimal = _MAINT_MARGIN_PERCENT
    underlying_sub_type: tuple[str, ...] = field(default=())

    @property
    def max_leverage(self) -> int:
        return self.brackets[0].initial_leverage

    def bracket_for(self, notional: Decimal) -> Bracket:
        """The bracket whose [floor, cap) holds ``abs(notional)``; the last one beyond it."""
        size = abs(notional)
        for bracket in self.brackets:
            if size < bracket.notional_cap:
                return bracket
        return self.brackets[-1]

    def max_notional(self, leverage: int) -> Decimal:
        """Binance's ``maxNotionalValue``: the highest cap among brackets allowing ``leverage``."""
        caps = [b.notional_cap for b in self.brackets if b.initial_leverage >= leverage]
        return max(caps) if caps else self.brackets[0].notional_cap


def _tiers(text: str) -> list[tuple[int, str, str, str]]:
    """Leverage brackets as Binance's table lists them, one ``leverage maintMarginRatio
    notionalCap`` per tier, comma-separated, ascending: each tier's floor is the cap before it
    (the first's is 0). ``(initialLeverage, notionalFloor, notionalCap, maintMarginRatio)``."""
    tiers: list[tuple[int, str, str, str]] = []
    floor = "0"
    for tier in text.split(","):
        leverage, ratio, cap = tier.split()
        tiers.append((int(leverage), floor, cap, ratio))
        floor = cap
    return tiers


def _spec(
    symbol: str,
    base: str,
    *,
    price_precision: int,
    quantity_precision: int,
    price: tuple[str, str, str],
    lot: tuple[str, str, str],
    market_lot: tuple[str, str, str],
    min_notional: str,
    brackets: list[tuple[int, str, str, str]],
    onboard_date_ms: int,
    sub_type: tuple[str, ...],
) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol,
        base_asset=base,
        quote_asset="USDT",
        margin_asset="USDT",
        price_precision=price_precision,
        quantity_precision=quantity_precision,
        min_price=D(price[0]),
        max_price=D(price[1]),
        tick_size=D(price[2]),
        min_qty=D(lot[0]),
        max_qty=D(lot[1]),
        step_size=D(lot[2]),
        market_min_qty=D(market_lot[0]),
        market_max_qty=D(market_lot[1]),
        market_step_size=D(market_lot[2]),
        min_notional=D(min_notional),
        multiplier_up=D("1.0500"),
        multiplier_down=D("0.9500"),
        multiplier_decimal=4,
        brackets=brackets_from((lev, D(f), D(c), D(m)) for lev, f, c, m in brackets),
        onboard_date_ms=onboard_date_ms,
        underlying_sub_type=sub_type,
    )


#: Binance's published values for the three default symbols (snapshot; see docs/semantics.md).
DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    _spec(
        "BTCUSDT",
        "BTC",
        price_precision=2,
        quantity_precision=3,
        price=("556.80", "4529764", "0.10"),
        lot=("0.001", "1000", "0.001"),
        market_lot=("0.001", "120", "0.001"),
        min_notional="100",
        brackets=_tiers(
            "125 0.004 50000, 100 0.005 600000, 75 0.0065 3000000, 50 0.01 12000000, "
            "25 0.02 70000000, 20 0.025 100000000, 10 0.05 230000000, 5 0.1 480000000, "
            "4 0.125 600000000, 3 0.15 800000000, 2 0.25 1200000000, 1 0.5 1800000000"
        ),
        onboard_date_ms=1569398400000,
        sub_type=("PoW",),
    ),
    _spec(
        "ETHUSDT",
        "ETH",
        price_precision=2,
        quantity_precision=3,
        price=("39.86", "306177", "0.01"),
        lot=("0.001", "10000", "0.001"),
        market_lot=("0.001", "2000", "0.001"),
        min_notional="20",
        brackets=_tiers(
            "125 0.004 50000, 100 0.005 600000, 75 0.0065 3000000, 50 0.01 12000000, "
            "25 0.02 50000000, 20 0.025 65000000, 10 0.05 150000000, 5 0.1 320000000, "
            "4 0.125 400000000, 3 0.15 530000000, 2 0.25 800000000, 1 0.5 1200000000"
        ),
        onboard_date_ms=1569398400000,
        sub_type=("Layer-1",),
    ),
    _spec(
        "BNBUSDT",
        "BNB",
        price_precision=3,
        quantity_precision=2,
        price=("6.600", "100000", "0.010"),
        lot=("0.01", "100000", "0.01"),
        market_lot=("0.01", "2000", "0.01"),
        min_notional="5",
        brackets=_tiers(
            "75 0.005 10000, 50 0.01 50000, 25 0.02 250000, 20 0.025 1000000, "
            "10 0.05 5000000, 5 0.1 10000000, 4 0.125 15000000, 3 0.15 25000000, "
            "2 0.25 50000000, 1 0.5 100000000"
        ),
        onboard_date_ms=1569398400000,
        sub_type=("BNB-Chain",),
    ),
)

#: The leverage an account starts with on every symbol (Binance's default for new accounts).
DEFAULT_LEVERAGE = 20
