"""Scale-out: 4 server processes on one PostgreSQL database and one Redis, 64 concurrent clients,
one process killed with SIGKILL mid-load; and ``serve --workers N`` on one port.

Bounded: 64 clients x 8 operations, a few seconds of load; every process stops by itself.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import EntryType, Posting, Wallet
from papi_sandbox.secretbox import SECRET_KEY_ENV, new_key_text
from tests.support import (
    ADMIN_TOKEN,
    REDIS_URL_ENV,
    Account,
    Server,
    Signer,
    create_test_database,
    drop_test_database,
    postgres_admin_url,
)

REPAY = "/papi/v1/repay-futures-negative-balance"
REPAY_WEIGHT = 750
BALANCE_WEIGHT = 20
PROCESSES = 4
CLIENTS = 64
OPS_PER_CLIENT = 8
SHARED_ACCOUNTS = 8
#: Acknowledged operations after which one process is killed.
KILL_AFTER_ACKS = CLIENTS * OPS_PER_CLIENT // 3


def redis_url() -> str:
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        pytest.skip(f"{REDIS_URL_ENV} is unset: the scale-out tests do not run")
    return url


@pytest.fixture
def shared_backends() -> Iterator[tuple[str, str, str]]:
    """(PostgreSQL URL of a fresh database, Redis URL, a random key prefix); all removed after."""
    admin = postgres_admin_url()
    r_url = redis_url()
    db_url = create_test_database(admin)
    prefix = f"papi-test-{secrets.token_hex(6)}:"
    yield db_url, r_url, prefix
    drop_test_database(admin, db_url)
    client = redis.Redis.from_url(r_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class Outcome:
    server: int
    kind: str
    status: int | None  # None: no answer (the process died)
    weight_header: int | None = None
    minute: int = 0
    tran_id: int | None = None
    at: float = field(default_factory=time.monotonic)


def admin_adjust(
    client: httpx.Client, base_url: str, account_id: int, body: dict[str, str]
) -> httpx.Response:
    return client.post(
        f"{base_url}/admin/v1/accounts/{account_id}/adjustments",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )


def check_journal_against_the_serial_model(
    account_id: int, journal: list[dict[str, Any]]
) -> dict[tuple[Wallet, str], Decimal]:
    """Replay the account's entries in tranId order through the pure rules: each entry must be
    exactly what the rule gives on the balances left by the entries before it."""
    model: dict[tuple[Wallet, str], Decimal] = {}
    for entry in sorted(journal, key=lambda e: e["tranId"]):
        postings = [
            Posting(p["accountId"], Wallet(p["wallet"]), p["asset"], Decimal(p["amount"]))
            for p in entry["postings"]
        ]
        if entry["type"] == EntryType.REPAY_FUTURES_NEGATIVE_BALANCE:
            expected = rules.plan_repay(account_id, model)
        else:
            own = postings[0]
            expected = rules.plan_adjustment(
                account_id, model, own.wallet, own.asset, own.amount, EntryType(entry["type"])
            )
        assert postings == expected, entry
        model = rules.apply(model, [p for p in expected if p.account_id == account_id])
    return model


def test_four_processes_one_database_one_redis_and_a_kill_9(
    tmp_path: Path, shared_backends: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url, r_url, prefix = shared_backends
    # Processes sharing a ledger share its encryption key (each has its own data folder here).
    key = {SECRET_KEY_ENV: new_key_text()}
    args = ["--limits", r_url, "--limits-prefix", prefix, "--ip-weight-limit", "100000000"]
    servers = [
        Server(tmp_path / f"proc{i}", list(args), db_url=db_url, env=key) for i in range(PROCESSES)
    ]
    with concurrent.futures.ThreadPoolExecutor(PROCESSES) as pool:
        list(pool.map(Server.start, servers))
    try:
        run_load_and_check(servers, db_url)
    finally:
        for srv in servers:
            srv.stop()
    for srv in servers:
        assert srv.log_path is not None
        assert "Traceback" not in srv.log_path.read_text(), srv.log_path.read_text()[-3000:]


def run_load_and_check(servers: list[Server], db_url: str) -> None:
    accounts: list[Account] = []
    for i in range(SHARED_ACCOUNTS):
        account = servers[i % PROCESSES].create_account(f"shared-{i}")
        servers[(i + 1) % PROCESSES].adjust(account.account_id, "MARGIN", "USDT", "40", "DEPOSIT")
        accounts.append(account)

    # One IP's weight is one count, whichever process serves it: pings round-robin add 1 each.
    first_minute = time.time_ns() // 60_000_000_000
    seen = [
        int(
            httpx.get(f"{servers[i % PROCESSES].base_url}/papi/v1/ping").headers[
                "X-MBX-USED-WEIGHT-1M"
            ]
        )
        for i in range(2 * PROCESSES)
    ]
    breaks = sum(1 for a, b in itertools.pairwise(seen) if b != a + 1)
    if time.time_ns() // 60_000_000_000 == first_minute:
        assert breaks == 0, seen
    else:  # a calendar minute began between two pings: the count restarted at most once
        assert breaks <= 1, seen

    outcomes: list[Outcome] = []
    lock = threading.Lock()
    acknowledged = threading.Semaphore(0)
    killed_at: list[float] = []

    def client(number: int) -> None:
        server_index = number % PROCESSES
        account = accounts[number % SHARED_ACCOUNTS]
        with httpx.Client(timeout=30) as http:
            for op in range(OPS_PER_CLIENT):
                srv = servers[server_index]
                kind = (
                    "repay",
                    "loss",
                    "deposit",
                    "withdraw",
                    "repay",
                    "balance",
                    "loss",
                    "repay",
                )[(number + op) % 8]
                minute = time.time_ns() // 60_000_000_000
                try:
                    if kind in ("repay", "balance"):
                        path, method = (
                            (REPAY, "POST") if kind == "repay" else ("/papi/v1/balance", "GET")
                        )
                        r = Signer(srv.base_url, account).request(method, path, client=http)
                    else:
                        wallet, amount, reason = {
                            "loss": ("UM", f"-{1 + number % 5}.5", "REALIZED_PNL"),
                            "deposit": ("MARGIN", "3.25", "DEPOSIT"),
                            "withdraw": ("MARGIN", "-6", "WITHDRAW"),
                        }[kind]
                        r = admin_adjust(
                            http,
                            srv.base_url,
                            account.account_id,
                            {"wallet": wallet, "asset": "USDT", "amount": amount, "reason": reason},
                        )
                except httpx.TransportError:
                    with lock:
                        outcomes.append(Outcome(server_index, kind, None))
                    server_index = (server_index + 1) % PROCESSES  # that process is gone
                    continue
                header = r.headers.get("X-MBX-USED-WEIGHT-1M")
                end_minute = time.time_ns() // 60_000_000_000
                tran_id = (
                    r.json().get("tranId")
                    if r.status_code == 200
                    and kind
                    in (
                        "loss",
                        "deposit",
                        "withdraw",
                    )
                    else None
                )
                with lock:
                    outcomes.append(
                        Outcome(
                            server_index,
                            kind,
                            r.status_code,
                            int(header) if header is not None else None,
                            minute if minute == end_minute else -1,
                            tran_id,
                        )
                    )
                acknowledged.release()

    def killer() -> None:
        for _ in range(KILL_AFTER_ACKS):
            acknowledged.acquire(timeout=30)
        servers[PROCESSES - 1].kill9()
        killed_at.append(time.monotonic())

    started = time.monotonic()
    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    kill_thread.join(60)
    elapsed = time.monotonic() - started
    answered = [o for o in outcomes if o.status is not None]
    print(
        f"\n{len(outcomes)} operations by {CLIENTS} clients over {PROCESSES} processes in"
        f" {elapsed:.2f}s; {len(outcomes) - len(answered)} unanswered (killed process),"
        f" {sum(o.status == 400 for o in answered)} refused by the rules"
    )
    assert killed_at, "the kill happened"

    # Every answer is an expected one: success, or a refusal the rules explain.
    for o in answered:
        assert o.status in (200, 400), o
    unanswered = [o for o in outcomes if o.status is None]
    assert all(o.server == PROCESSES - 1 for o in unanswered), unanswered
    # The others kept serving after the kill.
    after_kill = {o.server for o in answered if o.at > killed_at[0]}
    assert after_kill >= set(range(PROCESSES - 1)), after_kill
    assert {o.server for o in answered} == set(range(PROCESSES))

    # Weight: one shared counter; each weighed answer of a minute reports a different total.
    by_minute: dict[int, list[int]] = {}
    for o in answered:
        if o.weight_header is not None and o.minute >= 0 and o.kind in ("repay", "balance"):
            by_minute.setdefault(o.minute, []).append(o.weight_header)
    for values in by_minute.values():
        assert len(values) == len(set(values)), "two processes counted the same weight"
    servers_weighed = {o.server for o in answered if o.weight_header is not None}
    assert servers_weighed == set(range(PROCESSES))

    # Nothing acknowledged is lost, and each account's journal is the serial model's.
    live = servers[0]
    for account in accounts:
        journal = live.journal(account.account_id)
        model = check_journal_against_the_serial_model(account.account_id, journal)
        balances = Signer(servers[1].base_url, account).request("GET", "/papi/v1/balance")
        assert balances.status_code == 200
        row = next(b for b in balances.json() if b["asset"] == "USDT")
        assert Decimal(row["crossMarginFree"]) == model.get((Wallet.MARGIN, "USDT"), 0)
        assert Decimal(row["umWalletBalance"]) == model.get((Wallet.UM, "USDT"), 0)
    acked_ids = {o.tran_id for o in answered if o.tran_id is not None}
    all_ids = {e["tranId"] for a in accounts for e in live.journal(a.account_id)}
    assert acked_ids <= all_ids

    result = subprocess.run(
        [sys.executable, "-m", "papi_sandbox", "verify", "--db", db_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_serve_workers_shares_one_port(tmp_path: Path, pg_url: str) -> None:
    srv = Server(tmp_path / "workers", ["--workers", "2", "--ip-weight-limit", "0"], db_url=pg_url)
    srv.start()
    try:
        assert srv.proc is not None
        children: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the supervisor starts its workers one by one
            path = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children")
            children = path.read_text().split()
            if len(children) >= 2:
                break
            time.sleep(0.1)
        assert len(children) >= 2, children  # the workers (and possibly a resource tracker)
        account = srv.create_account()
        srv.adjust(account.account_id, "MARGIN", "USDT", "9", "DEPOSIT")
        srv.adjust(account.account_id, "UM", "USDT", "-4", "REALIZED_PNL")
        signer = Signer(srv.base_url, account)
        with httpx.Client() as http:
            # New connections each time, so the kernel spreads them over the workers.
            results = [signer.request("POST", REPAY).status_code for _ in range(6)]
            assert results == [200] * 6
            balance = signer.request("GET", "/papi/v1/balance", {"asset": "USDT"}, client=http)
        assert balance.json()["crossMarginFree"] == "5.00000000"
    finally:
        srv.stop()
    assert srv.verify_cli().returncode == 0


def test_workers_need_postgres(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "papi_sandbox",
            "serve",
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs --db postgresql" in result.stderr
