"""A bounded load run across N server processes sharing one PostgreSQL database and one Redis.

    .venv/bin/python bench/scale_out.py --processes 4 --clients 64 --seconds 10

Creates its own database (papi_bench_<random>) and Redis key prefix and removes both afterwards.
Prints throughput and latency per operation, then runs ``papi-sandbox verify`` on the result.
Loopback only; stops by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import redis

from papi_sandbox.client import Account, AdminClient, signed_query
from papi_sandbox.secretbox import SECRET_KEY_ENV, new_key_text
from papi_sandbox.testing import Sandbox, new_token

MAX_SECONDS = 120
MAX_CLIENTS = 512
MAX_PROCESSES = 16


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    base_urls: list[str], token: str, accounts: list[Account], clients: int, seconds: float
) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"repay": [], "adjust": [], "balance": [], "error": []}
    stop_at = time.monotonic() + seconds
    admin = {"Authorization": f"Bearer {token}"}

    async def client(number: int) -> None:
        base = base_urls[number % len(base_urls)]
        account = accounts[number % len(accounts)]
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            op = 0
            while time.monotonic() < stop_at:
                kind = ("repay", "adjust", "balance", "adjust")[(number + op) % 4]
                op += 1
                started = time.perf_counter()
                if kind == "adjust":
                    body = {
                        "wallet": "UM",
                        "asset": "USDT",
                        "amount": "-0.5",
                        "reason": "REALIZED_PNL",
                    }
                    r = await http.post(
                        f"/admin/v1/accounts/{account.account_id}/adjustments",
                        json=body,
                        headers=admin,
                    )
                else:
                    path = (
                        "/papi/v1/repay-futures-negative-balance"
                        if kind == "repay"
                        else "/papi/v1/balance"
                    )
                    r = await http.request(
                        "POST" if kind == "repay" else "GET",
                        f"{path}?{signed_query(account)}",
                        headers={"X-MBX-APIKEY": account.api_key},
                    )
                elapsed_ms = (time.perf_counter() - started) * 1000
                ok = r.status_code == 200 or (kind == "repay" and r.status_code == 400)
                latencies[kind if ok else "error"].append(elapsed_ms)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--accounts", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--sqlite", action="store_true", help="one process on a SQLite file, for comparison"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PAPI_SANDBOX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("PAPI_SANDBOX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    return parser.parse_args()


def start_servers(
    sandboxes: list[Sandbox],
    tmp: Path,
    db_url: str,
    processes: int,
    token: str,
    redis_url: str,
    prefix: str,
) -> None:
    """Start ``processes`` servers on one ledger, one Redis prefix and one secret key, appending
    each to ``sandboxes`` as it starts (so the caller stops those started when a later one fails).
    """
    secret_key = new_key_text()
    server_args = ["--limits", redis_url, "--limits-prefix", prefix]
    server_args += ["--ip-weight-limit", "0"]
    for i in range(processes):
        sandbox = Sandbox(
            tmp / f"p{i}",
            args=server_args,
            db_url=db_url,
            relaxed_limits=False,
            token=token,
            env={SECRET_KEY_ENV: secret_key},  # one ledger, one key
        )
        sandboxes.append(sandbox)
        sandbox.start()


def funded_accounts(admin: AdminClient, count: int) -> list[Account]:
    """``count`` new accounts, each with 1,000,000 USDT deposited in MARGIN."""
    accounts = []
    for _ in range(count):
        account = admin.create_account()
        admin.adjust(account.account_id, "MARGIN", "USDT", "1000000", "DEPOSIT")
        accounts.append(account)
    return accounts


def print_figures(
    store: str,
    processes: int,
    clients: int,
    accounts: int,
    seconds: float,
    latencies: dict[str, list[float]],
) -> None:
    total = sum(len(v) for k, v in latencies.items() if k != "error")
    print(
        f"{store}: {processes} processes,"
        f" {clients} clients, {accounts} accounts,"
        f" {seconds:.0f} s: {total} requests, {total / seconds:.0f} req/s,"
        f" {len(latencies['error'])} errors"
    )
    for kind in ("repay", "adjust", "balance"):
        values = latencies[kind]
        print(
            f"  {kind:8} {len(values) / seconds:7.0f}/s"
            f"  p50 {percentile(values, 0.5):6.1f} ms"
            f"  p99 {percentile(values, 0.99):6.1f} ms"
        )


def print_verify(db_url: str) -> None:
    verify = subprocess.run(
        [sys.executable, "-m", "papi_sandbox", "verify", "--db", db_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(verify.stdout.strip())


def remove_bench_state(postgres_url: str, redis_url: str, database: str, prefix: str) -> None:
    """Drop the run's PostgreSQL database and delete its Redis keys."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def main() -> None:
    args = parse_args()
    processes = 1 if args.sqlite else max(1, min(args.processes, MAX_PROCESSES))
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))

    name = f"papi_bench_{secrets.token_hex(6)}"
    db_url = f"{args.postgres.rpartition('/')[0]}/{name}"
    prefix = f"papi-bench-{secrets.token_hex(6)}:"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    sandboxes: list[Sandbox] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.sqlite:
                db_url = f"sqlite:///{tmp}/bench.db"
            token = new_token()
            start_servers(sandboxes, Path(tmp), db_url, processes, token, args.redis, prefix)
            base_urls = [sandbox.base_url for sandbox in sandboxes]
            accounts = funded_accounts(sandboxes[0].admin, args.accounts)
            latencies = asyncio.run(load(base_urls, token, accounts, clients, seconds))
            store = "sqlite" if args.sqlite else "postgres"
            print_figures(store, processes, clients, len(accounts), seconds, latencies)
            print_verify(db_url)
    finally:
        for sandbox in sandboxes:
            sandbox.stop()
        remove_bench_state(args.postgres, args.redis, name, prefix)


if __name__ == "__main__":
    main()
