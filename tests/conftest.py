from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    BACKENDS,
    Account,
    Server,
    Signer,
    create_test_database,
    drop_test_database,
    postgres_admin_url,
)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store of the test's own, once per store: a SQLite file, then a fresh PostgreSQL
    database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin = postgres_admin_url()
    url = create_test_database(admin)
    yield url
    drop_test_database(admin, url)


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
