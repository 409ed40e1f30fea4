"""Crash safety and concurrency, shown (loopback only, bounded in count and time).

1. kill -9 at random moments: concurrent repays and adjustments run against a server that is
   killed with SIGKILL after a random delay, restarted, and driven again, KILL_CYCLES times. The
   client records every acknowledged adjustment (its tranId, account and amount). Afterwards:
   every acknowledged change is in the journal exactly as acknowledged, nothing is half-applied
   (each entry sums to zero per asset, each stored balance equals the journal's replay), every
   asset sums to zero over the ledger, and ``papi-sandbox verify`` is clean.
2. 64 concurrent clients on one account: the journal's entries, replayed in commit order through
   the same pure rules, give exactly the stored balances; every acknowledged adjustment appears
   once (no lost or duplicated movement) and no entry appears that nobody asked for.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import Wallet
from tests.support import ADMIN_TOKEN, Account, Server, Signer

REPAY = "/papi/v1/repay-futures-negative-balance"
KILL_CYCLES = 20
WORKERS = 4
#: Longest a cycle runs before its kill (s); with restarts the test stays near a minute.
MAX_RUN_BEFORE_KILL_S = 0.35
CONCURRENT_CLIENTS = 64
OPS_PER_CLIENT = 4


def _worker(
    server: Server,
    accounts: list[Account],
    rng: random.Random,
    stop: threading.Event,
    acked: list[tuple[int, int, str, str, Decimal]],
    repays: Counter[str],
    lock: threading.Lock,
    ready: threading.Semaphore,
) -> None:
    with httpx.Client(timeout=5) as client:
        ready.release()  # a client costs ~0.1 s to build on a loaded machine: not load time
        while not stop.is_set():
            account = rng.choice(accounts)
            try:
                if rng.random() < 0.6:
                    wallet, reason, sign = rng.choice(
                        [
                            ("MARGIN", "DEPOSIT", ""),
                            ("UM", "REALIZED_PNL", "-"),
                            ("CM", "FUNDING_FEE", "-"),
                        ]
                    )
                    asset = rng.choice(["USDT", "BTC"])
                    amount = f"{sign}{rng.randint(1, 10**9) / 10**6:.6f}"
                    r = client.post(
                        f"{server.base_url}/admin/v1/accounts/{account.account_id}/adjustments",
                        json={"wallet": wallet, "asset": asset, "amount": amount, "reason": reason},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    )
                    if r.status_code == 200:
                        with lock:
                            acked.append(
                                (
                                    r.json()["tranId"],
                                    account.account_id,
                                    wallet,
                                    asset,
                                    Decimal(amount),
                                )
                            )
                else:
                    r = Signer(server.base_url, account).request("POST", REPAY, client=client)
                    with lock:
                        repays[str(r.status_code)] += 1
            except httpx.HTTPError:
                pass  # the server died under us: this change is unacknowledged


def _ledger(
    db_path: Path,
) -> tuple[dict[int, tuple[int, str]], list[tuple[int, int, str, str, Decimal]]]:
    conn = sqlite3.connect(db_path)
    try:
        entries = {
            t: (a, ty) for t, a, ty in conn.execute("SELECT tran_id, account_id, type FROM entries")
        }
        postings = [
            (t, a, w, s, Decimal(m))
            for t, a, w, s, m in conn.execute(
                "SELECT tran_id, account_id, wallet, asset, amount FROM postings"
                " ORDER BY tran_id, seq"
            )
        ]
    finally:
        conn.close()
    return entries, postings


def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    server = Server(tmp_path / "fault", ["--ip-weight-limit", "0", "--no-access-log"])
    server.start()
    accounts = [server.create_account(f"fault-{i}") for i in range(3)]
    acked: list[tuple[int, int, str, str, Decimal]] = []
    repays: Counter[str] = Counter()
    lock = threading.Lock()
    started = time.monotonic()
    for cycle in range(KILL_CYCLES):
        if cycle:
            server.start()
        stop = threading.Event()
        ready = threading.Semaphore(0)
        threads = []
        for _ in range(WORKERS):
            seeded = random.Random(rng.random())
            work = (server, accounts, seeded, stop, acked, repays, lock, ready)
            threads.append(threading.Thread(target=_worker, args=work))
        for thread in threads:
            thread.start()
        for _ in threads:  # the kill comes at a random moment of the load, not of its set-up
            ready.acquire(timeout=10)
        time.sleep(rng.uniform(0.05, MAX_RUN_BEFORE_KILL_S))
        server.kill9()
        stop.set()
        for thread in threads:
            thread.join(10)
    print(
        f"{KILL_CYCLES} kill -9 cycles in {time.monotonic() - started:.1f}s: {len(acked)}"
        f" acknowledged adjustments, repay answers {dict(repays)}"
    )
    assert len(acked) > KILL_CYCLES  # the load really ran
    server.start()  # recovers after the last kill, then stops cleanly
    assert len(server.journal(accounts[0].account_id)) > 0
    server.stop()

    entries, postings = _ledger(server.db_path)
    by_tran: dict[int, list[tuple[int, str, str, Decimal]]] = {}
    for tran_id, account_id, wallet, asset, amount in postings:
        by_tran.setdefault(tran_id, []).append((account_id, wallet, asset, amount))
    # Every acknowledged change is present, exactly as acknowledged.
    assert len({a[0] for a in acked}) == len(acked)
    for tran_id, account_id, wallet, asset, amount in acked:
        assert entries[tran_id][0] == account_id
        assert (account_id, wallet, asset, amount) in by_tran[tran_id]
    # Nothing half-applied: every entry has postings and sums to zero per asset.
    assert set(by_tran) == set(entries)
    for tran_id, rows in by_tran.items():
        totals: dict[str, Decimal] = {}
        for _, _, asset, amount in rows:
            totals[asset] = totals.get(asset, Decimal(0)) + amount
        assert all(v == 0 for v in totals.values()), (tran_id, rows)
    # Every asset sums to zero over the stored balances too, and verify is clean.
    conn = sqlite3.connect(server.db_path)
    sums = {a: Decimal(0) for a in ("USDT", "BTC")}
    for asset, amount in conn.execute("SELECT asset, amount FROM balances"):
        sums[asset] += Decimal(amount)
    conn.close()
    assert sums == {"USDT": 0, "BTC": 0}
    result = server.verify_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_64_concurrent_clients_on_one_account_equal_the_serial_model(server: Server) -> None:
    account = server.create_account("concurrent")
    server.adjust(account.account_id, "MARGIN", "USDT", "500", "DEPOSIT")
    barrier = threading.Barrier(CONCURRENT_CLIENTS)
    acked: list[int] = []
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            for op in range(OPS_PER_CLIENT):
                if (index + op) % 2 == 0:
                    wallet, amount, reason = rng.choice(
                        [("UM", "-3.5", "REALIZED_PNL"), ("MARGIN", "2.25", "DEPOSIT")]
                    )
                    r = http.post(
                        f"{server.base_url}/admin/v1/accounts/{account.account_id}/adjustments",
                        json={
                            "wallet": wallet,
                            "asset": "USDT",
                            "amount": amount,
                            "reason": reason,
                        },
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    )
                    assert r.status_code == 200, r.text
                    with lock:
                        acked.append(r.json()["tranId"])
                else:
                    r = Signer(server.base_url, account).request("POST", REPAY, client=http)
                    assert r.status_code in (200, 400), r.text
                    with lock:
                        answers[r.status_code] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONCURRENT_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(acked) == CONCURRENT_CLIENTS * OPS_PER_CLIENT // 2

    journal = sorted(server.journal(account.account_id), key=lambda e: e["tranId"])
    adjustments = [e["tranId"] for e in journal if e["type"] != "REPAY_FUTURES_NEGATIVE_BALANCE"]
    repay_entries = [e for e in journal if e["type"] == "REPAY_FUTURES_NEGATIVE_BALANCE"]
    # Every acknowledged adjustment once, nothing else (the first entry is the initial deposit).
    assert sorted(adjustments[1:]) == sorted(acked)
    assert len(repay_entries) <= answers[200]

    # Replay in commit order through the pure rules: each repay entry is exactly what the rule
    # plans from the balances the serial history gives at that point.
    model: dict[tuple[Wallet, str], Decimal] = {}
    for entry in journal:
        mine = [p for p in entry["postings"] if p["accountId"] == account.account_id]
        if entry["type"] == "REPAY_FUTURES_NEGATIVE_BALANCE":
            planned = rules.plan_repay(account.account_id, model)
            assert sorted((p.wallet.value, p.asset, p.amount) for p in planned) == sorted(
                (p["wallet"], p["asset"], Decimal(p["amount"])) for p in mine
            )
        for p in mine:
            key = (Wallet(p["wallet"]), p["asset"])
            model[key] = model.get(key, Decimal(0)) + Decimal(p["amount"])
    row = next(
        r
        for r in server.admin.request("GET", f"/accounts/{account.account_id}/balances").json()
        if r["asset"] == "USDT"
    )
    assert Decimal(row["crossMarginFree"]) == model.get((Wallet.MARGIN, "USDT"), Decimal(0))
    assert Decimal(row["umWalletBalance"]) == model.get((Wallet.UM, "USDT"), Decimal(0))
