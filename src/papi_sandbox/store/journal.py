"""The journal and the balances: the one path by which money moves, and the replay that proves it.

:func:`transact` is the one read-plan-write unit (lock the accounts, read their balances, run the
pure rules, :func:`append_entries`); :func:`append_entries` is the one place that writes entries,
their postings and the balance rows (through the dialect: absolute amounts or bucketed deltas).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby

from papi_sandbox import money
from papi_sandbox.ledger.model import (
    SYSTEM_ACCOUNT_ID,
    AccountBalances,
    CommittedEntry,
    Entry,
    Posting,
    UnknownAccount,
    Wallet,
    committed_entry,
    is_balanced,
    reported_rows,
)
from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store.base import MAX_JOURNAL_PAGE, MAX_RECENT_ENTRIES, Planner, VerifyReport
from papi_sandbox.store.dialect import BalanceKey, Db
from papi_sandbox.store.replay import LedgerReplay

INSERT_POSTING = (
    "INSERT INTO postings (tran_id, seq, account_id, wallet, asset, amount)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def load_balances(db: Db, account_id: int) -> AccountBalances:
    """Every balance row of the account (SQLite: one row each; PostgreSQL: buckets summed)."""
    return load_balances_of(db, [account_id])[account_id]


def load_balances_of(db: Db, account_ids: Sequence[int]) -> dict[int, AccountBalances]:
    """:func:`load_balances` of several accounts, one statement per MAX_IN_LIST of them."""
    d = db.dialect
    result = {account_id: AccountBalances() for account_id in account_ids}
    for account_id, wallet, asset, amount, updated_ms in db.all_in(
        f"SELECT account_id, {d.balance_columns} FROM balances"
        f" WHERE account_id IN ({{marks}}){d.balance_group}",
        list(result),
    ):
        balances = result[int(account_id)]
        balances.amounts[(Wallet(wallet), asset)] = d.from_money(amount)
        if updated_ms > balances.updated_ms.get(asset, -1):
            balances.updated_ms[asset] = int(updated_ms)
    return result


def lock_accounts(db: Db, account_ids: Iterable[int]) -> list[int]:
    """Lock the rows of these accounts until COMMIT, in ascending id order, so that two units
    never wait for each other in a cycle (PostgreSQL; SQLite's one writer is alone anyway); the
    ids of those that exist, ascending. One statement per MAX_IN_LIST ids."""
    sql = f"SELECT id FROM accounts WHERE id IN ({{marks}}) ORDER BY id{db.dialect.lock}"
    return [int(r[0]) for r in db.all_in(sql, sorted(set(account_ids)))]


def append_entry(
    db: Db,
    account_id: int,
    entry_type: str,
    postings: list[Posting],
    now_ms: int,
    before: Mapping[BalanceKey, Decimal],
) -> Entry:
    """Journal one entry, apply it to the stored balances and announce it (at COMMIT); the
    caller holds the account's lock and read ``before`` (every balance row of ``account_id``)
    in this transaction. Raises AssertionError for postings that do not sum to zero per
    asset."""
    (committed,) = append_entries(
        db, [(account_id, entry_type, postings, now_ms)], {account_id: before}
    )
    db.dialect.announce(db, committed)
    return committed.entry


#: Most entries one INSERT statement carries (3 parameters each).
MAX_ENTRIES_PER_INSERT = 500

#: One entry :func:`append_entries` writes: (account_id, type, postings, time_ms).
NewEntry = tuple[int, str, Sequence[Posting], int]


def append_entries(
    db: Db, items: Sequence[NewEntry], before: Mapping[int, Mapping[BalanceKey, Decimal]]
) -> list[CommittedEntry]:
    """Journal several entries, of one account or many, in order, with few statements: one
    INSERT per MAX_ENTRIES_PER_INSERT entries (tranIds are given in row order, so sorted they
    match the rows), one for all their postings, one balance write
    (:meth:`~papi_sandbox.store.dialect.Dialect.apply_many`). The caller holds the lock of
    every entry's account and read ``before[account]`` (its balance rows) in this transaction,
    before any of these entries. Returns each entry with its account's resulting balances, in
    order; the caller announces them (:func:`append_entry` does). Raises AssertionError for
    postings that do not sum to zero per asset (nothing is written then)."""
    for _, entry_type, postings, _ in items:
        # Assert where it is relied on: nothing unbalanced ever reaches the journal.
        if not is_balanced(postings):
            raise AssertionError(f"unbalanced postings from {entry_type}: {postings}")
    d = db.dialect
    tran_ids: list[int] = []
    for start in range(0, len(items), MAX_ENTRIES_PER_INSERT):
        chunk = items[start : start + MAX_ENTRIES_PER_INSERT]
        rows = db.all(
            "INSERT INTO entries (account_id, type, time_ms) VALUES "
            + ", ".join(["(?, ?, ?)"] * len(chunk))
            + " RETURNING tran_id",
            [value for a, t, _, ms in chunk for value in (a, t, ms)],
        )
        tran_ids += sorted(int(r[0]) for r in rows)
    db.many(
        INSERT_POSTING,
        [
            (tran_id, seq, p.account_id, p.wallet.value, p.asset, d.to_money(p.amount))
            for tran_id, (_, _, postings, _) in zip(tran_ids, items, strict=True)
            for seq, p in enumerate(postings)
        ],
    )
    d.apply_many(db, [(a, ps) for a, _, ps, _ in items], max(i[3] for i in items), before)
    running = {account_id: dict(rows) for account_id, rows in before.items()}
    committed: list[CommittedEntry] = []
    for tran_id, (account_id, entry_type, postings, time_ms) in zip(tran_ids, items, strict=True):
        entry = Entry(tran_id, entry_type, time_ms, account_id, tuple(postings))
        own = running[account_id]
        committed.append(committed_entry(entry, own))
        for p in postings:
            db.touched.add(p.account_id)
            if p.account_id == account_id:
                key = (p.wallet, p.asset)
                own[key] = money.add(own.get(key, money.ZERO), p.amount)
    return committed


@dataclass(frozen=True, slots=True)
class Change:
    """One balance change (:meth:`~papi_sandbox.store.contract.Store.transact`) as data: the
    item of the grouped unit :func:`transact`."""

    account_id: int
    entry_type: str
    plan: Planner
    now_ms: int


def transact(db: Db, changes: Sequence[Change]) -> list[tuple[Entry | None, BaseException | None]]:
    """The one path of change, a grouped unit (``Store.write_grouped``: SQLite's writer hands it
    every consecutive change of a batch, PostgreSQL one at a time). Locks the changes' accounts
    in ascending id order and reads their balances with one statement each, runs each plan in
    order on the balances the changes before it left (so the result is the serial one), then
    appends the planned entries together (:func:`append_entries`) and announces them.

    Each change's outcome: ``(entry, None)``; ``(None, None)`` when its plan has no postings;
    ``(None, error)`` when its account does not exist (UnknownAccount) or its plan refuses,
    nothing of it written. Raises AssertionError for postings that do not sum to zero per asset
    (nothing written; the SQLite writer then runs each change alone)."""
    existing = lock_accounts(db, {c.account_id for c in changes})
    before = {a: b.amounts for a, b in load_balances_of(db, existing).items()}
    running = {a: dict(rows) for a, rows in before.items()}
    outcomes: list[tuple[Entry | None, BaseException | None]] = []
    planned: list[tuple[int, NewEntry]] = []  # (index of its outcome, the entry to write)
    for change in changes:
        try:
            if change.account_id not in running:
                raise UnknownAccount.of(change.account_id)
            postings = change.plan(dict(running[change.account_id]))
        except Exception as exc:  # refused: nothing of it is written
            outcomes.append((None, exc))
            continue
        outcomes.append((None, None))
        if not postings:
            continue
        for p in postings:
            rows = running.get(p.account_id)
            if rows is not None:
                key = (p.wallet, p.asset)
                rows[key] = money.add(rows.get(key, money.ZERO), p.amount)
        planned.append(
            (len(outcomes) - 1, (change.account_id, change.entry_type, postings, change.now_ms))
        )
    if planned:
        appended = append_entries(db, [item for _, item in planned], before)
        for (index, _), committed in zip(planned, appended, strict=True):
            db.dialect.announce(db, committed)
            outcomes[index] = (committed.entry, None)
    return outcomes


def journal(db: Db, account_id: int, limit: int, before_tran_id: int | None = None) -> list[Entry]:
    """The account's entries with tranId < ``before_tran_id``, newest first, at most
    ``limit`` (clamped to 1..MAX_JOURNAL_PAGE)."""
    limit = max(1, min(limit, MAX_JOURNAL_PAGE))
    before = before_tran_id if before_tran_id is not None else 2**62
    m = db.dialect.from_money
    rows = db.all(
        "WITH heads AS (SELECT tran_id, type, time_ms FROM entries"
        "  WHERE account_id = ? AND tran_id < ? ORDER BY tran_id DESC LIMIT ?)"
        " SELECT h.tran_id, h.type, h.time_ms, p.account_id, p.wallet, p.asset, p.amount"
        " FROM heads h JOIN postings p ON p.tran_id = h.tran_id"
        " ORDER BY h.tran_id DESC, p.seq",
        (account_id, before, limit),
    )
    entries = []
    for (tran_id, entry_type, time_ms), group in groupby(rows, lambda row: row[:3]):
        postings = tuple(Posting(int(r[3]), Wallet(r[4]), r[5], m(r[6])) for r in group)
        entries.append(Entry(int(tran_id), entry_type, int(time_ms), account_id, postings))
    return entries


def read_committed(db: Db, tran_id: int, account_id: int) -> CommittedEntry | None:
    """An entry read back from the journal, with its account's resulting balances: the sum of
    the account's postings up to this tranId (tranIds of one account increase in commit order,
    so this is exactly the balance right after the entry, whatever committed since). None when
    no such entry exists. PostgreSQL only (numeric SUM); SQLite never needs to read one back."""
    d = db.dialect
    head = db.one(
        "SELECT type, time_ms FROM entries WHERE tran_id = ? AND account_id = ?",
        (tran_id, account_id),
    )
    if head is None:
        return None
    postings = tuple(
        Posting(int(r[0]), Wallet(r[1]), r[2], d.from_money(r[3]))
        for r in db.all(
            "SELECT account_id, wallet, asset, amount FROM postings WHERE tran_id = ? ORDER BY seq",
            (tran_id,),
        )
    )
    entry = Entry(tran_id, str(head[0]), int(head[1]), account_id, postings)
    touched = reported_rows(entry)
    sums = {
        (Wallet(w), a): d.from_money(v)
        for w, a, v in db.all(
            "SELECT wallet, asset, SUM(amount) FROM postings WHERE account_id = ? AND tran_id <= ?"
            " GROUP BY wallet, asset",
            (account_id, tran_id),
        )
    }
    return CommittedEntry(entry, tuple((w, a, sums.get((w, a), money.ZERO)) for w, a in touched))


def entry_counts(db: Db) -> dict[str, int]:
    """Journal entries by type over the whole ledger (read once at start for metrics,
    which then count entries as they commit)."""
    return {str(t): int(n) for t, n in db.all("SELECT type, COUNT(*) FROM entries GROUP BY type")}


def recent_entries(
    db: Db, entry_types: tuple[str, ...], since_ms: int
) -> list[tuple[str, int, int]]:
    """``(type, account_id, time_ms)`` of the entries of these types at or after ``since_ms``,
    newest first, at most MAX_RECENT_ENTRIES (re-deriving the per-account rolling limits' calls
    at start, wire/account_limits.py)."""
    marks = ", ".join("?" * len(entry_types))
    rows = db.all(
        f"SELECT type, account_id, time_ms FROM entries WHERE type IN ({marks})"
        " AND time_ms >= ? ORDER BY tran_id DESC LIMIT ?",
        (*entry_types, since_ms, MAX_RECENT_ENTRIES),
    )
    return [(str(t), int(a), int(ms)) for t, a, ms in rows]


def verify(db: Db, progress: Progress = NO_PROGRESS) -> VerifyReport:
    """Replay every posting against the stored balances; the caller holds one consistent
    snapshot (a read transaction). Memory grows with the balance rows, not the journal."""
    d = db.dialect
    replay = LedgerReplay(progress)
    replay.report.entries = int(db.one("SELECT COUNT(*) FROM entries")[0])
    for tran_id, account_id, wallet, asset, amount in db.stream(
        "SELECT tran_id, account_id, wallet, asset, amount FROM postings ORDER BY tran_id, seq"
    ):
        replay.posting(int(tran_id), int(account_id), wallet, asset, d.from_money(amount))
    for account_id, wallet, asset, amount, _ in db.stream(
        f"SELECT account_id, {d.balance_columns} FROM balances{d.balance_group}"
    ):
        replay.stored_balance(int(account_id), wallet, asset, d.from_money(amount))
    replay.report.accounts = int(
        db.one("SELECT COUNT(*) FROM accounts WHERE id <> ?", (SYSTEM_ACCOUNT_ID,))[0]
    )
    return replay.finish()
