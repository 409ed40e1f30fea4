"""Fill a fresh ledger fast with direct bulk SQL: balanced journal entries, the balances they
produce, and an HMAC key per account. Used to prepare benchmark databases before the server starts
(never while it runs). ``papi-sandbox verify`` accepts what it writes.

Per account and asset: a DEPOSIT entry (MARGIN +amount, system EXTERNAL -amount) and, with
``negative_um``, a REALIZED_PNL entry (UM -amount, system EXTERNAL +amount), so the account holds
a futures negative balance that one repay clears from MARGIN.
"""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

from papi_sandbox import money
from papi_sandbox.client import Account
from papi_sandbox.progress import NO_PROGRESS, Progress, Tick
from papi_sandbox.store.dialect import SQLITE
from papi_sandbox.store.schema import migrate

#: Most accounts one fill may create (bounds the file: about 150 bytes per account and asset).
MAX_FILL_ACCOUNTS = 2_000_000


def api_key(account_id: int) -> str:
    return f"benchkey{account_id:056d}"


def secret(account_id: int) -> str:
    return f"benchsecret{account_id:053d}"


def credentials(account_id: int) -> Account:
    """The account's filled HMAC key, ready to sign with."""
    return Account(account_id, api_key(account_id), secret(account_id))


def fill(
    path: Path,
    accounts: int,
    *,
    assets: tuple[str, ...] = ("USDT",),
    amount: str = "100",
    negative_um: bool = True,
    progress: Progress = NO_PROGRESS,
) -> float:
    """Create ``path`` with ``accounts`` accounts (ids 1..accounts); returns the seconds taken.
    ``progress`` counts the bulk statements (accounts, keys, entries, postings, balances)."""
    if not 1 <= accounts <= MAX_FILL_ACCOUNTS:
        raise ValueError(f"accounts must be 1..{MAX_FILL_ACCOUNTS}")
    if path.exists():
        raise FileExistsError(path)
    started = time.monotonic()
    conn = _fresh_ledger(path)
    now = time.time_ns() // 1_000_000
    value = money.to_storage(money.parse_amount(amount))
    negated = money.to_storage(-Decimal(value))
    per_asset = 2 if negative_um else 1
    system_total = money.to_storage(Decimal(0) if negative_um else -Decimal(value) * accounts)
    args = {"n": accounts, "na": len(assets), "e": per_asset, "now": now}
    entries = [(1, "DEPOSIT", "MARGIN", value, negated)]
    if negative_um:
        entries.append((2, "REALIZED_PNL", "UM", negated, value))
    wallets = [("MARGIN", value)] + ([("UM", negated)] if negative_um else [])
    step = progress.stage(
        f"fill {accounts:,} accounts", total=2 + 3 * len(entries) + len(wallets) + 1
    )
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE fill_assets (idx INTEGER PRIMARY KEY, asset TEXT NOT NULL)")
    conn.executemany("INSERT INTO fill_assets VALUES (?, ?)", list(enumerate(assets)))
    _insert_accounts_and_keys(conn, args, step)
    _insert_entries(conn, args, entries, step)
    _insert_balances(conn, args, wallets, system_total, step)
    conn.execute("COMMIT")
    step(1)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return time.monotonic() - started


#: The account ids 1..:n, as a common table expression the bulk statements select from.
_SEQ = "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n) "
#: Account ``i``'s entries in asset ``a`` have this tran_id plus 1..:e (the entry's offset).
_TRAN = "((i - 1) * :na + a.idx) * :e"

#: One entry per account and asset: (tran_id offset, type, the account's wallet, its amount, the
#: system EXTERNAL amount).
_Entry = tuple[int, str, str, str, str]


def _fresh_ledger(path: Path) -> sqlite3.Connection:
    """A new SQLite file at ``path`` at the current schema, tuned for one bulk transaction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, SQLITE)
    conn.execute("PRAGMA journal_mode=OFF")  # a fresh file: on failure it is thrown away
    conn.execute("PRAGMA synchronous=OFF")
    return conn


def _insert_accounts_and_keys(conn: sqlite3.Connection, args: dict[str, int], step: Tick) -> None:
    """Accounts 1..n labelled 'bench', each with its HMAC key (``api_key``, ``secret``)."""
    conn.execute(
        _SEQ + "INSERT INTO accounts (id, label, created_ms) SELECT i, 'bench', :now FROM seq",
        args,
    )
    step(1)
    conn.execute(
        _SEQ + "INSERT INTO api_keys (api_key, account_id, key_type, secret, public_key, can_read,"
        " can_trade, ip_whitelist, created_ms) SELECT printf('benchkey%056d', i), i, 'HMAC',"
        " printf('benchsecret%053d', i), NULL, 1, 1, '[]', :now FROM seq",
        args,
    )
    step(1)


def _insert_entries(
    conn: sqlite3.Connection,
    args: dict[str, int],
    entries: list[_Entry],
    step: Tick,
) -> None:
    """Each entry kind for every account and asset, with its two postings."""
    for offset, entry_type, wallet, own, system in entries:
        conn.execute(
            _SEQ + f"INSERT INTO entries (tran_id, account_id, type, time_ms) SELECT {_TRAN} + "
            f"{offset}, i, '{entry_type}', :now FROM seq, fill_assets a ORDER BY i, a.idx",
            args,
        )
        step(1)
        for posting_seq, account, posting_wallet, posting_amount in (
            (0, "i", wallet, own),
            (1, "0", "EXTERNAL", system),
        ):
            conn.execute(
                _SEQ + "INSERT INTO postings (tran_id, seq, account_id, wallet, asset, amount)"
                f" SELECT {_TRAN} + {offset}, {posting_seq}, {account}, '{posting_wallet}',"
                f" a.asset, '{posting_amount}' FROM seq, fill_assets a ORDER BY i, a.idx",
                args,
            )
            step(1)


def _insert_balances(
    conn: sqlite3.Connection,
    args: dict[str, int],
    wallets: list[tuple[str, str]],
    system_total: str,
    step: Tick,
) -> None:
    """The balances the entries produce: each account's wallets and the system EXTERNAL one."""
    for wallet, own in wallets:
        conn.execute(
            _SEQ + "INSERT INTO balances (account_id, asset, wallet, amount, updated_ms)"
            f" SELECT i, a.asset, '{wallet}', '{own}', :now FROM seq, fill_assets a"
            " ORDER BY i, a.asset",
            args,
        )
        step(1)
    conn.execute(
        "INSERT INTO balances (account_id, asset, wallet, amount, updated_ms)"
        " SELECT 0, asset, 'EXTERNAL', ?, ? FROM fill_assets",
        (system_total, args["now"]),
    )
