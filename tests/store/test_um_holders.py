"""``umUnrealizedPNL`` (papi_sandbox.trading_service.Trading.unrealized) right after this process's
own fill, before its PostgreSQL listener has heard of the commit: the listener is held until the
reads are done, so the late notification is certain instead of hoped for."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from papi_sandbox.ledger.model import EntryType, Wallet
from papi_sandbox.market.state import Market
from papi_sandbox.store.postgres import PostgresStore
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.model import OrderType, Side, TimeInForce
from papi_sandbox.trading_service import Trading
from tests.support import adjustment, create_test_database, drop_test_database, postgres_admin_url


def _order(side: Side, kind: OrderType, price: str | None = None) -> OrderRequest:
    return OrderRequest(
        symbol="BTCUSDT",
        side=side,
        type=kind,
        quantity=Decimal("0.010"),
        price=Decimal(price) if price else None,
        time_in_force=TimeInForce.GTC if price else None,
        reduce_only=None,
        position_side=None,
        client_order_id=None,
    )


def test_own_fills_count_before_the_listener_hears_of_them() -> None:
    admin = postgres_admin_url()
    url = create_test_database(admin)

    async def scenario() -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        store = PostgresStore(url)
        trading = Trading(store, Market())
        store.on_commit(trading.note_commits)
        gate = asyncio.Event()
        announced = store._announced

        async def held(payload: str) -> None:  # a listener that lags until the gate opens
            await gate.wait()
            await announced(payload)

        store._announced = held  # type: ignore[method-assign]
        await store.open()
        try:
            await trading.open()
            await asyncio.wait_for(store.listening.wait(), 10)
            maker = await store.create_account("maker", None)
            taker = await store.create_account("taker", None)
            for account in (maker, taker):
                deposit = adjustment(account, "10000", Wallet.MARGIN, reason=EntryType.DEPOSIT)
                await store.transact(account, EntryType.DEPOSIT, deposit)
            await trading.set_price("BTCUSDT", Decimal("60000"))
            await trading.place_order(maker, _order(Side.BUY, OrderType.LIMIT, "58000"))
            await trading.place_order(taker, _order(Side.BUY, OrderType.MARKET))
            await trading.set_price("BTCUSDT", Decimal("57000"))  # fills the maker at 58,000
            return await trading.unrealized(maker), await trading.unrealized(taker)
        finally:
            gate.set()
            await store.close()

    try:
        maker, taker = asyncio.run(scenario())
    finally:
        drop_test_database(admin, url)
    assert maker == {"USDT": Decimal("-10")}  # 0.01 × (57,000 − 58,000)
    assert taker == {"USDT": Decimal("-30")}  # 0.01 × (57,000 − 60,000)
