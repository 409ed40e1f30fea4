"""Store alone: how many ``Store.transact`` balance changes per second a store commits, no HTTP.

``--clients`` coroutines (default 32) each change its own account (deposits and withdrawals
through the operator's adjustment rule, posted against the system account) for ``--seconds``;
on PostgreSQL each change is one transaction through the thread pool, on SQLite the writer's
group commit takes them together. Prints changes/s, latency percentiles and this process's CPU
per change (all threads; PostgreSQL's own work is in its server processes), then verifies the
ledger. Creates its own SQLite file or PostgreSQL database (``papi_bench_<random>``) and removes
it afterwards. Useful for A/B runs of a store change (``PYTHONPATH=<tree>/src``).

    .venv/bin/python bench/store_transact.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/store_transact.py --sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import secrets
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import EntryType, Wallet
from papi_sandbox.store import open_store

MAX_CLIENTS = 256
MAX_SECONDS = 120


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def run(url: str, clients: int, seconds: float) -> None:
    store = open_store(url)
    await store.open()
    try:
        accounts = [await store.create_account(f"bench{i}", None) for i in range(clients)]
        latencies: list[float] = []
        deadline = time.monotonic() + seconds

        async def client(account_id: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                amount, n = Decimal(1 if n % 2 == 0 else -1), n + 1
                plan = functools.partial(
                    rules.plan_adjustment, account_id, wallet=Wallet.MARGIN, asset="USDT",
                    amount=amount, reason=EntryType.DEPOSIT if amount > 0 else EntryType.WITHDRAW,
                )  # fmt: skip
                started = time.perf_counter()
                await store.transact(account_id, "DEPOSIT" if amount > 0 else "WITHDRAW", plan)
                latencies.append(time.perf_counter() - started)

        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(client(a) for a in accounts))
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        report = await store.verify()
    finally:
        await store.close()
    print(
        f"{url.split(':', 1)[0]}: {clients} clients, {elapsed:.1f} s: {len(latencies)} changes,"
        f" {len(latencies) / elapsed:,.0f}/s, p50 {percentile(latencies, 0.5) * 1000:.1f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1000:.1f} ms,"
        f" {cpu / max(1, len(latencies)) * 1e6:.0f} µs CPU each (this process, all threads);"
        f" verify {'OK' if report.ok else 'FAILED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", action="store_true", help="a SQLite file in a temporary folder")
    where.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL server to create a database on"
    )
    args = parser.parse_args()
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))
    if args.sqlite:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(run(f"sqlite:///{Path(folder) / 'bench.db'}", clients, seconds))
        return
    name = f"papi_bench_{secrets.token_hex(6)}"
    base = args.postgres.rpartition("/")[0]
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        asyncio.run(run(f"{base}/{name}", clients, seconds))
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
