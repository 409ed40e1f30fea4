"""Progress of long work: shown on stderr when stderr is a terminal or when asked, never on
stdout, never when not asked on a pipe (src/papi_sandbox/progress.py)."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import pty
import select
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import EntryType, Wallet
from papi_sandbox.progress import NO_PROGRESS, Batched, Tick, progress_for, wants_progress
from papi_sandbox.store.dialect import SQLITE
from papi_sandbox.store.replay import LedgerReplay
from papi_sandbox.store.schema import MIGRATIONS, migrate
from papi_sandbox.store.sqlite import SQLiteStore, connect
from tests.store.test_contract import make_old_sqlite

ACCOUNTS = 30


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Recorder:
    """A Progress hook that remembers its stages and what they counted."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int | None, list[int]]] = []

    def stage(self, description: str, total: int | None = None) -> Tick:
        ticks: list[int] = []
        self.stages.append((description, total, ticks))
        return ticks.append


def _ledger(path: Path) -> Path:
    """A SQLite ledger of ACCOUNTS accounts, each with a deposit and a UM loss (2 entries)."""

    async def build() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            for _ in range(ACCOUNTS):
                account_id = await store.create_account("progress", None)
                for wallet, amount, reason in (
                    (Wallet.MARGIN, Decimal("100"), EntryType.DEPOSIT),
                    (Wallet.UM, Decimal("-40"), EntryType.REALIZED_PNL),
                ):
                    plan = functools.partial(
                        rules.plan_adjustment,
                        account_id,
                        wallet=wallet,
                        asset="USDT",
                        amount=amount,
                        reason=reason,
                    )
                    await store.transact(account_id, reason, plan)
        finally:
            await store.close()

    asyncio.run(build())
    return path


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ledger(tmp_path_factory.mktemp("progress") / "ledger.db")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "papi_sandbox", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )


# -- the switch ---------------------------------------------------------------------------------


def test_on_only_on_a_terminal_unless_asked() -> None:
    assert wants_progress(None, FakeTerminal()) is True
    assert wants_progress(None, io.StringIO()) is False
    assert wants_progress(True, io.StringIO()) is True
    assert wants_progress(False, FakeTerminal()) is False


def test_forced_on_writes_the_stages_to_its_stream() -> None:
    out = io.StringIO()
    with progress_for(True, out) as progress:
        tick = progress.stage("replaying", total=5)
        for _ in range(5):
            tick(1)
        counted = progress.stage("counting")  # size unknown: ends complete at what it counted
        counted(7)
    text = out.getvalue()
    assert "replaying" in text and "5/5" in text
    assert "counting" in text and "7/7" in text


def test_off_writes_nothing() -> None:
    out = FakeTerminal()
    with progress_for(False, out) as progress:
        assert progress is NO_PROGRESS
        progress.stage("anything", total=3)(3)
    assert out.getvalue() == ""
    piped = io.StringIO()
    with progress_for(None, piped) as progress:
        progress.stage("anything", total=3)(3)
    assert piped.getvalue() == ""


def test_batched_ticks_forward_every_n_and_the_rest() -> None:
    seen: list[int] = []
    tick = Batched(seen.append, every=4)
    for _ in range(10):
        tick(1)
    assert seen == [4, 4]
    tick.flush()
    assert seen == [4, 4, 2]


# -- the hook in verify and jobs -------------------------------------------------------------------


def test_verify_counts_every_entry_and_balance(ledger: Path) -> None:
    recorder = Recorder()
    report = SQLiteStore(ledger).verify_sync(recorder)
    assert report.ok
    (entries, total, ticks), (balances, _, balance_ticks) = recorder.stages
    assert entries.startswith("verify") and total == report.entries == sum(ticks)
    assert balances.startswith("verify") and sum(balance_ticks) == report.balances


def test_replay_without_a_hook_reports_the_same() -> None:
    plain, hooked = LedgerReplay(), LedgerReplay(Recorder())
    for replay in (plain, hooked):
        replay.report.entries = 1
        replay.posting(1, 1, "MARGIN", "USDT", Decimal("1"))
        replay.posting(1, 0, "EXTERNAL", "USDT", Decimal("-1"))
        replay.stored_balance(1, "MARGIN", "USDT", Decimal("1"))
        replay.stored_balance(0, "EXTERNAL", "USDT", Decimal("-1"))
    assert plain.finish() == hooked.finish()


# -- the commands ---------------------------------------------------------------------------------


def test_migrations_count_each_pending_statement(tmp_path: Path) -> None:
    conn = connect(tmp_path / "fresh.db")
    try:
        recorder = Recorder()
        assert migrate(conn, SQLITE, recorder) == (0, len(MIGRATIONS))
        again = Recorder()
        migrate(conn, SQLITE, again)
    finally:
        conn.close()
    assert [d for d, _, _ in recorder.stages] == [
        f"migration {m.version}: {m.summary}" for m in MIGRATIONS
    ]
    for (_, total, ticks), m in zip(recorder.stages, MIGRATIONS, strict=True):
        assert total == sum(ticks) == len(m.statements(SQLITE))
    assert again.stages == []  # nothing pending, nothing shown


def test_db_upgrade_of_an_old_ledger_shows_its_pending_migrations(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_old_sqlite(old, 1)  # a ledger of the first release: versions 2 to 5 are pending
    shown = cli("db", "upgrade", "--db", f"sqlite:///{old}", "--progress")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"schema upgraded from version 1 to {len(MIGRATIONS)}\n"
    assert "migration 1:" not in shown.stderr
    for m in MIGRATIONS[1:]:
        assert f"migration {m.version}: {m.summary}" in shown.stderr
    quiet = cli("db", "upgrade", "--db", f"sqlite:///{old}")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout == f"schema is at version {len(MIGRATIONS)}; nothing to do\n"


def test_verify_progress_when_asked_goes_to_stderr_only(ledger: Path) -> None:
    db = f"sqlite:///{ledger}"
    quiet = cli("verify", "--db", db)
    shown = cli("verify", "--db", db, "--progress")
    assert quiet.returncode == shown.returncode == 0, shown.stderr
    assert quiet.stderr == ""  # a pipe: off by default
    assert shown.stdout == quiet.stdout  # the report is untouched
    assert "verify: journal entries" in shown.stderr
    assert f"{2 * ACCOUNTS}/{2 * ACCOUNTS}" in shown.stderr
    assert cli("verify", "--db", db, "--no-progress").stderr == ""


def test_jobs_run_progress_keeps_stdout_one_json_line(tmp_path: Path) -> None:
    db = f"sqlite:///{_ledger(tmp_path / 'jobs.db')}"
    quiet = cli("jobs", "run", "interest", "--db", db, "--as-of", "2026-11-30T00:00:00Z")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    shown = cli("jobs", "run", "auto-repay", "--db", db, "--progress")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)  # exactly the JSON report, nothing else
    assert report["job"] == "auto-repay" and report["entries"] == ACCOUNTS
    assert "auto-repay" in shown.stderr and f"{ACCOUNTS}/{ACCOUNTS}" in shown.stderr


def test_verify_shows_progress_by_itself_on_a_terminal(ledger: Path) -> None:
    """stderr on a pseudo-terminal, stdout on a pipe: progress appears on the terminal only."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "papi_sandbox", "verify", "--db", f"sqlite:///{ledger}"],
            stdout=subprocess.PIPE,
            stderr=follower,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
        )
        os.close(follower)
        follower = -1
        terminal = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            terminal += chunk
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert proc.returncode == 0
    assert b"verify: journal entries" in terminal
    assert stdout.decode().startswith(f"checked {2 * ACCOUNTS} entries")
    assert "verify:" not in stdout.decode() and "\x1b" not in stdout.decode()
