"""The pure trading rules (trading/, market/): filters, the fill model, position arithmetic,
commission, funding and margin, as tables of cases and hypothesis invariants. No I/O."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papi_sandbox.ledger.model import AccountBalances, Wallet, is_balanced
from papi_sandbox.market.config import MarketConfig, MarketConfigError, parse_market
from papi_sandbox.market.prices import (
    MarketPrice,
    next_funding_time,
)
from papi_sandbox.market.symbols import DEFAULT_SYMBOLS
from papi_sandbox.trading.engine import (
    MAX_ORDER_MODIFICATIONS,
    AccountBook,
    Amendment,
    IdBlock,
    expire_due,
    fill_crossed,
    funding_fee,
    modify_order,
    place_order,
    plan_funding,
)
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.margin import MarketView, summarize
from papi_sandbox.trading.model import (
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    Refusal,
    Side,
    TimeInForce,
    TradingRefused,
    TradingSettings,
)
from papi_sandbox.trading.positions import apply_fill, break_even_price, commission, flat

SPECS = {s.symbol: s for s in DEFAULT_SYMBOLS}


def market(**marks: str) -> MarketView:
    prices = {"BTCUSDT": "60000", "ETHUSDT": "3000", "BNBUSDT": "600"} | marks
    return MarketView(
        SPECS,
        {s: MarketPrice(s, D(p), D(p), D("0.0001"), 0) for s, p in prices.items()},
        MarketConfig().collateral_rates,
    )


def book(usdt: str = "10000", **settings: object) -> AccountBook:
    balances = AccountBalances({(Wallet.MARGIN, "USDT"): D(usdt)})
    return AccountBook(1, TradingSettings(**settings), balances)  # type: ignore[arg-type]


def order(
    side: str = "BUY",
    type_: str = "MARKET",
    qty: str | None = "0.010",
    price: str | None = None,
    tif: str | None = None,
    reduce_only: bool | None = None,
    symbol: str = "BTCUSDT",
    position_side: str | None = None,
    client_id: str | None = None,
) -> OrderRequest:
    return OrderRequest(
        symbol,
        Side(side),
        OrderType(type_),
        D(qty) if qty is not None else None,
        D(price) if price is not None else None,
        TimeInForce(tif) if tif else None,
        reduce_only,
        position_side,
        client_id,
    )


def place(b: AccountBook, request: OrderRequest, m: MarketView | None = None, ids=None):  # type: ignore[no-untyped-def]
    return place_order(b, m or market(), request, ids or IdBlock.counting(), 1_000)


# -- the story of the issue, in the pure rules ---------------------------------------------------


def test_story_numbers() -> None:
    b = book()
    commit, filled = place(b, order())
    assert filled.status is OrderStatus.FILLED and filled.avg_price == 60000
    assert [(x.type, x.income) for x in commit.bookings] == [("COMMISSION", D("-0.30"))]
    assert all(is_balanced(x.postings) for x in commit.bookings)
    b.balances.amounts[(Wallet.UM, "USDT")] = D("-0.30")
    summary = summarize(b.balances, b.positions.values(), [], b.settings, market(BTCUSDT="49000"))
    assert summary.um_unrealized("USDT") == D("-110")
    commit, closed = place(b, order("SELL", reduce_only=True), market(BTCUSDT="49000"))
    assert closed.status is OrderStatus.FILLED
    assert [(x.type, x.income) for x in commit.bookings] == [
        ("REALIZED_PNL", D("-110")),
        ("COMMISSION", D("-0.245")),
    ]
    assert commit.trades[0].realized_pnl == D("-110") and commit.positions[0].amount == 0


# -- filters: each Binance reason --------------------------------------------------------------

FILTER_CASES = [
    (order(qty="0.0101"), Refusal.BAD_PRECISION),
    (order(qty="0"), Refusal.QTY_NOT_POSITIVE),
    (order(qty="121"), Refusal.QTY_ABOVE_MAX),  # MARKET_LOT_SIZE max 120
    (order(qty="0.001"), Refusal.MIN_NOTIONAL),  # 60 < 100
    (order(type_="LIMIT", price="60000.001", tif="GTC"), Refusal.BAD_PRECISION),
    (order(type_="LIMIT", price="60000.15", tif="GTC"), Refusal.PRICE_NOT_TICK),
    (order(type_="LIMIT", price="500", tif="GTC"), Refusal.PRICE_BELOW_MIN),
    (order(type_="LIMIT", price="63000.1", tif="GTC"), Refusal.PRICE_ABOVE_MULTIPLIER),
    (order(type_="LIMIT", price="56999.9", tif="GTC"), Refusal.PRICE_BELOW_MULTIPLIER),
    (order(type_="LIMIT", price="60000", tif=None), Refusal.MANDATORY_MISSING),
    (order(type_="LIMIT", price=None, tif="GTC"), Refusal.MANDATORY_MISSING),
    (order(type_="LIMIT", price="60000", tif="GTD"), Refusal.MANDATORY_MISSING),  # goodTillDate
    (order(price="60000"), Refusal.NOT_REQUIRED),
    (order(qty=None), Refusal.MANDATORY_MISSING),
    (order(symbol="DOGEUSDT"), Refusal.INVALID_SYMBOL),
    (order(client_id="bad id!"), Refusal.INVALID_CLIENT_ORDER_ID),
    (order(position_side="LONG"), Refusal.POSITION_SIDE_MISMATCH),
    (order("SELL", reduce_only=True), Refusal.REDUCE_ONLY_REJECTED),
    (order(qty="4.000"), Refusal.MARGIN_INSUFFICIENT),  # 240,000 / 20 > 10,000
    (order(type_="LIMIT", price="59000", tif="FOK"), Refusal.FOK_REJECTED),
    (order(type_="LIMIT", price="61000", tif="GTX"), Refusal.GTX_REJECTED),
    (
        order(type_="LIMIT", price="600.0001", qty="1", tif="GTC", symbol="BNBUSDT"),
        Refusal.BAD_PRECISION,
    ),
    (order(qty="0.015", symbol="BNBUSDT"), Refusal.BAD_PRECISION),
    (order(type_="LIMIT", price="60000", qty="0.0015", tif="GTC"), Refusal.BAD_PRECISION),
]


@pytest.mark.parametrize(("request_", "reason"), FILTER_CASES)
def test_refusals(request_: OrderRequest, reason: Refusal) -> None:
    with pytest.raises(TradingRefused) as caught:
        place(book(), request_)
    assert caught.value.reason is reason


def test_reduce_only_orders_are_exempt_from_min_notional() -> None:
    b = book()
    place(b, order(qty="0.002", type_="LIMIT", price="60000", tif="GTC"))  # 120 >= 100
    b2 = book()
    place(b2, order(qty="0.010"))
    _, done = place(b2, order("SELL", qty="0.001", reduce_only=True))
    assert done.status is OrderStatus.FILLED


# -- the fill model ----------------------------------------------------------------------------

FILL_CASES = [
    # (side, price, tif, expected status, filled at)
    ("BUY", "61000", "GTC", OrderStatus.FILLED, D("60000")),  # marketable: at the mark, taker
    ("BUY", "59000", "GTC", OrderStatus.NEW, None),  # rests
    ("BUY", "59000", "GTX", OrderStatus.NEW, None),  # post only rests
    ("BUY", "59000", "IOC", OrderStatus.EXPIRED, None),
    ("BUY", "60000", "IOC", OrderStatus.FILLED, D("60000")),
    ("SELL", "59000", "FOK", OrderStatus.FILLED, D("60000")),
    ("SELL", "61000", "GTC", OrderStatus.NEW, None),
]


@pytest.mark.parametrize(("side", "price", "tif", "status", "at"), FILL_CASES)
def test_fill_model_on_arrival(
    side: str, price: str, tif: str, status: OrderStatus, at: D | None
) -> None:
    commit, result = place(book(), order(side, "LIMIT", "0.010", price, tif))
    assert result.status is status
    if at is None:
        assert not commit.trades
    else:
        assert commit.trades[0].price == at and not commit.trades[0].maker


def test_resting_orders_fill_at_their_price_as_maker_when_the_mark_crosses() -> None:
    b = book()
    ids = IdBlock.counting()
    place(b, order("BUY", "LIMIT", "0.010", "59000", "GTC"), ids=ids)
    place(b, order("BUY", "LIMIT", "0.010", "58000", "GTC"), ids=ids)
    assert fill_crossed(b, market(BTCUSDT="59500"), "BTCUSDT", ids, 2_000).empty
    commit = fill_crossed(b, market(BTCUSDT="58500"), "BTCUSDT", ids, 2_000)
    assert [(t.order_id, t.price, t.maker) for t in commit.trades] == [(1, D("59000"), True)]
    assert commit.bookings[0].income == -commission(D("590"), D("0.0002")) == D("-0.118")
    assert [o.order_id for o in b.open_orders] == [2]
    commit = fill_crossed(b, market(BTCUSDT="50000"), "BTCUSDT", ids, 3_000)
    assert [t.price for t in commit.trades] == [D("58000")]
    assert b.positions[("BTCUSDT", PositionSide.BOTH)].entry_price == D("58500")


def test_reduce_only_fill_is_clipped_to_the_position_and_the_rest_expires() -> None:
    b = book()
    place(b, order(qty="0.010"))
    _, result = place(b, order("SELL", qty="0.020", reduce_only=True))
    assert result.status is OrderStatus.EXPIRED and result.executed_qty == D("0.010")


NOW = 1_000  # place()'s time (ms)


def gtd(good_till: int, price: str = "58000") -> OrderRequest:
    request = order(type_="LIMIT", price=price, tif="GTD")
    return dataclasses.replace(request, good_till_date_ms=good_till)


@pytest.mark.parametrize(
    ("good_till", "kept"),
    [
        (None, Refusal.MANDATORY_MISSING),
        (NOW + 600_000, Refusal.INVALID_GOOD_TILL_DATE),
        (NOW + 600_999, Refusal.INVALID_GOOD_TILL_DATE),  # kept as NOW + 600_000: not after
        (NOW + 601_000, NOW + 601_000),
        (NOW + 601_999, NOW + 601_000),  # whole seconds
        (253_402_300_798_999, 253_402_300_798_000),
        (253_402_300_799_000, Refusal.INVALID_GOOD_TILL_DATE),
    ],
)
def test_good_till_date_bounds(good_till: int | None, kept: int | Refusal) -> None:
    if isinstance(kept, Refusal):
        with pytest.raises(TradingRefused) as refused:
            place(book(), gtd(good_till))  # type: ignore[arg-type]
        assert refused.value.reason is kept
        return
    _commit, placed = place(book(), gtd(good_till))  # type: ignore[arg-type]
    assert (placed.status, placed.good_till_date_ms) == (OrderStatus.NEW, kept)


def test_good_till_date_is_kept_only_with_gtd() -> None:
    request = dataclasses.replace(
        order(type_="LIMIT", price="58000", tif="GTC"), good_till_date_ms=5
    )
    _commit, placed = place(book(), request)
    assert placed.good_till_date_ms == 0


def test_a_resting_gtd_order_expires_at_its_good_till_date_and_frees_its_margin() -> None:
    b = book()
    ids = IdBlock.counting()
    _c, soon = place(b, gtd(NOW + 700_000), ids=ids)
    _c, later = place(b, gtd(NOW + 900_000), ids=ids)
    _c, gtc = place(b, order(type_="LIMIT", price="58000", tif="GTC"), ids=ids)
    _c, taken = place(b, gtd(NOW + 700_000, price="61000"), ids=ids)
    assert taken.status is OrderStatus.FILLED  # a marketable GTD order fills on arrival
    held = summarize(b.balances, b.positions.values(), b.open_orders, b.settings, market())
    assert expire_due(b, NOW + 699_999, 2_000).orders == []
    commit = expire_due(b, NOW + 700_000, 2_000)
    assert [(o.order_id, o.status, o.update_time_ms) for o in commit.orders] == [
        (soon.order_id, OrderStatus.EXPIRED, 2_000)
    ]
    assert commit.bookings == [] and commit.trades == []
    assert [o.order_id for o in b.open_orders] == [later.order_id, gtc.order_id]
    freed = summarize(b.balances, b.positions.values(), b.open_orders, b.settings, market())
    assert held.initial_margin - freed.initial_margin == D(29)  # 58000 × 0.010 / 20
    assert expire_due(b, NOW + 700_000, 3_000).orders == []  # once


def test_hedge_mode_sides() -> None:
    b = book(dual_side=True)
    with pytest.raises(TradingRefused) as caught:
        place(b, order())
    assert caught.value.reason is Refusal.POSITION_SIDE_MISMATCH
    with pytest.raises(TradingRefused) as caught:
        place(b, order(position_side="LONG", reduce_only=False))
    assert caught.value.reason is Refusal.NOT_REQUIRED
    place(b, order(position_side="LONG"))
    place(b, order("SELL", position_side="SHORT"))
    assert b.positions[("BTCUSDT", PositionSide.LONG)].amount == D("0.010")
    assert b.positions[("BTCUSDT", PositionSide.SHORT)].amount == D("-0.010")
    # a close (SELL LONG, BUY SHORT) for more than its position is refused whole: -2022
    for side, position_side in (("SELL", "LONG"), ("BUY", "SHORT")):
        with pytest.raises(TradingRefused) as caught:
            place(b, order(side, qty="0.011", position_side=position_side))
        assert caught.value.reason is Refusal.REDUCE_ONLY_REJECTED
    _, closed = place(b, order("SELL", qty="0.010", position_side="LONG"))
    assert (closed.status, b.positions[("BTCUSDT", PositionSide.LONG)].amount) == (
        OrderStatus.FILLED,
        D("0"),
    )


# -- position arithmetic -----------------------------------------------------------------------

POSITION_CASES = [
    # (start amount, entry, side, qty, price) -> (amount, entry, realized)
    ("0", "0", "BUY", "1", "100", "1", "100", "0"),
    ("1", "100", "BUY", "1", "200", "2", "150", "0"),
    ("2", "150", "SELL", "1", "180", "1", "150", "30"),
    ("1", "150", "SELL", "3", "120", "-2", "120", "-30"),  # flips
    ("-2", "120", "BUY", "2", "100", "0", "0", "40"),
    ("0.003", "100", "BUY", "0.007", "101.1", "0.010", "100.77", "0"),
]


@pytest.mark.parametrize(
    ("amount", "entry", "side", "qty", "price", "a2", "e2", "pnl"), POSITION_CASES
)
def test_position_arithmetic(
    amount: str, entry: str, side: str, qty: str, price: str, a2: str, e2: str, pnl: str
) -> None:
    start = Position(1, "BTCUSDT", PositionSide.BOTH, D(amount), D(entry), D(0), 0)
    effect = apply_fill(start, Side(side), D(qty), D(price), D(0), 1)
    assert (effect.position.amount, effect.position.entry_price, effect.realized_pnl) == (
        D(a2),
        D(e2),
        D(pnl),
    )


def test_break_even_price_covers_both_fees() -> None:
    long = Position(1, "BTCUSDT", PositionSide.BOTH, D("0.010"), D("60000"), D("0.30"), 0)
    bep = break_even_price(long, D("0.0005"))
    # Closing at the break-even price as taker leaves zero: 0.01·(bep − 60000) − 0.30 − fee.
    total = D("0.010") * (bep - 60000) - D("0.30") - D("0.010") * bep * D("0.0005")
    assert abs(total) < D("0.00000001")
    assert break_even_price(flat(1, "BTCUSDT", PositionSide.BOTH), D("0.0005")) == 0


amounts = st.decimals(min_value=D("0.001"), max_value=D("5"), places=3)
prices = st.decimals(min_value=D("1000"), max_value=D("100000"), places=1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), amounts, prices), max_size=12), prices)
def test_pnl_is_conserved(fills: list[tuple[str, D, D]], close_at: D) -> None:
    """Realized PnL of every fill plus the unrealized PnL left equals the cash flow of the
    trades marked at ``close_at``, up to the 8-digit rounding of each step."""
    position = flat(1, "BTCUSDT", PositionSide.BOTH)
    realized = D(0)
    cash = D(0)
    for side, qty, price in fills:
        effect = apply_fill(position, Side(side), qty, price, D(0), 1)
        realized += effect.realized_pnl
        cash += -qty * price if side == "BUY" else qty * price
        position = effect.position
    unrealized = position.amount * (close_at - position.entry_price)
    exact = cash + position.amount * close_at
    tolerance = D("0.0000001") * (len(fills) + 1) * (abs(position.amount) + 1) * 100
    assert abs(realized + unrealized - exact) <= tolerance


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), amounts), min_size=1, max_size=8))
def test_every_commit_is_balanced(steps: list[tuple[str, D]]) -> None:
    b = book(usdt="100000000")
    ids = IdBlock.counting()
    for side, qty in steps:
        try:
            commit, _ = place(b, order(side, qty=f"{qty:f}"), ids=ids)
        except TradingRefused as refused:
            assert refused.reason is Refusal.MIN_NOTIONAL
            continue
        assert all(is_balanced(x.postings) for x in commit.bookings)
        assert all(x.postings[0].amount == x.income for x in commit.bookings)


# -- funding -------------------------------------------------------------------------------------


def test_funding_longs_pay_shorts_receive() -> None:
    long = Position(1, "BTCUSDT", PositionSide.BOTH, D("0.010"), D("60000"), D(0), 0)
    short = Position(1, "BTCUSDT", PositionSide.BOTH, D("-0.010"), D("60000"), D(0), 0)
    assert funding_fee(long, D("50000"), D("0.0001")) == D("-0.05")
    assert funding_fee(short, D("50000"), D("0.0001")) == D("0.05")
    assert funding_fee(long, D("50000"), D("-0.0001")) == D("0.05")
    b = book()
    b.positions[("BTCUSDT", PositionSide.BOTH)] = long
    commit = plan_funding(b, market(BTCUSDT="50000"))
    assert [(x.type, x.income, x.symbol) for x in commit.bookings] == [
        ("FUNDING_FEE", D("-0.05"), "BTCUSDT")
    ]


@pytest.mark.parametrize(
    ("now", "slot", "following"),
    [
        (0, 0, 8 * 3_600_000),
        (1, 0, 8 * 3_600_000),
        (8 * 3_600_000, 8 * 3_600_000, 16 * 3_600_000),
        (23 * 3_600_000, 16 * 3_600_000, 24 * 3_600_000),
        (86_400_000 + 1, 86_400_000, 86_400_000 + 8 * 3_600_000),
    ],
)
def test_funding_clock(now: int, slot: int, following: int) -> None:
    assert next_funding_time(now) == following


# -- margin --------------------------------------------------------------------------------------


def test_margin_figures_of_an_open_position() -> None:
    b = book()
    place(b, order())
    b.balances.amounts[(Wallet.UM, "USDT")] = D("-0.30")
    s = summarize(b.balances, b.positions.values(), [], b.settings, market(BTCUSDT="49000"))
    # equity = 10,000 − 0.30 − 110; IM = 490 / 20; MM = 490 × 0.004 − 0 (bracket 1)
    assert (s.account_equity, s.initial_margin, s.maint_margin) == (
        D("9889.70"),
        D("24.50"),
        D("1.96"),
    )
    assert s.uni_mmr == (D("9889.70") / D("1.96")).quantize(D("0.00000001"))
    assert s.total_available == D("9865.20") and s.status == "NORMAL"


def test_collateral_rate_applies_to_positive_non_usdt_assets() -> None:
    balances = AccountBalances({(Wallet.MARGIN, "BTC"): D("1"), (Wallet.UM, "USDT"): D("-100")})
    s = summarize(balances, [], [], TradingSettings(), market())
    assert s.actual_equity == D("59900") and s.account_equity == D("56900")  # 60000 × 0.95 − 100


def test_open_orders_hold_initial_margin() -> None:
    b = book()
    place(b, order(type_="LIMIT", price="59000", tif="GTC"))
    s = summarize(b.balances, [], b.open_orders, b.settings, market())
    assert s.initial_margin == D("29.5")  # 0.010 × 59,000 / 20


def test_brackets_cum_is_continuous() -> None:
    for spec in DEFAULT_SYMBOLS:
        for low, high in zip(spec.brackets, spec.brackets[1:], strict=False):
            at = high.notional_floor
            assert at * low.maint_margin_ratio - low.cum == at * high.maint_margin_ratio - high.cum
    assert SPECS["BTCUSDT"].brackets[1].cum == 50
    assert SPECS["BTCUSDT"].max_notional(20) == D("100000000")


# -- market configuration ------------------------------------------------------------------------


def test_market_config_changes_and_adds_symbols() -> None:
    config = parse_market(
        {
            "collateral_rates": {"SOL": "0.9"},
            "symbols": {
                "BTCUSDT": {"mark_price": "50000", "min_notional": "5", "funding_rate": "-0.0002"},
                "SOLUSDT": {
                    "base_asset": "SOL",
                    "mark_price": "150",
                    "min_price": "0.42",
                    "max_price": "6857",
                    "tick_size": "0.01",
                    "min_qty": "1",
                    "max_qty": "1000000",
                    "step_size": "1",
                    "market_min_qty": "1",
                    "market_max_qty": "5000",
                    "market_step_size": "1",
                    "min_notional": "5",
                    "multiplier_up": "1.05",
                    "multiplier_down": "0.95",
                    "brackets": [[50, "0", "5000", "0.01"], [25, "5000", "25000", "0.02"]],
                },
            },
        }
    )
    assert config.spec("BTCUSDT").min_notional == 5  # type: ignore[union-attr]
    assert config.initial_marks["BTCUSDT"] == 50000
    assert config.funding_rate("BTCUSDT") == D("-0.0002")
    sol = config.spec("SOLUSDT")
    assert sol is not None and sol.price_precision == 2 and sol.brackets[1].cum == 50
    assert "SOL" in config.assets() and config.collateral_rates["SOL"] == D("0.9")


@pytest.mark.parametrize(
    "bad",
    [
        {"nope": 1},
        {"symbols": {"BTCUSDT": {"tick_size": "-1"}}},
        {"symbols": {"BTCUSDT": {"tick_size": 0.1}}},  # a float is refused
        {"symbols": {"BTCUSDT": {"min_notional": "١٠٠"}}},  # Unicode digits are refused
        {"symbols": {"NEWUSDT": {"mark_price": "1"}}},  # a new symbol needs its filters
        {"symbols": {"BTCUSDT": {"brackets": [[125, "0", "10", "0.1"], [100, "20", "30", "0.2"]]}}},
        {"collateral_rates": {"BTC": "1.5"}},
        {"feed": {"kind": "replay", "symbols": ["BTCUSDT"]}},
        {"feed": {"kind": "random_walk", "symbols": ["XYZ"]}},
    ],
)
def test_market_config_refuses(bad: dict[str, object]) -> None:
    with pytest.raises(MarketConfigError):
        parse_market(bad)


# -- the price feed --------------------------------------------------------------------------------


def test_random_walk_is_seeded_on_tick_and_bounded() -> None:
    from itertools import islice

    from papi_sandbox.market.feed import random_walk

    spec = SPECS["BTCUSDT"]
    first = list(islice(random_walk(D("60000"), spec, D("0.01"), 7), 200))
    assert first == list(islice(random_walk(D("60000"), spec, D("0.01"), 7), 200))
    assert first != list(islice(random_walk(D("60000"), spec, D("0.01"), 8), 200))
    previous = D("60000")
    for price in first:
        assert price % spec.tick_size == 0
        assert abs(price - previous) <= previous * D("0.01") + spec.tick_size
        previous = price


def test_replay_file_is_read_strictly(tmp_path: Path) -> None:
    from papi_sandbox.market.feed import read_replay

    good = tmp_path / "good.csv"
    good.write_text("time,price\n0,60000\n1000,60100.5\n\n2000,59900\n")
    assert read_replay(good) == [(0, D("60000")), (1000, D("60100.5")), (2000, D("59900"))]
    for body in ("0,abc\n", "0,1e5\n", "5,1\n1,2\n", "1,5\nx2,5\n", "0,-5\n", "0,١٠\n"):
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        with pytest.raises(MarketConfigError):
            read_replay(bad)


def test_the_amendment_past_the_limit_cancels_the_order() -> None:
    """Modify UM Order: fewer than MAX_ORDER_MODIFICATIONS amendments per order; the one that
    would reach it cancels the order (Binance's doc lists it among the cancelling cases)."""
    b = book()
    _, placed = place(b, order("BUY", "LIMIT", price="58000", tif="GTC"))
    amendment = Amendment("BTCUSDT", placed.order_id, None, Side.BUY, D("0.020"), D("58500"))
    _, amended = modify_order(b, market(), amendment, IdBlock.counting(), 2_000)
    assert (amended.status, amended.modify_count, amended.price) == (
        OrderStatus.NEW,
        1,
        D("58500"),
    )
    (held,) = b.open_orders
    b.open_orders = [dataclasses.replace(held, modify_count=MAX_ORDER_MODIFICATIONS - 1)]
    again = dataclasses.replace(amendment, price=D("59000"))
    commit, cancelled = modify_order(b, market(), again, IdBlock.counting(), 3_000)
    assert (cancelled.status, cancelled.price) == (OrderStatus.CANCELED, D("58500"))
    assert b.open_orders == [] and commit.bookings == [] and commit.amended is None
