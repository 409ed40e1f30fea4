"""UM trading written in batches: several orders in one unit give exactly the result of placing
them one after the other, a refused one writes nothing, the SQLite writer hands consecutive
grouped items to one call (and runs them alone when that call fails), and a price sweep leaves
an account whose fills a balance bound refuses untouched while the others fill."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from papi_sandbox.ledger.model import LedgerError, Wallet
from papi_sandbox.market.state import Market
from papi_sandbox.store import open_store
from papi_sandbox.store import trading as trading_store
from papi_sandbox.store.contract import Store
from papi_sandbox.store.dialect import Db
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.model import (
    HistoryPage,
    IncomePage,
    OrderStatus,
    OrderType,
    Refusal,
    Side,
    TimeInForce,
    TradingRefused,
)
from tests.support import adjustment, with_store

MARKET = Market()
SPECS, COLLATERAL = MARKET.specs, MARKET.config.collateral_rates


def order(
    side: Side,
    kind: OrderType,
    qty: str,
    price: str | None = None,
    *,
    reduce_only: bool | None = None,
    client_id: str | None = None,
) -> OrderRequest:
    tif = TimeInForce.GTC if kind is OrderType.LIMIT else None
    return OrderRequest(
        "BTCUSDT",
        side,
        kind,
        D(qty),
        D(price) if price else None,
        tif,
        reduce_only,
        None,
        client_id,
    )


def script(a: int, b: int) -> list[trading_store.NewOrder]:
    """Orders of two accounts (and one unknown) where each depends on the ones before it."""
    steps: list[tuple[int, OrderRequest]] = [
        (a, order(Side.BUY, OrderType.MARKET, "0.010")),
        (b, order(Side.BUY, OrderType.MARKET, "100")),  # -2019: b cannot afford it
        (424242, order(Side.BUY, OrderType.MARKET, "0.010")),  # no such account
        (a, order(Side.SELL, OrderType.LIMIT, "0.010", "61000", client_id="a-limit")),
        (a, order(Side.SELL, OrderType.LIMIT, "0.010", "61000", client_id="a-limit")),  # -4116
        (b, order(Side.BUY, OrderType.MARKET, "0.002")),
        (a, order(Side.SELL, OrderType.MARKET, "0.010", reduce_only=True)),  # closes item 1
        (a, order(Side.SELL, OrderType.MARKET, "0.010", reduce_only=True)),  # -2022: nothing left
        (b, order(Side.SELL, OrderType.MARKET, "0.004")),  # b turns short
    ]
    return [
        trading_store.NewOrder(account, request, SPECS, COLLATERAL, 1_000 + n)
        for n, (account, request) in enumerate(steps)
    ]


async def _accounts(store: Store) -> tuple[int, int]:
    await store.write(trading_store.ensure_markets, MARKET.initial_prices())
    a = await store.create_account("a", None)
    b = await store.create_account("b", None)
    await store.transact(a, "DEPOSIT", adjustment(a, "10000"))
    await store.transact(b, "DEPOSIT", adjustment(b, "100"))
    return a, b


async def _state(store: Store, accounts: tuple[int, ...]) -> list[Any]:
    state: list[Any] = []
    for account in accounts:
        state.append(
            await store.read(
                trading_store.all_orders, account, "BTCUSDT", HistoryPage(1, None, None, 100)
            )
        )
        state.append(
            await store.read(
                trading_store.user_trades, account, "BTCUSDT", HistoryPage(1, None, None, 100)
            )
        )
        state.append(await store.read(trading_store.load_positions, account))
        state.append(
            await store.read(trading_store.income, account, IncomePage(None, None, 0, 10**6, 100))
        )
        state.append((await store.balances(account)).amounts)
        state.append([(e.tran_id, e.type, e.postings) for e in await store.journal(account, 100)])
    return state


def _refusals(outcomes: list[tuple[Any, BaseException | None]]) -> list[str | None]:
    kinds: list[str | None] = []
    for _, error in outcomes:
        if isinstance(error, TradingRefused):
            kinds.append(error.reason.value)
        else:
            kinds.append(type(error).__name__ if error is not None else None)
    return kinds


EXPECTED_REFUSALS = [
    None,
    Refusal.MARGIN_INSUFFICIENT.value,
    "UnknownAccount",  # an account that does not exist
    None,
    Refusal.DUPLICATE_CLIENT_ORDER_ID.value,
    None,
    None,
    Refusal.REDUCE_ONLY_REJECTED.value,
    None,
]


def test_orders_of_one_unit_equal_the_same_orders_one_by_one(
    store_url: str, tmp_path: Path
) -> None:
    """One ``place_orders`` call over many items (how the SQLite writer runs a batch) leaves
    exactly what the same orders placed one by one leave (a SQLite twin): orders, trades,
    positions, income, balances and journal; refused items wrote nothing."""
    serial: list[Any] = []

    async def one_by_one(store: Store) -> None:
        accounts = await _accounts(store)
        outcomes = [
            (await store.write(trading_store.place_orders, [item]))[0] for item in script(*accounts)
        ]
        assert _refusals(outcomes) == EXPECTED_REFUSALS
        serial.extend(await _state(store, accounts))

    with_store(f"sqlite:///{tmp_path / 'serial.db'}", one_by_one)

    async def together(store: Store) -> None:
        accounts = await _accounts(store)
        outcomes = await store.write(trading_store.place_orders, script(*accounts))
        assert _refusals(outcomes) == EXPECTED_REFUSALS
        placed, trades = outcomes[0][0]
        assert placed.status is OrderStatus.FILLED and trades[0].commission == D("0.3")
        assert await _state(store, accounts) == serial
        assert (await store.verify()).ok

    with_store(store_url, together)


def test_a_sweep_leaves_an_account_the_bound_refuses_resting(store_url: str) -> None:
    """The price sweep fills every crossed account but one whose commission would take its UM
    wallet past 10^15 in magnitude: that account's order stays NEW, nothing of it is written,
    the others fill, and the ledger verifies."""

    async def body(store: Store) -> None:
        a, b = await _accounts(store)
        for account in (a, b):
            placed, _ = await store.write(
                trading_store.place_order,
                account,
                order(Side.BUY, OrderType.LIMIT, "0.002", "59000"),
                SPECS,
                COLLATERAL,
                2_000,
            )
            assert placed.status is OrderStatus.NEW
        await store.transact(b, "REALIZED_PNL", adjustment(b, "-999999999999999.99", Wallet.UM))
        entries_of_b = len(await store.journal(b, 100))
        await store.write(trading_store.set_price, "BTCUSDT", D("58000"), D("58000"), None, 3_000)
        fills = await store.write(
            trading_store.fill_crossed, [a, b], "BTCUSDT", SPECS, COLLATERAL, 4_000
        )
        assert fills == 1
        assert [o.status for o in await store.read(trading_store.open_orders, a)] == []
        (still,) = await store.read(trading_store.open_orders, b)
        assert still.status is OrderStatus.NEW
        assert len(await store.journal(b, 100)) == entries_of_b
        again = await store.write(
            trading_store.fill_crossed, [b], "BTCUSDT", SPECS, COLLATERAL, 5_000
        )
        assert again == 0  # still refused by the bound, still resting
        assert (await store.verify()).ok

    with_store(store_url, body)


def test_sqlite_writer_hands_consecutive_grouped_items_to_one_call(tmp_path: Path) -> None:
    """Items queued while the writer is busy reach the grouped unit in one call, each caller
    gets its own outcome (a refusal raised to its caller alone); when that call fails after
    writing, the batch runs again with each item alone, and every item is applied once."""
    calls: list[int] = []

    def unit(db: Db, items: list[int]) -> list[tuple[Any, BaseException | None]]:
        calls.append(len(items))
        outcomes: list[tuple[Any, BaseException | None]] = []
        for item in items:
            if item % 5 == 0:
                outcomes.append((None, LedgerError(f"refused {item}")))
                continue
            db.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (str(item), str(item * 2)))
            outcomes.append((item * 2, None))
        if len(items) > 1 and 7 in items:
            raise RuntimeError("the call failed after writing")
        return outcomes

    async def main() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
        await store.open()
        try:
            await store.write(lambda db: db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"))
            for first, last in ((1, 6), (6, 11)):  # 7 in the second group: its call fails
                gate = threading.Event()
                blocker = asyncio.ensure_future(store.write(lambda db, gate=gate: gate.wait(10)))
                await asyncio.sleep(0.05)  # the writer is inside the blocker now
                calls.clear()
                waiting = [
                    asyncio.ensure_future(store.write_grouped(unit, n)) for n in range(first, last)
                ]
                await asyncio.sleep(0.05)
                gate.set()
                await blocker
                results = await asyncio.gather(*waiting, return_exceptions=True)
                for n, result in zip(range(first, last), results, strict=True):
                    if n % 5 == 0:
                        assert isinstance(result, LedgerError)
                    else:
                        assert result == n * 2
                if first == 1:
                    assert calls == [5]  # one call for the five queued items
                else:
                    assert calls[0] == 5 and calls[1:] == [1] * 5  # then each alone
            rows = await store.read(lambda db: db.all("SELECT k FROM kv ORDER BY CAST(k AS INT)"))
            assert [r[0] for r in rows] == [str(n) for n in range(1, 11) if n % 5]
        finally:
            await store.close()

    asyncio.run(main())
