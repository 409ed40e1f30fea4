"""Issue 11: ``verify`` proves what it claims. It runs the database's own integrity checks and
reports physical damage apart from ledger mismatches; it works on a read-only copy; the service
refuses to start on a damaged file or a read-only file system, with a message naming the path."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import ADMIN_TOKEN, Server, free_port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "papi_sandbox", *args],
        env={**os.environ, "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def serve_refused(db_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``serve`` that must refuse to start (killed by the timeout if it serves instead)."""
    return cli("serve", "--port", str(free_port()), "--data-dir", str(data_dir), "--db", db_url)


def ledger_with_entries(data_dir: Path, db_url: str | None = None) -> Server:
    server = Server(data_dir, [], db_url=db_url)
    server.start()
    try:
        for _ in range(3):
            account = server.create_account()
            server.adjust(account.account_id, "MARGIN", "USDT", "100")
            server.adjust(account.account_id, "UM", "USDT", "-5", "REALIZED_PNL")
    finally:
        server.stop()
    return server


def test_a_damaged_index_page_is_reported_and_refused(tmp_path: Path) -> None:
    server = ledger_with_entries(tmp_path / "data")
    db = server.db_path
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'entries_account'"
        ).fetchone()
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    with open(db, "r+b") as f:  # garbage over the index's cells, its header intact
        f.seek((root - 1) * page_size + 16)
        f.write(os.urandom(page_size - 32))
    result = cli("verify", "--db", f"sqlite:///{db}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DAMAGE" in result.stdout and "integrity_check" in result.stdout
    assert "MISMATCH " not in result.stdout  # the ledger itself replays fine: apart
    assert re.search(r"FAILED: [1-9]\d* physical problem\(s\) \(DAMAGE\), 0 ledger", result.stdout)
    refused = serve_refused(f"sqlite:///{db}", tmp_path / "data")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert str(db) in refused.stderr and "damaged" in refused.stderr
    assert "Traceback" not in refused.stderr


@contextlib.contextmanager
def tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): the read-only case")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_verify_reads_a_read_only_copy_and_serve_names_the_read_only_path(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "ro") as mount:
        server = ledger_with_entries(mount / "data")
        db = server.db_path
        (mount / "data" / "server.log").unlink()
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True
        )
        assert remount.returncode == 0, remount.stderr
        result = cli("verify", "--db", f"sqlite:///{db}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout and "checked 6 entries" in result.stdout
        refused = serve_refused(f"sqlite:///{db}", tmp_path / "data")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert str(db) in refused.stderr and "Traceback" not in refused.stderr
        # The data folder itself on the read-only file system: named too.
        refused = serve_refused(f"sqlite:///{tmp_path / 'other.db'}", mount / "data" / "new")
        assert refused.returncode == 2
        assert str(mount / "data" / "new") in refused.stderr
        assert "Traceback" not in refused.stderr


def test_postgres_verify_checks_constraints_apart_from_the_ledger(
    tmp_path: Path, pg_url: str
) -> None:
    ledger_with_entries(tmp_path / "data", pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE postings DROP CONSTRAINT postings_tran_id_fkey")
        conn.execute(
            "INSERT INTO postings (tran_id, seq, account_id, wallet, asset, amount)"
            " VALUES (999999, 0, 1, 'MARGIN', 'USDT', 0)"
        )
        conn.execute(
            "ALTER TABLE postings ADD CONSTRAINT postings_tran_id_fkey FOREIGN KEY (tran_id)"
            " REFERENCES entries(tran_id) NOT VALID"
        )
    result = cli("verify", "--db", pg_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DAMAGE constraint postings_tran_id_fkey of postings is not validated" in result.stdout
    assert "DAMAGE 1 postings without their entry" in result.stdout
