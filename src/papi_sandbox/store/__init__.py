"""Persistence behind one contract (:class:`papi_sandbox.store.base.Store`), chosen by URL.

``sqlite:///path.db`` (or a bare path): one file, one writer process. ``postgresql://...``: one
database shared by any number of server processes. See ``docs/design.md`` for the layout and for
how a feature adds its own state.
"""

from __future__ import annotations

from papi_sandbox.progress import NO_PROGRESS, Progress
from papi_sandbox.store.contract import Store

#: How a PostgreSQL URL begins (psycopg's spellings).
POSTGRES_PREFIXES = ("postgres://", "postgresql://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(POSTGRES_PREFIXES)


def check_url(url: str) -> str:
    """``url`` if it names a store this service runs on: ``sqlite:...``, ``postgresql://...``
    (or ``postgres://``), or a bare file path (no ``://``). Raises ValueError otherwise, naming
    only the scheme (a URL may hold a password): ``mysql://...`` or ``postgresql+psycopg://...``
    is refused, never taken as a file name."""
    if url.startswith(("sqlite:", *POSTGRES_PREFIXES)) or "://" not in url:
        return url
    scheme = url.partition("://")[0]
    raise ValueError(
        f"{scheme!r} is not a database this service runs on: use sqlite:///path/to/file.db"
        " or postgresql://..."
    )


def open_store(url: str, *, durability: str = "full", timeout_s: float | None = None) -> Store:
    """The store for ``url``, not yet opened (call ``open``). ``durability`` is SQLite's
    (PostgreSQL commits durably, ``synchronous_commit=on``); ValueError for an unknown one, or
    for a URL of no store (:func:`check_url`).
    ``timeout_s`` bounds a request's wait for the store (default DEFAULT_STORE_TIMEOUT_S)."""
    from papi_sandbox.store.base import DEFAULT_STORE_TIMEOUT_S

    timeout = DEFAULT_STORE_TIMEOUT_S if timeout_s is None else timeout_s
    if is_postgres_url(check_url(url)):
        from papi_sandbox.store.postgres import PostgresStore

        return PostgresStore(url, timeout_s=timeout)
    from papi_sandbox.store.sqlite import SQLiteStore, path_from_url

    return SQLiteStore(path_from_url(url), durability=durability, timeout_s=timeout)


def upgrade(url: str, progress: Progress = NO_PROGRESS) -> tuple[int, int]:
    """Apply pending schema migrations; (versions applied before, versions applied after).
    ``progress``: one stage per pending migration (:mod:`papi_sandbox.progress`). Raises
    ValueError for a URL of no store (:func:`check_url`)."""
    if is_postgres_url(check_url(url)):
        from papi_sandbox.store import postgres

        return postgres.upgrade(url, progress)
    from papi_sandbox.store import sqlite

    return sqlite.upgrade(sqlite.path_from_url(url), progress)
