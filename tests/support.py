"""Test support: a real server process on a free loopback port, and clients that sign requests
the way Binance's clients do. No mocks: every API test goes through HTTP to this process."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"
STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wait_for_fresh_minute(margin_s: float = 8.0) -> None:
    """Weight is counted per calendar minute; start far enough from a boundary to fit the test."""
    into_minute = time.time() % 60
    if into_minute > 60 - margin_s:
        time.sleep(60 - into_minute + 0.2)


@dataclass
class Account:
    account_id: int
    api_key: str
    secret: str


@dataclass
class Server:
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    db_url: str | None = None  # None: the SQLite file in data_dir

    @property
    def backend(self) -> str:
        return "postgres" if self.db_url else "sqlite"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "papi-sandbox.db"

    def start(self) -> None:
        env = {
            **os.environ,
            "PAPI_SANDBOX_DATA_DIR": str(self.data_dir),
            "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN,
            # Tests make days pass on demand; a scheduled job firing mid-test would race them.
            "PAPI_SANDBOX_SCHEDULER": "false",
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "papi_sandbox",
                "serve",
                "--port",
                str(self.port),
                "--no-access-log",
                *(["--db", self.db_url] if self.db_url else []),
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    # -- the operator API --------------------------------------------------------------------

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return httpx.request(
            method, f"{self.base_url}/admin/v1{path}", headers=headers, timeout=30, **kwargs
        )

    def create_account(self, label: str | None = None) -> Account:
        r = self.admin("POST", "/accounts", json={"label": label} if label else {})
        assert r.status_code == 201, r.text
        data = r.json()
        return Account(data["accountId"], data["apiKey"], data["secretKey"])

    def adjust(
        self, account_id: int, wallet: str, asset: str, amount: str, reason: str = "DEPOSIT"
    ) -> dict[str, Any]:
        r = self.admin(
            "POST",
            f"/accounts/{account_id}/adjustments",
            json={"wallet": wallet, "asset": asset, "amount": amount, "reason": reason},
        )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    def journal(self, account_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        r = self.admin("GET", f"/accounts/{account_id}/journal", params={"limit": limit})
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()
        return result

    def verify_cli(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "papi_sandbox",
                "verify",
                "--db",
                self.db_url or f"sqlite:///{self.db_path}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


@dataclass
class Signer:
    """Sends SIGNED requests with the parameters in the query, in a form body, or split."""

    base_url: str
    account: Account

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        where: str = "query",
        timestamp: int | None = None,
        recv_window: int | None = None,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        items = list((params or {}).items())
        if recv_window is not None:
            items.append(("recvWindow", recv_window))
        items.append(("timestamp", timestamp if timestamp is not None else now_ms()))
        encoded = urlencode(items)
        if where == "query":
            query, body = encoded, ""
        elif where == "body":
            query, body = "", encoded
        elif where == "split":  # the first parameter in the query, the rest in the body
            first, _, rest = encoded.partition("&")
            query, body = first, rest
        else:
            raise ValueError(where)
        signature = sign(self.account.secret, query + body)
        if body:
            body += f"&signature={signature}"
        else:
            query += f"&signature={signature}"
        return raw_request(
            self.base_url,
            method,
            path,
            query,
            body,
            {"X-MBX-APIKEY": self.account.api_key, **(headers or {})},
            client,
        )


def raw_request(
    base_url: str,
    method: str,
    path: str,
    query: str = "",
    body: str | bytes = "",
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """A request with exactly this query string and body (no re-encoding by the client)."""
    all_headers = dict(headers or {})
    content = body.encode() if isinstance(body, str) else body
    if content and "Content-Type" not in all_headers:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = httpx.URL(base_url + path)
    if query:
        url = url.copy_with(raw_path=(path + "?" + query).encode())
    send = client.request if client is not None else httpx.request
    return send(method, url, content=content or None, headers=all_headers, timeout=30)


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
