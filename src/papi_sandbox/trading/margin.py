"""Margin arithmetic (pure): per-position initial and maintenance margin, and the account's
Portfolio Margin figures (equity, uniMMR, status, available balance) from real positions and
prices. Every formula is stated in docs/semantics.md ("Margin"); in short:

- notional = positionAmt × markPrice; positionInitialMargin = |notional| / leverage;
  maintMargin = |notional| × maintMarginRatio − cum, with the bracket of |notional|;
- openOrderInitialMargin = Σ over open, not reduce-only orders of
  (origQty − executedQty) × price / leverage;
- an asset's value in USD: USDT at 1, any other asset at the index price of ``<asset>USDT``
  when the market has that symbol, otherwise 0;
- actualEquity = Σ value(totalWalletBalance + umUnrealizedPNL);
  accountEquity = the same with each positive amount times its collateral rate;
- uniMMR = accountEquity / accountMaintMargin (Binance's FAQ), 999999 without maintenance margin;
- totalAvailableBalance = accountEquity − accountInitialMargin;
- virtualMaxWithdrawAmount = min(USDT crossMarginFree, max(0, totalAvailableBalance)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from papi_sandbox.ledger.model import AccountBalances
from papi_sandbox.market.prices import MarketPrice
from papi_sandbox.market.symbols import DEFAULT_LEVERAGE, SymbolSpec
from papi_sandbox.trading.model import ZERO, Order, Position, TradingSettings
from papi_sandbox.trading.positions import (
    _WIDE,
    break_even_price,
    notional,
    round_half_even,
    unrealized_pnl,
)

#: uniMMR when the maintenance margin is zero (the ratio is unbounded).
UNI_MMR_WITHOUT_MARGIN = Decimal("999999")
#: uniMMR thresholds of the account status (the sandbox's; see docs/semantics.md).
MARGIN_CALL_BELOW = Decimal("1.5")
REDUCE_ONLY_BELOW = Decimal("1.2")
LIQUIDATION_BELOW = Decimal("1.05")
VALUATION_ASSET = "USDT"


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the margin and trading rules know of the market: filters, prices, collateral."""

    specs: Mapping[str, SymbolSpec]
    prices: Mapping[str, MarketPrice]
    collateral_rates: Mapping[str, Decimal]

    def asset_price(self, asset: str) -> Decimal:
        if asset == VALUATION_ASSET:
            return Decimal(1)
        price = self.prices.get(f"{asset}{VALUATION_ASSET}")
        return price.index_price if price is not None else ZERO


def leverage_of(settings: TradingSettings, symbol: str) -> int:
    return settings.leverage.get(symbol, DEFAULT_LEVERAGE)


@dataclass(frozen=True, slots=True)
class PositionFigures:
    """One position valued at its symbol's mark price."""

    position: Position
    mark_price: Decimal
    leverage: int
    notional: Decimal  # signed
    unrealized_pnl: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    max_notional: Decimal
    break_even_price: Decimal


def position_figures(
    position: Position, spec: SymbolSpec, mark: Decimal, settings: TradingSettings
) -> PositionFigures:
    leverage = leverage_of(settings, position.symbol)
    value = notional(position, mark)
    size = abs(value)
    bracket = spec.bracket_for(size)
    maint_raw = _WIDE.multiply(size, bracket.maint_margin_ratio) - bracket.cum
    maint = max(ZERO, round_half_even(maint_raw))
    return PositionFigures(
        position=position,
        mark_price=mark,
        leverage=leverage,
        notional=value,
        unrealized_pnl=unrealized_pnl(position, mark),
        initial_margin=round_half_even(_WIDE.divide(size, leverage)),
        maint_margin=maint if size else ZERO,
        max_notional=spec.max_notional(leverage),
        break_even_price=break_even_price(position, settings.taker_rate),
    )


def order_initial_margin(order: Order, settings: TradingSettings) -> Decimal:
    """The initial margin an open order holds: its unfilled notional at its price over the
    symbol's leverage (reduce-only orders hold none)."""
    if order.reduce_only or not order.status.is_open:
        return ZERO
    remaining = order.orig_qty - order.executed_qty
    return round_half_even(
        _WIDE.divide(_WIDE.multiply(remaining, order.price), leverage_of(settings, order.symbol))
    )


@dataclass(frozen=True, slots=True)
class AssetMargin:
    """The UM figures of one margin asset (``GET /papi/v1/um/account`` ``assets``)."""

    asset: str
    unrealized_pnl: Decimal = ZERO
    position_initial_margin: Decimal = ZERO
    open_order_initial_margin: Decimal = ZERO
    maint_margin: Decimal = ZERO

    @property
    def initial_margin(self) -> Decimal:
        return self.position_initial_margin + self.open_order_initial_margin


@dataclass(frozen=True, slots=True)
class MarginSummary:
    """The account's Portfolio Margin figures (``GET /papi/v1/account``), in USD."""

    account_equity: Decimal
    actual_equity: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    uni_mmr: Decimal
    status: str
    total_available: Decimal
    virtual_max_withdraw: Decimal
    positions: tuple[PositionFigures, ...]
    assets: Mapping[str, AssetMargin] = field(default_factory=dict)

    def um_unrealized(self, asset: str) -> Decimal:
        figures = self.assets.get(asset)
        return figures.unrealized_pnl if figures is not None else ZERO


def summarize(
    balances: AccountBalances,
    positions: Iterable[Position],
    open_orders: Iterable[Order],
    settings: TradingSettings,
    market: MarketView,
) -> MarginSummary:
    """The account's margin figures from its balances, positions, open orders and the market."""
    assets, figures = _asset_margins(positions, open_orders, settings, market)
    actual, account, margin_free_usd, negative_total = _equity(balances, assets, market)
    initial = sum(
        (_WIDE.multiply(m.initial_margin, market.asset_price(a)) for a, m in assets.items()), ZERO
    )
    maint = sum(
        (_WIDE.multiply(m.maint_margin, market.asset_price(a)) for a, m in assets.items()), ZERO
    )
    account_equity = round_half_even(account)
    initial = round_half_even(initial)
    maint = round_half_even(maint)
    uni_mmr = (
        UNI_MMR_WITHOUT_MARGIN
        if maint == 0
        else round_half_even(_WIDE.divide(account_equity, maint))
    )
    available = account_equity - initial
    return MarginSummary(
        account_equity=account_equity,
        actual_equity=round_half_even(actual),
        initial_margin=initial,
        maint_margin=maint,
        uni_mmr=uni_mmr,
        status=account_status(uni_mmr, negative_total),
        total_available=available,
        virtual_max_withdraw=min(margin_free_usd, max(ZERO, available)),
        positions=tuple(figures),
        assets=assets,
    )


def _asset_margins(
    positions: Iterable[Position],
    open_orders: Iterable[Order],
    settings: TradingSettings,
    market: MarketView,
) -> tuple[dict[str, AssetMargin], list[PositionFigures]]:
    """Per margin asset, the positions' and open orders' margins and unrealized PnL; and each
    open position's figures (positions without a market or a mark price are left out)."""
    assets: dict[str, AssetMargin] = {}
    figures: list[PositionFigures] = []
    for position in positions:
        spec = market.specs.get(position.symbol)
        price = market.prices.get(position.symbol)
        if spec is None or price is None or not position.amount:
            continue
        figure = position_figures(position, spec, price.mark_price, settings)
        figures.append(figure)
        current = assets.get(spec.margin_asset, AssetMargin(spec.margin_asset))
        assets[spec.margin_asset] = AssetMargin(
            spec.margin_asset,
            current.unrealized_pnl + figure.unrealized_pnl,
            current.position_initial_margin + figure.initial_margin,
            current.open_order_initial_margin,
            current.maint_margin + figure.maint_margin,
        )
    for order in open_orders:
        spec = market.specs.get(order.symbol)
        if spec is None:
            continue
        current = assets.get(spec.margin_asset, AssetMargin(spec.margin_asset))
        assets[spec.margin_asset] = AssetMargin(
            spec.margin_asset,
            current.unrealized_pnl,
            current.position_initial_margin,
            current.open_order_initial_margin + order_initial_margin(order, settings),
            current.maint_margin,
        )
    return assets, figures


def _equity(
    balances: AccountBalances, assets: Mapping[str, AssetMargin], market: MarketView
) -> tuple[Decimal, Decimal, Decimal, bool]:
    """(actual equity, account equity (collateral rates applied), MARGIN free of the valuation
    asset, whether some asset's total wallet balance is negative), in USD, unrounded."""
    actual = account = ZERO
    margin_free_usd = ZERO
    negative_total = False
    for row in balances.rows():
        asset_usd = market.asset_price(row.asset)
        figures_of_asset = assets.get(row.asset)
        upnl = figures_of_asset.unrealized_pnl if figures_of_asset else ZERO
        amount = row.total_wallet_balance + upnl
        negative_total = negative_total or row.total_wallet_balance < 0
        value = _WIDE.multiply(amount, asset_usd)
        actual += value
        rate = market.collateral_rates.get(row.asset, ZERO) if amount > 0 else Decimal(1)
        account += _WIDE.multiply(value, rate)
        if row.asset == VALUATION_ASSET:
            margin_free_usd = row.margin_free
    # Unrealized PnL in an asset the account holds no balance row of still counts.
    for asset, margin in assets.items():
        if asset not in balances.assets():
            value = _WIDE.multiply(margin.unrealized_pnl, market.asset_price(asset))
            actual += value
            rate = market.collateral_rates.get(asset, ZERO) if value > 0 else Decimal(1)
            account += _WIDE.multiply(value, rate)
    return actual, account, margin_free_usd, negative_total


def account_status(uni_mmr: Decimal, negative_total: bool) -> str:
    """Binance's ``accountStatus`` from uniMMR (thresholds: docs/semantics.md); MARGIN_CALL too
    while some asset's total wallet balance is negative."""
    if uni_mmr < LIQUIDATION_BELOW:
        return "ACTIVE_LIQUIDATION"
    if uni_mmr < REDUCE_ONLY_BELOW:
        return "REDUCE_ONLY"
    if uni_mmr < MARGIN_CALL_BELOW or negative_total:
        return "MARGIN_CALL"
    return "NORMAL"
