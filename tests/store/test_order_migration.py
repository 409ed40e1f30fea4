"""Migrations 10 and 11 on a ledger of version 9, both stores: every UM order gains its
goodTillDate (0), self-trade prevention mode (NONE) and amendment count (0) in place, and the
expiry's index; the orders read back as they were, and a GTD order placed afterwards keeps
both."""

from __future__ import annotations

import time
from decimal import Decimal

from papi_sandbox.market.state import Market
from papi_sandbox.store import trading as trading_store
from papi_sandbox.store import upgrade
from papi_sandbox.store.contract import Store
from papi_sandbox.store.schema import MIGRATIONS
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.model import OrderStatus, OrderType, Side, TimeInForce
from tests.store.migrations_back import back_to, run
from tests.support import adjustment, with_store

# A version-9 ledger's orders: a filled MARKET order and a resting GTC one.
ROWS = [
    "INSERT INTO accounts (id, label, created_ms) VALUES (1, 'old', 5)",
    "INSERT INTO um_orders VALUES (7, 1, 'BTCUSDT', 'c7', 'BUY', 'BOTH', 'MARKET', 'GTC',"
    " '0.01000000', '0.00000000', FALSE, 'FILLED', '0.01000000', '600.00000000',"
    " '60000.00000000', 1, 1)",
    "INSERT INTO um_orders VALUES (8, 1, 'BTCUSDT', 'c8', 'BUY', 'BOTH', 'LIMIT', 'GTC',"
    " '0.01000000', '58000.00000000', FALSE, 'NEW', '0.00000000', '0.00000000',"
    " '0.00000000', 2, 2)",
]


def test_a_version_9_ledger_gains_each_orders_good_till_date_and_stp_mode(store_url: str) -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions[-1] == 11
    upgrade(store_url)
    run(store_url, back_to(9) + ROWS)
    assert upgrade(store_url) == (9, 11)
    assert upgrade(store_url) == (11, 11)

    async def body(store: Store) -> None:
        (resting,) = await store.read(trading_store.open_orders, 1)
        assert (resting.order_id, resting.price, resting.status) == (
            8,
            Decimal(58000),
            OrderStatus.NEW,
        )
        assert (resting.good_till_date_ms, resting.self_trade_prevention_mode) == (0, "NONE")
        assert resting.modify_count == 0
        filled = await store.read(trading_store.find_order, 1, "BTCUSDT", 7, None)
        assert filled is not None and filled.good_till_date_ms == 0
        # a GTD order placed on the upgraded ledger keeps both (whole seconds)
        market = Market()
        await store.write(trading_store.ensure_markets, market.initial_prices())
        await store.transact(1, "DEPOSIT", adjustment(1, "10000"))
        now = time.time_ns() // 1_000_000
        sent = now + 3_600_123
        request = OrderRequest(
            "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.010"), Decimal(58000),
            TimeInForce.GTD, None, None, "gtd", sent, "EXPIRE_BOTH",
        )  # fmt: skip
        order, _ = await store.write(
            trading_store.place_order, 1, request, market.specs, market.config.collateral_rates, now
        )
        assert order.status is OrderStatus.NEW
        again = await store.read(trading_store.find_order, 1, "BTCUSDT", order.order_id, None)
        assert again is not None
        assert (again.good_till_date_ms, again.self_trade_prevention_mode) == (
            sent - sent % 1000,
            "EXPIRE_BOTH",
        )

    with_store(store_url, body)
