"""UM trading benchmarks (part of `make bench`, never of `make test`): prints figures.

1. MARKET order placement: every request is a MARKET order that fills (one journal entry, one
   trade, one position update), alternating BUY and SELL per account so margin never runs out;
   requests per second and p50/p99 latency at 32 connections (wrk), against Stoplight Prism
   serving a static mock of the same endpoint (bench/um_openapi.yaml) with the same requests.
   Rounds interleave the two servers, so noise from the shared machine hits both alike.
2. The sweep: ``--sweep-accounts`` accounts each rest ``--orders-per-account`` LIMIT BUY orders;
   one operator price change crosses them all; the call's wall time in ms (it returns when every
   fill is committed), then ``verify``.

    .venv/bin/python bench/um_trading.py [--duration 6] [--rounds 3] [--skip-prism]
        [--only orders|sweep] [--store sqlite|postgres] [--postgres-url URL]

The server's CPU (user + system, all threads, from /proc) is reported per request and for the
sweep: on this shared machine it moves far less than the rates do.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from papi_sandbox.client import AdminClient, hmac_signature, now_ms
from run import (
    ADMIN_TOKEN,
    BENCH_DIR,
    PRISM,
    RECV_WINDOW_MS,
    Proc,
    cpu_times,
    free_port,
    run_wrk,
    started,
)

ORDER_PATH = "/papi/v1/um/order"
CONNECTIONS = 32
#: Orders of one round's pool: more than a round can send at any plausible rate.
POOL_ORDERS = 60_000


class Ledger:
    """Where the benchmarked server keeps its ledger: a new SQLite file (``--durability
    full``), or a new database on the PostgreSQL server of ``--postgres`` (dropped after)."""

    def __init__(self, args: argparse.Namespace, work: Path, name: str) -> None:
        self.postgres = args.store == "postgres"
        self.admin_url = args.postgres_url
        self.name = f"papi_um_bench_{name}_{secrets.token_hex(4)}"
        self.url = (
            f"{args.postgres_url.rpartition('/')[0]}/{self.name}"
            if self.postgres
            else f"sqlite:///{work / (name + '.db')}"
        )
        self.label = "PostgreSQL" if self.postgres else "SQLite, full durability"

    @contextmanager
    def server(self, work: Path) -> Iterator[Proc]:
        if self.postgres:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {self.name}")
        port = free_port()
        cmd = [
            sys.executable, "-m", "papi_sandbox", "serve", "--port", str(port),
            "--db", self.url, "--data-dir", str(work / f"data-{self.name}"),
            "--ip-weight-limit", "0", "--no-access-log",
        ]  # fmt: skip
        if not self.postgres:
            cmd += ["--durability", "full"]
        env = {**os.environ, "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
        try:
            with started(cmd, work / f"{self.name}.log", port, "/healthz", env) as proc:
                yield proc
        finally:
            if self.postgres:
                with psycopg.connect(self.admin_url, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def count(self, sql: str) -> int:
        if self.postgres:
            with psycopg.connect(self.url) as conn:
                row = conn.execute(sql).fetchone()
        else:
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
                row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def cpu_s(proc: Proc) -> float:
    """User + system CPU seconds of a server process so far (all its threads)."""
    user, system = cpu_times(proc.proc.pid)
    return user + system


def admin(url: str) -> AdminClient:
    return AdminClient(url, ADMIN_TOKEN, timeout=60)


def new_accounts(url: str, count: int, deposit: str) -> list[tuple[str, str]]:
    """``count`` accounts with ``deposit`` USDT of margin: their (apiKey, secretKey)."""

    def one(_: int) -> tuple[str, str]:
        with admin(url) as client:
            made = client.create_account()
            client.adjust(made.account_id, "MARGIN", "USDT", deposit, "DEPOSIT")
            return made.api_key, made.secret

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def signed(path: str, secret: str, params: str) -> str:
    query = f"{params}&recvWindow={RECV_WINDOW_MS}&timestamp={now_ms()}"
    return f"{path}?{query}&signature={hmac_signature(secret, query)}"


def order_lines(accounts: list[tuple[str, str]], count: int) -> Iterator[str]:
    """MARKET orders round-robin over the accounts, each account alternating BUY and SELL."""
    for i in range(count):
        key, secret = accounts[i % len(accounts)]
        side = "BUY" if (i // len(accounts)) % 2 == 0 else "SELL"
        params = f"symbol=BTCUSDT&side={side}&type=MARKET&quantity=0.002"
        yield f"POST {signed(ORDER_PATH, secret, params)} {key}"


def write_pool(path: Path, lines: Iterator[str]) -> Path:
    with path.open("w") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def orders_benchmark(args: argparse.Namespace, work: Path, stack: ExitStack) -> list[str]:
    ledger = Ledger(args, work, "orders")
    server = stack.enter_context(ledger.server(work))
    accounts = new_accounts(server.url, args.accounts, "100000000")
    targets: dict[str, Proc] = {f"papi-sandbox ({ledger.label})": server}
    if not args.skip_prism and PRISM.exists():
        port = free_port()
        cmd = [
            str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "--verboseLevel", "error",
            str(BENCH_DIR / "um_openapi.yaml"),
        ]  # fmt: skip
        prism = stack.enter_context(started(cmd, work / "prism.log", port, "/"))
        targets["Prism static mock"] = prism
    results: dict[str, list[dict[str, int]]] = {name: [] for name in targets}
    cpu: dict[str, float] = {name: 0.0 for name in targets}
    for number in range(args.rounds + 1):  # round 0 warms up
        for name, proc in targets.items():
            pool = write_pool(work / f"pool-{number}.txt", order_lines(accounts, POOL_ORDERS))
            before = cpu_s(proc)
            result = run_wrk(proc.url, pool, args.duration if number else 2, CONNECTIONS)
            if number:
                results[name].append(result)
                cpu[name] += cpu_s(proc) - before
    trades = ledger.count("SELECT COUNT(*) FROM um_trades")
    entries = ledger.count("SELECT COUNT(*) FROM entries WHERE type = 'COMMISSION'")
    lines = [
        f"MARKET orders, {CONNECTIONS} connections, {args.rounds} rounds of {args.duration} s"
        f" (median of rounds), {args.accounts} accounts:",
        "| server | req/s | p50 ms | p99 ms | CPU µs/req | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    medians: dict[str, float] = {}
    for name, rounds in results.items():
        rps = [r["requests"] / (r["duration_us"] / 1e6) for r in rounds]
        medians[name] = statistics.median(rps)
        p50 = statistics.median(r["p50_us"] for r in rounds) / 1000
        p99 = statistics.median(r["p99_us"] for r in rounds) / 1000
        errors = sum(r["status_errors"] for r in rounds)
        per_request = 1e6 * cpu[name] / max(1, sum(r["requests"] for r in rounds))
        lines.append(
            f"| {name} | {medians[name]:.0f} | {p50:.2f} | {p99:.2f} | {per_request:.0f}"
            f" | {errors} |"
        )
    if len(medians) == 2:
        ours, prism_rps = medians.values()
        lines.append(f"papi-sandbox / Prism: {ours / prism_rps:.2f}x")
    lines.append(
        f"fills committed by the sandbox (all rounds and warm-up): {trades} trades,"
        f" {entries} COMMISSION entries"
    )
    return lines


def sweep_benchmark(args: argparse.Namespace, work: Path, stack: ExitStack) -> list[str]:
    ledger = Ledger(args, work, "sweep")
    server = stack.enter_context(ledger.server(work))
    with admin(server.url) as client:
        client.set_price("BTCUSDT", "60000")
    accounts = new_accounts(server.url, args.sweep_accounts, "1000000")
    started_s = time.perf_counter()

    def rest(account: tuple[str, str]) -> int:
        key, secret = account
        placed = 0
        with httpx.Client(base_url=server.url, headers={"X-MBX-APIKEY": key}, timeout=60) as c:
            for n in range(args.orders_per_account):
                price = 59000 - 10 * n
                params = (
                    f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.002"
                    f"&price={price}"
                )
                r = c.post(signed(ORDER_PATH, secret, params))
                placed += r.status_code == 200 and r.json()["status"] == "NEW"
        return placed

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        resting = sum(pool.map(rest, accounts))
    placing_s = time.perf_counter() - started_s
    with admin(server.url) as client:
        before = cpu_s(server)
        t0 = time.perf_counter()
        client.set_price("BTCUSDT", "58000")
        sweep_ms = (time.perf_counter() - t0) * 1000
        sweep_cpu_ms = (cpu_s(server) - before) * 1000
        verify_ok = client.verify().ok
    fills = ledger.count("SELECT COUNT(*) FROM um_trades")
    still_open = ledger.count(
        "SELECT COUNT(*) FROM um_orders WHERE status IN ('NEW', 'PARTIALLY_FILLED')"
    )
    return [
        f"Sweep ({ledger.label}): {resting} resting orders over {len(accounts)} accounts"
        f" (placed in {placing_s:.1f} s); one price change filled {fills} of them in"
        f" {sweep_ms:.0f} ms, {sweep_cpu_ms:.0f} ms of server CPU ({still_open} still open);"
        f" verify ok: {verify_ok}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=200, help="accounts placing orders")
    parser.add_argument("--sweep-accounts", type=int, default=1000)
    parser.add_argument("--orders-per-account", type=int, default=10)
    parser.add_argument("--skip-prism", action="store_true")
    parser.add_argument("--only", choices=("orders", "sweep"), default=None)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "PAPI_SANDBOX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="with --store postgres: a server where the bench may create a database",
    )
    args = parser.parse_args()
    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="papi-um-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "orders"):
            with ExitStack() as stack:
                report += orders_benchmark(args, work, stack)
        if args.only in (None, "sweep"):
            with ExitStack() as stack:
                report += sweep_benchmark(args, work, stack)
    print("\n".join(report))


if __name__ == "__main__":
    main()


__all__: list[Any] = []
