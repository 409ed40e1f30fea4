"""Scheduled jobs' state: interest history, the (job, slot, account) markers that make a job
idempotent, and leases: their statements, as units of work over a
:class:`~papi_sandbox.store.dialect.Db` (see :class:`~papi_sandbox.store.contract.Store`)."""

from __future__ import annotations

from papi_sandbox.ledger.interest import InterestCharge
from papi_sandbox.ledger.model import SYSTEM_ACCOUNT_ID, LedgerError
from papi_sandbox.store.base import (
    MAX_INTEREST_PAGE,
    MAX_JOB_BATCH_ACCOUNTS,
    InterestRecord,
    JobAccount,
    JobBatchResult,
    JobPlan,
    JobPlanner,
    now_ms,
)
from papi_sandbox.store.dialect import Db
from papi_sandbox.store.journal import append_entry, load_balances


def interest_history(
    db: Db, account_id: int, asset: str | None, start_ms: int, end_ms: int, limit: int
) -> list[InterestRecord]:
    """Rows with start_ms <= accrued_ms <= end_ms, newest first, at most ``limit`` (clamped
    to 1..MAX_INTEREST_PAGE)."""
    m = db.dialect.from_money
    rows = db.filtered(
        "SELECT account_id, asset, interest, rate, principal, accrued_ms, tran_id"
        " FROM interest_records WHERE account_id = ? AND accrued_ms BETWEEN ? AND ?",
        (account_id, start_ms, end_ms),
        {"asset = ?": asset},
        " ORDER BY accrued_ms DESC, id DESC LIMIT ?",
        max(1, min(limit, MAX_INTEREST_PAGE)),
    )
    return [
        InterestRecord(int(r[0]), r[1], m(r[2]), m(r[3]), m(r[4]), int(r[5]), int(r[6]))
        for r in rows
    ]


def job_candidates(db: Db, after_account_id: int, limit: int) -> list[int]:
    """Keyset page of accounts with a negative UM or CM wallet, id > after_account_id,
    ascending, at most ``limit`` (clamped to 1..MAX_JOB_BATCH_ACCOUNTS). Both jobs only ever
    act on such accounts (MARGIN free is never negative, so no other account can owe
    interest or need a repay)."""
    # The WHERE clause repeats the partial index's, so only that index is read.
    rows = db.all(
        "SELECT DISTINCT account_id FROM balances"
        f" WHERE wallet IN ('UM', 'CM') AND amount < {db.dialect.money_zero} AND account_id > ?"
        " ORDER BY account_id LIMIT ?",
        (max(after_account_id, SYSTEM_ACCOUNT_ID), max(1, min(limit, MAX_JOB_BATCH_ACCOUNTS))),
    )
    return [int(r[0]) for r in rows]


def run_job_batch(
    db: Db,
    job: str,
    slot_ms: int,
    entry_type: str,
    account_ids: list[int],
    plan: JobPlanner,
) -> JobBatchResult:
    """In one write transaction, for each account not yet marked for (job, slot): run the
    rule on its balances, append its entry (and interest rows), and mark it, the marker in
    the same transaction as the entry, so a re-run after a crash never applies twice.
    Raises ValueError for more than MAX_JOB_BATCH_ACCOUNTS accounts."""
    if len(account_ids) > MAX_JOB_BATCH_ACCOUNTS:
        raise ValueError(f"a job batch carries at most {MAX_JOB_BATCH_ACCOUNTS} accounts")
    result = JobBatchResult()
    settings, done = _lock_batch(db, job, slot_ms, sorted(set(account_ids) - {SYSTEM_ACCOUNT_ID}))
    for account_id in account_ids:
        if account_id == SYSTEM_ACCOUNT_ID:
            continue
        result.accounts += 1
        if account_id in done:
            result.already_done += 1
            continue
        if account_id not in settings:
            continue
        snapshot = load_balances(db, account_id)
        auto_repay, vip_level = settings[account_id]
        try:
            decision = plan(JobAccount(account_id, auto_repay, vip_level, snapshot.amounts))
        except LedgerError:  # the rule refused: counted, nothing planned
            result.refused += 1
            decision = JobPlan([])
        tran_id: int | None = None
        if decision.postings:
            entry = append_entry(
                db, account_id, entry_type, decision.postings, now_ms(), snapshot.amounts
            )
            tran_id = entry.tran_id
            result.entries.append(entry)
            _record_interest(db, account_id, slot_ms, tran_id, decision.interest)
        # Same transaction as the entry: after a crash both exist or neither does.
        db.execute(
            "INSERT INTO job_marks (job, slot_ms, account_id, tran_id) VALUES (?, ?, ?, ?)",
            (job, slot_ms, account_id, tran_id),
        )
        done.add(account_id)
    return result


def _lock_batch(
    db: Db, job: str, slot_ms: int, ids: list[int]
) -> tuple[dict[int, tuple[bool, int]], set[int]]:
    """Lock the batch's accounts (``ids``, ascending); their (auto_repay, vip_level) by id, and
    the ids already marked for (job, slot).

    Every account of the batch is locked first, in id order, before any shared (system) balance
    row: a request locks its one account first too, so no cycle of waits can form. The markers
    are read under those locks: another process's batch has committed its marks by then."""
    settings = {
        int(r[0]): (bool(r[1]), int(r[2]))
        for r in db.all_in(
            "SELECT id, auto_repay, vip_level FROM accounts WHERE id IN ({marks})"
            f" ORDER BY id{db.dialect.lock}",
            ids,
        )
    }
    marked = "SELECT account_id FROM job_marks WHERE job = ? AND slot_ms = ? AND account_id IN"
    done = {int(r[0]) for r in db.all_in(marked + " ({marks})", ids, job, slot_ms)}
    return settings, done


def _record_interest(
    db: Db, account_id: int, slot_ms: int, tran_id: int, charges: list[InterestCharge]
) -> None:
    """The interest rows of one job entry (``GET /papi/v1/portfolio/interest-history``)."""
    m = db.dialect.to_money
    db.many(
        "INSERT INTO interest_records (account_id, asset, interest, rate, principal,"
        " accrued_ms, tran_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (account_id, c.asset, m(c.interest), m(c.rate), m(c.principal), slot_ms, tran_id)
            for c in charges
        ],
    )


def prune_job_marks(db: Db, before_slot_ms: int) -> int:
    """Forget (job, slot, account) markers of slots older than ``before_slot_ms``; how
    many."""
    return int(db.execute("DELETE FROM job_marks WHERE slot_ms < ?", (before_slot_ms,)).rowcount)


def try_lease(db: Db, name: str, holder: str, ttl_ms: int) -> bool:
    now = db.dialect.now_ms
    row = db.one(
        f"INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, {now} + ?)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
        " expires_ms = excluded.expires_ms"
        f" WHERE leases.holder = excluded.holder OR leases.expires_ms <= {now}"
        " RETURNING holder",
        (name, holder, ttl_ms),
    )
    return row is not None


def lease_active(db: Db, name: str) -> bool:
    now = db.dialect.now_ms
    row = db.one(f"SELECT 1 FROM leases WHERE name = ? AND expires_ms > {now}", (name,))
    return row is not None
