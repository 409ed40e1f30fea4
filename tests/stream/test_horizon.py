"""A subscription never receives a commit that was durable before it subscribed, however late its
process learns of that commit, and misses none committed after (store/outbox.py, "Marks and the
horizon"). Each test makes the late learning certain instead of hoping for it: the SQLite
process's idle tail never runs, the PostgreSQL listener is held until the subscription is made.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from papi_sandbox.ledger.model import CommittedEntry, Entry, EntryType, Wallet
from papi_sandbox.store import outbox
from papi_sandbox.store.contract import Store
from papi_sandbox.store.outbox import Horizon
from papi_sandbox.store.postgres import PostgresStore
from papi_sandbox.store.sqlite import SQLiteStore
from papi_sandbox.stream.hub import EventHub, Subscription, subscribe_from_now
from tests.support import adjustment, create_test_database, drop_test_database, postgres_admin_url


async def _deposit(store: Store, account: int, amount: str) -> Entry:
    entry = await store.transact(account, EntryType.DEPOSIT, adjustment(account, amount, Wallet.UM))
    assert entry is not None
    return entry


async def _received(sub: Subscription) -> list[int]:
    """The tranIds the subscription received once the stream went quiet."""
    got = [await asyncio.wait_for(anext(sub), 10)]
    await asyncio.sleep(0.3)
    while (item := sub.get_nowait()) is not None:
        got.append(item)
    return [i.entry.tran_id for i in got if isinstance(i, CommittedEntry)]


def test_sqlite_a_commit_of_another_process_not_yet_tailed_is_not_news(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process's idle tail never runs: it learns of the other process's deposit only when
    # its own next batch reads the outbox, after the client subscribed.
    monkeypatch.setattr(outbox, "TAIL_INTERVAL_S", 3600.0)

    async def scenario() -> tuple[Entry, Entry, list[int]]:
        path = tmp_path / "shared.db"
        here, other = SQLiteStore(path), SQLiteStore(path)
        hub = EventHub()
        hub.bind()
        here.on_commit(hub.publish)
        await here.open()
        await other.open()
        try:
            account = await other.create_account("a", None)
            before = await _deposit(other, account, "1")  # durable, not yet known here
            sub = await subscribe_from_now(
                hub, account, functools.partial(outbox.durable_now, here)
            )
            after = await _deposit(here, account, "2")  # publishes `before`, then itself
            return before, after, await _received(sub)
        finally:
            await other.close()
            await here.close()

    before, after, received = asyncio.run(scenario())
    assert before.tran_id < after.tran_id
    assert received == [after.tran_id]


def test_postgresql_a_notification_still_on_its_way_is_not_news() -> None:
    admin = postgres_admin_url()
    url = create_test_database(admin)

    async def scenario() -> tuple[Entry, Entry, list[int]]:
        hub = EventHub()
        hub.bind()
        here, other = PostgresStore(url), PostgresStore(url)
        here.on_commit(hub.publish)
        gate = asyncio.Event()
        announced = here._announced

        async def held(payload: str) -> None:  # a listener that lags until the gate opens
            await gate.wait()
            await announced(payload)

        here._announced = held  # type: ignore[method-assign]
        await here.open()
        await other.open()
        try:
            await asyncio.wait_for(here.listening.wait(), 10)
            account = await other.create_account("a", None)
            before = await _deposit(other, account, "1")  # its NOTIFY waits at the gate
            sub = await subscribe_from_now(
                hub, account, functools.partial(outbox.durable_now, here)
            )
            after = await _deposit(other, account, "2")
            gate.set()
            return before, after, await _received(sub)
        finally:
            await other.close()
            await here.close()

    try:
        before, after, received = asyncio.run(scenario())
    finally:
        drop_test_database(admin, url)
    assert before.tran_id < after.tran_id
    assert received == [after.tran_id]


def test_horizon_follows_postgresql_visibility() -> None:
    # xmin 10, xmax 20, 12 and 15 in progress: what committed before is below 10, or below 20
    # and not in progress.
    h = Horizon(10, 20, frozenset({12, 15}))
    assert [m for m in (3, 9, 10, 11, 12, 15, 19, 20, 25) if h.durable(m)] == [3, 9, 10, 11, 19]
    sqlite = Horizon(8, 8)
    assert [m for m in (1, 7, 8, 9) if sqlite.durable(m)] == [1, 7]


def test_what_arrives_while_the_horizon_is_read_is_judged_by_it() -> None:
    async def main() -> None:
        hub = EventHub()
        hub.bind()

        async def slow_horizon() -> object:
            # Two commits reach the hub while the store is asked: the first was durable
            # when the horizon was read, the second was not.
            hub.publish([_entry(1, 5), _entry(1, 6)], [5, 6])
            return Horizon(6, 6).durable

        sub = await subscribe_from_now(hub, 1, slow_horizon)  # type: ignore[arg-type]
        hub.publish([_entry(1, 7), _entry(1, 4)], [7, 4])
        got = [sub.get_nowait(), sub.get_nowait(), sub.get_nowait()]
        assert [g.entry.tran_id if isinstance(g, CommittedEntry) else None for g in got] == [
            6,
            7,
            4,  # past the first newer commit every one is news (commit order)
        ]
        assert sub.get_nowait() is None

    asyncio.run(main())


def _entry(account_id: int, tran_id: int) -> CommittedEntry:
    return CommittedEntry(Entry(tran_id, "DEPOSIT", 0, account_id, ()), ())
