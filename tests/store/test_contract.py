"""The Store contract, one suite run against both stores: every method, its refusals, and the
schema upgrade in place of ledgers made by earlier releases."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from papi_sandbox.ledger import rules
from papi_sandbox.ledger.interest import InterestCharge
from papi_sandbox.ledger.model import SYSTEM_ACCOUNT_ID, EntryType, LedgerError, Wallet
from papi_sandbox.store import open_store, upgrade
from papi_sandbox.store.base import ApiKeyRecord, JobAccount, JobPlan
from papi_sandbox.store.contract import KeyRevocations, SharedJobStore, Store
from papi_sandbox.store.dialect import Db
from papi_sandbox.store.schema import MIGRATIONS
from papi_sandbox.trading.model import IncomePage
from tests.support import (
    adjustment,
    with_store,
)

D = Decimal


def key(name: str, account_id: int = 0, secret: str | None = "s") -> ApiKeyRecord:
    return ApiKeyRecord(name.ljust(64, "0"), account_id, "HMAC", secret, None, True, True, ())


def test_an_entry_for_a_missing_account_is_refused(store_url: str) -> None:
    async def body(store: Store) -> None:
        missing = 424242
        with pytest.raises(LedgerError, match="does not exist"):
            await store.transact(missing, "DEPOSIT", adjustment(missing, "5"))
        # Queued together with a good change (SQLite: one batch, one in-memory run).
        good = await store.create_account("good", None)
        results = await asyncio.gather(
            store.transact(good, "DEPOSIT", adjustment(good, "1")),
            store.transact(missing, "DEPOSIT", adjustment(missing, "5")),
            return_exceptions=True,
        )
        assert not isinstance(results[0], BaseException)
        assert isinstance(results[1], LedgerError)
        with pytest.raises(LedgerError, match="does not exist"):
            await store.add_api_key_limited(key("K", missing), 5)
        assert await store.journal(missing, 10) == []
        assert (await store.balances(missing)).amounts == {}
        report = await store.verify()
        assert report.ok and report.entries == 1, report.problems

    with_store(store_url, body)


def test_accounts_keys_and_settings(store_url: str) -> None:
    async def body(store: Store) -> None:
        a = await store.create_account("alice", key("A1"))
        info = await store.account(a)
        assert info is not None and (info.label, info.auto_repay, info.vip_level) == (
            "alice",
            True,
            0,
        )
        assert await store.account(SYSTEM_ACCOUNT_ID) is None
        assert await store.account(a + 1000) is None
        assert await store.set_account_settings(a, auto_repay=False)
        assert await store.set_account_settings(a, vip_level=3)
        info = await store.account(a)
        assert info is not None and (info.auto_repay, info.vip_level) == (False, 3)
        assert not await store.set_account_settings(a + 1000, vip_level=1)
        assert not await store.set_account_settings(SYSTEM_ACCOUNT_ID, vip_level=1)

        found = await store.find_api_key(key("A1").api_key)
        assert found is not None and found.account_id == a and not found.revoked
        assert await store.find_api_key("nope") is None
        ip_key = ApiKeyRecord("A2".ljust(64, "0"), a, "HMAC", "t", None, True, False, ("1.2.3.4",))
        assert await store.add_api_key_limited(ip_key, 2)
        assert not await store.add_api_key_limited(key("A3", a), 2)  # two live keys already
        assert [k.api_key for k in await store.api_keys(a)] == [key("A1").api_key, ip_key.api_key]
        assert (await store.find_api_key(ip_key.api_key)) == ip_key
        assert not await store.revoke_api_key(a + 1, ip_key.api_key)  # not its key
        assert await store.revoke_api_key(a, ip_key.api_key)
        assert not await store.revoke_api_key(a, ip_key.api_key)  # already revoked
        revoked = await store.find_api_key(ip_key.api_key)
        assert revoked is not None and revoked.revoked
        assert await store.add_api_key_limited(key("A3", a), 2)  # a revoked key does not count

        changed = await store.rewrite_api_key_secrets(lambda s, k: s if s == "t" else s + "!")
        assert changed == 2
        assert {k.secret for k in await store.api_keys(a)} == {"s!", "t"}
        assert await store.claim_setting("color", "blue") == "blue"
        assert await store.claim_setting("color", "red") == "blue"
        assert await store.claim_setting("color", "red", replace=True) == "red"

    with_store(store_url, body)


def test_journal_pages_counts_and_units(store_url: str) -> None:
    async def body(store: Store) -> None:
        a = await store.create_account(None, None)
        entries = [await store.transact(a, "DEPOSIT", adjustment(a, str(i + 1))) for i in range(5)]
        assert all(e is not None for e in entries)
        ids = [e.tran_id for e in entries if e is not None]
        assert [e.tran_id for e in await store.journal(a, 2)] == ids[::-1][:2]
        assert [e.tran_id for e in await store.journal(a, 10, ids[2])] == ids[:2][::-1]
        assert await store.journal(a, 10, ids[0]) == []
        assert (await store.entry_counts()) == {"DEPOSIT": 5}
        assert (await store.balances(a)).amounts[(Wallet.MARGIN, "USDT")] == D(15)
        # The generic primitives a feature's own state goes through.

        def count_entries(db: Db, account_id: int) -> int:
            return int(
                db.one("SELECT COUNT(*) FROM entries WHERE account_id = ?", (account_id,))[0]
            )

        def relabel(db: Db, account_id: int, label: str) -> bool:
            row = db.one(
                "UPDATE accounts SET label = ? WHERE id = ? RETURNING id", (label, account_id)
            )
            return row is not None

        assert await store.read(count_entries, a) == 5
        assert await store.write(relabel, a, label="renamed")
        info = await store.account(a)
        assert info is not None and info.label == "renamed"

        def fails_after_writing(db: Db, account_id: int) -> None:
            db.execute("UPDATE accounts SET label = 'lost' WHERE id = ?", (account_id,))
            raise RuntimeError("after writing")

        with pytest.raises(RuntimeError):
            await store.write(fails_after_writing, a)
        info = await store.account(a)
        assert info is not None and info.label == "renamed"  # rolled back

    with_store(store_url, body)


def test_job_batches_interest_history_and_marks(store_url: str) -> None:
    async def body(store: Store) -> None:
        owing = [await store.create_account(None, None) for _ in range(3)]
        clean = await store.create_account(None, None)
        await store.transact(clean, "DEPOSIT", adjustment(clean, "5"))
        for a in owing:
            await store.transact(a, "PNL", adjustment(a, "-2", Wallet.UM))
        assert await store.job_candidates(0, 10) == owing
        assert await store.job_candidates(owing[0], 1) == [owing[1]]

        def charge(account: JobAccount) -> JobPlan:
            if account.account_id == owing[1]:
                raise LedgerError("refused")
            amount = D("0.5")
            postings = rules.plan_adjustment(
                account.account_id,
                account.balances,
                Wallet.UM,
                "USDT",
                -amount,
                EntryType.REALIZED_PNL,
            )
            return JobPlan(postings, [InterestCharge("USDT", amount, D("0.25"), D(2), Wallet.UM)])

        result = await store.run_job_batch("interest", 1000, "INTEREST", [*owing, 0, 999], charge)
        assert (result.accounts, result.already_done, result.refused) == (4, 0, 1)
        assert len(result.entries) == 2
        again = await store.run_job_batch("interest", 1000, "INTEREST", owing, charge)
        assert (again.already_done, again.entries) == (3, [])  # a refusal is marked too
        history = await store.interest_history(owing[0], None, 0, 2000, 10)
        assert [(h.asset, h.interest, h.rate, h.principal, h.accrued_ms) for h in history] == [
            ("USDT", D("0.5"), D("0.25"), D(2), 1000)
        ]
        assert history[0].tran_id == result.entries[0].tran_id
        assert await store.interest_history(owing[0], "BTC", 0, 2000, 10) == []
        assert await store.interest_history(owing[0], "USDT", 1001, 2000, 10) == []
        assert await store.prune_job_marks(1001) == 3
        with pytest.raises(ValueError):
            await store.run_job_batch("interest", 1, "INTEREST", list(range(5001)), charge)
        assert (await store.verify()).ok

    with_store(store_url, body)


def test_capabilities_are_typed_protocols(store_url: str) -> None:
    store = open_store(store_url)
    shared = store_url.startswith("postgresql")
    assert isinstance(store, SharedJobStore) is shared
    assert isinstance(store, KeyRevocations) is shared
    assert store.retries_total == 0


# -- upgrades in place of ledgers made by earlier releases --------------------------------------

# The SQLite schema of the release before the one migration list (main at e1586c3), verbatim:
# versions counted by PRAGMA user_version.
SQLITE_BEFORE = (
    """
    CREATE TABLE accounts (id INTEGER PRIMARY KEY, label TEXT, created_ms INTEGER NOT NULL,
        auto_repay INTEGER NOT NULL DEFAULT 1, vip_level INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE api_keys (api_key TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id), key_type TEXT NOT NULL, secret TEXT,
        public_key TEXT, can_read INTEGER NOT NULL, can_trade INTEGER NOT NULL,
        ip_whitelist TEXT NOT NULL DEFAULT '[]', created_ms INTEGER NOT NULL,
        revoked_ms INTEGER);
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE entries (tran_id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
        type TEXT NOT NULL, time_ms INTEGER NOT NULL);
    CREATE INDEX entries_account ON entries(account_id, tran_id);
    CREATE TABLE postings (tran_id INTEGER NOT NULL REFERENCES entries(tran_id),
        seq INTEGER NOT NULL, account_id INTEGER NOT NULL, wallet TEXT NOT NULL,
        asset TEXT NOT NULL, amount TEXT NOT NULL, PRIMARY KEY (tran_id, seq)) WITHOUT ROWID;
    CREATE TABLE balances (account_id INTEGER NOT NULL, asset TEXT NOT NULL,
        wallet TEXT NOT NULL, amount TEXT NOT NULL, updated_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, asset, wallet)) WITHOUT ROWID;
    INSERT INTO accounts (id, label, created_ms, auto_repay) VALUES (0, 'SYSTEM', 0, 0);
    """,
    """
    CREATE TABLE interest_records (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
        asset TEXT NOT NULL, interest TEXT NOT NULL, rate TEXT NOT NULL, principal TEXT NOT NULL,
        accrued_ms INTEGER NOT NULL, tran_id INTEGER NOT NULL REFERENCES entries(tran_id));
    CREATE INDEX interest_records_account ON interest_records(account_id, accrued_ms);
    CREATE TABLE job_marks (job TEXT NOT NULL, slot_ms INTEGER NOT NULL,
        account_id INTEGER NOT NULL, tran_id INTEGER, PRIMARY KEY (job, slot_ms, account_id))
        WITHOUT ROWID;
    CREATE INDEX balances_negative_futures ON balances(account_id)
        WHERE wallet IN ('UM', 'CM') AND amount < '0';
    """,
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
)

# What that release wrote for one account: a key, a deposit, a loss, interest, a job mark.
SQLITE_ROWS = """
    INSERT INTO accounts (id, label, created_ms, auto_repay, vip_level) VALUES (1, 'old', 5, 1, 2);
    INSERT INTO api_keys VALUES ('OLDKEY', 1, 'HMAC', 'sealed', NULL, 1, 1, '["10.0.0.1"]', 5,
        NULL);
    INSERT INTO entries VALUES (1, 1, 'DEPOSIT', 6);
    INSERT INTO postings VALUES (1, 0, 1, 'MARGIN', 'USDT', '10.00000000');
    INSERT INTO postings VALUES (1, 1, 0, 'EXTERNAL', 'USDT', '-10.00000000');
    INSERT INTO entries VALUES (2, 1, 'REALIZED_PNL', 7);
    INSERT INTO postings VALUES (2, 0, 1, 'UM', 'USDT', '-3.00000000');
    INSERT INTO postings VALUES (2, 1, 0, 'EXTERNAL', 'USDT', '3.00000000');
    INSERT INTO balances VALUES (1, 'USDT', 'MARGIN', '10.00000000', 6);
    INSERT INTO balances VALUES (1, 'USDT', 'UM', '-3.00000000', 7);
    INSERT INTO balances VALUES (0, 'USDT', 'EXTERNAL', '-7.00000000', 7);
    INSERT INTO interest_records VALUES (1, 1, 'USDT', '0.00100000', '0.00010000', '3.00000000',
        3600000, 2);
    INSERT INTO job_marks VALUES ('interest', 3600000, 1, 2);
    INSERT INTO meta VALUES ('secret_key_id', 'abc');
"""


def make_old_sqlite(path: Path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for number, script in enumerate(SQLITE_BEFORE[:version], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={number}")
    if version == len(SQLITE_BEFORE):
        conn.executescript(SQLITE_ROWS)
    conn.close()


def columns(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: conn.execute(f"PRAGMA table_info({t})").fetchall() for t in sorted(tables)}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_old_sqlite_ledger_upgrades_in_place(tmp_path: Path, version: int) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    make_old_sqlite(old, version)
    url = f"sqlite:///{old}"
    before, after = upgrade(url)
    assert (before, after) == (len({1: (1,), 2: (1, 3), 3: (1, 3, 4)}[version]), len(MIGRATIONS))
    assert upgrade(url) == (after, after)
    upgrade(f"sqlite:///{fresh}")
    with sqlite3.connect(old) as a, sqlite3.connect(fresh) as b:
        assert columns(a) == columns(b)  # the same schema as a ledger made today
        indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        assert {r[0] for r in a.execute(indexes)} == {r[0] for r in b.execute(indexes)}
        applied = [r[0] for r in a.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert applied == [m.version for m in MIGRATIONS]
    if version < 3:
        return

    async def body(store: Store) -> None:
        info = await store.account(1)
        assert info is not None and (info.label, info.vip_level) == ("old", 2)
        found = await store.find_api_key("OLDKEY")
        assert found is not None and found.ip_whitelist == ("10.0.0.1",)
        assert (await store.balances(1)).amounts[(Wallet.UM, "USDT")] == D(-3)
        assert [h.tran_id for h in await store.interest_history(1, None, 0, 10**13, 10)] == [2]
        assert await store.claim_setting("secret_key_id", "new") == "abc"
        repay = await store.transact(1, "REPAY", functools.partial(rules.plan_repay, 1))
        assert repay is not None and repay.tran_id == 3
        assert (await store.verify()).ok

    with_store(url, body)


# The PostgreSQL schema of the same release, verbatim, as its four versions.
POSTGRES_BEFORE = (
    """
    CREATE TABLE accounts (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label TEXT,
        created_ms BIGINT NOT NULL, auto_repay BOOLEAN NOT NULL DEFAULT TRUE,
        vip_level INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE api_keys (api_key TEXT PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id), key_type TEXT NOT NULL, secret TEXT,
        public_key TEXT, can_read BOOLEAN NOT NULL, can_trade BOOLEAN NOT NULL,
        ip_whitelist TEXT[] NOT NULL DEFAULT '{}', created_ms BIGINT NOT NULL,
        revoked_ms BIGINT);
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE entries (tran_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL, type TEXT NOT NULL, time_ms BIGINT NOT NULL);
    CREATE INDEX entries_account ON entries(account_id, tran_id);
    CREATE TABLE postings (tran_id BIGINT NOT NULL REFERENCES entries(tran_id),
        seq INTEGER NOT NULL, account_id BIGINT NOT NULL, wallet TEXT NOT NULL,
        asset TEXT NOT NULL, amount NUMERIC(38, 8) NOT NULL, PRIMARY KEY (tran_id, seq));
    CREATE TABLE balances (account_id BIGINT NOT NULL, asset TEXT NOT NULL, wallet TEXT NOT NULL,
        bucket SMALLINT NOT NULL DEFAULT 0, amount NUMERIC(38, 8) NOT NULL,
        updated_ms BIGINT NOT NULL, PRIMARY KEY (account_id, asset, wallet, bucket));
    INSERT INTO accounts (id, label, created_ms, auto_repay) VALUES (0, 'SYSTEM', 0, FALSE);
    """,
    """
    CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL);
    CREATE TABLE sweep_claims (job TEXT NOT NULL, slot BIGINT NOT NULL, account_id BIGINT NOT NULL,
        tran_id BIGINT, outcome TEXT NOT NULL, done_ms BIGINT NOT NULL,
        PRIMARY KEY (job, slot, account_id));
    """,
    """
    CREATE TABLE interest_records (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL, asset TEXT NOT NULL, interest NUMERIC(38, 8) NOT NULL,
        rate NUMERIC(38, 8) NOT NULL, principal NUMERIC(38, 8) NOT NULL,
        accrued_ms BIGINT NOT NULL, tran_id BIGINT NOT NULL REFERENCES entries(tran_id));
    CREATE INDEX interest_records_account ON interest_records(account_id, accrued_ms);
    CREATE TABLE job_marks (job TEXT NOT NULL, slot_ms BIGINT NOT NULL,
        account_id BIGINT NOT NULL, tran_id BIGINT, PRIMARY KEY (job, slot_ms, account_id));
    CREATE INDEX balances_negative_futures ON balances(account_id)
        WHERE wallet IN ('UM', 'CM') AND amount < 0;
    """,
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
)


def test_an_old_postgres_ledger_upgrades_in_place(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_ms BIGINT NOT NULL)"
        )
        for number, script in enumerate(POSTGRES_BEFORE, start=1):
            conn.execute(script.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (number,))
        conn.execute("INSERT INTO accounts (id, label, created_ms) VALUES (1, 'old', 5)")
    assert upgrade(pg_url) == (4, len(MIGRATIONS))
    with psycopg.connect(pg_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
    assert "sweep_claims" not in tables and "leases" in tables

    async def body(store: Store) -> None:
        await store.transact(1, "DEPOSIT", adjustment(1, "2"))
        assert (await store.balances(1)).amounts[(Wallet.MARGIN, "USDT")] == D(2)

    with_store(pg_url, body)


def test_a_ledger_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade(url)
    with sqlite3.connect(tmp_path / "new.db") as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    with pytest.raises(RuntimeError, match="999"):
        upgrade(url)


def test_listen_keys(store_url: str) -> None:
    """One active listen key per API key; extend, close, find; revocation shows."""
    from papi_sandbox.store import listen_keys as table

    async def body(store: Store) -> None:
        api = key("api-lk").api_key
        account = await store.create_account("lk", key("api-lk"))
        opened = await store.write(table.open_key, api, account, "K1", 1000, 5000)
        assert (opened.listen_key, opened.account_id, opened.expires_ms) == ("K1", account, 5000)
        again = await store.write(table.open_key, api, account, "K2", 2000, 6000)
        assert (again.listen_key, again.expires_ms) == ("K1", 6000)  # the active one, extended
        kept = await store.write(table.keepalive_key, api, "K1", 3000, 7000)
        assert kept is not None and kept.expires_ms == 7000
        assert await store.write(table.keepalive_key, api, "K9", 3000, 7000) is None
        assert await store.write(table.keepalive_key, api, None, 8000, 9000) is None  # expired
        fresh = await store.write(table.open_key, api, account, "K3", 8000, 9000)
        assert fresh.listen_key == "K3"
        closed = await store.write(table.close_key, api, None, 8500)
        assert closed is not None and closed.closed and closed.listen_key == "K3"
        assert await store.write(table.close_key, api, None, 8600) is None
        found = await store.read(table.find_keys, ["K1", "K3", "nope"])
        assert set(found) == {"K1", "K3"}
        assert found["K3"].closed and not found["K3"].active(8600)
        assert not found["K1"].active(8600) and found["K1"].active(6999)
        assert await store.revoke_api_key(account, api)
        assert (await store.read(table.find_keys, ["K1"]))["K1"].key_revoked
        with pytest.raises(LedgerError):  # no such account
            await store.write(table.open_key, api, 999_999, "K4", 1, 2)


def test_um_trading_units(store_url: str) -> None:
    """UM trading's units on both stores: a fill books its entries and rows in one transaction,
    a refusal writes nothing, a crossed resting order fills, funding marks its slot."""
    from papi_sandbox.market.state import Market
    from papi_sandbox.store import trading
    from papi_sandbox.trading.filters import OrderRequest
    from papi_sandbox.trading.model import (
        HistoryPage,
        OrderStatus,
        OrderType,
        Side,
        TimeInForce,
        TradingRefused,
    )

    market = Market()
    specs, collateral = market.specs, market.config.collateral_rates

    def request(side: Side, kind: OrderType, qty: str, price: str | None = None) -> OrderRequest:
        tif = TimeInForce.GTC if kind is OrderType.LIMIT else None
        return OrderRequest(
            "BTCUSDT", side, kind, D(qty), D(price) if price else None, tif, None, None, None
        )

    async def body(store: Store) -> None:
        await store.write(trading.ensure_markets, market.initial_prices())
        account = await store.create_account("trader", None)
        await store.transact(account, "DEPOSIT", adjustment(account, "10000"))
        order, trades = await store.write(
            trading.place_order,
            account,
            request(Side.BUY, OrderType.MARKET, "0.010"),
            specs,
            collateral,
            1_000,
        )
        assert order.status is OrderStatus.FILLED and trades[0].commission == D("0.3")
        balances = await store.balances(account)
        assert balances.amounts[(Wallet.UM, "USDT")] == D("-0.3")
        entries_before = len(await store.journal(account, 100))
        with pytest.raises(TradingRefused):
            await store.write(
                trading.place_order,
                account,
                request(Side.BUY, OrderType.MARKET, "100"),
                specs,
                collateral,
                2_000,
            )
        assert len(await store.journal(account, 100)) == entries_before
        resting, _ = await store.write(
            trading.place_order,
            account,
            request(Side.SELL, OrderType.LIMIT, "0.010", "61000"),
            specs,
            collateral,
            3_000,
        )
        assert resting.status is OrderStatus.NEW
        await store.write(trading.set_price, "BTCUSDT", D("61500"), D("61500"), None, 4_000)
        crossed = await store.read(trading.crossed_accounts, "BTCUSDT", D("61500"))
        assert crossed == [account]
        fills = await store.write(
            trading.fill_crossed, crossed, "BTCUSDT", specs, collateral, 5_000
        )
        assert fills == 1
        (filled,) = await store.read(
            trading.all_orders, account, "BTCUSDT", HistoryPage(resting.order_id, None, None, 10)
        )
        assert filled.status is OrderStatus.FILLED
        income = await store.read(trading.income, account, IncomePage(None, None, 0, 10_000, 100))
        assert [(kind, amount) for _, kind, _, _, amount, _, _ in income] == [
            ("COMMISSION", D("-0.3")),
            ("REALIZED_PNL", D("10")),
            ("COMMISSION", D("-0.122")),
        ]
        assert await store.read(trading.funding_candidates, 0, 10) == []
        assert (await store.verify()).ok

    with_store(store_url, body)
