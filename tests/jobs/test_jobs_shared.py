"""Scheduled jobs on one PostgreSQL ledger shared by several processes: each slot runs once."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from decimal import Decimal

from papi_sandbox.jobs.config import JobsConfig
from papi_sandbox.jobs.runner import Job
from papi_sandbox.jobs.scheduler import run_slot_once
from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import EntryType, Wallet
from papi_sandbox.store.contract import SharedJobStore
from papi_sandbox.store.postgres import PostgresStore


def test_a_slot_runs_once_across_processes_and_a_dead_worker_is_finished(pg_url: str) -> None:
    slot = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = JobsConfig(batch_accounts=7)
    sleeps: list[float] = []

    async def no_wait(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    async def main() -> None:
        one, two = PostgresStore(pg_url), PostgresStore(pg_url)  # two processes' pools
        await one.open()
        await two.open()
        try:
            assert isinstance(one, SharedJobStore)
            accounts = []
            for i in range(20):
                account = await one.create_account(f"a{i}", None)
                accounts.append(account)
                for wallet, amount, reason in (
                    (Wallet.MARGIN, "10", EntryType.DEPOSIT),
                    (Wallet.UM, "-100", EntryType.REALIZED_PNL),
                ):
                    plan = functools.partial(
                        rules.plan_adjustment,
                        account,
                        wallet=wallet,
                        asset="USDT",
                        amount=Decimal(amount),
                        reason=reason,
                    )
                    await one.transact(account, reason, plan)

            # Both "processes" reach the slot at once: exactly one of them runs it.
            ran = await asyncio.gather(
                run_slot_once(one, Job.INTEREST, slot, config, sleep=no_wait, holder="one"),
                run_slot_once(two, Job.INTEREST, slot, config, sleep=no_wait, holder="two"),
            )
            assert sorted(ran) == [False, True]
            for account in accounts:
                history = await one.interest_history(account, "USDT", 0, 2**62, 10)
                assert [(r.interest, r.principal) for r in history] == [
                    (Decimal("0.045"), Decimal("90"))  # (100 - 10) x 0.0005
                ]
            # Done is recorded: a later attempt (a restarted process) does nothing.
            assert not await run_slot_once(two, Job.INTEREST, slot, config, sleep=no_wait)

            # A worker that holds the slot's lock and dies: the other waits, then finishes.
            repay_slot = slot.replace(hour=22)
            name = f"papi-job:auto-repay:{int(repay_slot.timestamp() * 1000)}"
            async with one.advisory_lock(name) as held:
                assert held
                waiter = asyncio.create_task(
                    run_slot_once(two, Job.AUTO_REPAY, repay_slot, config, sleep=no_wait)
                )
                while not sleeps:
                    await asyncio.sleep(0.01)
                assert not waiter.done()  # it waits while the lock is held
            assert await waiter  # the lock went with "one": "two" ran the slot
            for account in accounts:
                balances = (await one.balances(account)).amounts
                assert balances[(Wallet.MARGIN, "USDT")] == 0
            report = await one.verify()
            assert report.ok, report.problems
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())


def test_cli_jobs_run_on_postgres(pg_url: str) -> None:
    """``papi-sandbox jobs run`` on a PostgreSQL ledger (the same on-demand function as the
    operator API): it repays, and a second run of the slot finds it done."""
    import subprocess
    import sys

    async def seed() -> int:
        store = PostgresStore(pg_url)
        await store.open()
        try:
            account = await store.create_account("cli", None)
            for wallet, amount in ((Wallet.MARGIN, "5"), (Wallet.UM, "-2")):
                reason = EntryType.DEPOSIT if wallet is Wallet.MARGIN else EntryType.REALIZED_PNL
                plan = functools.partial(
                    rules.plan_adjustment,
                    account,
                    wallet=wallet,
                    asset="USDT",
                    amount=Decimal(amount),
                    reason=reason,
                )
                await store.transact(account, reason, plan)
            return account
        finally:
            await store.close()

    account = asyncio.run(seed())
    cli = [sys.executable, "-m", "papi_sandbox", "jobs", "run", "auto-repay", "--db", pg_url]
    when = ["--as-of", "2030-05-05T23:10:00"]
    first = subprocess.run([*cli, *when], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert '"entries":1' in first.stdout and '"accounts":1' in first.stdout
    again = subprocess.run([*cli, *when], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and '"entries":0' in again.stdout, again.stdout  # repaid
    verify = subprocess.run(
        [sys.executable, "-m", "papi_sandbox", "verify", "--db", pg_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert account > 0
