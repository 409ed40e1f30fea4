"""A bounded load run across N server processes sharing one PostgreSQL database and one Redis.

    .venv/bin/python bench/scale_out.py --processes 4 --clients 64 --seconds 10

Creates its own database (papi_bench_<random>) and Redis key prefix and removes both afterwards.
Prints throughput and latency per operation, then runs ``papi-sandbox verify`` on the result.
Loopback only; stops by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg
import redis

ADMIN_TOKEN = "bench-admin-token-0123456789"
MAX_SECONDS = 120
MAX_CLIENTS = 512
MAX_PROCESSES = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, port: int, db_url: str, args: list[str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PAPI_SANDBOX_DATA_DIR": str(data_dir),
        "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "papi_sandbox", "serve", "--port", str(port)),
            *("--no-access-log", "--db", db_url, *args),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(base_url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{base_url} did not start")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    base_urls: list[str], accounts: list[tuple[int, str, str]], clients: int, seconds: float
) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"repay": [], "adjust": [], "balance": [], "error": []}
    stop_at = time.monotonic() + seconds
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def client(number: int) -> None:
        base = base_urls[number % len(base_urls)]
        account_id, api_key, secret = accounts[number % len(accounts)]
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
                        f"/admin/v1/accounts/{account_id}/adjustments", json=body, headers=admin
                    )
                else:
                    query = urlencode([("timestamp", time.time_ns() // 1_000_000)])
                    signature = hmac.new(
                        secret.encode(), query.encode(), hashlib.sha256
                    ).hexdigest()
                    path = (
                        "/papi/v1/repay-futures-negative-balance"
                        if kind == "repay"
                        else "/papi/v1/balance"
                    )
                    r = await http.request(
                        "POST" if kind == "repay" else "GET",
                        f"{path}?{query}&signature={signature}",
                        headers={"X-MBX-APIKEY": api_key},
                    )
                elapsed_ms = (time.perf_counter() - started) * 1000
                ok = r.status_code == 200 or (kind == "repay" and r.status_code == 400)
                latencies[kind if ok else "error"].append(elapsed_ms)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


def main() -> None:
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
    args = parser.parse_args()
    processes = 1 if args.sqlite else max(1, min(args.processes, MAX_PROCESSES))
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))

    name = f"papi_bench_{secrets.token_hex(6)}"
    db_url = f"{args.postgres.rpartition('/')[0]}/{name}"
    prefix = f"papi-bench-{secrets.token_hex(6)}:"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.sqlite:
                db_url = f"sqlite:///{tmp}/bench.db"
            ports = [free_port() for _ in range(processes)]
            server_args = [
                "--limits",
                args.redis,
                "--limits-prefix",
                prefix,
                "--ip-weight-limit",
                "0",
            ]
            for i, port in enumerate(ports):
                procs.append(start_server(Path(tmp) / f"p{i}", port, db_url, server_args))
            base_urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in base_urls:
                wait_ready(url)
            accounts = []
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            for _ in range(args.accounts):
                data = httpx.post(
                    f"{base_urls[0]}/admin/v1/accounts", json={}, headers=headers
                ).json()
                httpx.post(
                    f"{base_urls[0]}/admin/v1/accounts/{data['accountId']}/adjustments",
                    json={
                        "wallet": "MARGIN",
                        "asset": "USDT",
                        "amount": "1000000",
                        "reason": "DEPOSIT",
                    },
                    headers=headers,
                )
                accounts.append((data["accountId"], data["apiKey"], data["secretKey"]))

            latencies = asyncio.run(load(base_urls, accounts, clients, seconds))
            total = sum(len(v) for k, v in latencies.items() if k != "error")
            print(
                f"{'sqlite' if args.sqlite else 'postgres'}: {processes} processes,"
                f" {clients} clients, {len(accounts)} accounts,"
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
            verify = subprocess.run(
                [sys.executable, "-m", "papi_sandbox", "verify", "--db", db_url],
                capture_output=True,
                text=True,
                timeout=300,
            )
            print(verify.stdout.strip())
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                proc.wait(10)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
