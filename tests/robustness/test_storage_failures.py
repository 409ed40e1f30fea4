"""Issue 11: storage failures are retryable refusals (503 -1001, nothing applied, one log line),
health tells the truth (/readyz), and /metrics counts without scanning the ledger.

Real faults, no mocks: another process holding SQLite's write lock, a full tmpfs, a PostgreSQL
backend terminated under the server, a PostgreSQL row lock held by another session."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.support import Server, Signer

REPAY = "/papi/v1/repay-futures-negative-balance"


def adjust(server: Server, account_id: int, amount: str = "1") -> httpx.Response:
    return server.admin.request(
        "POST",
        f"/accounts/{account_id}/adjustments",
        json={"wallet": "MARGIN", "asset": "USDT", "amount": amount, "reason": "DEPOSIT"},
    )


def assert_disconnected(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {
        "code": -1001,
        "msg": "Internal error; unable to process your request. Please try again.",
    }


def log_records(server: Server) -> list[dict[str, Any]]:
    assert server.log_path is not None
    return [
        orjson.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]


def readyz(server: Server) -> httpx.Response:
    time.sleep(1.1)  # past the readiness cache
    return httpx.get(f"{server.base_url}/readyz", timeout=10)


def metric(server: Server, name: str) -> float | None:
    for line in httpx.get(f"{server.base_url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_a_foreign_sqlite_lock_is_a_bounded_503_and_not_ready(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--store-timeout", "1"])
    server.start()
    try:
        account = server.create_account()
        assert adjust(server, account.account_id, "10").status_code == 200
        server.adjust(account.account_id, "UM", "USDT", "-4", "REALIZED_PNL")
        ready = httpx.get(f"{server.base_url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"store": "ok", "writer": "ok"}
        before = server.journal(account.account_id)
        other = sqlite3.connect(server.db_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            started = time.monotonic()
            assert_disconnected(adjust(server, account.account_id))
            assert time.monotonic() - started < 4, "the store wait is bounded (1 s here)"
            assert_disconnected(Signer(server.base_url, account).request("POST", REPAY))
            assert httpx.get(f"{server.base_url}/healthz").status_code == 200  # liveness
            r = readyz(server)
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["status"] == "unavailable" and body["failing"] == ["store"]
            assert "cannot commit" in body["checks"]["store"]
            metrics = httpx.get(f"{server.base_url}/metrics").text
            assert 'papi_ready{check="store"} 0.0' in metrics
            assert "papi_store_unavailable_total 2.0" in metrics
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert server.journal(account.account_id) == before  # nothing applied
        assert readyz(server).status_code == 200
        assert adjust(server, account.account_id).status_code == 200
    finally:
        server.stop()
    records = log_records(server)
    failures = [r for r in records if str(r["msg"]).startswith("store unavailable")]
    assert len(failures) == 2, failures
    assert failures[0]["exc"].count("Traceback") == 1  # one line, one traceback
    assert "database is locked" in failures[0]["msg"]
    assert "exc" not in failures[1]  # one traceback per interval, one line per request
    assert not [r for r in records if "Exception in ASGI" in str(r["msg"])]
    assert not [r for r in records if str(r["msg"]).startswith("unhandled")]
    assert server.verify_cli().returncode == 0


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    where.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): the full-disk case")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def test_a_full_disk_is_a_503_with_nothing_applied(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        server = Server(tmp_path / "srv", [], db_url=None)
        server.extra_args = ["--db", f"sqlite:///{disk / 'ledger.db'}", "--store-timeout", "1"]
        server.start()
        try:
            account = server.create_account()
            assert adjust(server, account.account_id, "1000").status_code == 200
            fill(disk / "junk")
            answers = [adjust(server, account.account_id, "0.5") for _ in range(60)]
            refused = [r for r in answers if r.status_code != 200]
            assert refused, "the disk is full: some write must fail"
            for r in refused:
                assert_disconnected(r)
            r = readyz(server)
            assert r.status_code == 503 and "store" in r.json()["failing"], r.text
            acknowledged = {r.json()["tranId"] for r in answers if r.status_code == 200}
            (disk / "junk").unlink()
            assert readyz(server).status_code == 200
            journal = server.journal(account.account_id)
            # Exactly the acknowledged changes are in the journal; nothing else, nothing half.
            assert {e["tranId"] for e in journal} - {journal[-1]["tranId"]} == acknowledged
            balance = server.admin.request("GET", f"/accounts/{account.account_id}/balances").json()
            margin = next(b for b in balance if b["asset"] == "USDT")["crossMarginFree"]
            assert float(margin) == 1000 + 0.5 * len(acknowledged)
        finally:
            server.stop()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "papi_sandbox",
                "verify",
                "--db",
                f"sqlite:///{disk / 'ledger.db'}",
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        records = log_records(server)
        assert any(
            "disk is full" in str(r["msg"]) for r in records if "store unavailable" in str(r["msg"])
        )


def terminate_backends(url: str) -> int:
    name = url.rpartition("/")[2]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_a_terminated_postgres_backend_is_retried(tmp_path: Path, pg_url: str) -> None:
    server = Server(tmp_path / "srv", [], db_url=pg_url)
    server.start()
    name = pg_url.rpartition("/")[2]
    try:
        account = server.create_account()
        assert adjust(server, account.account_id, "5").status_code == 200
        signer = Signer(server.base_url, account)
        # Idle pooled connections terminated: the next read and write still succeed.
        assert terminate_backends(pg_url) >= 1
        assert signer.request("GET", "/papi/v1/balance").status_code == 200
        assert terminate_backends(pg_url) >= 1
        assert adjust(server, account.account_id, "2").status_code == 200
        # A backend terminated in the middle of the server's transaction (it waits for a row
        # lock another session holds): it cannot have committed, so it is retried once.
        with psycopg.connect(pg_url) as other:
            other.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (account.account_id,))
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(adjust, server, account.account_id, "3")
                waiting: list[Any] = []
                deadline = time.monotonic() + 4
                while not waiting and time.monotonic() < deadline:
                    waiting = other.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                        " AND wait_event_type = 'Lock'",
                        (name,),
                    ).fetchall()
                assert len(waiting) == 1
                other.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
                other.rollback()  # the lock is free for the retried transaction
                r = pending.result(timeout=10)
        assert r.status_code == 200, r.text
        journal = server.journal(account.account_id)
        assert [e["postings"][0]["amount"] for e in journal if e["type"] == "DEPOSIT"] == [
            "3.00000000",
            "2.00000000",
            "5.00000000",
        ]
        # A row lock held by another session: bounded by --store-timeout (5 s), then 503.
        with psycopg.connect(pg_url) as other:
            other.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (account.account_id,))
            started = time.monotonic()
            assert_disconnected(adjust(server, account.account_id, "1"))
            assert 4.5 < time.monotonic() - started < 8
            other.rollback()
        assert len(server.journal(account.account_id)) == 3
    finally:
        server.stop()
    records = log_records(server)
    assert any("connection lost before COMMIT" in str(r["msg"]) for r in records)
    assert server.verify_cli().returncode == 0


def test_metrics_count_entries_without_scanning_the_journal(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--ip-weight-limit", "0"])
    server.start()
    try:
        account = server.create_account()
        for _ in range(3):
            assert adjust(server, account.account_id).status_code == 200
        server.stop()
        server.start()  # seeded once at start
        server.adjust(account.account_id, "MARGIN", "BNB", "100")
        # A row another process adds to the journal is not seen by a scrape: none scans it.
        with sqlite3.connect(server.db_path) as other:
            other.execute(
                "INSERT INTO entries (account_id, type, time_ms) VALUES (?, 'PROBE', 0)",
                (account.account_id,),
            )
        signer = Signer(server.base_url, account)
        codes = [
            signer.request(
                "POST", "/papi/v1/bnb-transfer", {"amount": "1", "transferSide": "TO_UM"}
            ).status_code
            for _ in range(11)
        ]
        assert codes == [200] * 10 + [429]
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert 'papi_ledger_entries{type="DEPOSIT"} 4.0' in metrics
        assert 'papi_ledger_entries{type="BNB_TRANSFER"} 10.0' in metrics
        assert "PROBE" not in metrics
        # Per-account 429s are counted apart from IP-weight 429s.
        assert 'papi_account_limit_refusals_total{limit="bnb-transfer"} 1.0' in metrics
        assert 'papi_rate_limit_refusals_total{status="429"}' not in metrics
    finally:
        server.stop()


def test_an_unreachable_shared_limiter_is_not_ready(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    server = Server(
        tmp_path / "srv",
        ["--limits", dead, "--limits-prefix", uuid.uuid4().hex],
    )
    server.start()
    try:
        r = readyz(server)
        assert r.status_code == 503, r.text
        assert r.json()["failing"] == ["limiter"]
        assert 'papi_ready{check="limiter"} 0.0' in httpx.get(f"{server.base_url}/metrics").text
    finally:
        server.stop()


def _closed_port() -> int:
    from tests.support import free_port

    return free_port()
