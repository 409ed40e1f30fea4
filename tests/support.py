"""Test support: the testing kit's real server process (papi_sandbox.testing.Sandbox) with the
shapes the tests use, and the kit's signing clients. No mocks: every API test goes through HTTP to
this process."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from papi_sandbox.client import Account, PapiClient, now_ms, raw_request
from papi_sandbox.client import hmac_signature as sign
from papi_sandbox.ledger import rules
from papi_sandbox.ledger.model import EntryType, Wallet
from papi_sandbox.store import open_store
from papi_sandbox.store.base import Planner
from papi_sandbox.store.contract import Store
from papi_sandbox.testing import Sandbox, free_port

__all__ = ["Account", "Signer", "free_port", "now_ms", "raw_request", "sign"]

ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"  # at least 32 characters

#: Sends SIGNED requests with the parameters in the query, in a form body, or split.
Signer = PapiClient


def wait_for_fresh_minute(margin_s: float = 8.0) -> None:
    """Weight is counted per calendar minute; start far enough from a boundary to fit the test."""
    into_minute = time.time() % 60
    if into_minute > 60 - margin_s:
        time.sleep(60 - into_minute + 0.2)


class Server(Sandbox):
    """A sandbox with the server's default limits unless ``extra_args`` relax them, in
    ``data_dir`` (kept), with the tests' operator token; shortcuts that assert success."""

    def __init__(
        self,
        data_dir: Path,
        extra_args: Sequence[str] = (),
        *,
        db_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            data_dir,
            args=extra_args,
            db_url=db_url,
            relaxed_limits=False,
            token=ADMIN_TOKEN,
            env=env,
        )

    def create_account(self, label: str | None = None) -> Account:
        return self.admin.create_account(label)

    def adjust(
        self, account_id: int, wallet: str, asset: str, amount: str, reason: str = "DEPOSIT"
    ) -> dict[str, Any]:
        return self.admin.adjust(account_id, wallet, asset, amount, reason)

    def journal(self, account_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        return self.admin.journal(account_id, limit)

    def verify_cli(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "papi_sandbox", "verify", "--db", self.db_url],
            capture_output=True,
            text=True,
            timeout=120,
        )


# -- PostgreSQL and Redis for the tests that need them ------------------------------------------

POSTGRES_URL_ENV = "PAPI_SANDBOX_TEST_POSTGRES_URL"
REDIS_URL_ENV = "PAPI_SANDBOX_TEST_REDIS_URL"

#: Every server-backed test runs once per store.
BACKENDS = ["sqlite", "postgres"]


def postgres_admin_url() -> str:
    """The PostgreSQL the tests may create databases on; skips (visibly, with -ra) if unset."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_URL_ENV} is unset: the PostgreSQL variant does not run")
    return url


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def create_test_database(admin_url: str) -> str:
    """A new, empty database named papi_test_<random>; returns its URL."""
    import psycopg

    name = f"papi_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return with_database(admin_url, name)


def drop_test_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rpartition("/")[2]
    assert name.startswith("papi_test_"), name  # never drop anything else
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def with_store(url: str, body: Callable[[Store], Awaitable[None]]) -> None:
    """Open the store at ``url`` (``store_url``: SQLite file or PostgreSQL database), run
    ``body(store)`` on a new event loop, and close the store whatever happens."""

    async def main() -> None:
        store = open_store(url)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def adjustment(
    account_id: int,
    amount: str | Decimal,
    wallet: Wallet = Wallet.MARGIN,
    asset: str = "USDT",
    reason: EntryType | None = None,
) -> Planner:
    """The operator's adjustment rule bound to its arguments, for ``Store.transact``: a DEPOSIT
    when ``amount`` is positive, else a REALIZED_PNL, unless ``reason`` says otherwise."""
    value = Decimal(amount)
    if reason is None:
        reason = EntryType.DEPOSIT if value > 0 else EntryType.REALIZED_PNL
    return functools.partial(
        rules.plan_adjustment, account_id, wallet=wallet, asset=asset, amount=value, reason=reason
    )


def sdk_client(server: Server, account: Account) -> Any:
    """Binance's official PM SDK, unmodified, pointed at the server."""
    from binance_common.configuration import ConfigurationRestAPI
    from binance_sdk_derivatives_trading_portfolio_margin import DerivativesTradingPortfolioMargin

    config = ConfigurationRestAPI(
        api_key=account.api_key,
        api_secret=account.secret,
        base_path=server.base_url,  # the only change from production
        timeout=10_000,  # ms; the SDK's default of 1 s is tight on a loaded test machine
        retries=0,  # a refusal must surface at once, not after back-off
    )
    return DerivativesTradingPortfolioMargin(config_rest_api=config).rest_api
