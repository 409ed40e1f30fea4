"""In-process cost of UM trading, without HTTP or a load generator: figures, never assertions.

``--workload sweep``: ``--accounts`` accounts each rest ``--orders-per-account`` LIMIT BUY
orders of 0.002 BTCUSDT (placed once, through the trading service, into a ledger file kept
as a template); then each run copies the template and does the store work of one price change
that crosses them all on one connection, as the SQLite writer does (the price, the crossed
accounts, then per 200 accounts: read the books, plan the fills, write them, the stream outbox,
COMMIT), and prints the CPU of each stage. ``--workload orders``: MARKET orders of 0.002
BTCUSDT (200 accounts, alternating BUY and SELL, 32 in flight) through the whole ASGI app, and
the CPU per order of each thread (the event loop's: parsing, signature, parameters, the JSON
answer; the writer's: risk checks, matching, the ledger plan, the SQLite write).

For A/B of two trees run it with ``PYTHONPATH=<tree>/src``, alternating trees; the best of
``--runs`` is the steadier figure on a shared machine (process CPU, with the server's GC
thresholds).

    .venv/bin/python bench/um_inprocess.py --workload sweep --runs 7
    .venv/bin/python bench/um_inprocess.py --workload orders --orders 6000
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import inprocess
from ledgerfill import credentials, fill
from papi_sandbox import client
from papi_sandbox.api.app import create_app
from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import EntryType, Wallet
from papi_sandbox.market.state import Market
from papi_sandbox.settings import Settings
from papi_sandbox.store import open_store, outbox
from papi_sandbox.store import trading as trading_store
from papi_sandbox.store.dialect import SQLITE, Db
from papi_sandbox.store.sqlite import connect
from papi_sandbox.trading import engine
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.margin import MarketView
from papi_sandbox.trading.model import OrderType, Side, TimeInForce
from papi_sandbox.trading_service import FILL_BATCH_ACCOUNTS, Trading
from papi_sandbox.transport import GC_THRESHOLDS

SYMBOL = "BTCUSDT"
START, CROSS = Decimal("60000"), Decimal("58000")
ORDER_ACCOUNTS = 200


async def build_sweep_ledger(path: Path, accounts: int, per_account: int) -> None:
    store = open_store(f"sqlite:///{path}")
    await store.open()
    trading = Trading(store, Market())
    await trading.open()
    await trading.set_price(SYMBOL, START)
    ids = [await store.create_account(f"sweep-{n}", None) for n in range(accounts)]
    deposit = functools.partial(
        rules.plan_adjustment, wallet=Wallet.MARGIN, asset="USDT", amount=Decimal("1000000"),
        reason=EntryType.DEPOSIT,
    )  # fmt: skip
    await asyncio.gather(
        *(store.transact(a, "DEPOSIT", functools.partial(deposit, a)) for a in ids)
    )
    for n in range(per_account):
        price = Decimal(59000 - 10 * n)

        def limit(price: Decimal = price) -> OrderRequest:
            return OrderRequest(
                SYMBOL, Side.BUY, OrderType.LIMIT, Decimal("0.002"), price, TimeInForce.GTC,
                None, None, None,
            )  # fmt: skip

        await asyncio.gather(*(trading.place_order(a, limit()) for a in ids))
    await store.close()


def sweep_once(template: Path) -> tuple[dict[str, float], int]:
    """CPU seconds of each stage of one sweep, on a copy of ``template``; and the fills."""
    market = Market()
    specs, collateral = market.specs, market.config.collateral_rates
    work = Path(tempfile.mkdtemp(prefix="papi-um-inproc-"))
    shutil.copy(template, work / "ledger.db")
    conn = connect(work / "ledger.db")
    stages: dict[str, float] = {}
    clock = [time.process_time()]

    def tick(stage: str) -> None:
        now = time.process_time()
        stages[stage] = stages.get(stage, 0.0) + now - clock[0]
        clock[0] = now

    try:
        conn.execute("BEGIN IMMEDIATE")
        trading_store.set_price(Db(conn, SQLITE), SYMBOL, CROSS, CROSS, None, 1)
        conn.execute("COMMIT")
        accounts = trading_store.crossed_accounts(Db(conn, SQLITE), SYMBOL, CROSS)
        tick("price")
        fills = 0
        for start in range(0, len(accounts), FILL_BATCH_ACCOUNTS):
            db = Db(conn, SQLITE)
            conn.execute("BEGIN IMMEDIATE")
            view = MarketView(specs, trading_store.load_prices(db), collateral)
            books = trading_store.load_books(db, accounts[start : start + FILL_BATCH_ACCOUNTS])
            ids = trading_store._ids(db)
            commits = trading_store.Commits(books)
            tick("read books")
            for account_id in sorted(books):
                commit = engine.fill_crossed(books[account_id], view, SYMBOL, ids, 2)
                tick("plan fills")
                commits.add(books[account_id], commit, 2)
                fills += len(commit.trades)
                tick("bounds, order events")
            commits.write(db)
            tick("write rows")
            outbox.write(db, db.committed)
            tick("stream outbox")
            conn.execute("COMMIT")
            tick("COMMIT")
    finally:
        conn.close()
        shutil.rmtree(work)
    return stages, fills


def sweep(args: argparse.Namespace) -> None:
    template = Path(tempfile.gettempdir()) / (
        f"papi-um-inproc-sweep-{args.accounts}x{args.orders_per_account}.db"
    )
    if not template.exists():
        asyncio.run(build_sweep_ledger(template, args.accounts, args.orders_per_account))
    runs = []
    for _ in range(args.runs):
        stages, fills = sweep_once(template)
        runs.append(stages)
    best = min(runs, key=lambda r: sum(r.values()))
    totals = sorted(sum(r.values()) for r in runs)
    print(
        f"sweep, {fills} fills: best {sum(best.values()) * 1000:.0f} ms CPU, median"
        f" {totals[len(totals) // 2] * 1000:.0f} ms ({args.runs} runs); best run by stage: "
        + ", ".join(f"{k} {v * 1000:.0f}" for k, v in best.items())
    )


def order_scope(n: int) -> dict[str, Any]:
    account = n % ORDER_ACCOUNTS + 1
    side = "BUY" if (n // ORDER_ACCOUNTS) % 2 == 0 else "SELL"
    params = [("symbol", SYMBOL), ("side", side), ("type", "MARKET"), ("quantity", "0.002")]
    query = client.signed_query(credentials(account), params, recv_window=60_000)
    scope = inprocess.scope("POST", "/papi/v1/um/order", account)
    scope["query_string"] = query.encode()
    return scope


async def orders_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="papi-um-inproc-"))
    db = work / "ledger.db"
    fill(db, ORDER_ACCOUNTS, amount="100000000", negative_um=False)
    settings = Settings(
        data_dir=work, db=f"sqlite:///{db}", ip_weight_limit=0, scheduler=False,
        access_log=False, durability="full",
    )  # fmt: skip
    app = create_app(settings, open_store(settings.db_url, durability="full"), "t" * 32)
    inbox, task = await inprocess.lifespan(app)
    statuses: dict[int, int] = {}

    async def drive(scopes: list[dict[str, Any]]) -> None:
        pending = iter(scopes)

        async def worker() -> None:
            for s in pending:
                status = await inprocess.call(app, s)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(inprocess.CONCURRENCY)))

    await drive([order_scope(n) for n in range(2 * ORDER_ACCOUNTS)])  # warm-up
    scopes = [order_scope(n) for n in range(2 * ORDER_ACCOUNTS, 2 * ORDER_ACCOUNTS + args.orders)]
    before, cpu0 = inprocess.thread_cpu_s(), time.process_time()
    await drive(scopes)
    cpu, after = time.process_time() - cpu0, inprocess.thread_cpu_s()
    per = {
        name: tuple(
            (a - b) / args.orders * 1e6
            for a, b in zip(after[name], before.get(name, (0, 0)), strict=True)
        )
        for name in after
    }
    print(
        f"orders: {args.orders}, {cpu / args.orders * 1e6:.0f} µs CPU/order (all threads);"
        " by thread (user+system µs): "
        + ", ".join(f"{k} {u:.0f}+{s:.0f}" for k, (u, s) in per.items() if u + s >= 0.5)
        + f"; statuses {statuses}"
    )
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    shutil.rmtree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("sweep", "orders"), default="sweep")
    parser.add_argument("--runs", type=int, default=7, help="sweeps (best and median shown)")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--orders-per-account", type=int, default=10)
    parser.add_argument("--orders", type=int, default=6000, help="MARKET orders to time")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # as a server process
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    run: Callable[[argparse.Namespace], None] = (
        sweep if args.workload == "sweep" else lambda a: asyncio.run(orders_async(a))
    )
    run(args)


if __name__ == "__main__":
    main()
