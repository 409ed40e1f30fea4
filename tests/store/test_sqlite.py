"""The SQLite store on real files: random operation sequences keep every ledger invariant."""

from __future__ import annotations

import asyncio
import functools
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import EntryType, LedgerError, Posting, Wallet
from papi_sandbox.store.base import ApiKeyRecord
from papi_sandbox.store.dialect import Db
from papi_sandbox.store.sqlite import SQLiteStore, verify_connection
from tests.support import adjustment

ASSETS = ("BTC", "USDT")
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("adjust"),
            st.integers(0, 2),  # which account
            st.sampled_from([Wallet.MARGIN, Wallet.UM, Wallet.CM]),
            st.sampled_from(ASSETS),
            st.decimals(min_value=-1000, max_value=1000, places=8).filter(lambda d: d != 0),
        ),
        st.tuples(st.just("repay"), st.integers(0, 2)),
    ),
    max_size=25,
)


def key(n: int) -> ApiKeyRecord:
    return ApiKeyRecord(f"k{n}", 0, "HMAC", "s", None, True, True, ())


async def run_ops(path: Path, operations: list[tuple[object, ...]]) -> None:
    store = SQLiteStore(path)
    await store.open()
    try:
        accounts = [await store.create_account(f"a{i}", key(i)) for i in range(3)]
        model: dict[tuple[int, Wallet, str], Decimal] = {}
        for op in operations:
            account_id = accounts[int(op[1])]  # type: ignore[call-overload]
            mine = {(w, a): v for (acc, w, a), v in model.items() if acc == account_id}
            if op[0] == "adjust":
                _, _, wallet, asset, amount = op
                reason = EntryType.DEPOSIT if amount > 0 else EntryType.REALIZED_PNL  # type: ignore[operator]
                planner = adjustment(account_id, amount, wallet, asset, reason)  # type: ignore[arg-type]
            else:
                reason = EntryType.REPAY_FUTURES_NEGATIVE_BALANCE
                planner = functools.partial(rules.plan_repay, account_id)
            try:
                expected: list[Posting] | None = planner(mine)
            except LedgerError:
                expected = None
            try:
                entry = await store.transact(account_id, reason, planner)
            except LedgerError:
                assert expected is None  # refused by the store exactly when the model refuses
                continue
            assert expected is not None
            assert (entry.postings if entry else ()) == tuple(expected)
            for p in expected:
                k = (p.account_id, p.wallet, p.asset)
                model[k] = model.get(k, Decimal(0)) + p.amount
        for account_id in accounts:
            stored = (await store.balances(account_id)).amounts
            want = {(w, a): v for (acc, w, a), v in model.items() if acc == account_id and v != 0}
            assert {k: v for k, v in stored.items() if v != 0} == want
            assert all(v >= 0 for (w, _), v in stored.items() if w is Wallet.MARGIN)
    finally:
        await store.close()
    report = await SQLiteStore(path).verify()
    assert report.ok, report.problems


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_operations_keep_the_ledger_true(operations: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_ops(Path(tmp) / "ledger.db", operations))


def test_verify_reports_an_unbalanced_entry(tmp_path: Path) -> None:
    import sqlite3

    asyncio.run(run_ops(tmp_path / "l.db", [("adjust", 0, Wallet.MARGIN, "USDT", Decimal(5))]))
    conn = sqlite3.connect(tmp_path / "l.db")
    conn.execute("UPDATE postings SET amount = '4.00000000' WHERE seq = 0")
    conn.commit()
    problems = verify_connection(conn).problems
    assert any("does not sum to zero" in p for p in problems)
    assert any("sums to" in p and "over the ledger" in p for p in problems)


def test_a_refused_operation_rolls_back_alone_in_its_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "b.db")
        await store.open()
        try:
            account = await store.create_account(None, key(1))

            def deposit(amount: str) -> functools.partial[list[Posting]]:
                return functools.partial(
                    rules.plan_adjustment,
                    account,
                    wallet=Wallet.MARGIN,
                    asset="USDT",
                    amount=Decimal(amount),
                    reason=EntryType.DEPOSIT if Decimal(amount) > 0 else EntryType.WITHDRAW,
                )

            # Queued at once, so they usually share one group commit; the middle one is refused.
            results = await asyncio.gather(
                store.transact(account, "DEPOSIT", deposit("10")),
                store.transact(account, "WITHDRAW", deposit("-50")),
                store.transact(account, "WITHDRAW", deposit("-4")),
                return_exceptions=True,
            )
            assert isinstance(results[1], LedgerError)
            assert not isinstance(results[0], BaseException)
            assert not isinstance(results[2], BaseException)
            assert (await store.balances(account)).amounts[(Wallet.MARGIN, "USDT")] == 6
        finally:
            await store.close()

    asyncio.run(scenario())


def test_verify_refuses_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SQLiteStore(tmp_path / "missing.db").verify_sync()


def test_an_operation_failing_after_it_wrote_is_undone_alone(tmp_path: Path) -> None:
    """The writer runs a batch without savepoints first; an operation that raises after writing
    rolls that attempt back whole, and the batch runs again with a savepoint per operation: the
    failed one changes nothing, the others land once, and nobody is answered from the attempt
    that was rolled back."""

    from papi_sandbox.store.dialect import SQLITE
    from papi_sandbox.store.schema import migrate
    from papi_sandbox.store.sqlite import _Op, connect

    store = SQLiteStore(tmp_path / "r.db")
    conn = connect(tmp_path / "r.db")
    migrate(conn, SQLITE)
    runs: list[str] = []

    def label(text: str) -> object:
        def op(c: Db) -> int:
            runs.append(text)
            return int(
                c.execute(
                    "INSERT INTO accounts (label, created_ms) VALUES (?, 0)", (text,)
                ).lastrowid
                or 0
            )

        return op

    def writes_then_fails(c: Db) -> None:
        runs.append("bad")
        c.execute("INSERT INTO accounts (label, created_ms) VALUES ('bad', 0)")
        raise RuntimeError("failed after writing")

    def refuses(c: Db) -> None:
        runs.append("refused")
        raise LedgerError("refused before writing")

    loop = asyncio.new_event_loop()
    try:
        fns = [label("a"), refuses, writes_then_fails, label("b")]
        batch = [_Op(fn, loop, loop.create_future()) for fn in fns]  # type: ignore[arg-type]
        store._commit_batch(conn, batch)
        loop.run_until_complete(asyncio.sleep(0))  # the writer answers through the loop
        results = [op.future for op in batch]
        assert isinstance(results[1].exception(), LedgerError)
        assert isinstance(results[2].exception(), RuntimeError)
        first, second = results[0].result(), results[3].result()
    finally:
        loop.close()
    # First attempt (no savepoints) stopped at the op that wrote; the second ran them all.
    assert runs == ["a", "refused", "bad", "a", "refused", "bad", "b"]
    labels = [r[0] for r in conn.execute("SELECT label FROM accounts WHERE id != 0 ORDER BY id")]
    assert labels == ["a", "b"]  # each once; nothing of 'bad'
    assert [first, second] == [
        r[0] for r in conn.execute("SELECT id FROM accounts WHERE id != 0 ORDER BY id")
    ]
    conn.close()


def test_refusals_before_writing_need_no_second_attempt(tmp_path: Path) -> None:

    from papi_sandbox.store.dialect import SQLITE
    from papi_sandbox.store.schema import migrate
    from papi_sandbox.store.sqlite import _Op, connect

    store = SQLiteStore(tmp_path / "s.db")
    conn = connect(tmp_path / "s.db")
    migrate(conn, SQLITE)
    runs: list[str] = []

    def ok(c: Db) -> None:
        runs.append("ok")
        c.execute("INSERT INTO accounts (label, created_ms) VALUES ('ok', 0)")

    def refuses(c: Db) -> None:
        runs.append("refused")
        raise LedgerError("refused")

    loop = asyncio.new_event_loop()
    try:
        batch = [_Op(fn, loop, loop.create_future()) for fn in (ok, refuses, ok)]
        store._commit_batch(conn, batch)
        loop.run_until_complete(asyncio.sleep(0))
        assert isinstance(batch[1].future.exception(), LedgerError)
    finally:
        loop.close()
    assert runs == ["ok", "refused", "ok"]  # one attempt
    assert conn.execute("SELECT COUNT(*) FROM accounts WHERE label = 'ok'").fetchone()[0] == 2
    conn.close()


def test_a_posting_on_another_account_reads_its_row_and_new_rows_are_inserted(
    tmp_path: Path,
) -> None:
    """transact knows its own account's rows from the snapshot it planned on; the system
    account's row is read in the transaction; a wallet with no row yet gets one."""

    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "p.db")
        await store.open()
        try:
            account = await store.create_account(None, key(1))
            for wallet, amount in ((Wallet.MARGIN, "7.5"), (Wallet.CM, "-2.25")):
                await store.transact(
                    account,
                    "DEPOSIT",
                    functools.partial(
                        rules.plan_adjustment,
                        account,
                        wallet=wallet,
                        asset="BTC",
                        amount=Decimal(amount),
                        reason=EntryType.DEPOSIT if Decimal(amount) > 0 else EntryType.REALIZED_PNL,
                    ),
                )
            await store.transact(account, "REPAY", functools.partial(rules.plan_repay, account))
            amounts = (await store.balances(account)).amounts
            assert amounts[(Wallet.MARGIN, "BTC")] == Decimal("5.25")
            assert amounts[(Wallet.CM, "BTC")] == 0
            system = (await store.balances(0)).amounts
            assert system[(Wallet.EXTERNAL, "BTC")] == Decimal("-5.25")
        finally:
            await store.close()
        report = await SQLiteStore(tmp_path / "p.db").verify()
        assert report.ok, report.problems

    asyncio.run(scenario())


async def run_concurrently(path: Path, operations: list[tuple[object, ...]]) -> None:
    """All operations at once (so the writer groups them into batches, and consecutive changes
    into one in-memory run); each outcome must be the serial one in the same order."""
    store = SQLiteStore(path)
    await store.open()
    try:
        accounts = [await store.create_account(f"a{i}", key(i)) for i in range(3)]
        planners = []
        for op in operations:
            account_id = accounts[int(op[1])]  # type: ignore[call-overload]
            if op[0] == "adjust":
                _, _, wallet, asset, amount = op
                reason = EntryType.DEPOSIT if amount > 0 else EntryType.REALIZED_PNL  # type: ignore[operator]
                planner = adjustment(account_id, amount, wallet, asset, reason)  # type: ignore[arg-type]
            else:
                reason = EntryType.REPAY_FUTURES_NEGATIVE_BALANCE
                planner = functools.partial(rules.plan_repay, account_id)
            planners.append((account_id, reason, planner))
        results = await asyncio.gather(
            *(store.transact(a, r, p) for a, r, p in planners), return_exceptions=True
        )
        model: dict[tuple[int, Wallet, str], Decimal] = {}
        last_tran_id = 0
        for (account_id, _, planner), result in zip(planners, results, strict=True):
            mine = {(w, a): v for (acc, w, a), v in model.items() if acc == account_id}
            try:
                expected: list[Posting] | None = planner(mine)
            except LedgerError:
                expected = None
            if expected is None:
                assert isinstance(result, LedgerError), result
                continue
            assert not isinstance(result, BaseException), result
            assert (result.postings if result else ()) == tuple(expected)
            if result is not None:
                assert result.tran_id > last_tran_id  # journal order is the order of arrival
                last_tran_id = result.tran_id
            for p in expected:
                k = (p.account_id, p.wallet, p.asset)
                model[k] = model.get(k, Decimal(0)) + p.amount
        for account_id in [*accounts, 0]:
            stored = (await store.balances(account_id)).amounts
            want = {(w, a): v for (acc, w, a), v in model.items() if acc == account_id and v != 0}
            assert {k: v for k, v in stored.items() if v != 0} == want
    finally:
        await store.close()
    report = await SQLiteStore(path).verify()
    assert report.ok, report.problems


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_concurrent_operations_equal_the_serial_result(
    operations: list[tuple[object, ...]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_concurrently(Path(tmp) / "ledger.db", operations))


def _deposit_change(account_id: int, amount: str) -> Any:
    from papi_sandbox.store import journal

    return journal.Change(account_id, "DEPOSIT", adjustment(account_id, amount), 0)


def test_an_operation_after_a_run_of_changes_sees_them(tmp_path: Path) -> None:
    from papi_sandbox.store import journal
    from papi_sandbox.store.dialect import SQLITE
    from papi_sandbox.store.schema import migrate
    from papi_sandbox.store.sqlite import _Op, connect

    store = SQLiteStore(tmp_path / "q.db")
    conn = connect(tmp_path / "q.db")
    migrate(conn, SQLITE)
    conn.execute("INSERT INTO accounts (id, label, created_ms) VALUES (1, 'a', 0)")

    def read_margin(c: Db) -> str:
        row = c.execute(
            "SELECT amount FROM balances WHERE account_id = 1 AND wallet = 'MARGIN'"
        ).fetchone()
        return str(row[0])

    def never(c: Db) -> None:
        raise AssertionError("a grouped change is written by the grouped call, not its closure")

    def change(amount: str) -> _Op:
        group = (journal.transact, _deposit_change(1, amount))
        return _Op(never, loop, loop.create_future(), group=group)

    loop = asyncio.new_event_loop()
    try:
        batch = [change("5"), change("2.5"), _Op(read_margin, loop, loop.create_future())]
        batch.append(change("1"))
        store._commit_batch(conn, batch)
        loop.run_until_complete(asyncio.sleep(0))
        entries = [batch[i].future.result() for i in (0, 1, 3)]
        assert batch[2].future.result() == "7.50000000"  # the group was written before it read
    finally:
        loop.close()
    assert [e.tran_id for e in entries] == [1, 2, 3]
    assert read_margin(conn) == "8.50000000"
    assert verify_connection(conn).ok
    conn.close()


def test_a_run_whose_writes_fail_runs_again_with_savepoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from papi_sandbox.store import journal
    from papi_sandbox.store.dialect import SQLITE
    from papi_sandbox.store.schema import migrate
    from papi_sandbox.store.sqlite import _Op, connect

    store = SQLiteStore(tmp_path / "f.db")
    conn = connect(tmp_path / "f.db")
    migrate(conn, SQLITE)
    conn.execute("INSERT INTO accounts (id, label, created_ms) VALUES (1, 'a', 0)")
    attempts: list[str] = []
    append_entries = journal.append_entries

    def failing_once(*args: Any) -> Any:
        if not attempts:  # the grouped call's write fails (a full disk)
            attempts.append("group")
            raise OSError("disk full")
        return append_entries(*args)

    monkeypatch.setattr(journal, "append_entries", failing_once)

    loop = asyncio.new_event_loop()
    try:
        ops = []
        for amount in ("5", "2.5"):
            change = _deposit_change(1, amount)

            def closure(c: Db, change: Any = change) -> object:
                attempts.append("closure")
                ((entry, error),) = journal.transact(c, [change])
                assert error is None
                return entry

            group = (journal.transact, change)
            ops.append(_Op(closure, loop, loop.create_future(), group=group))
        store._commit_batch(conn, ops)
        loop.run_until_complete(asyncio.sleep(0))
        assert [op.future.result().tran_id for op in ops] == [1, 2]
    finally:
        loop.close()
    assert attempts == ["group", "closure", "closure"]
    balance = conn.execute("SELECT amount FROM balances WHERE account_id = 1").fetchone()[0]
    assert balance == "7.50000000"
    assert verify_connection(conn).ok
    conn.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///tmp/x.db", "/tmp/x.db"),
        ("sqlite:////tmp/x.db", "/tmp/x.db"),  # SQLAlchemy's absolute form: not "//tmp/x.db"
        ("sqlite://rel.db", "rel.db"),
        ("sqlite:rel.db", "rel.db"),
        ("/tmp/x.db", "/tmp/x.db"),
        ("//tmp/x.db", "/tmp/x.db"),
    ],
)
def test_path_from_url_names_each_file_one_way(url: str, path: str) -> None:
    from papi_sandbox.store.sqlite import path_from_url

    assert str(path_from_url(url)) == path
