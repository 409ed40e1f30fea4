from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support import (
    POSTGRES_URL_ENV,
    Account,
    Server,
    Signer,
    create_test_database,
    drop_test_database,
)

#: Every server-backed test runs once per store.
BACKENDS = ["sqlite", "postgres"]


def postgres_admin_url() -> str:
    """The PostgreSQL the tests may create databases on; skips (visibly, with -ra) if unset."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_URL_ENV} is unset: the PostgreSQL variant does not run")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of the test's own, dropped afterwards."""
    admin = postgres_admin_url()
    url = create_test_database(admin)
    yield url
    drop_test_database(admin, url)


def _start(data_dir: Path, args: list[str], backend: str) -> Iterator[Server]:
    admin = postgres_admin_url() if backend == "postgres" else None
    db_url = create_test_database(admin) if admin else None
    srv = Server(data_dir, args, db_url=db_url)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if admin and db_url:
            drop_test_database(admin, db_url)


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One shared server per store with the weight limit off (tests create their own accounts)."""
    data_dir = tmp_path_factory.mktemp(f"shared-server-{request.param}")
    yield from _start(data_dir, ["--ip-weight-limit", "0"], request.param)


@pytest.fixture(params=BACKENDS)
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, with the default weight limit."""
    yield from _start(tmp_path / "server", [], request.param)


@pytest.fixture
def account(server: Server) -> Account:
    return server.create_account("test")


@pytest.fixture
def signer(server: Server, account: Account) -> Signer:
    return Signer(server.base_url, account)
