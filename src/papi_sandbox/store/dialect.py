"""What really differs between SQLite and PostgreSQL, and nothing else; plus :class:`Db`, the
connection every unit of work runs on.

Every statement of the store is written once, with ``?`` placeholders, in the modules that own
a piece of state (:mod:`~papi_sandbox.store.accounts`, :mod:`~papi_sandbox.store.journal`,
:mod:`~papi_sandbox.store.jobs`). A :class:`Dialect` supplies the rest:

=================  ===========================================  ==============================
difference         SQLite                                       PostgreSQL
=================  ===========================================  ==============================
placeholders       ``?``                                        ``%s`` (translated once)
money columns      canonical 8-digit ``TEXT``                   ``NUMERIC(38, 8)``
lock clause        none (one writer thread)                     ``FOR UPDATE``
balance rows       absolute amounts, by the one writer          deltas under row locks, buckets
announcements      entries kept for the writer to publish       ``pg_notify`` at COMMIT
id tables          counted on in memory from the largest id     the table's identity sequence
large reads        a plain cursor                               a server-side cursor
=================  ===========================================  ==============================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from papi_sandbox import money
from papi_sandbox.ledger.model import SYSTEM_ACCOUNT_ID, Posting, Wallet
from papi_sandbox.trading.model import Announcement

#: PostgreSQL keeps the system account's balance of one (wallet, asset) as this many rows, summed
#: when read, so entries of different accounts rarely wait for the same hot row: account A's
#: entries use bucket A % SYSTEM_BALANCE_BUCKETS; users' rows only bucket 0 (their lock orders
#: them). SQLite has one writer, hence one row per balance.
SYSTEM_BALANCE_BUCKETS = 16
#: The LISTEN/NOTIFY channel on which revoked API keys are announced to every process.
KEY_REVOKED_CHANNEL = "papi_key_revoked"
#: Rows a server-side cursor fetches at a time while a large read (``verify``) streams.
STREAM_FETCH_ROWS = 10_000

#: Most values one ``IN (...)`` list carries (SQLite's bound on parameters is far above it).
MAX_IN_LIST = 500

BalanceKey = tuple[Wallet, str]


class Db:
    """One connection (sqlite3 or psycopg, DB-API) in one transaction, with its dialect.

    ``touched`` collects the accounts whose balances the unit of work changed (the SQLite store
    invalidates exactly those cached snapshots after the COMMIT); ``committed`` what it
    announced (entries, order executions), which the SQLite writer publishes once the COMMIT
    returned."""

    __slots__ = ("committed", "conn", "dialect", "touched")

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.touched: set[int] = set()
        self.committed: list[Announcement] = []

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement; returns its DB-API cursor."""
        return self.conn.execute(self.dialect.sql(sql), args)

    def one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first row of one statement, or None."""
        return self.conn.execute(self.dialect.sql(sql), args).fetchone()

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(self.conn.execute(self.dialect.sql(sql), args).fetchall())

    def filtered(
        self, sql: str, args: Sequence[Any], narrow: Mapping[str, Any], tail: str, *more: Any
    ) -> list[Any]:
        """The rows of ``sql`` (its WHERE clause begun, ``args`` its values) narrowed by each
        clause of ``narrow`` whose value is not None (``{"asset = ?": asset}``), then ``tail``
        (ORDER BY, LIMIT ?) with its values ``more``."""
        given = [(clause, value) for clause, value in narrow.items() if value is not None]
        text = " AND ".join([sql, *(clause for clause, _ in given)]) + tail
        return self.all(text, [*args, *(value for _, value in given), *more])

    def all_in(self, sql: str, values: Sequence[Any], *args: Any) -> list[Any]:
        """The rows of ``sql``, whose ``IN ({marks})`` lists ``values`` (after the values
        ``args``), one statement per MAX_IN_LIST values."""
        rows: list[Any] = []
        for start in range(0, len(values), MAX_IN_LIST):
            chunk = values[start : start + MAX_IN_LIST]
            rows += self.all(sql.replace("{marks}", ", ".join("?" * len(chunk))), [*args, *chunk])
        return rows

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """One statement for each row of ``rows``."""
        cur = self.conn.cursor()
        try:
            cur.executemany(self.dialect.sql(sql), rows)
        finally:
            cur.close()

    def stream(self, sql: str, args: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of a large read, without holding them all in memory."""
        return self.dialect.stream(self.conn, self.dialect.sql(sql), args)


#: The SQL that differs, by name: (SQLite, PostgreSQL). Fragments the statements use
#: (``lock``: appended to a SELECT that must lock its rows until COMMIT; ``money_zero``: canonical
#: text compares as text, '-' sorts before digits; a balance row as read: SQLite has one row per
#: balance, PostgreSQL sums its buckets; the database's clock in ms, for leases, as machines'
#: clocks may disagree) and the column types the migrations are written with (``ddl``).
SQL_BY_DIALECT: Mapping[str, tuple[str, str]] = {
    "lock": ("", " FOR UPDATE"),
    "money_zero": ("'0'", "0"),
    "balance_columns": (
        "wallet, asset, amount, updated_ms",
        "wallet, asset, SUM(amount), MAX(updated_ms)",
    ),
    "balance_group": ("", " GROUP BY account_id, wallet, asset"),
    "now_ms": (
        "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        "(extract(epoch from clock_timestamp()) * 1000)::bigint",
    ),
    "id_key": ("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    "serial_key": ("INTEGER PRIMARY KEY", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    "bigint": ("INTEGER", "BIGINT"),
    "bool": ("INTEGER", "BOOLEAN"),
    "true": ("1", "TRUE"),
    "false": ("0", "FALSE"),
    "money": ("TEXT", "NUMERIC(38, 8)"),
    "text_list": ("TEXT NOT NULL DEFAULT '[]'", "TEXT[] NOT NULL DEFAULT '{}'"),
    "without_rowid": (" WITHOUT ROWID", ""),
    "bucket_column": ("", "bucket SMALLINT NOT NULL DEFAULT 0,"),
    "bucket_key": ("", ", bucket"),
}


class Dialect:
    """The SQLite side; :class:`PostgresDialect` overrides what PostgreSQL does differently."""

    name = "sqlite"

    def __init__(self, side: int = 0) -> None:
        #: This dialect's side of SQL_BY_DIALECT (the migrations format their SQL with it).
        self.ddl = {key: pair[side] for key, pair in SQL_BY_DIALECT.items()}
        names = ("lock", "money_zero", "balance_columns", "balance_group", "now_ms")
        self.lock, self.money_zero, self.balance_columns, self.balance_group, self.now_ms = (
            self.ddl[name] for name in names
        )

    def sql(self, text: str) -> str:
        return text

    def to_money(self, value: Decimal) -> Any:
        return money.to_storage(value)

    def from_money(self, value: Any) -> Decimal:
        return money.from_storage(value)

    def to_list(self, values: Sequence[str]) -> Any:
        return json.dumps(list(values))

    def from_list(self, value: Any) -> tuple[str, ...]:
        return tuple(json.loads(value))

    def stream(self, conn: Any, sql: str, args: Sequence[Any]) -> Iterator[Any]:
        return iter(conn.execute(sql, args))

    def notify_key_revoked(self, db: Db, api_key: str) -> None:
        """Announce a revocation to other processes at COMMIT (SQLite: one process, no one)."""

    def announce(self, db: Db, item: Announcement) -> None:
        """Make an appended entry or an order execution known once its transaction commits,
        never if it rolls back (SQLite: the writer publishes ``db.committed`` after COMMIT)."""
        db.committed.append(item)

    def id_counter(self, db: Db, table: str, taken: str) -> Callable[[], int]:
        """Draws new ids of the id table ``table`` (its one column ``id``, a sequence), in
        increasing order, for this transaction. SQLite's one writer counts on in memory from
        the largest id taken (``taken``: a SELECT of it), read at the first draw, and inserts
        nothing; PostgreSQL draws each from the table's identity sequence."""
        last: list[int] = []

        def draw() -> int:
            if not last:
                last.append(int(db.one(taken)[0] or 0))
            last[0] += 1
            return last[0]

        return draw

    def apply_many(
        self,
        db: Db,
        changes: Sequence[tuple[int, Sequence[Posting]]],
        now_ms: int,
        before: Mapping[int, Mapping[BalanceKey, Decimal]],
    ) -> None:
        """Add the postings of several entries ``(entry's account, postings)`` to the stored
        balances, with one write. SQLite's one writer reads each row and writes its new absolute
        amount; ``before[account]`` (every balance row of each entry's account, read in this
        transaction before these entries) spares reading those again: only rows of other
        accounts (the system account's) are read."""
        rows = []
        for (owner, wallet, asset), net in _nets(p for _, ps in changes for p in ps).items():
            known = before.get(owner)
            if known is not None:
                current = known.get((wallet, asset), money.ZERO)
            else:
                row = db.one(
                    "SELECT amount FROM balances WHERE account_id = ? AND asset = ? AND wallet = ?",
                    (owner, asset, wallet.value),
                )
                current = money.from_storage(row[0]) if row else money.ZERO
            rows.append(
                (owner, asset, wallet.value, money.to_storage(money.add(current, net)), now_ms)
            )
        db.many(UPSERT_BALANCE, rows)


#: A balance row's new absolute amount (SQLite's one writer: ``apply_many``).
UPSERT_BALANCE = (
    "INSERT INTO balances (account_id, asset, wallet, amount, updated_ms) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (account_id, asset, wallet)"
    " DO UPDATE SET amount = excluded.amount, updated_ms = excluded.updated_ms"
)


class PostgresDialect(Dialect):
    """``notify`` announces one commit with NOTIFY (``store.outbox.notify``, given by the
    PostgreSQL store: the outbox's own units run over a :class:`Db`, so this module cannot
    import it without an import cycle)."""

    name = "postgresql"

    def __init__(self, notify: Callable[[Db, Announcement], None]) -> None:
        super().__init__(1)
        self._notify = notify
        self._translated: dict[str, str] = {}

    def sql(self, text: str) -> str:
        # Statements are constants, so the cache holds one translation per statement text.
        done = self._translated.get(text)
        if done is None:
            done = self._translated[text] = text.replace("?", "%s")
        return done

    def to_money(self, value: Decimal) -> Any:
        return value

    def from_money(self, value: Any) -> Decimal:
        return Decimal(value)

    def to_list(self, values: Sequence[str]) -> Any:
        return list(values)

    def from_list(self, value: Any) -> tuple[str, ...]:
        return tuple(value)

    def stream(self, conn: Any, sql: str, args: Sequence[Any]) -> Iterator[Any]:
        with conn.cursor(name="papi_stream") as cur:
            cur.itersize = STREAM_FETCH_ROWS
            cur.execute(sql, args)
            yield from cur

    def notify_key_revoked(self, db: Db, api_key: str) -> None:
        # Delivered to every listening process when the transaction commits.
        db.execute("SELECT pg_notify(?, ?)", (KEY_REVOKED_CHANNEL, api_key))

    def announce(self, db: Db, item: Announcement) -> None:
        self._notify(db, item)

    def id_counter(self, db: Db, table: str, taken: str) -> Callable[[], int]:
        sql = f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"
        return lambda: int(db.one(sql)[0])

    def apply_many(
        self,
        db: Db,
        changes: Sequence[tuple[int, Sequence[Posting]]],
        now_ms: int,
        before: Mapping[int, Mapping[BalanceKey, Decimal]],
    ) -> None:
        """Add each row's delta under its row lock, in one global order: the entries' own
        accounts first (already locked, in ascending order, by their account locks), then every
        other row by (account_id, asset, wallet, bucket), so two transactions never wait in a
        cycle; the system account's hot rows come last and are held only until COMMIT. The
        system account's share of an entry goes to the bucket of the entry's account."""
        deltas: dict[tuple[int, str, str, int], Decimal] = {}
        owners: set[int] = set()
        for account_id, postings in changes:
            owners.add(account_id)
            system_bucket = account_id % SYSTEM_BALANCE_BUCKETS
            for (owner, wallet, asset), net in _nets(postings).items():
                bucket = system_bucket if owner == SYSTEM_ACCOUNT_ID else 0
                key = (owner, asset, wallet.value, bucket)
                deltas[key] = money.add(deltas.get(key, money.ZERO), net)
        ordered = sorted(deltas.items(), key=lambda item: (item[0][0] not in owners, item[0]))
        db.many(
            "INSERT INTO balances (account_id, asset, wallet, bucket, amount, updated_ms)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, asset, wallet, bucket)"
            " DO UPDATE SET amount = balances.amount + EXCLUDED.amount,"
            " updated_ms = EXCLUDED.updated_ms",
            [(*key, delta, now_ms) for key, delta in ordered],
        )


def _nets(postings: Iterable[Posting]) -> dict[tuple[int, Wallet, str], Decimal]:
    """Each balance row an entry touches, once, with the net of its postings."""
    nets: dict[tuple[int, Wallet, str], Decimal] = {}
    for p in postings:
        key = (p.account_id, p.wallet, p.asset)
        nets[key] = money.add(nets.get(key, money.ZERO), p.amount)
    return nets


SQLITE = Dialect()
