"""The event hub (stream/hub.py) alone, and fed by both stores: every durable commit is published
once, in commit order, with its resulting balances; a rolled-back change never is."""

from __future__ import annotations

import asyncio
import functools
from decimal import Decimal
from typing import Any

import pytest

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import (
    SYSTEM_ACCOUNT_ID,
    CommittedEntry,
    Entry,
    EntryType,
    InsufficientBalance,
    LedgerError,
    Posting,
    Wallet,
)
from papi_sandbox.store import open_store
from papi_sandbox.store.base import JobAccount, JobPlan
from papi_sandbox.store.outbox import NOTIFY_PAYLOAD_LIMIT
from papi_sandbox.store.postgres import PostgresStore
from papi_sandbox.stream.hub import EventHub, SubscriberDropped, TooManySubscribers
from tests.support import (
    adjustment,
    create_test_database,
    drop_test_database,
    postgres_admin_url,
)

D = Decimal


def _committed(account_id: int, tran_id: int) -> CommittedEntry:
    entry = Entry(tran_id, "DEPOSIT", 0, account_id, ())
    return CommittedEntry(entry, ())


def test_hub_routes_by_account_in_order_and_to_all() -> None:
    async def main() -> None:
        hub = EventHub()
        one, two, every = hub.subscribe(1), hub.subscribe(2), hub.subscribe(None)
        hub.publish([_committed(1, 10), _committed(2, 11), _committed(1, 12)])
        assert [one.get_nowait(), one.get_nowait(), one.get_nowait()] == [
            _committed(1, 10),
            _committed(1, 12),
            None,
        ]
        assert (await anext(two)).entry.tran_id == 11
        assert [(await anext(every)).entry.tran_id for _ in range(3)] == [10, 11, 12]
        assert hub.subscribers == 3
        one.close()
        assert hub.subscribers == 2
        with pytest.raises(StopAsyncIteration):
            await anext(one)

    asyncio.run(main())


def test_hub_drops_a_subscriber_that_stops_reading() -> None:
    async def main() -> None:
        hub = EventHub(max_queue=3)
        slow, fast = hub.subscribe(7), hub.subscribe(7)
        for tran_id in range(1, 5):
            hub.publish([_committed(7, tran_id)])
            assert (await anext(fast)).entry.tran_id == tran_id
        assert slow.dropped and slow.closed and hub.dropped_total == 1
        with pytest.raises(SubscriberDropped):
            await anext(slow)
        assert hub.subscribers == 1 and not fast.dropped

    asyncio.run(main())


def test_hub_subscriber_limit_and_publish_from_another_thread() -> None:
    async def main() -> None:
        hub = EventHub(max_subscribers=2)
        sub = hub.subscribe(3)
        hub.subscribe(None)
        with pytest.raises(TooManySubscribers):
            hub.subscribe(3)
        await asyncio.to_thread(hub.publish, [_committed(3, 1), _committed(3, 2)])
        assert [(await anext(sub)).entry.tran_id for _ in range(2)] == [1, 2]

    asyncio.run(main())


async def _next(sub: Any) -> CommittedEntry:
    result: CommittedEntry = await asyncio.wait_for(anext(sub), 10)
    return result


def test_store_commits_reach_the_hub_in_order_with_resulting_balances(store_url: str) -> None:
    async def main() -> None:
        hub = EventHub()
        hub.bind()
        store = open_store(store_url)
        store.on_commit(hub.publish)
        await store.open()
        try:
            if isinstance(store, PostgresStore):
                await asyncio.wait_for(store.listening.wait(), 10)
            account = await store.create_account("a", None)
            other = await store.create_account("b", None)
            sub, everyone = hub.subscribe(account), hub.subscribe(None)
            # Concurrent changes of one account: published in commit order, each with the
            # balances right after it.
            await asyncio.gather(
                *(
                    store.transact(
                        account,
                        EntryType.DEPOSIT,
                        adjustment(account, "10.5"),
                    )
                    for _ in range(20)
                ),
                store.transact(
                    other,
                    EntryType.DEPOSIT,
                    adjustment(other, "1", Wallet.MARGIN, "BTC"),
                ),
            )
            seen = [await _next(sub) for _ in range(20)]
            assert [c.entry.tran_id for c in seen] == sorted(c.entry.tran_id for c in seen)
            assert [c.balances for c in seen] == [
                ((Wallet.MARGIN, "USDT", D("10.5") * n), (Wallet.MARGIN_LOCKED, "USDT", 0))
                for n in range(1, 21)
            ]
            assert seen[0].entry.postings[0] == Posting(account, Wallet.MARGIN, "USDT", D("10.5"))
            assert {(await _next(everyone)).entry.account_id for _ in range(21)} == {
                account,
                other,
            }
            # A refused change and a plan that fails are never published.
            await store.transact(
                account,
                EntryType.REALIZED_PNL,
                adjustment(account, "-3", Wallet.UM),
            )
            await store.transact(
                other,
                EntryType.REALIZED_PNL,
                adjustment(other, "-1", Wallet.UM),
            )
            with pytest.raises(InsufficientBalance):  # other has no USDT to repay with
                await store.transact(
                    other,
                    EntryType.REPAY_FUTURES_NEGATIVE_BALANCE,
                    functools.partial(rules.plan_repay, other),
                )

            def boom(balances: Any) -> list[Posting]:
                raise LedgerError("refused")

            with pytest.raises(LedgerError):
                await store.transact(account, EntryType.DEPOSIT, boom)
            repaid = await store.transact(
                account,
                EntryType.REPAY_FUTURES_NEGATIVE_BALANCE,
                functools.partial(rules.plan_repay, account),
            )
            assert repaid is not None
            loss, repay = await _next(sub), await _next(sub)
            assert loss.entry.type == EntryType.REALIZED_PNL
            assert loss.balances == ((Wallet.UM, "USDT", D("-3")),)
            assert repay.entry.tran_id == repaid.tran_id
            assert dict(((w, a), v) for w, a, v in repay.balances) == {
                (Wallet.MARGIN, "USDT"): D("207"),
                (Wallet.MARGIN_LOCKED, "USDT"): D("0"),
                (Wallet.UM, "USDT"): D("0"),
            }
            assert sub.pending() == 0
            # A job batch publishes each account's entry.
            await store.transact(
                account,
                EntryType.REALIZED_PNL,
                adjustment(account, "-1", Wallet.CM),
            )
            await _next(sub)

            def job_plan(job_account: JobAccount) -> JobPlan:
                return JobPlan(rules.plan_repay(job_account.account_id, job_account.balances))

            result = await store.run_job_batch(
                "auto-repay", 1, EntryType.AUTO_REPAY_FUTURES, [account], job_plan
            )
            assert len(result.entries) == 1
            auto = await _next(sub)
            assert auto.entry.type == EntryType.AUTO_REPAY_FUTURES
            assert dict(((w, a), v) for w, a, v in auto.balances)[(Wallet.CM, "USDT")] == 0
        finally:
            await store.close()

    asyncio.run(main())


def _many_assets_plan(account_id: int, count: int) -> Any:
    def plan(balances: Any) -> list[Posting]:
        postings = []
        for n in range(count):
            asset = f"A{n:05d}"
            postings.append(Posting(account_id, Wallet.MARGIN, asset, D("1.23456789")))
            postings.append(Posting(SYSTEM_ACCOUNT_ID, Wallet.EXTERNAL, asset, D("-1.23456789")))
        return postings

    return plan


def test_postgres_delivers_to_every_process_even_past_the_payload_limit() -> None:
    admin = postgres_admin_url()
    url = create_test_database(admin)

    async def main() -> None:
        hubs = [EventHub(), EventHub()]
        stores = [PostgresStore(url), PostgresStore(url)]  # two processes: two pools, listeners
        for hub, store in zip(hubs, stores, strict=True):
            hub.bind()
            store.on_commit(hub.publish)
            await store.open()
            await asyncio.wait_for(store.listening.wait(), 10)
        try:
            account = await stores[0].create_account("a", None)
            subs = [hub.subscribe(account) for hub in hubs]
            small = await stores[1].transact(
                account,
                EntryType.DEPOSIT,
                adjustment(account, "1", Wallet.UM),
            )
            big = await stores[1].transact(
                account, EntryType.DEPOSIT, _many_assets_plan(account, 120)
            )
            assert small is not None and big is not None
            for sub in subs:
                got_small, got_big = await _next(sub), await _next(sub)
                assert got_small.entry == small
                assert got_big.entry == big
                assert len(got_big.balances) == 240  # free and locked of each asset
                assert got_big.balances[:2] == (
                    (Wallet.MARGIN, "A00000", D("1.23456789")),
                    (Wallet.MARGIN_LOCKED, "A00000", D("0")),
                )
            # the big one really went by reference
            from papi_sandbox.ledger.model import committed_entry
            from papi_sandbox.store.outbox import encode_committed as _encode_committed

            assert len(_encode_committed(committed_entry(big, {}))) > NOTIFY_PAYLOAD_LIMIT
        finally:
            for store in stores:
                await store.close()

    try:
        asyncio.run(main())
    finally:
        drop_test_database(admin, url)
