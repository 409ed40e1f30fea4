"""The store protocol, directly, on SQLite and on PostgreSQL; and PostgreSQL's concurrency, job
primitives and migrations. Two PostgresStore objects stand for two processes (two pools)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import (
    SYSTEM_ACCOUNT_ID,
    EntryType,
    InsufficientBalance,
    Posting,
    Wallet,
)
from papi_sandbox.store import upgrade
from papi_sandbox.store.dialect import SYSTEM_BALANCE_BUCKETS
from papi_sandbox.store.postgres import PostgresStore
from papi_sandbox.store.schema import MIGRATIONS
from tests.support import (
    adjustment,
    with_store,
)

D = Decimal


def test_transact_refusal_journal_and_verify(store_url: str) -> None:
    async def body(store: Any) -> None:
        a = await store.create_account("a", None)
        assert (await store.account(a)).label == "a"
        assert await store.account(SYSTEM_ACCOUNT_ID) is None
        deposit = await store.transact(a, "DEPOSIT", adjustment(a, "100.5"))
        await store.transact(a, "REALIZED_PNL", adjustment(a, "-0.00000001", Wallet.UM))
        repay = await store.transact(
            a, "REPAY_FUTURES_NEGATIVE_BALANCE", functools.partial(rules.plan_repay, a)
        )
        assert deposit.tran_id < repay.tran_id
        # Nothing negative now: the plan is empty and nothing is written.
        assert await store.transact(a, "REPAY", functools.partial(rules.plan_repay, a)) is None
        with pytest.raises(InsufficientBalance):
            await store.transact(
                a, "WITHDRAW", adjustment(a, "-1000", Wallet.MARGIN, "USDT", EntryType.WITHDRAW)
            )
        balances = await store.balances(a)
        assert balances.amounts[(Wallet.MARGIN, "USDT")] == D("100.49999999")
        assert balances.amounts[(Wallet.UM, "USDT")] == 0
        assert all(isinstance(v, Decimal) for v in balances.amounts.values())
        journal = await store.journal(a, 10)
        assert [e.type for e in journal] == [
            "REPAY_FUTURES_NEGATIVE_BALANCE",
            "REALIZED_PNL",
            "DEPOSIT",
        ]
        assert journal[-1].postings == (
            Posting(a, Wallet.MARGIN, "USDT", D("100.5")),
            Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, "USDT", D("-100.5")),
        )
        assert [e.tran_id for e in await store.journal(a, 10, journal[0].tran_id)] == [
            e.tran_id for e in journal[1:]
        ]
        report = await store.verify()
        assert report.ok, report.problems
        assert (report.entries, report.postings, report.accounts) == (3, 6, 1)

    with_store(store_url, body)


def test_amounts_at_the_limit_stay_exact(store_url: str) -> None:
    async def body(store: Any) -> None:
        a = await store.create_account(None, None)
        await store.transact(
            a,
            "DEPOSIT",
            adjustment(a, "999999999999999.99999999", Wallet.MARGIN, "X"),
        )
        await store.transact(a, "PNL", adjustment(a, "-999999999999999.99999998", Wallet.UM, "X"))
        await store.transact(a, "REPAY", functools.partial(rules.plan_repay, a))
        amounts = (await store.balances(a)).amounts
        assert amounts[(Wallet.MARGIN, "X")] == D("0.00000001")
        assert (await store.verify()).ok

    with_store(store_url, body)


def test_upgrade_is_idempotent(store_url: str) -> None:
    before, after = upgrade(store_url)
    assert before == 0 and after >= 1
    assert upgrade(store_url) == (after, after)
    with_store(store_url, lambda store: asyncio.sleep(0))  # opening migrates nothing more
    assert upgrade(store_url) == (after, after)


# -- PostgreSQL only ---------------------------------------------------------------------------


@pytest.fixture
def pg(pg_url: str) -> str:
    return pg_url


def run_with_two_stores(
    url: str, body: Callable[[PostgresStore, PostgresStore], Awaitable[None]]
) -> None:
    """Two stores with their own pools: two server processes, as far as PostgreSQL can tell."""

    async def main() -> None:
        one, two = PostgresStore(url), PostgresStore(url)
        await one.open()
        await two.open()
        try:
            await body(one, two)
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())


def test_migrations_are_recorded(pg: str) -> None:
    with_store(pg, lambda store: asyncio.sleep(0))
    with psycopg.connect(pg) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        types = conn.execute(
            "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns"
            " WHERE table_name IN ('balances', 'postings') AND column_name = 'amount'"
        ).fetchall()
    assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
    assert set(types) == {("numeric", 38, 8)}


def test_concurrent_changes_from_two_processes_give_the_serial_result(pg: str) -> None:
    """Repays, deposits, losses and withdrawals on three shared accounts from two pools at once;
    then each account's journal, replayed in tranId order through the pure rules, reproduces
    every entry and the stored balances."""

    async def body(one: PostgresStore, two: PostgresStore) -> None:
        accounts = [await one.create_account(f"shared{i}", None) for i in range(3)]
        for a in accounts:
            await one.transact(a, "DEPOSIT", adjustment(a, "50"))
        ops: list[Awaitable[Any]] = []
        for i in range(240):
            store = (one, two)[i % 2]
            a = accounts[i % 3]
            kind = i % 4
            if kind == 0:
                plan = functools.partial(rules.plan_repay, a)
                ops.append(store.transact(a, "REPAY_FUTURES_NEGATIVE_BALANCE", plan))
            elif kind == 1:
                ops.append(
                    store.transact(
                        a,
                        "REALIZED_PNL",
                        adjustment(a, "-1.5", Wallet.UM),
                    )
                )
            elif kind == 2:
                ops.append(
                    store.transact(
                        a,
                        "WITHDRAW",
                        adjustment(a, "-2.25", Wallet.MARGIN, "USDT", EntryType.WITHDRAW),
                    )
                )
            else:
                ops.append(store.transact(a, "DEPOSIT", adjustment(a, "1")))
        results = await asyncio.gather(*ops, return_exceptions=True)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, InsufficientBalance) for r in refused), refused
        for a in accounts:
            entries = list(reversed(await one.journal(a, 1000)))
            tran_ids = [e.tran_id for e in entries]
            assert tran_ids == sorted(set(tran_ids))
            model: dict[tuple[Wallet, str], Decimal] = {}
            for entry in entries:
                if entry.type == "REPAY_FUTURES_NEGATIVE_BALANCE":
                    expected = rules.plan_repay(a, model)
                else:
                    own = next(p for p in entry.postings if p.account_id == a)
                    expected = rules.plan_adjustment(
                        a, model, own.wallet, own.asset, own.amount, EntryType(entry.type)
                    )
                assert list(entry.postings) == expected, entry
                model = rules.apply(model, [p for p in expected if p.account_id == a])
            stored = (await two.balances(a)).amounts
            assert {k: v for k, v in stored.items()} == {k: v for k, v in model.items()}
        report = await one.verify()
        assert report.ok, report.problems

    run_with_two_stores(pg, body)


def test_system_rows_are_locked_in_one_order_so_no_deadlock(pg: str) -> None:
    """Entries touching the system account's rows of two assets, listed in opposite orders, from
    two pools at once: the store updates rows in one global order, so nothing deadlocks (a
    deadlock would show as a retry)."""

    def two_assets(account_id: int, first: str, second: str) -> Any:
        def plan(_: Any) -> list[Posting]:
            return [
                Posting(account_id, Wallet.MARGIN, first, D(1)),
                Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, first, D(-1)),
                Posting(account_id, Wallet.MARGIN, second, D(1)),
                Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, second, D(-1)),
            ]

        return plan

    async def body(one: PostgresStore, two: PostgresStore) -> None:
        created = [await one.create_account(None, None) for _ in range(3 * SYSTEM_BALANCE_BUCKETS)]
        # Accounts whose entries share the system account's rows (one bucket).
        accounts = [a for a in created if a % SYSTEM_BALANCE_BUCKETS == 1]
        assert len(accounts) == 3
        ops = []
        for i in range(160):
            a = accounts[i % 3]
            order = ("AAA", "BBB") if i % 2 else ("BBB", "AAA")
            ops.append((one, two)[i % 2].transact(a, "DEPOSIT", two_assets(a, *order)))
        await asyncio.gather(*ops)
        assert one.retries_total == two.retries_total == 0
        system = (await one.balances(SYSTEM_ACCOUNT_ID)).amounts
        assert system[(Wallet.EXTERNAL, "AAA")] == system[(Wallet.EXTERNAL, "BBB")] == D(-160)
        assert (await one.verify()).ok

    run_with_two_stores(pg, body)


def test_leases_and_advisory_locks(pg: str) -> None:
    async def body(one: PostgresStore, two: PostgresStore) -> None:
        assert await one.try_lease("interest:2026-01-01T00", "proc-1", 60_000)
        assert not await two.try_lease("interest:2026-01-01T00", "proc-2", 60_000)
        assert await one.try_lease("interest:2026-01-01T00", "proc-1", 60_000)  # renewal
        assert await one.lease_active("interest:2026-01-01T00")
        assert await two.try_lease("interest:2026-01-01T01", "proc-2", 50)
        await asyncio.sleep(0.2)  # proc-2 stops renewing; its lease expires
        assert not await one.lease_active("interest:2026-01-01T01")
        assert await one.try_lease("interest:2026-01-01T01", "proc-1", 60_000)

        async with (
            one.advisory_lock("auto-repay") as held_one,
            two.advisory_lock("auto-repay") as held_two,
        ):
            assert (held_one, held_two) == (True, False)
        async with two.advisory_lock("auto-repay") as held_again:
            assert held_again

    run_with_two_stores(pg, body)


def test_verify_streams_and_catches_tampering(pg: str) -> None:
    async def body(store: PostgresStore) -> None:
        a = await store.create_account(None, None)
        for i in range(25):
            await store.transact(a, "DEPOSIT", adjustment(a, f"{i + 1}"))
        report = await store.verify()
        assert report.ok and report.entries == 25 and report.postings == 50

    with_store(pg, body)  # type: ignore[arg-type]
    with psycopg.connect(pg) as conn:
        conn.execute("UPDATE balances SET amount = amount + 0.00000001 WHERE wallet = 'MARGIN'")
    report = PostgresStore(pg).verify_sync()
    assert not report.ok
    assert any("325.00000001" in p for p in report.problems), report.problems


def test_a_revocation_reaches_every_process(pg: str) -> None:
    """Each process caches key records for a few seconds; a revocation through one process is
    announced to the others when it commits (LISTEN/NOTIFY), so they forget the key at once."""
    from papi_sandbox.store.base import ApiKeyRecord

    async def main() -> None:
        one, two = PostgresStore(pg), PostgresStore(pg)
        heard: list[str] = []
        two.on_key_revoked(heard.append)
        await one.open()
        await two.open()
        try:
            await asyncio.wait_for(two.listening.wait(), timeout=10)
            key = ApiKeyRecord("K" * 64, 0, "HMAC", "s", None, True, True, ())
            account = await one.create_account("r", key)
            assert not await one.revoke_api_key(account + 1, key.api_key)  # not its key: silent
            assert await one.revoke_api_key(account, key.api_key)
            async with asyncio.timeout(10):
                while not heard:
                    await asyncio.sleep(0.01)
            assert heard == [key.api_key]
            record = await two.find_api_key(key.api_key)
            assert record is not None and record.revoked
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())
