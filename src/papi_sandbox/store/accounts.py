"""Accounts, their API keys and the ledger-wide settings: their statements, as units of work over
a :class:`~papi_sandbox.store.dialect.Db` (the :class:`~papi_sandbox.store.contract.Store` methods
of the same names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from papi_sandbox.ledger.model import SYSTEM_ACCOUNT_ID, UnknownAccount
from papi_sandbox.store.base import (
    MAX_ACCOUNT_PAGE,
    AccountInfo,
    AccountSearch,
    ApiKeyRecord,
    now_ms,
)
from papi_sandbox.store.dialect import Db

#: API keys re-sealed per page when secrets are rewritten (bounded memory at any key count).
REWRITE_PAGE_ROWS = 1000

_ACCOUNT_COLUMNS = "id, label, created_ms, auto_repay, vip_level"
_KEY_COLUMNS = (
    "api_key, account_id, key_type, secret, public_key, can_read, can_trade, ip_whitelist,"
    " revoked_ms"
)


def lock_account(db: Db, account_id: int) -> None:
    """Lock the account's row until COMMIT (PostgreSQL; SQLite's writer is alone anyway).
    Raises UnknownAccount when the account does not exist."""
    if db.one(f"SELECT id FROM accounts WHERE id = ?{db.dialect.lock}", (account_id,)) is None:
        raise UnknownAccount.of(account_id)


def create_account(db: Db, label: str | None, key: ApiKeyRecord | None) -> int:
    """A new account (and optionally its first API key, whose account_id is ignored); its
    id."""
    (account_id,) = db.one(
        "INSERT INTO accounts (label, created_ms) VALUES (?, ?) RETURNING id", (label, now_ms())
    )
    if key is not None:
        insert_key(db, key, int(account_id))
    return int(account_id)


def account(db: Db, account_id: int) -> AccountInfo | None:
    """The account's settings; None for an unknown id and for the system account."""
    row = db.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
    return None if row is None or row[0] == SYSTEM_ACCOUNT_ID else _account_info(row)


def _account_info(row: Any) -> AccountInfo:
    return AccountInfo(int(row[0]), row[1], int(row[2]), bool(row[3]), int(row[4]))


def list_accounts(
    db: Db, search: AccountSearch, after_account_id: int, limit: int
) -> list[AccountInfo]:
    """Keyset page of accounts (never the system account) with id > ``after_account_id``,
    ascending, at most ``limit`` (capped at MAX_ACCOUNT_PAGE), matching ``search``."""
    rows = db.all(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts"
        " WHERE id > ? AND id <> ? AND (? = '' OR id = ? OR lower(label) LIKE ? ESCAPE '\\')"
        " ORDER BY id LIMIT ?",
        (
            after_account_id,
            SYSTEM_ACCOUNT_ID,
            search.text,
            search.account_id,
            search.like_pattern,
            max(1, min(limit, MAX_ACCOUNT_PAGE)),
        ),
    )
    return [_account_info(row) for row in rows]


def set_account_settings(
    db: Db, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
) -> bool:
    """Change the settings given; False when the account does not exist."""
    row = db.one(
        "UPDATE accounts SET auto_repay = COALESCE(?, auto_repay),"
        " vip_level = COALESCE(?, vip_level) WHERE id = ? AND id <> ? RETURNING id",
        (auto_repay, vip_level, account_id, SYSTEM_ACCOUNT_ID),
    )
    return row is not None


def insert_key(db: Db, key: ApiKeyRecord, account_id: int) -> None:
    db.execute(
        "INSERT INTO api_keys (api_key, account_id, key_type, secret, public_key, can_read,"
        " can_trade, ip_whitelist, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key.api_key,
            account_id,
            key.key_type,
            key.secret,
            key.public_key,
            key.can_read,
            key.can_trade,
            db.dialect.to_list(key.ip_whitelist),
            now_ms(),
        ),
    )


def add_api_key_limited(db: Db, key: ApiKeyRecord, max_keys_per_account: int) -> bool:
    """Add ``key`` unless its account already has ``max_keys_per_account`` live (unrevoked)
    keys; the count and the insert are one atomic step. True when added. Raises LedgerError
    when the account does not exist."""
    lock_account(db, key.account_id)  # makes count-then-insert atomic across processes
    (live,) = db.one(
        "SELECT COUNT(*) FROM api_keys WHERE account_id = ? AND revoked_ms IS NULL",
        (key.account_id,),
    )
    if int(live) >= max_keys_per_account:
        return False
    insert_key(db, key, key.account_id)
    return True


def revoke_api_key(db: Db, account_id: int, api_key: str) -> bool:
    """Mark the account's key revoked; False when the account has no such live key."""
    row = db.one(
        "UPDATE api_keys SET revoked_ms = ?"
        " WHERE api_key = ? AND account_id = ? AND revoked_ms IS NULL RETURNING api_key",
        (now_ms(), api_key, account_id),
    )
    if row is None:
        return False
    db.dialect.notify_key_revoked(db, api_key)
    return True


def _key_record(db: Db, row: Any) -> ApiKeyRecord:
    """A row of _KEY_COLUMNS as the record (revoked when it has a revoked_ms)."""
    api_key, account, kind, secret, public, read, trade, ips, revoked_ms = row
    flags = bool(read), bool(trade), db.dialect.from_list(ips), revoked_ms is not None
    return ApiKeyRecord(api_key, int(account), kind, secret, public, *flags)


def find_api_key(db: Db, api_key: str) -> ApiKeyRecord | None:
    """The key's record (secret still sealed), revoked or not; None when unknown."""
    row = db.one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE api_key = ?", (api_key,))
    return None if row is None else _key_record(db, row)


def api_keys(db: Db, account_id: int) -> list[ApiKeyRecord]:
    """The account's keys, revoked ones included, oldest first."""
    rows = db.all(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE account_id = ? ORDER BY created_ms, api_key",
        (account_id,),
    )
    return [_key_record(db, row) for row in rows]


def rewrite_api_key_secrets(db: Db, transform: Callable[[str, str], str]) -> int:
    """Replace every stored HMAC secret ``s`` of key ``k`` by ``transform(s, k)`` in one
    transaction (encryption-key rotation); returns how many rows changed."""
    # Keyset pages keep memory flat; the lock clause makes a key being added by another process
    # wait, so none is left unsealed.
    changed, after = 0, ""
    while True:
        rows = db.all(
            "SELECT api_key, secret FROM api_keys WHERE secret IS NOT NULL AND api_key > ?"
            f" ORDER BY api_key LIMIT ?{db.dialect.lock}",
            (after, REWRITE_PAGE_ROWS),
        )
        if not rows:
            return changed
        for api_key, secret in rows:
            new = transform(secret, api_key)
            if new != secret:
                db.execute("UPDATE api_keys SET secret = ? WHERE api_key = ?", (new, api_key))
                changed += 1
        after = rows[-1][0]


def claim_setting(db: Db, name: str, value: str, *, replace: bool = False) -> str:
    """The ledger-wide setting ``name``: set to ``value`` if absent (or if ``replace``), and
    returned as stored. Processes sharing a database agree through it (e.g. on which
    encryption key seals the secrets)."""
    action = "UPDATE SET value = excluded.value" if replace else "NOTHING"
    db.execute(
        f"INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO {action}",
        (name, value),
    )
    return str(db.one("SELECT value FROM meta WHERE name = ?", (name,))[0])
