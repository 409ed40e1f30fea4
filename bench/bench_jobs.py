"""Bench the scheduled jobs: fill a SQLite ledger with N accounts, then time one auto-repay sweep
and one interest run over it.

    .venv/bin/python bench/bench_jobs.py                 # 1,000,000 accounts
    .venv/bin/python bench/bench_jobs.py --accounts 10000

The ledger is filled fast with direct bulk SQL of balanced entries (not via HTTP): every account
gets a 1000 USDT deposit into MARGIN; every 10th account is negative: a realized loss in UM USDT
(half of them 500, which auto-repay covers; half 1500, which leaves 500 negative for interest),
and every 30th a funding fee of 0.01 BTC in CM too (a second negative asset that has no BTC in
MARGIN). The fill runs in a child process so that the peak RSS printed is the jobs' own.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from papi_sandbox import money
from papi_sandbox.jobs.config import JobsConfig
from papi_sandbox.jobs.runner import Job, JobReport, run_job, slot_at_or_before
from papi_sandbox.progress import Progress, progress_for
from papi_sandbox.store.dialect import SQLITE
from papi_sandbox.store.schema import migrate
from papi_sandbox.store.sqlite import SQLiteStore

#: Accounts written per fill transaction (bounds the fill's memory).
FILL_CHUNK_ACCOUNTS = 50_000
DEPOSIT_USDT = Decimal("1000")
SMALL_LOSS_USDT = Decimal("500")
LARGE_LOSS_USDT = Decimal("1500")
FUNDING_BTC = Decimal("0.01")
NOW_MS = 1_700_000_000_000


def _storage(value: Decimal) -> str:
    return money.to_storage(value)


def account_entries(account_id: int) -> Iterator[tuple[str, list[tuple[str, str, Decimal]]]]:
    """(entry type, [(wallet, asset, amount) of the account]) for one account; the system
    account's counter-postings mirror them."""
    yield "DEPOSIT", [("MARGIN", "USDT", DEPOSIT_USDT)]
    if account_id % 10 == 0:
        loss = LARGE_LOSS_USDT if account_id % 20 == 0 else SMALL_LOSS_USDT
        yield "REALIZED_PNL", [("UM", "USDT", -loss)]
        if account_id % 30 == 0:
            yield "FUNDING_FEE", [("CM", "BTC", -FUNDING_BTC)]


def fill(db_path: Path, accounts: int, show_progress: bool | None = None) -> None:
    """Fill ``db_path`` (see the module's docstring); progress on stderr as
    :func:`papi_sandbox.progress.progress_for` decides for ``show_progress``."""
    with progress_for(show_progress) as progress:
        _fill(db_path, accounts, progress)


def _fill(db_path: Path, accounts: int, progress: Progress) -> None:
    done = progress.stage(f"fill {accounts:,} accounts", total=accounts)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # the fill only; the jobs run with the store's FULL
    migrate(conn, SQLITE)
    system: dict[str, Decimal] = {}
    tran_id = 0
    for first in range(1, accounts + 1, FILL_CHUNK_ACCOUNTS):
        last = min(first + FILL_CHUNK_ACCOUNTS - 1, accounts)
        account_rows, entry_rows, posting_rows, balance_rows = [], [], [], []
        for account_id in range(first, last + 1):
            account_rows.append((account_id, None, NOW_MS))
            for entry_type, postings in account_entries(account_id):
                tran_id += 1
                entry_rows.append((tran_id, account_id, entry_type, NOW_MS))
                for seq, (wallet, asset, amount) in enumerate(postings):
                    posting_rows.append(
                        (tran_id, 2 * seq, account_id, wallet, asset, _storage(amount))
                    )
                    posting_rows.append(
                        (tran_id, 2 * seq + 1, 0, "EXTERNAL", asset, _storage(-amount))
                    )
                    balance_rows.append((account_id, asset, wallet, _storage(amount), NOW_MS))
                    system[asset] = system.get(asset, money.ZERO) - amount
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO accounts (id, label, created_ms) VALUES (?, ?, ?)", account_rows
        )
        conn.executemany(
            "INSERT INTO entries (tran_id, account_id, type, time_ms) VALUES (?, ?, ?, ?)",
            entry_rows,
        )
        conn.executemany(
            "INSERT INTO postings (tran_id, seq, account_id, wallet, asset, amount)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            posting_rows,
        )
        conn.executemany(
            "INSERT INTO balances (account_id, asset, wallet, amount, updated_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            balance_rows,
        )
        conn.execute("COMMIT")
        done(last - first + 1)
    conn.executemany(
        "INSERT INTO balances (account_id, asset, wallet, amount, updated_ms)"
        " VALUES (0, ?, 'EXTERNAL', ?, ?)",
        [(asset, _storage(total), NOW_MS) for asset, total in system.items()],
    )
    conn.close()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def show(report: JobReport, accounts: int) -> None:
    elapsed_s = report.elapsed_s or 1e-9
    print(
        f"{report.job.value:>10}: {elapsed_s:7.2f} s for {accounts:,} accounts"
        f" ({accounts / elapsed_s:,.0f} accounts/s); {report.accounts:,} negative looked at"
        f" ({report.accounts / elapsed_s:,.0f}/s), {report.entries:,} entries,"
        f" {report.batches} batches,"
        f" amounts {report.to_json()['amounts']}; peak RSS {rss_mb():.0f} MiB"
    )


async def sweep(db_path: Path, accounts: int, progress: Progress) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    try:
        config = JobsConfig()
        now = datetime.now(UTC)
        repay_slot = slot_at_or_before(config.auto_repay_times, now)
        interest_slot = slot_at_or_before(config.interest_times, now)
        repay = await run_job(store, Job.AUTO_REPAY, repay_slot, config, progress=progress)
        show(repay, accounts)
        interest = await run_job(store, Job.INTEREST, interest_slot, config, progress=progress)
        show(interest, accounts)
        again = await run_job(store, Job.INTEREST, interest_slot, config, progress=progress)
        print(
            f"  re-run of the interest slot: {again.entries} entries,"
            f" {again.already_done:,} accounts already done, {again.elapsed_s:.2f} s"
        )
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="ledger file to create (default: a temp dir)")
    parser.add_argument("--verify", action="store_true", help="replay the journal afterwards")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.accounts <= 10_000_000:
        parser.error("--accounts must be from 1 to 10,000,000")
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        db_path = args.db or Path(tmp) / "bench.db"
        if db_path.exists():
            parser.error(f"{db_path} exists; give a new file")
        started = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(
            target=fill, args=(db_path, args.accounts, args.progress)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            print("fill failed", file=sys.stderr)
            return 1
        size_mb = db_path.stat().st_size / 2**20
        print(
            f"filled {args.accounts:,} accounts in {time.perf_counter() - started:.1f} s"
            f" ({size_mb:.0f} MiB); RSS before the jobs {rss_mb():.0f} MiB"
        )
        with progress_for(args.progress) as progress:
            asyncio.run(sweep(db_path, args.accounts, progress))
        if args.verify:
            with progress_for(args.progress) as progress:
                report = SQLiteStore(db_path).verify_sync(progress)
            print(f"verify: {'OK' if report.ok else report.problems[:5]}")
            if not report.ok:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
