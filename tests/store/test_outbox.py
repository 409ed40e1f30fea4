"""The SQLite stream outbox on real files: two stores on one file stand for two processes; each
publishes every commit of both, once, in commit order; a rolled-back change is never published;
old rows are pruned without ids restarting."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import CommittedEntry, EntryType, Wallet
from papi_sandbox.store import outbox
from papi_sandbox.store.base import ApiKeyRecord
from papi_sandbox.store.sqlite import SQLiteStore
from papi_sandbox.trading.model import Announcement


def _key(n: int) -> ApiKeyRecord:
    return ApiKeyRecord(f"outboxkey{n}", 0, "HMAC", "s", None, True, True, ())


async def _adjust(store: SQLiteStore, account: int, amount: str) -> None:
    planner = functools.partial(
        rules.plan_adjustment,
        account,
        wallet=Wallet.UM,
        asset="USDT",
        amount=Decimal(amount),
        reason=EntryType.DEPOSIT,
    )
    await store.transact(account, "ADJ", planner)


def _tran_ids(items: list[Announcement]) -> list[int]:
    return [i.entry.tran_id for i in items if isinstance(i, CommittedEntry)]


async def _until(condition: object, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)


def test_two_stores_on_one_file_each_publish_every_commit_once_in_order(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[int], list[int], list[int]]:
        path = tmp_path / "shared.db"
        one, two = SQLiteStore(path), SQLiteStore(path)
        seen_one: list[Announcement] = []
        seen_two: list[Announcement] = []
        one.on_commit(lambda items, _: seen_one.extend(items))
        two.on_commit(lambda items, _: seen_two.extend(items))
        await one.open()
        await two.open()
        try:
            account = await one.create_account("a", _key(1))
            # Interleaved and concurrent writes through both "processes".
            await asyncio.gather(
                *(_adjust(one if n % 3 else two, account, f"{n + 1}") for n in range(60))
            )
            for n in range(20):
                await _adjust(two if n % 2 else one, account, "0.5")
            await _until(lambda: len(seen_one) >= 80 and len(seen_two) >= 80)
            journal = sorted(e.tran_id for e in await one.journal(account, 1000, None))
            return _tran_ids(seen_one), _tran_ids(seen_two), journal
        finally:
            await two.close()
            await one.close()

    first, second, journal = asyncio.run(scenario())
    assert len(journal) == 80
    assert first == journal  # every entry once, in commit (tranId) order
    assert second == journal


def test_a_rolled_back_change_is_not_announced_and_rows_are_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "KEEP_S", 0.0)
    monkeypatch.setattr(outbox, "PRUNE_INTERVAL_S", 0.0)

    async def scenario() -> tuple[list[int], list[int], int, int]:
        path = tmp_path / "prune.db"
        one, two = SQLiteStore(path), SQLiteStore(path)
        seen: list[Announcement] = []
        two.on_commit(lambda items, _: seen.extend(items))
        await one.open()
        await two.open()
        try:
            account = await one.create_account("a", _key(2))
            await _adjust(one, account, "1")

            def fails_after_writing(db: object) -> None:
                from papi_sandbox.store import journal

                planner = functools.partial(
                    rules.plan_adjustment,
                    account,
                    wallet=Wallet.UM,
                    asset="USDT",
                    amount=Decimal(5),
                    reason=EntryType.DEPOSIT,
                )
                ((entry, error),) = journal.transact(
                    db,  # type: ignore[arg-type]
                    [journal.Change(account, "ADJ", planner, 1)],
                )
                assert entry is not None and error is None  # written, then the op fails
                raise RuntimeError("after writing")

            with pytest.raises(RuntimeError):
                await one.write(fails_after_writing)
            await _adjust(one, account, "2")
            await _until(lambda: len(seen) >= 2)
            await asyncio.sleep(0.2)  # idle ticks: the writers prune
            journal = sorted(e.tran_id for e in await one.journal(account, 1000, None))
            with sqlite3.connect(path) as conn:
                rows = conn.execute("SELECT COUNT(*), MAX(id) FROM stream_outbox").fetchone()
            return _tran_ids(seen), journal, int(rows[0]), int(rows[1])
        finally:
            await two.close()
            await one.close()

    seen, journal, rows, last = asyncio.run(scenario())
    assert seen == journal and len(journal) == 2
    assert rows == 1 and last == 2  # pruned down to the newest row; ids go on from it
