"""The balance snapshot cache: served while nothing changed, never older than an acknowledged
change (real SQLite files, the real writer thread)."""

from __future__ import annotations

import asyncio
import functools
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from papi_sandbox.api.http import EncodedJson, json_response
from papi_sandbox.api.serialize import BalanceObjects
from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import InsufficientBalance, Wallet
from papi_sandbox.store import sqlite as sqlite_store
from papi_sandbox.store.base import ApiKeyRecord, JobPlan
from papi_sandbox.store.sqlite import SQLiteStore
from papi_sandbox.store.versions import ChangeVersions, SnapshotCache
from tests.support import adjustment


def _key(n: int) -> ApiKeyRecord:
    return ApiKeyRecord(f"cachekey{n}", 0, "HMAC", "s", None, True, True, ())


async def _adjust(store: SQLiteStore, account: int, wallet: Wallet, amount: str) -> None:
    await store.transact(account, "ADJ", adjustment(account, amount, wallet))


def test_snapshots_are_reused_until_the_writer_changes_the_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only this process writes here: keep the other-process check (test below) out of the way.
    monkeypatch.setattr(sqlite_store, "EXTERNAL_CHANGE_CHECK_S", 3600.0)

    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "c.db")
        await store.open()
        try:
            a = await store.create_account("a", _key(1))
            b = await store.create_account("b", _key(2))
            first = await store.balances(a)
            assert await store.balances(a) is first  # served from the cache
            other = await store.balances(b)

            await _adjust(store, a, Wallet.MARGIN, "10")
            after = await store.balances(a)
            assert after is not first
            assert after.amounts[(Wallet.MARGIN, "USDT")] == 10
            assert await store.balances(b) is other  # b was not touched

            await _adjust(store, a, Wallet.UM, "-4")
            await store.transact(a, "REPAY", functools.partial(rules.plan_repay, a))
            repaid = await store.balances(a)
            assert repaid.amounts[(Wallet.MARGIN, "USDT")] == 6
            assert repaid.amounts[(Wallet.UM, "USDT")] == 0

            # A refused operation changes nothing; the cache may stay or refill, never lie.
            with pytest.raises(InsufficientBalance):
                await _adjust(store, a, Wallet.MARGIN, "-100")
            assert (await store.balances(a)).amounts[(Wallet.MARGIN, "USDT")] == 6

            # Balances change only through journal entries, which note each account they
            # change: a write of another kind (here a new account) keeps every snapshot, and a
            # job batch's entries invalidate exactly the accounts they touched.
            await store.create_account("c", _key(3))
            assert await store.balances(b) is other
            cached_a = await store.balances(a)
            await _adjust(store, b, Wallet.MARGIN, "3")
            await _adjust(store, b, Wallet.UM, "-1")
            cached_b = await store.balances(b)
            batch = await store.run_job_batch(
                "auto-repay",
                1,
                "AUTO_REPAY",
                [b],
                lambda acc: JobPlan(rules.plan_repay(acc.account_id, acc.balances)),
            )
            assert len(batch.entries) == 1
            assert await store.balances(a) is cached_a
            repaid_b = await store.balances(b)
            assert repaid_b is not cached_b
            assert repaid_b.amounts[(Wallet.MARGIN, "USDT")] == 2
        finally:
            await store.close()

    asyncio.run(scenario())


def test_reads_racing_writes_never_see_an_acknowledged_change_undone(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "r.db")
        await store.open()
        try:
            account = await store.create_account("a", _key(1))
            stop = asyncio.Event()

            async def reader() -> None:
                while not stop.is_set():
                    await store.balances(account)
                    await asyncio.sleep(0)  # a cache hit does not suspend: let others run

            readers = [asyncio.create_task(reader()) for _ in range(4)]
            for n in range(1, 41):
                await _adjust(store, account, Wallet.MARGIN, "1")
                seen = (await store.balances(account)).amounts[(Wallet.MARGIN, "USDT")]
                assert seen == n
            stop.set()
            await asyncio.gather(*readers)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_versions_stay_bounded_and_compare_after_a_reset() -> None:
    versions = ChangeVersions()
    cache = SnapshotCache(versions, max_entries=2)
    before = versions.of(7)
    versions.bump(range(200_000))  # past MAX_TRACKED_ACCOUNTS: everything is reset at once
    assert versions.of(7) != before
    assert len(versions._accounts) == 0
    from papi_sandbox.ledger.model import AccountBalances

    snap = AccountBalances()
    cache.put(7, before, snap)  # read before the bump: refused
    assert cache.get(7) is None
    cache.put(7, versions.of(7), snap)
    assert cache.get(7) is snap


def test_balance_objects_are_encoded_once_per_snapshot() -> None:
    from papi_sandbox.ledger.model import AccountBalances

    snap = AccountBalances(
        amounts={(Wallet.MARGIN, "USDT"): Decimal("5"), (Wallet.UM, "BTC"): Decimal("-1")},
        updated_ms={"USDT": 1, "BTC": 2},
    )
    objects = BalanceObjects()
    encoded = objects.all(1, snap)
    assert isinstance(encoded, EncodedJson)
    assert objects.all(1, snap) is encoded
    decoded = orjson.loads(bytes(encoded))
    assert [row["asset"] for row in decoded] == ["BTC", "USDT"]
    assert decoded[0]["negativeBalance"] == "1.00000000"
    assert objects.one(1, snap, "USDT")["crossMarginFree"] == "5.00000000"
    assert objects.one(1, snap, "ETH")["totalWalletBalance"] == "0.00000000"
    assert json_response(200, encoded).body == bytes(encoded)
    assert objects.all(1, AccountBalances()) is not encoded  # a new snapshot rebuilds


def test_a_commit_by_another_process_is_seen_within_the_check_interval(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "shared.db"
        service = SQLiteStore(path)
        other = SQLiteStore(path)  # stands for a second process writing to the same file
        await service.open()
        await other.open()
        try:
            account = await service.create_account("a", _key(1))
            before = await service.balances(account)
            assert await service.balances(account) is before
            await _adjust(other, account, Wallet.MARGIN, "7")
            await asyncio.sleep(0.05)  # > EXTERNAL_CHANGE_CHECK_S
            seen = await service.balances(account)
            assert seen.amounts[(Wallet.MARGIN, "USDT")] == 7
        finally:
            await other.close()
            await service.close()

    asyncio.run(scenario())
