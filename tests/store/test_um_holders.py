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


def test_fills_missed_while_the_listener_was_away_are_found_again() -> None:
    """Another process's fill whose notification never arrived (the listener's connection was
    lost) left this process sure the account held no position: ``umUnrealizedPNL`` 0 until a
    restart. Once the listener is back (``on_announcements_lost``), the holders are read again."""
    admin = postgres_admin_url()
    url = create_test_database(admin)

    async def scenario() -> tuple[dict[str, Decimal], dict[str, Decimal], int]:
        here, there = PostgresStore(url), PostgresStore(url)
        trading, other = Trading(here, Market()), Trading(there, Market())
        here.on_commit(trading.note_commits)
        lost: list[int] = []
        here.on_announcements_lost(lambda: lost.append(1))
        here.on_announcements_lost(trading.announcements_lost)
        announced, dropping = here._announced, [True]

        async def lossy(payload: str) -> None:  # notifications lost on their way here
            if not dropping[0]:
                await announced(payload)

        here._announced = lossy  # type: ignore[method-assign]
        await here.open()
        await there.open()
        try:
            await trading.open()
            await other.open()
            await asyncio.wait_for(here.listening.wait(), 10)
            account = await there.create_account("elsewhere", None)
            deposit = adjustment(account, "10000", Wallet.MARGIN, reason=EntryType.DEPOSIT)
            await there.transact(account, EntryType.DEPOSIT, deposit)
            await other.set_price("BTCUSDT", Decimal("60000"))
            await other.place_order(account, _order(Side.BUY, OrderType.MARKET))
            await other.set_price("BTCUSDT", Decimal("57000"))
            await asyncio.sleep(0.5)  # the notifications arrived, and were lost
            before = await trading.unrealized(account)
            dropping[0] = False
            # The listener's connection is lost for real; it reconnects within a second or so.
            await there.write(
                lambda db: db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE ?",
                    ("LISTEN %",),
                )
            )
            for _ in range(100):
                if lost and trading._may_hold is not None:
                    break
                await asyncio.sleep(0.1)
            return before, await trading.unrealized(account), len(lost)
        finally:
            await there.close()
            await here.close()

    try:
        before, after, lost = asyncio.run(scenario())
    finally:
        drop_test_database(admin, url)
    assert before == {}  # what a lost notification left behind
    assert lost == 1
    assert after == {"USDT": Decimal("-30")}  # 0.01 × (57,000 − 60,000), read again
