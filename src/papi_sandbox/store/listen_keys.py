"""Listen keys of the user data stream: their table and their units (each statement once, for
both stores; docs/design.md, "How to add a persisted feature"). The rules are in
:mod:`papi_sandbox.stream.listen_keys`."""

from __future__ import annotations

from dataclasses import dataclass

from papi_sandbox.store.accounts import lock_account
from papi_sandbox.store.dialect import Db

#: Most listen keys one ``find_listen_keys`` call reads.
MAX_LISTEN_KEYS_PER_READ = 500
#: How long an expired or closed listen key's row is kept (then deleted when its API key opens
#: a new one): one day, in ms.
LISTEN_KEY_RETENTION_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ListenKeyRecord:
    """One user-data-stream listen key (``POST /papi/v1/listenKey``): issued to one API key,
    valid until ``expires_ms`` unless closed (``closed``) or its API key was revoked
    (``key_revoked``)."""

    listen_key: str
    api_key: str
    account_id: int
    expires_ms: int
    closed: bool = False
    key_revoked: bool = False

    def active(self, now_ms: int) -> bool:
        return not self.closed and not self.key_revoked and now_ms < self.expires_ms


SCHEMA = """
    CREATE TABLE listen_keys (
        listen_key TEXT PRIMARY KEY,
        api_key TEXT NOT NULL REFERENCES api_keys(api_key),
        account_id {bigint} NOT NULL,
        created_ms {bigint} NOT NULL,
        expires_ms {bigint} NOT NULL,
        closed_ms {bigint}
    ){without_rowid};
    CREATE INDEX listen_keys_api_key ON listen_keys(api_key, expires_ms)
"""

#: Extends the API key's active listen key (parameters: new expiry, api_key, now).
_EXTEND = (
    "UPDATE listen_keys SET expires_ms = ? WHERE api_key = ? AND closed_ms IS NULL"
    " AND expires_ms > ?"
)


def open_key(
    db: Db, api_key: str, account_id: int, candidate: str, now_ms: int, expires_ms: int
) -> ListenKeyRecord:
    """The API key's active listen key with its expiry moved to ``expires_ms``, or, when it has
    none, ``candidate`` stored as its new one (and its long-dead keys deleted). The account's
    lock serialises two POSTs of one API key, so it never has two active keys."""
    lock_account(db, account_id)
    row = db.one(_EXTEND + " RETURNING listen_key", (expires_ms, api_key, now_ms))
    if row is not None:
        return ListenKeyRecord(row[0], api_key, account_id, expires_ms)
    db.execute(
        "DELETE FROM listen_keys WHERE api_key = ? AND expires_ms < ?",
        (api_key, now_ms - LISTEN_KEY_RETENTION_MS),
    )
    db.execute(
        "INSERT INTO listen_keys (listen_key, api_key, account_id, created_ms, expires_ms)"
        " VALUES (?, ?, ?, ?, ?)",
        (candidate, api_key, account_id, now_ms, expires_ms),
    )
    return ListenKeyRecord(candidate, api_key, account_id, expires_ms)


def keepalive_key(
    db: Db, api_key: str, listen_key: str | None, now_ms: int, expires_ms: int
) -> ListenKeyRecord | None:
    """Move the API key's active listen key's expiry to ``expires_ms``; None when it has none
    (or ``listen_key`` is given and is not that key)."""
    row = db.one(
        _EXTEND + " AND listen_key = COALESCE(?, listen_key) RETURNING listen_key, account_id",
        (expires_ms, api_key, now_ms, listen_key),
    )
    return None if row is None else ListenKeyRecord(row[0], api_key, int(row[1]), expires_ms)


def close_key(db: Db, api_key: str, listen_key: str | None, now_ms: int) -> ListenKeyRecord | None:
    """Close the API key's active listen key; None when it has none (or ``listen_key`` is
    given and is not that key)."""
    row = db.one(
        "UPDATE listen_keys SET closed_ms = ? WHERE api_key = ? AND closed_ms IS NULL"
        " AND expires_ms > ? AND listen_key = COALESCE(?, listen_key)"
        " RETURNING listen_key, account_id, expires_ms",
        (now_ms, api_key, now_ms, listen_key),
    )
    if row is None:
        return None
    return ListenKeyRecord(row[0], api_key, int(row[1]), int(row[2]), closed=True)


def find_keys(db: Db, listen_keys: list[str]) -> dict[str, ListenKeyRecord]:
    """The records of these listen keys that exist, active or not, with their API key's
    revocation; at most MAX_LISTEN_KEYS_PER_READ of them."""
    keys = listen_keys[:MAX_LISTEN_KEYS_PER_READ]
    if not keys:
        return {}
    marks = ",".join("?" * len(keys))
    return {
        r[0]: ListenKeyRecord(r[0], r[1], int(r[2]), int(r[3]), r[4] is not None, r[5] is not None)
        for r in db.all(
            "SELECT l.listen_key, l.api_key, l.account_id, l.expires_ms, l.closed_ms,"
            " k.revoked_ms FROM listen_keys l JOIN api_keys k ON k.api_key = l.api_key"
            f" WHERE l.listen_key IN ({marks})",
            keys,
        )
    }
