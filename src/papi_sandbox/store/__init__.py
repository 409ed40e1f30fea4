"""Persistence behind one protocol (:class:`papi_sandbox.store.base.Store`), chosen by URL.

``sqlite:///path.db`` (or a bare path): one file, one writer process. ``postgresql://...``: one
database shared by any number of server processes.
"""

from __future__ import annotations

from typing import Any


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def open_store(url: str, *, durability: str = "full", timeout_s: float | None = None) -> Any:
    """The store for ``url`` (not yet opened). Typed Any: each store also has ``verify_sync``.
    ``durability`` is SQLite's (PostgreSQL commits durably, ``synchronous_commit=on``);
    ``timeout_s`` bounds a request's wait for the store (default DEFAULT_STORE_TIMEOUT_S)."""
    from papi_sandbox.store.base import DEFAULT_STORE_TIMEOUT_S

    timeout = DEFAULT_STORE_TIMEOUT_S if timeout_s is None else timeout_s
    if is_postgres_url(url):
        from papi_sandbox.store.postgres import PostgresStore

        return PostgresStore(url, timeout_s=timeout)
    from papi_sandbox.store.sqlite import SQLiteStore, path_from_url

    return SQLiteStore(path_from_url(url), durability=durability, timeout_s=timeout)


def upgrade(url: str) -> tuple[int, int]:
    """Apply pending schema migrations; returns (version before, version after)."""
    if is_postgres_url(url):
        from papi_sandbox.store.postgres import migrate_sync

        return migrate_sync(url)
    from papi_sandbox.files import make_private_dir, make_private_file
    from papi_sandbox.store.sqlite import _connect, migrate, path_from_url

    path = path_from_url(url)
    make_private_dir(path.parent)
    make_private_file(path)
    conn = _connect(path)
    try:
        before = int(conn.execute("PRAGMA user_version").fetchone()[0])
        return before, migrate(conn)
    finally:
        conn.close()
