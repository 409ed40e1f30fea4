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
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import hmac
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from papi_sandbox.client import now_ms
from run import (
    ADMIN_TOKEN,
    BENCH_DIR,
    PRISM,
    RECV_WINDOW_MS,
    free_port,
    our_server,
    run_wrk,
    started,
)

ORDER_PATH = "/papi/v1/um/order"
CONNECTIONS = 32
#: Orders of one round's pool: more than a round can send at any plausible rate.
POOL_ORDERS = 60_000


def admin(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=url + "/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    )


def new_accounts(url: str, count: int, deposit: str) -> list[tuple[str, str]]:
    """``count`` accounts with ``deposit`` USDT of margin: their (apiKey, secretKey)."""

    def one(_: int) -> tuple[str, str]:
        with admin(url) as client:
            made = client.post("/accounts", json={}).json()
            client.post(
                f"/accounts/{made['accountId']}/adjustments",
                json={"wallet": "MARGIN", "asset": "USDT", "amount": deposit, "reason": "DEPOSIT"},
            ).raise_for_status()
            return made["apiKey"], made["secretKey"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def signed(path: str, secret: str, params: str) -> str:
    query = f"{params}&recvWindow={RECV_WINDOW_MS}&timestamp={now_ms()}"
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{path}?{query}&signature={signature}"


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
    server = stack.enter_context(our_server(work / "orders.db", "full", work))
    accounts = new_accounts(server.url, args.accounts, "100000000")
    targets: dict[str, str] = {"papi-sandbox (SQLite, full durability)": server.url}
    if not args.skip_prism and PRISM.exists():
        port = free_port()
        cmd = [
            str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "--verboseLevel", "error",
            str(BENCH_DIR / "um_openapi.yaml"),
        ]  # fmt: skip
        prism = stack.enter_context(started(cmd, work / "prism.log", port, "/"))
        targets["Prism static mock"] = prism.url
    results: dict[str, list[dict[str, int]]] = {name: [] for name in targets}
    for number in range(args.rounds + 1):  # round 0 warms up
        for name, url in targets.items():
            pool = write_pool(work / f"pool-{number}.txt", order_lines(accounts, POOL_ORDERS))
            result = run_wrk(url, pool, args.duration if number else 2, CONNECTIONS)
            if number:
                results[name].append(result)
    with sqlite3.connect(work / "orders.db") as conn:
        trades = conn.execute("SELECT COUNT(*) FROM um_trades").fetchone()[0]
        entries = conn.execute("SELECT COUNT(*) FROM entries WHERE type = 'COMMISSION'").fetchone()[
            0
        ]
    lines = [
        f"MARKET orders, {CONNECTIONS} connections, {args.rounds} rounds of {args.duration} s"
        f" (median of rounds), {args.accounts} accounts:",
        "| server | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|",
    ]
    medians: dict[str, float] = {}
    for name, rounds in results.items():
        rps = [r["requests"] / (r["duration_us"] / 1e6) for r in rounds]
        medians[name] = statistics.median(rps)
        p50 = statistics.median(r["p50_us"] for r in rounds) / 1000
        p99 = statistics.median(r["p99_us"] for r in rounds) / 1000
        errors = sum(r["status_errors"] for r in rounds)
        lines.append(f"| {name} | {medians[name]:.0f} | {p50:.2f} | {p99:.2f} | {errors} |")
    if len(medians) == 2:
        ours, prism_rps = medians.values()
        lines.append(f"papi-sandbox / Prism: {ours / prism_rps:.2f}x")
    lines.append(
        f"fills committed by the sandbox (all rounds and warm-up): {trades} trades,"
        f" {entries} COMMISSION entries"
    )
    return lines


def sweep_benchmark(args: argparse.Namespace, work: Path, stack: ExitStack) -> list[str]:
    server = stack.enter_context(our_server(work / "sweep.db", "full", work))
    with admin(server.url) as client:
        client.put("/markets/BTCUSDT/price", json={"markPrice": "60000"}).raise_for_status()
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
        t0 = time.perf_counter()
        r = client.put("/markets/BTCUSDT/price", json={"markPrice": "58000"})
        sweep_ms = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        verify = client.get("/verify").json()
    with sqlite3.connect(work / "sweep.db") as conn:
        fills = conn.execute("SELECT COUNT(*) FROM um_trades").fetchone()[0]
        still_open = conn.execute(
            "SELECT COUNT(*) FROM um_orders WHERE status IN ('NEW', 'PARTIALLY_FILLED')"
        ).fetchone()[0]
    return [
        f"Sweep: {resting} resting orders over {len(accounts)} accounts (placed in"
        f" {placing_s:.1f} s); one price change filled {fills} of them in {sweep_ms:.0f} ms"
        f" ({still_open} still open); verify ok: {verify['ok']}",
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
