"""Scheduled jobs: arithmetic (semantics.md), idempotence per slot, kill half-way, the operator
API, the CLI, the configuration and the scheduler's clock."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from papi_sandbox.jobs.config import ConfigError, JobsConfig, load_config, parse_config
from papi_sandbox.jobs.runner import Job, next_slot_after, run_job, slot_at_or_before
from papi_sandbox.jobs.scheduler import run_scheduler
from papi_sandbox.ledger import rules
from papi_sandbox.ledger.interest import InterestPolicy
from papi_sandbox.ledger.model import EntryType, Wallet
from papi_sandbox.store.base import JobAccount, JobPlan
from papi_sandbox.store.dialect import Db
from papi_sandbox.store.sqlite import SQLiteStore
from tests.support import Server, Signer

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[schedule]
auto_repay = ["22:00", "23:00"]
interest = ["00:00"]

[interest]
default_threshold = "0"
default_daily_rate = "0.0005"

[interest.daily_rates]
ETH = 0.001

[interest.thresholds.1]
USDT = "1000"
"""


@pytest.fixture
def jobs_server(tmp_path: Path) -> Iterator[Server]:
    config = tmp_path / "jobs.toml"
    config.write_text(CONFIG)
    srv = Server(tmp_path / "server", ["--ip-weight-limit", "0", "--config", str(config)])
    srv.start()
    yield srv
    srv.stop()


def run(server: Server, job: str, as_of: str | int | None = None) -> dict[str, Any]:
    r = server.admin.request("POST", f"/jobs/{job}", json={} if as_of is None else {"asOf": as_of})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def balance(server: Server, account_id: int, asset: str) -> dict[str, Any]:
    r = server.admin.request("GET", f"/accounts/{account_id}/balances")
    rows = {row["asset"]: row for row in r.json()}
    return rows[asset]


def entries_of(server: Server, account_id: int, entry_type: str) -> list[dict[str, Any]]:
    return [e for e in server.journal(account_id) if e["type"] == entry_type]


# -- auto-repay -----------------------------------------------------------------------------------


def test_auto_repay_job_respects_the_switch_and_is_idempotent_per_slot(
    jobs_server: Server,
) -> None:
    srv = jobs_server
    on, off, broke = srv.create_account(), srv.create_account(), srv.create_account()
    for acc in (on, off):
        srv.adjust(acc.account_id, "MARGIN", "USDT", "1000", "DEPOSIT")
        srv.adjust(acc.account_id, "UM", "USDT", "-300", "REALIZED_PNL")
        srv.adjust(acc.account_id, "CM", "USDT", "-50", "FUNDING_FEE")
    srv.adjust(broke.account_id, "UM", "BTC", "-1", "REALIZED_PNL")
    r = Signer(srv.base_url, off).request(
        "POST", "/papi/v1/repay-futures-switch", {"autoRepay": "false"}
    )
    assert r.status_code == 200, r.text

    report = run(srv, "auto-repay", "2030-01-01T22:30:00Z")
    assert report["slot"] == "2030-01-01T22:00:00Z"
    assert (report["accounts"], report["entries"], report["refused"]) == (3, 1, 1)
    assert report["amounts"] == {"USDT": "350.00000000"}
    row = balance(srv, on.account_id, "USDT")
    assert (row["crossMarginFree"], row["negativeBalance"]) == ("650.00000000", "0.00000000")
    assert balance(srv, off.account_id, "USDT")["negativeBalance"] == "350.00000000"
    [entry] = entries_of(srv, on.account_id, "AUTO_REPAY_FUTURES")
    assert [p["amount"] for p in entry["postings"]] == [
        "-300.00000000",
        "300.00000000",
        "-50.00000000",
        "50.00000000",
    ]

    # The same slot again (any time within it): nothing more, even after a new loss.
    srv.adjust(on.account_id, "UM", "USDT", "-10", "REALIZED_PNL")
    again = run(srv, "auto-repay", "2030-01-01T22:59:59Z")
    assert (again["entries"], again["alreadyDone"]) == (0, 3)
    assert balance(srv, on.account_id, "USDT")["umWalletBalance"] == "-10.00000000"

    # The next slot (23:00) repays the new loss.
    later = run(srv, "auto-repay", "2030-01-01T23:00:00Z")
    assert later["entries"] == 1 and later["amounts"] == {"USDT": "10.00000000"}
    assert len(entries_of(srv, on.account_id, "AUTO_REPAY_FUTURES")) == 2
    assert srv.admin.request("GET", "/verify").json()["ok"] is True


# -- interest -------------------------------------------------------------------------------------


def test_interest_job_threshold_rounding_history_and_idempotence(jobs_server: Server) -> None:
    srv = jobs_server
    vip1, small, eth = srv.create_account(), srv.create_account(), srv.create_account()
    r = srv.admin.request("PUT", f"/accounts/{vip1.account_id}/settings", json={"vipLevel": 1})
    assert r.json() == {"autoRepay": True, "vipLevel": 1}
    # Threshold case: VIP 1 has 1000 USDT free of interest: -1500 + 1000 = -500 -> 0.25.
    srv.adjust(vip1.account_id, "UM", "USDT", "-1500", "REALIZED_PNL")
    # Rounding case: 0.00000003 * 0.0005 = 0.000000000015 -> 0.00000001 (rounded up).
    srv.adjust(small.account_id, "CM", "BTC", "-0.00000003", "FUNDING_FEE")
    # Per-asset rate and wallet choice: ETH at 0.001, CM holds the larger negative -> CM pays.
    srv.adjust(eth.account_id, "UM", "ETH", "-1", "REALIZED_PNL")
    srv.adjust(eth.account_id, "CM", "ETH", "-3", "REALIZED_PNL")
    srv.adjust(eth.account_id, "MARGIN", "ETH", "2", "DEPOSIT")  # total -2

    report = run(srv, "interest", "2030-01-02T00:00:00Z")
    assert report["slot"] == "2030-01-02T00:00:00Z"
    assert report["entries"] == 3
    assert report["amounts"] == {"BTC": "0.00000001", "ETH": "0.00200000", "USDT": "0.25000000"}
    assert balance(srv, vip1.account_id, "USDT")["umWalletBalance"] == "-1500.25000000"
    assert balance(srv, small.account_id, "BTC")["cmWalletBalance"] == "-0.00000004"
    eth_row = balance(srv, eth.account_id, "ETH")
    assert (eth_row["umWalletBalance"], eth_row["cmWalletBalance"]) == (
        "-1.00000000",
        "-3.00200000",
    )
    [entry] = entries_of(srv, vip1.account_id, "NEGATIVE_BALANCE_INTEREST")
    assert entry["postings"] == [
        {
            "accountId": vip1.account_id,
            "wallet": "UM",
            "asset": "USDT",
            "amount": "-0.25000000",
        },
        {"accountId": 0, "wallet": "EXTERNAL", "asset": "USDT", "amount": "0.25000000"},
    ]

    # Twice for the same slot: charged once.
    again = run(srv, "interest", "2030-01-02T12:00:00Z")
    assert (again["entries"], again["alreadyDone"]) == (0, 3)
    assert len(entries_of(srv, vip1.account_id, "NEGATIVE_BALANCE_INTEREST")) == 1

    # The history endpoint (explicit window: the slot is in the future of the test clock).
    slot_ms = report["slotMs"]
    signer = Signer(srv.base_url, vip1)
    r = signer.request(
        "GET",
        "/papi/v1/portfolio/interest-history",
        {"startTime": slot_ms - 1000, "endTime": slot_ms},
    )
    assert r.status_code == 200, r.text
    assert r.json() == [
        {
            "asset": "USDT",
            "interest": "0.25000000",
            "interestAccuredTime": slot_ms,
            "interestRate": "0.00050000",
            "principal": "500.00000000",
        }
    ]
    assert srv.admin.request("GET", "/verify").json()["ok"] is True


def test_interest_history_newest_first_size_and_asset(jobs_server: Server) -> None:
    srv = jobs_server
    acc = srv.create_account()
    srv.adjust(acc.account_id, "UM", "USDT", "-100", "REALIZED_PNL")
    srv.adjust(acc.account_id, "UM", "BTC", "-1", "REALIZED_PNL")
    slots = [run(srv, "interest", f"2030-03-{day:02d}T00:00:00Z")["slotMs"] for day in range(1, 13)]
    signer = Signer(srv.base_url, acc)
    path = "/papi/v1/portfolio/interest-history"
    window = {"startTime": slots[0], "endTime": slots[-1]}
    rows = signer.request("GET", path, window).json()
    assert len(rows) == 10  # default size
    assert [r["interestAccuredTime"] for r in rows] == sorted(
        (r["interestAccuredTime"] for r in rows), reverse=True
    )
    assert rows[0]["interestAccuredTime"] == slots[-1]
    usdt = signer.request("GET", path, {**window, "asset": "USDT", "size": 100}).json()
    assert len(usdt) == 12 and {r["asset"] for r in usdt} == {"USDT"}
    # Compounding: each day's principal includes the interest charged before it.
    assert D(usdt[0]["principal"]) > D(usdt[-1]["principal"]) == D("100")
    # endTime alone: the 7 days before it.
    last7 = signer.request("GET", path, {"endTime": slots[-1], "size": 100}).json()
    assert len(last7) == 2 * 8  # 8 daily slots lie within [end - 7 days, end], two assets each


# -- on demand from the CLI -----------------------------------------------------------------------


def test_cli_runs_a_job_and_the_server_sees_it(jobs_server: Server, tmp_path: Path) -> None:
    srv = jobs_server
    acc = srv.create_account()
    srv.adjust(acc.account_id, "MARGIN", "USDT", "5", "DEPOSIT")
    srv.adjust(acc.account_id, "UM", "USDT", "-7", "REALIZED_PNL")
    cli = [sys.executable, "-m", "papi_sandbox", "jobs", "run"]
    db = ["--db", f"sqlite:///{srv.db_path}"]
    done = subprocess.run(
        [*cli, "auto-repay", "--as-of", "2030-05-05T23:10:00", *db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"slot":"2030-05-05T23:00:00Z"' in done.stdout
    assert '"entries":1' in done.stdout
    assert balance(srv, acc.account_id, "USDT")["umWalletBalance"] == "-2.00000000"
    # Same slot through the operator API: already done.
    assert run(srv, "auto-repay", "2030-05-05T23:30:00Z")["entries"] == 0

    bad = subprocess.run([*cli, "payday", *db], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Unknown job" in bad.stderr
    missing = subprocess.run(
        [*cli, "interest", "--db", f"sqlite:///{tmp_path}/none.db"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "No ledger at" in missing.stderr


def test_admin_job_errors(jobs_server: Server) -> None:
    r = jobs_server.admin.request("POST", "/jobs/payday", json={})
    assert (r.status_code, r.json()["code"]) == (404, -1000)
    r = jobs_server.admin.request("POST", "/jobs/interest", json={"asOf": "yesterday"})
    assert (r.status_code, r.json()["code"]) == (400, -1102)
    r = jobs_server.admin.request("POST", "/jobs/interest", json={"when": "now"})
    assert r.status_code == 400
    # Older than the markers are kept (7 days): refused, so it can never apply twice.
    r = jobs_server.admin.request("POST", "/jobs/interest", json={"asOf": "2020-01-01T00:00:00Z"})
    assert (r.status_code, r.json()["code"]) == (400, -1102) and "days old" in r.json()["msg"]
    r = jobs_server.admin.request("POST", "/jobs/interest", json={}, headers={"Authorization": "x"})
    assert r.status_code == 401
    r = jobs_server.admin.request("PUT", "/accounts/1/settings", json={"vipLevel": 10})
    assert r.status_code == 400
    r = jobs_server.admin.request("PUT", "/accounts/999999/settings", json={"vipLevel": 1})
    assert r.status_code == 404


# -- killed half-way ------------------------------------------------------------------------------


class Crash(Exception):
    """Stands for the process dying in the middle of a batch."""


async def _ledger(path: Path, accounts: int, margin: D = D("100")) -> SQLiteStore:
    """Accounts with ``margin`` USDT in MARGIN and -40 USDT in UM."""
    store = SQLiteStore(path)
    await store.open()
    for _ in range(accounts):
        account_id = await store.create_account(None, None)
        for wallet, amount in ((Wallet.MARGIN, margin), (Wallet.UM, D("-40"))):
            await store.transact(
                account_id,
                EntryType.DEPOSIT if amount > 0 else EntryType.REALIZED_PNL,
                functools.partial(
                    rules.plan_adjustment,
                    account_id,
                    wallet=wallet,
                    asset="USDT",
                    amount=amount,
                    reason=EntryType.DEPOSIT if amount > 0 else EntryType.REALIZED_PNL,
                ),
            )
    return store


@pytest.mark.parametrize("job", [Job.AUTO_REPAY, Job.INTEREST])
def test_killed_half_way_the_rerun_finishes_and_never_doubles(tmp_path: Path, job: Job) -> None:
    accounts, crash_after = 11, 7
    config = JobsConfig(batch_accounts=3)
    slot = datetime(2030, 1, 1, 22 if job is Job.AUTO_REPAY else 0, tzinfo=UTC)

    async def scenario() -> tuple[int, int, int]:
        # 10 in MARGIN against -40 in UM: repay leaves -30, so every account stays a candidate
        # (and owes interest) for the re-runs to skip.
        store = await _ledger(tmp_path / "ledger.db", accounts, margin=D("10"))
        try:
            from papi_sandbox.jobs.runner import planner_for

            real = planner_for(job, config)
            seen = 0

            def crashing(account: JobAccount) -> JobPlan:
                nonlocal seen
                seen += 1
                if seen > crash_after:
                    raise Crash
                return real(account)

            with pytest.raises(Crash):
                await run_job(store, job, slot, config, planner=crashing)
            # Batches of 3: two committed (6 accounts); the third died with its 7th account...
            # and its whole batch (accounts 7-9) rolled back with it.
            first_entries = await _count(store, job)
            report = await run_job(store, job, slot, config)
            again = await run_job(store, job, slot, config)
            assert again.entries == 0 and again.already_done == accounts
            return first_entries, report.entries, await _count(store, job)
        finally:
            await store.close()

    first, rerun, total = asyncio.run(scenario())
    assert (first, rerun, total) == (6, accounts - 6, accounts)
    report = SQLiteStore(tmp_path / "ledger.db").verify_sync()
    assert report.ok, report.problems


async def _count(store: SQLiteStore, job: Job) -> int:
    def op(db: Db) -> int:
        return int(
            db.one("SELECT COUNT(*) FROM entries WHERE type = ?", (job.entry_type.value,))[0]
        )

    return await store.read(op)


# -- configuration --------------------------------------------------------------------------------


def test_config_defaults_and_file(tmp_path: Path) -> None:
    default = load_config(None)
    assert default.auto_repay_times == (time(22), time(23))
    assert default.interest_times == (time(0),)
    assert default.interest.threshold("USDT", 5) == 0
    assert default.interest.daily_rate("DOGE") == D("0.0005")
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert config.interest.threshold("USDT", 1) == D("1000")
    assert config.interest.threshold("USDT", 0) == 0
    assert config.interest.daily_rate("ETH") == D("0.001")  # a TOML number, read exactly


@pytest.mark.parametrize(
    "data",
    [
        {"schedule": {"auto_repay": ["25:00"]}},
        {"schedule": {"auto_repay": []}},
        {"schedule": {"when": ["22:00"]}},
        {"interest": {"default_daily_rate": "-0.1"}},
        {"interest": {"default_daily_rate": "2"}},
        {"interest": {"default_daily_rate": "0.000000001"}},
        {"interest": {"default_daily_rate": True}},
        {"interest": {"default_threshold": "-5"}},
        {"interest": {"thresholds": {"vip": {"USDT": "1"}}}},
        {"interest": {"thresholds": {"10": {"USDT": "1"}}}},
        {"interest": {"daily_rates": {"usdt": "0.1"}}},
        {"jobs": {"batch_accounts": 0}},
        {"colour": "blue"},
    ],
)
def test_config_refuses_bad_values(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_config(data)


def test_serve_refuses_a_bad_config_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[interest]\ndefault_daily_rate = 'lots'\n")
    done = subprocess.run(
        [sys.executable, "-m", "papi_sandbox", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PAPI_SANDBOX_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2 and "Bad configuration" in done.stderr


#: Where a decimal is read from the TOML file: (table, key, a TOML line's prefix).
TOML_DECIMALS = [
    ("[interest]", "default_daily_rate"),
    ("[interest]", "default_threshold"),
    ("[interest.daily_rates]", "BTC"),
    ('[market.feed]\nkind = "random_walk"\nsymbols = ["BTCUSDT"]', "step"),
    ('[market]\ncollateral_rates = { BTC = "0.9" }\n[market.symbols.BTCUSDT]', "tick_size"),
]


@pytest.mark.parametrize(("table", "key"), TOML_DECIMALS, ids=[k for _, k in TOML_DECIMALS])
def test_toml_numbers_are_read_by_their_own_text(tmp_path: Path, table: str, key: str) -> None:
    """A TOML float goes through the grammar as its text, like a string and like a variable:
    an exponent, an underscore, a sign or inf/nan is refused whatever its value, and a plain
    decimal is taken even where Python's Decimal would print it with an exponent (1E-7)."""
    path = tmp_path / "c.toml"
    for number in ("1e-3", "1E-3", "5e-1", "1_0.5", "+0.5", "inf", "nan", "0.1e1"):
        path.write_text(f"{table}\n{key} = {number}\n")
        with pytest.raises(ConfigError):
            load_config(path)
    path.write_text(f"{table}\n{key} = 0.0000001\n")
    load_config(path)
    path.write_text(f'{table}\n{key} = "1e-3"\n')  # the same rule as a string
    with pytest.raises(ConfigError):
        load_config(path)


# -- the clock ------------------------------------------------------------------------------------


def test_slots() -> None:
    times = (time(22), time(23))
    at = datetime(2030, 1, 1, 22, 30, tzinfo=UTC)
    assert slot_at_or_before(times, at) == datetime(2030, 1, 1, 22, tzinfo=UTC)
    assert slot_at_or_before(times, datetime(2030, 1, 1, 21, tzinfo=UTC)) == datetime(
        2029, 12, 31, 23, tzinfo=UTC
    )
    assert next_slot_after(times, at) == datetime(2030, 1, 1, 23, tzinfo=UTC)
    assert next_slot_after(times, datetime(2030, 1, 1, 23, tzinfo=UTC)) == datetime(
        2030, 1, 2, 22, tzinfo=UTC
    )
    assert slot_at_or_before((time(0),), datetime(2030, 1, 2, tzinfo=UTC)) == datetime(
        2030, 1, 2, tzinfo=UTC
    )


class _Stop(Exception):
    pass


def test_scheduler_runs_each_job_at_its_time(tmp_path: Path) -> None:
    """A fake clock that advances by what the scheduler sleeps: 21:59 -> 22:00 repay -> 23:00
    repay -> 00:00 interest; stops when it would sleep past 00:01."""
    clock = [datetime(2030, 1, 1, 21, 59, tzinfo=UTC)]
    stop_at = datetime(2030, 1, 2, 0, 1, tzinfo=UTC)

    async def sleep(seconds: float) -> None:
        clock[0] = clock[0] + __import__("datetime").timedelta(seconds=seconds)
        if clock[0] > stop_at:
            raise _Stop

    async def scenario() -> tuple[list[Any], list[Any]]:
        store = await _ledger(tmp_path / "ledger.db", 1)
        # a second account, negative and with nothing to repay with: interest at 00:00
        account_id = await store.create_account(None, None)
        await store.transact(
            account_id,
            EntryType.REALIZED_PNL,
            functools.partial(
                rules.plan_adjustment,
                account_id,
                wallet=Wallet.CM,
                asset="USDT",
                amount=D("-10"),
                reason=EntryType.REALIZED_PNL,
            ),
        )
        config = JobsConfig(interest=InterestPolicy())
        try:
            with pytest.raises(_Stop):
                await run_scheduler(store, config, now=lambda: clock[0], sleep=sleep)

            def marks(conn: Db) -> list[Any]:
                return conn.execute(
                    "SELECT job, slot_ms, account_id, tran_id IS NOT NULL FROM job_marks"
                    " ORDER BY slot_ms, account_id"
                ).fetchall()

            def interest(conn: Db) -> list[Any]:
                return conn.execute(
                    "SELECT account_id, interest, accrued_ms FROM interest_records"
                ).fetchall()

            return await store.read(marks), await store.read(interest)
        finally:
            await store.close()

    marks, interest = asyncio.run(scenario())
    at_22 = int(datetime(2030, 1, 1, 22, tzinfo=UTC).timestamp() * 1000)
    at_23 = at_22 + 3_600_000
    at_00 = at_23 + 3_600_000
    assert marks == [
        ("auto-repay", at_22, 1, 1),  # repaid
        ("auto-repay", at_22, 2, 0),  # nothing in MARGIN: refused, marked
        ("auto-repay", at_23, 2, 0),
        ("interest", at_00, 2, 1),
    ]
    assert interest == [(2, "0.00500000", at_00)]


# -- the bench, tiny ------------------------------------------------------------------------------


def test_bench_smoke(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_jobs.py"), "--accounts", "1000", "--verify"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "auto-repay:" in done.stdout and "100 entries" in done.stdout
    assert "verify: OK" in done.stdout


def test_kill_9_of_a_running_job_then_rerun_charges_each_account_once(tmp_path: Path) -> None:
    """A real process killed in the middle of its sweep (as soon as its first batch is
    committed): a re-run brings every account to exactly one interest entry for the slot."""
    import time as time_mod

    from bench.bench_jobs import fill  # the bench's bulk fill

    db = tmp_path / "ledger.db"
    accounts = 60_000
    fill(db, accounts)
    # Owing interest: every 20th account (-1500 UM against 1000 MARGIN) and every 30th (BTC).
    owing = accounts // 20 + accounts // 30 - accounts // 60
    cli = [sys.executable, "-m", "papi_sandbox", "jobs", "run", "interest"]
    args = ["--as-of", "2030-01-01T00:00:00Z", "--db", f"sqlite:///{db}"]
    count_sql = "SELECT COUNT(*) FROM entries WHERE type = 'NEGATIVE_BALANCE_INTEREST'"
    charged = 0
    with subprocess.Popen([*cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        deadline = time_mod.monotonic() + 60
        with sqlite3.connect(db, timeout=30) as conn:
            while charged == 0 and proc.poll() is None and time_mod.monotonic() < deadline:
                time_mod.sleep(0.005)
                charged = conn.execute(count_sql).fetchone()[0]
        proc.kill()
        proc.wait()
    with sqlite3.connect(db) as conn:
        charged = conn.execute(count_sql).fetchone()[0]
    assert 0 < charged < owing  # killed half-way, after some batches committed
    done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        per_account = conn.execute(
            "SELECT MAX(n), COUNT(*) FROM (SELECT COUNT(*) AS n FROM entries"
            " WHERE type = 'NEGATIVE_BALANCE_INTEREST' GROUP BY account_id)"
        ).fetchone()
    assert per_account == (1, owing)
    assert f'"entries":{owing - charged}' in done.stdout
    assert SQLiteStore(db).verify_sync().ok


def test_serve_with_the_scheduler_starts_and_stops_cleanly(tmp_path: Path) -> None:
    srv = Server(tmp_path / "server", ["--scheduler"])
    srv.start()
    try:
        assert srv.admin.request("GET", "/verify").status_code == 200
    finally:
        assert srv.proc is not None
        proc = srv.proc
        srv.stop()
    assert proc.returncode == 0
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()
