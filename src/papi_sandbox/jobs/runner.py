"""Running a job over every account for one scheduled time slot.

A job is idempotent by its slot: each account it handles gets a (job, slot, account) marker in the
same transaction as its entry, and a marked account is skipped. It works through the accounts in
keyset-paginated batches (at most ``batch_accounts`` per write transaction), so memory is flat in
the number of accounts and a kill loses at most the batch in flight, which a re-run redoes.
"""

from __future__ import annotations

import time as time_mod
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from enum import StrEnum
from typing import Any

from papi_sandbox import grammar, money
from papi_sandbox.jobs.config import JobsConfig
from papi_sandbox.ledger.interest import plan_interest
from papi_sandbox.ledger.model import FUTURES_WALLETS, Entry, EntryType
from papi_sandbox.ledger.rules import check_bounds, plan_repay
from papi_sandbox.market.config import FUNDING_HOURS_UTC
from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store import trading as trading_store
from papi_sandbox.store.base import JobAccount, JobBatchResult, JobPlan, JobPlanner
from papi_sandbox.store.contract import Store

#: UM funding slots (Binance's for these symbols): 00:00, 08:00 and 16:00 UTC.
FUNDING_TIMES = tuple(clock_time(hour) for hour in FUNDING_HOURS_UTC)


class Job(StrEnum):
    AUTO_REPAY = "auto-repay"
    INTEREST = "interest"
    FUNDING = "funding"

    @property
    def entry_type(self) -> EntryType:
        if self is Job.FUNDING:
            return EntryType.FUNDING_FEE
        return (
            EntryType.AUTO_REPAY_FUTURES
            if self is Job.AUTO_REPAY
            else EntryType.NEGATIVE_BALANCE_INTEREST
        )

    def times(self, config: JobsConfig) -> tuple[clock_time, ...]:
        if self is Job.FUNDING:
            return FUNDING_TIMES
        return config.auto_repay_times if self is Job.AUTO_REPAY else config.interest_times


def slot_at_or_before(times: tuple[clock_time, ...], as_of: datetime) -> datetime:
    """The latest scheduled time (UTC) not after ``as_of``."""
    as_of = as_of.astimezone(UTC)
    for day in (as_of.date(), as_of.date() - timedelta(days=1)):
        for t in sorted(times, reverse=True):
            slot = datetime.combine(day, t, tzinfo=UTC)
            if slot <= as_of:
                return slot
    raise AssertionError("a day always has a slot")  # pragma: no cover


def next_slot_after(times: tuple[clock_time, ...], after: datetime) -> datetime:
    """The earliest scheduled time (UTC) strictly after ``after``."""
    after = after.astimezone(UTC)
    for day in (after.date(), after.date() + timedelta(days=1)):
        for t in sorted(times):
            slot = datetime.combine(day, t, tzinfo=UTC)
            if slot > after:
                return slot
    raise AssertionError("a day always has a slot")  # pragma: no cover


def bounded_job(rule: JobPlanner) -> JobPlanner:
    """``rule`` with its plan's resulting balances held to the bounds
    (:func:`papi_sandbox.ledger.rules.check_bounds`): an account past them is refused (counted,
    nothing written). Every job rule runs through it, a test's own included."""

    def planned(account: JobAccount) -> JobPlan:
        plan = rule(account)
        check_bounds(account.account_id, account.balances, plan.postings)
        return plan

    return planned


def planner_for(job: Job, config: JobsConfig) -> JobPlanner:
    """The job's rule for one account, bounded (:func:`bounded_job`)."""
    if job is Job.AUTO_REPAY:

        def repay(account: JobAccount) -> JobPlan:
            if not account.auto_repay:
                return JobPlan([])
            return JobPlan(plan_repay(account.account_id, account.balances))

        return bounded_job(repay)

    def interest(account: JobAccount) -> JobPlan:
        postings, charges = plan_interest(
            account.account_id, account.balances, account.vip_level, config.interest
        )
        return JobPlan(postings, charges)

    return bounded_job(interest)


@dataclass(slots=True)
class JobReport:
    job: Job
    slot: datetime
    accounts: int = 0  # accounts with a negative futures wallet looked at
    already_done: int = 0  # of them, handled by an earlier run of this slot
    refused: int = 0  # the rule refused (auto-repay: no MARGIN.free in any negative asset)
    entries: int = 0
    amounts: dict[str, Decimal] = field(default_factory=dict)  # repaid / charged, per asset
    batches: int = 0
    elapsed_s: float = 0.0

    @property
    def slot_ms(self) -> int:
        return int(self.slot.timestamp() * 1000)

    def add(self, batch: JobBatchResult) -> None:
        self.batches += 1
        self.accounts += batch.accounts
        self.already_done += batch.already_done
        self.refused += batch.refused
        self.entries += len(batch.entries)
        for entry in batch.entries:
            for asset, amount in moved(entry).items():
                self.amounts[asset] = money.add(self.amounts.get(asset, money.ZERO), amount)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job.value,
            "slot": self.slot.isoformat().replace("+00:00", "Z"),
            "slotMs": self.slot_ms,
            "accounts": self.accounts,
            "alreadyDone": self.already_done,
            "refused": self.refused,
            "entries": self.entries,
            "amounts": {a: money.format_amount(v) for a, v in sorted(self.amounts.items())},
            "batches": self.batches,
            "elapsedMs": round(self.elapsed_s * 1000),
        }


def moved(entry: Entry) -> dict[str, Decimal]:
    """What an entry did to the account's futures wallets, per asset, in magnitude: the repaid
    amount of an auto-repay, the interest of an interest charge."""
    result: dict[str, Decimal] = {}
    for p in entry.postings:
        if p.account_id == entry.account_id and p.wallet in FUTURES_WALLETS:
            result[p.asset] = money.add(result.get(p.asset, money.ZERO), abs(p.amount))
    return result


class SlotTooOld(ValueError):
    """The slot is older than the markers are kept: running it could apply twice."""


class UnknownJob(ValueError):
    """A job name that is not one of :class:`Job`."""


async def run_on_demand(
    store: Store,
    name: str,
    as_of: object,
    config: JobsConfig,
    *,
    progress: Progress = NO_PROGRESS,
) -> JobReport:
    """The one on-demand run, shared by ``papi-sandbox jobs run`` and ``POST
    /admin/v1/jobs/{job}``: job ``name``'s latest slot at or before ``as_of``
    (:func:`parse_as_of`), on any store; safe to repeat. Raises UnknownJob, ValueError (a bad
    ``as_of``) and SlotTooOld."""
    if name not in {j.value for j in Job}:
        raise UnknownJob(f"Unknown job '{name[:32]}'; jobs: {', '.join(j.value for j in Job)}.")
    job = Job(name)
    slot = slot_at_or_before(job.times(config), parse_as_of(as_of))
    return await run_job(store, job, slot, config, progress=progress)


async def run_job(
    store: Store,
    job: Job,
    slot: datetime,
    config: JobsConfig,
    *,
    planner: JobPlanner | None = None,
    now: datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> JobReport:
    """Run ``job`` for ``slot`` over every account that may need it. Safe to repeat: accounts
    already handled for this slot are skipped. ``planner`` replaces the job's rule (tests).
    ``progress`` counts the candidate accounts handled, batch by batch
    (:mod:`papi_sandbox.progress`).

    Markers are kept ``marker_retention_days`` before ``now``; a slot older than that is refused
    (:class:`SlotTooOld`), so every slot that can run still has its markers."""
    started = time_mod.perf_counter()
    horizon = (now or datetime.now(UTC)) - timedelta(days=config.marker_retention_days)
    if slot < horizon:
        raise SlotTooOld(
            f"the slot {slot.isoformat()} is more than {config.marker_retention_days} days old;"
            " its run markers may be gone, so it is not run again"
        )
    report = JobReport(job, slot.astimezone(UTC))
    if job is Job.FUNDING:
        await _run_funding(store, report, config)
        await store.prune_job_marks(int(horizon.timestamp() * 1000))
        report.elapsed_s = time_mod.perf_counter() - started
        return report
    plan = bounded_job(planner) if planner is not None else planner_for(job, config)
    after_account_id = 0
    done = progress.stage(f"{job.value} {report.slot:%Y-%m-%d %H:%M}Z: accounts")
    while True:
        account_ids = await store.job_candidates(after_account_id, config.batch_accounts)
        if not account_ids:
            break
        report.add(
            await store.run_job_batch(job.value, report.slot_ms, job.entry_type, account_ids, plan)
        )
        done(len(account_ids))
        after_account_id = account_ids[-1]
    await store.prune_job_marks(int(horizon.timestamp() * 1000))
    report.elapsed_s = time_mod.perf_counter() - started
    return report


async def _run_funding(store: Store, report: JobReport, config: JobsConfig) -> None:
    """The funding slot over every account holding an open position, in keyset batches; each
    account charged once per slot (its marker written with its FUNDING_FEE entries), at the
    mark price and funding rate in force now (docs/semantics.md)."""
    specs = {s.symbol: s for s in config.market.symbols}
    collateral = config.market.collateral_rates
    after_account_id = 0
    while True:
        account_ids = await store.read(
            trading_store.funding_candidates, after_account_id, config.batch_accounts
        )
        if not account_ids:
            break
        batch = await store.write(
            trading_store.run_funding_batch,
            report.slot_ms,
            account_ids,
            specs,
            collateral,
            time_mod.time_ns() // 1_000_000,
        )
        report.batches += 1
        report.accounts += len(account_ids)
        report.already_done += batch.already_done
        report.refused += batch.refused
        report.entries += batch.entries
        for asset, amount in batch.amounts.items():
            report.amounts[asset] = money.add(report.amounts.get(asset, money.ZERO), amount)
        after_account_id = account_ids[-1]


def parse_as_of(value: object) -> datetime:
    """``asOf`` of the on-demand runs: ISO-8601 text in ASCII (UTC when no offset is given),
    integer milliseconds since the epoch (a JSON integer, or ASCII digits from the CLI), or None
    for now; between 1970-01-02 and 9999-12-30 UTC (:func:`papi_sandbox.grammar.parse_time`).
    Raises :class:`papi_sandbox.grammar.GrammarError` (a ValueError) with a clear message."""
    if value is None:
        return datetime.now(UTC)
    low_ms = int(grammar.MIN_TIME.timestamp() * 1000)
    high_ms = int(grammar.MAX_TIME.timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool):
        ms = grammar.parse_json_integer(value, low=low_ms, high=high_ms, what="'asOf' in ms")
        return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    if grammar.is_integer(value):
        ms = grammar.parse_integer(value, low=low_ms, high=high_ms, what="'asOf' in ms")
        return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    return grammar.parse_time(value, what="'asOf'")
