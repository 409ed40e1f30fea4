"""UM trading state: orders, trades, positions, per-account settings, income records, market
prices and funding slots; each statement once, as units of work over a
:class:`~papi_sandbox.store.dialect.Db` (docs/design.md, "Adding persisted state").

A trading operation is one unit: lock the accounts and read their books (balances, positions,
open orders, settings: :func:`load_books`, a few statements for any number of accounts) and the
market's prices, run the pure rule (:mod:`papi_sandbox.trading.engine`) for each order or
account in memory, then :class:`Commits` writes them all: the journal entries through
:func:`~papi_sandbox.store.journal.append_entries` (the one path of money), then the income,
order, trade and position rows, one statement per table, in the same transaction. New orders
come in groups (:func:`place_orders`, through ``Store.write_grouped``: the SQLite writer hands
one call every order of its batch). Each commit is announced as its orders' executions, then
its entries, for the user data stream.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from papi_sandbox import money
from papi_sandbox.ledger.model import (
    AmountLimitExceeded,
    CommittedEntry,
    LedgerError,
    UnknownAccount,
)
from papi_sandbox.ledger.rules import check_bounds
from papi_sandbox.market.prices import MarketPrice
from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.store.accounts import lock_account
from papi_sandbox.store.dialect import MAX_IN_LIST, Db
from papi_sandbox.store.journal import (
    append_entries,
    load_balances_of,
    lock_accounts,
)
from papi_sandbox.trading import engine
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.margin import MarketView
from papi_sandbox.trading.model import (
    Booking,
    HistoryPage,
    IncomePage,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionReport,
    PositionSide,
    Refusal,
    Side,
    TimeInForce,
    Trade,
    TradedEntry,
    TradingCommit,
    TradingRefused,
    TradingSettings,
)

#: The DDL of UM trading (migration 7 of papi_sandbox.store.schema): market prices, per-account
#: settings and leverage, order and trade id sequences, orders, trades, positions and the income
#: records of the journal entries trading books. A flat position's amount is the literal
#: '0.00000000' (canonical text in SQLite, coerced to NUMERIC by PostgreSQL).
SCHEMA = """
    CREATE TABLE um_markets (
        symbol TEXT PRIMARY KEY,
        mark_price {money} NOT NULL,
        index_price {money} NOT NULL,
        funding_rate {money} NOT NULL,
        update_time_ms {bigint} NOT NULL
    );
    CREATE TABLE um_settings (
        account_id {bigint} PRIMARY KEY REFERENCES accounts(id),
        dual_side {bool} NOT NULL DEFAULT {false},
        maker_rate {money},
        taker_rate {money}
    );
    CREATE TABLE um_leverage (
        account_id {bigint} NOT NULL REFERENCES accounts(id),
        symbol TEXT NOT NULL,
        leverage INTEGER NOT NULL,
        PRIMARY KEY (account_id, symbol)
    ){without_rowid};
    CREATE TABLE um_order_ids (id {serial_key});
    CREATE TABLE um_trade_ids (id {serial_key});
    CREATE TABLE um_orders (
        order_id {bigint} PRIMARY KEY,
        account_id {bigint} NOT NULL REFERENCES accounts(id),
        symbol TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        side TEXT NOT NULL,
        position_side TEXT NOT NULL,
        type TEXT NOT NULL,
        time_in_force TEXT NOT NULL,
        orig_qty {money} NOT NULL,
        price {money} NOT NULL,
        reduce_only {bool} NOT NULL,
        status TEXT NOT NULL,
        executed_qty {money} NOT NULL,
        cum_quote {money} NOT NULL,
        avg_price {money} NOT NULL,
        time_ms {bigint} NOT NULL,
        update_time_ms {bigint} NOT NULL
    );
    CREATE INDEX um_orders_account ON um_orders(account_id, symbol, order_id);
    CREATE INDEX um_orders_open ON um_orders(symbol, account_id)
        WHERE status IN ('NEW', 'PARTIALLY_FILLED');
    CREATE TABLE um_trades (
        trade_id {bigint} PRIMARY KEY,
        account_id {bigint} NOT NULL,
        order_id {bigint} NOT NULL REFERENCES um_orders(order_id),
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        position_side TEXT NOT NULL,
        price {money} NOT NULL,
        qty {money} NOT NULL,
        quote_qty {money} NOT NULL,
        realized_pnl {money} NOT NULL,
        commission {money} NOT NULL,
        commission_asset TEXT NOT NULL,
        maker {bool} NOT NULL,
        time_ms {bigint} NOT NULL
    );
    CREATE INDEX um_trades_account ON um_trades(account_id, symbol, trade_id);
    CREATE TABLE um_positions (
        account_id {bigint} NOT NULL REFERENCES accounts(id),
        symbol TEXT NOT NULL,
        position_side TEXT NOT NULL,
        amount {money} NOT NULL,
        entry_price {money} NOT NULL,
        open_fee {money} NOT NULL,
        update_time_ms {bigint} NOT NULL,
        PRIMARY KEY (account_id, symbol, position_side)
    ){without_rowid};
    CREATE INDEX um_positions_open ON um_positions(account_id) WHERE amount <> '0.00000000';
    CREATE TABLE um_income (
        tran_id {bigint} PRIMARY KEY REFERENCES entries(tran_id),
        account_id {bigint} NOT NULL,
        income_type TEXT NOT NULL,
        symbol TEXT NOT NULL,
        asset TEXT NOT NULL,
        income {money} NOT NULL,
        trade_id {bigint},
        time_ms {bigint} NOT NULL
    );
    CREATE INDEX um_income_account ON um_income(account_id, time_ms)
"""

#: Migration 9: each position's accumulated realized PnL (pre-fee; ACCOUNT_UPDATE's ``cr``),
#: filled for existing positions by :func:`backfill_accumulated_realized`.
ACCUMULATED_REALIZED = """
    ALTER TABLE um_positions ADD COLUMN accumulated_realized {money} NOT NULL DEFAULT {money_zero}
"""


#: Migration 10: each order's goodTillDate (ms; 0 unless GTD) and self-trade prevention mode,
#: and the index the GTD expiry reads (:func:`expiring_accounts` repeats its predicate).
ORDER_TIME_LIMITS = """
    ALTER TABLE um_orders ADD COLUMN good_till_date_ms {bigint} NOT NULL DEFAULT 0;
    ALTER TABLE um_orders ADD COLUMN self_trade_prevention_mode TEXT NOT NULL DEFAULT 'NONE';
    CREATE INDEX um_orders_expiring ON um_orders(good_till_date_ms, account_id)
        WHERE status IN ('NEW', 'PARTIALLY_FILLED') AND good_till_date_ms > 0
"""

#: Migration 11: how many amendments each order took (Binance cancels the one past its limit).
ORDER_MODIFICATIONS = """
    ALTER TABLE um_orders ADD COLUMN modify_count INTEGER NOT NULL DEFAULT 0
"""


def backfill_accumulated_realized(db: Db) -> None:
    """Migration 9's data step: each existing position's accumulated realized PnL, the sum of
    its trades' (exact decimals, whichever store; memory grows with the positions)."""
    m = db.dialect.from_money
    sums: dict[tuple[int, str, str], Decimal] = {}
    for account_id, symbol, side, pnl in db.stream(
        "SELECT account_id, symbol, position_side, realized_pnl FROM um_trades"
    ):
        key = (int(account_id), str(symbol), str(side))
        sums[key] = money.add(sums.get(key, money.ZERO), m(pnl))
    db.many(
        "UPDATE um_positions SET accumulated_realized = ?"
        " WHERE account_id = ? AND symbol = ? AND position_side = ?",
        [(db.dialect.to_money(total), *key) for key, total in sums.items() if total],
    )


#: The job name of funding in the (job, slot, account) markers.
FUNDING_JOB = "funding"
#: Most rows one history read returns (Binance's own maximum is 1000).
MAX_HISTORY_ROWS = 1000
#: A flat position's amount, as a literal both stores compare correctly (canonical text in
#: SQLite, coerced to NUMERIC by PostgreSQL); must match the partial index um_positions_open.
FLAT = "'0.00000000'"

_OPEN = "status IN ('NEW', 'PARTIALLY_FILLED')"


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class _Rows:
    """A table whose columns are a frozen dataclass's fields, in order (the columns carry the
    fields' names): its column list, and a row's conversion both ways. ``kinds`` names how
    each non-text column converts: ``"money"`` (the dialect's money type), ``"int"``,
    ``"bool"``, or an enum class (stored as its value)."""

    def __init__(self, cls: type, kinds: Mapping[str, Any]) -> None:
        self.cls = cls
        fields = [f.name for f in dataclasses.fields(cls)]
        names = [n for n in fields if n in kinds or n in _TEXT_FIELDS]
        if names != fields[: len(names)]:  # a row builds the object from its fields in order
            raise ValueError(f"{cls.__name__}: the stored fields must come first")
        self.columns: str = ", ".join(names)
        self.get = operator.attrgetter(*names)
        self.money = [i for i, n in enumerate(names) if kinds.get(n) == "money"]
        self.enums = [i for i, n in enumerate(names) if isinstance(kinds.get(n), type)]
        #: How a stored value becomes the field's (money aside: that is the dialect's).
        self.convert: list[tuple[int, Callable[[Any], Any]]] = []
        for i, n in enumerate(names):
            kind = kinds.get(n)
            if isinstance(kind, type) and issubclass(kind, enum.Enum):
                # an enum: its member by value, a dict lookup
                self.convert.append((i, {m.value: m for m in kind}.__getitem__))
            elif kind in ("int", "bool"):
                self.convert.append((i, int if kind == "int" else bool))

    def row(self, db: Db, obj: Any) -> list[Any]:
        """What the table stores of ``obj``."""
        row = list(self.get(obj))
        m = db.dialect.to_money
        for i in self.money:
            row[i] = m(row[i])
        for i in self.enums:
            row[i] = row[i]._value_  # what .value returns, without its descriptor
        return row

    def parse(self, db: Db, r: Sequence[Any]) -> Any:
        """The object of a stored row (selected with :attr:`columns`)."""
        values = list(r)
        m = db.dialect.from_money
        for i in self.money:
            values[i] = m(values[i])
        for i, convert in self.convert:
            values[i] = convert(values[i])
        return self.cls(*values)


#: Text columns (stored as they are).
_TEXT_FIELDS = frozenset(
    {"symbol", "client_order_id", "commission_asset", "self_trade_prevention_mode"}
)
_SIDES = {"side": Side, "position_side": PositionSide}
_ORDERS = _Rows(
    Order,
    {"order_id": "int", "account_id": "int", **_SIDES, "type": OrderType,
     "time_in_force": TimeInForce, "orig_qty": "money", "price": "money", "reduce_only": "bool",
     "status": OrderStatus, "executed_qty": "money", "cum_quote": "money", "avg_price": "money",
     "time_ms": "int", "update_time_ms": "int", "good_till_date_ms": "int",
     "modify_count": "int"},
)  # fmt: skip
_TRADES = _Rows(
    Trade,
    {"trade_id": "int", "account_id": "int", "order_id": "int", **_SIDES, "price": "money",
     "qty": "money", "quote_qty": "money", "realized_pnl": "money", "commission": "money",
     "maker": "bool", "time_ms": "int"},
)  # fmt: skip
_POSITIONS = _Rows(
    Position,
    {"account_id": "int", "position_side": PositionSide, "amount": "money",
     "entry_price": "money", "open_fee": "money", "update_time_ms": "int",
     "accumulated_realized": "money"},
)  # fmt: skip
_ORDER_COLUMNS = _ORDERS.columns
_TRADE_COLUMNS = _TRADES.columns
_POSITION_COLUMNS = _POSITIONS.columns

_INSERT_ORDER = (
    f"INSERT INTO um_orders ({_ORDER_COLUMNS}) VALUES ({_marks(_ORDER_COLUMNS.count(',') + 1)})"
)
#: What a fill, a cancel, an expiry or an amendment changes of an order already stored.
_UPDATE_ORDER = (
    "UPDATE um_orders SET status = ?, orig_qty = ?, price = ?, executed_qty = ?, cum_quote = ?,"
    " avg_price = ?, update_time_ms = ?, modify_count = ? WHERE order_id = ?"
)
_UPSERT_POSITION = (
    f"INSERT INTO um_positions ({_POSITION_COLUMNS}) VALUES ({_marks(8)})"
    " ON CONFLICT (account_id, symbol, position_side) DO UPDATE SET"
    " amount = excluded.amount, entry_price = excluded.entry_price,"
    " open_fee = excluded.open_fee, update_time_ms = excluded.update_time_ms,"
    " accumulated_realized = excluded.accumulated_realized"
)


def _order(db: Db, r: Sequence[Any]) -> Order:
    order: Order = _ORDERS.parse(db, r)
    return order


def _trade(db: Db, r: Sequence[Any]) -> Trade:
    trade: Trade = _TRADES.parse(db, r)
    return trade


def _position(db: Db, r: Sequence[Any]) -> Position:
    position: Position = _POSITIONS.parse(db, r)
    return position


# -- market prices -------------------------------------------------------------------------------


def ensure_markets(db: Db, prices: Iterable[MarketPrice]) -> None:
    """Record each configured symbol's starting prices unless the ledger has prices already
    (a restart keeps the operator's last prices)."""
    m = db.dialect.to_money
    # ON CONFLICT: processes starting together on one PostgreSQL ledger may both insert.
    db.many(
        "INSERT INTO um_markets (symbol, mark_price, index_price, funding_rate, update_time_ms)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol) DO NOTHING",
        [
            (p.symbol, m(p.mark_price), m(p.index_price), m(p.funding_rate), p.update_time_ms)
            for p in prices
        ],
    )


def load_prices(db: Db) -> dict[str, MarketPrice]:
    m = db.dialect.from_money
    return {
        r[0]: MarketPrice(r[0], m(r[1]), m(r[2]), m(r[3]), int(r[4]))
        for r in db.all(
            "SELECT symbol, mark_price, index_price, funding_rate, update_time_ms FROM um_markets"
        )
    }


def _view(db: Db, specs: Mapping[str, SymbolSpec], collateral: Mapping[str, Decimal]) -> MarketView:
    return MarketView(specs, load_prices(db), collateral)


def set_price(
    db: Db,
    symbol: str,
    mark: Decimal | None,
    index: Decimal | None,
    rate: Decimal | None,
    now_ms: int,
) -> MarketPrice:
    """Change a symbol's mark/index price or funding rate (None: unchanged). Raises
    TradingRefused(INVALID_SYMBOL) for a symbol the ledger has no prices for."""
    current = load_prices(db).get(symbol)
    if current is None:
        raise TradingRefused(Refusal.INVALID_SYMBOL)
    new = MarketPrice(
        symbol,
        mark if mark is not None else current.mark_price,
        index if index is not None else current.index_price,
        rate if rate is not None else current.funding_rate,
        now_ms,
    )
    m = db.dialect.to_money
    db.execute(
        "UPDATE um_markets SET mark_price = ?, index_price = ?, funding_rate = ?,"
        " update_time_ms = ? WHERE symbol = ?",
        (m(new.mark_price), m(new.index_price), m(new.funding_rate), now_ms, symbol),
    )
    return new


def crossed_accounts(db: Db, symbol: str, mark: Decimal) -> list[int]:
    """Accounts with a resting order on ``symbol`` that ``mark`` crosses, ascending."""
    m = db.dialect.from_money
    accounts: set[int] = set()
    for account_id, side, price in db.all(
        f"SELECT account_id, side, price FROM um_orders WHERE symbol = ? AND {_OPEN}", (symbol,)
    ):
        limit = m(price)
        if (mark <= limit) if side == "BUY" else (mark >= limit):
            accounts.add(int(account_id))
    return sorted(accounts)


# -- an account's book ---------------------------------------------------------------------------


def load_settings(db: Db, account_id: int) -> TradingSettings:
    return _settings_of(db, [account_id])[account_id]


def _in_lists(ids: Sequence[int]) -> Iterator[tuple[str, Sequence[int]]]:
    """``ids`` in chunks of at most MAX_IN_LIST, each with its ``?, ?, ...`` marks."""
    for start in range(0, len(ids), MAX_IN_LIST):
        chunk = ids[start : start + MAX_IN_LIST]
        yield ", ".join("?" * len(chunk)), chunk


def _settings_of(db: Db, account_ids: Sequence[int]) -> dict[int, TradingSettings]:
    """Each account's settings (defaults where it has none) and leverage per symbol."""
    m = db.dialect.from_money
    defaults = TradingSettings()
    rows: dict[int, Sequence[Any]] = {}
    leverage: dict[int, dict[str, int]] = {a: {} for a in account_ids}
    for marks, chunk in _in_lists(account_ids):
        for r in db.all(
            "SELECT account_id, dual_side, maker_rate, taker_rate FROM um_settings"
            f" WHERE account_id IN ({marks})",
            chunk,
        ):
            rows[int(r[0])] = r
        for account_id, symbol, value in db.all(
            f"SELECT account_id, symbol, leverage FROM um_leverage WHERE account_id IN ({marks})",
            chunk,
        ):
            leverage[int(account_id)][symbol] = int(value)
    result = {}
    for account_id in account_ids:
        r = rows.get(account_id)
        result[account_id] = TradingSettings(
            dual_side=bool(r[1]) if r else False,
            maker_rate=m(r[2]) if r and r[2] is not None else defaults.maker_rate,
            taker_rate=m(r[3]) if r and r[3] is not None else defaults.taker_rate,
            leverage=leverage[account_id],
        )
    return result


def load_positions(db: Db, account_id: int) -> list[Position]:
    return [
        _position(db, r)
        for r in db.all(
            f"SELECT {_POSITION_COLUMNS} FROM um_positions WHERE account_id = ?"
            " ORDER BY symbol, position_side",
            (account_id,),
        )
    ]


def open_orders(db: Db, account_id: int, symbol: str | None = None) -> list[Order]:
    """The account's open orders (of ``symbol`` when given), oldest first."""
    sql = f"SELECT {_ORDER_COLUMNS} FROM um_orders WHERE account_id = ? AND {_OPEN}"
    args: list[Any] = [account_id]
    if symbol is not None:
        sql += " AND symbol = ?"
        args.append(symbol)
    return [_order(db, r) for r in db.all(sql + " ORDER BY order_id", args)]


def load_book(db: Db, account_id: int) -> engine.AccountBook:
    """Lock the account and read everything its trading rules see. Raises UnknownAccount when
    the account does not exist."""
    book = load_books(db, [account_id]).get(account_id)
    if book is None:
        raise UnknownAccount.of(account_id)
    return book


def load_books(db: Db, account_ids: Iterable[int]) -> dict[int, engine.AccountBook]:
    """Lock the accounts (in ascending order: two units never wait for each other in a cycle)
    and read everything their trading rules see, a few statements per MAX_IN_LIST accounts.
    An account that does not exist has no book."""
    existing = lock_accounts(db, account_ids)
    settings = _settings_of(db, existing)
    balances = load_balances_of(db, existing)
    books = {a: engine.AccountBook(a, settings[a], balances[a], {}, []) for a in existing}
    for marks, chunk in _in_lists(existing):
        for r in db.all(
            f"SELECT {_POSITION_COLUMNS} FROM um_positions WHERE account_id IN ({marks})",
            chunk,
        ):
            p = _position(db, r)
            books[p.account_id].positions[(p.symbol, p.position_side)] = p
        for r in db.all(
            f"SELECT {_ORDER_COLUMNS} FROM um_orders WHERE account_id IN ({marks}) AND {_OPEN}"
            " ORDER BY order_id",
            chunk,
        ):
            o = _order(db, r)
            books[o.account_id].open_orders.append(o)
    return books


def _ids(db: Db) -> engine.IdBlock:
    """Order and trade ids, from their id tables' sequences (store/dialect.py)."""
    return engine.IdBlock(
        db.dialect.id_counter(
            db,
            "um_order_ids",
            "SELECT MAX(i) FROM (SELECT MAX(order_id) AS i FROM um_orders"
            " UNION ALL SELECT MAX(id) FROM um_order_ids) AS taken",
        ),
        db.dialect.id_counter(
            db,
            "um_trade_ids",
            "SELECT MAX(i) FROM (SELECT MAX(trade_id) AS i FROM um_trades"
            " UNION ALL SELECT MAX(id) FROM um_trade_ids) AS taken",
        ),
    )


class Commits:
    """Trading commits of one unit of work, planned in memory and written together
    (:meth:`write`): the journal entries of all of them through
    :func:`~papi_sandbox.store.journal.append_entries` (the one path of money), then one
    statement each for the income records, orders, trades and positions. Each commit's
    accounts were locked and read (:func:`load_books`) in this transaction. Each commit is
    announced (at COMMIT) as its orders' executions, then its entries: the stream's order."""

    def __init__(
        self,
        books: Mapping[int, engine.AccountBook],
        prices: Mapping[str, MarketPrice] | None = None,
    ) -> None:
        #: Each account's balance rows as read, before any of these commits.
        self.read = {a: dict(b.balances.amounts) for a, b in books.items()}
        self.books = books
        #: The market's prices the commits were planned on (the mark of a fill's ``P``).
        self.prices = prices or {}
        self.planned: list[tuple[int, TradingCommit, int, list[OrderUpdate]]] = []

    def add(self, book: engine.AccountBook, commit: TradingCommit, now_ms: int) -> None:
        """Take ``commit`` (planned on ``book``, whose open orders it left) and apply its
        bookings to the book's balances. Every resulting wallet balance is checked against the
        bound first (docs/semantics.md, "Balance bounds"): raises AmountLimitExceeded, and
        nothing is taken."""
        postings = [p for b in commit.bookings for p in b.postings]
        balances = book.balances.amounts
        check_bounds(book.account_id, balances, postings)
        for p in postings:
            if p.account_id == book.account_id:
                key = (p.wallet, p.asset)
                balances[key] = money.add(balances.get(key, money.ZERO), p.amount)
        updates = engine.order_updates(commit, book.open_orders)
        self.planned.append((book.account_id, commit, now_ms, updates))

    def write(self, db: Db) -> None:
        """Write every commit taken, in order, and announce each."""
        d = db.dialect
        bookings = [(a, b, ms) for a, c, ms, _ in self.planned for b in c.bookings]
        entries = iter(
            append_entries(
                db,
                [(a, b.type, b.postings, ms) for a, b, ms in bookings],
                {a: self.read[a] for a in {a for a, _, _ in bookings}},
            )
            if bookings
            else []
        )
        income = []
        for account_id, commit, _, updates in self.planned:
            for update in updates:
                d.announce(db, update)
            for booking in commit.bookings:
                committed = next(entries)
                d.announce(db, self._traded(db, account_id, booking, committed))
                income.append((committed.entry, booking))
        if income:
            db.many(
                "INSERT INTO um_income"
                " (tran_id, account_id, income_type, symbol, asset, income, trade_id, time_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.tran_id, e.account_id, b.type, b.symbol, b.asset, d.to_money(b.income),
                     b.trade_id, e.time_ms)
                    for e, b in income
                ],
            )  # fmt: skip
        self._write_rows(db, [c for _, c, _, _ in self.planned])

    def _traded(
        self, db: Db, account_id: int, booking: Booking, committed: CommittedEntry
    ) -> CommittedEntry:
        """A fill's entry with the position it left, valued at the commit's mark price (read
        here when the caller gave no prices) and the account's taker rate (ACCOUNT_UPDATE's
        ``P``); other entries as they are."""
        position = booking.position
        if position is None:
            return committed
        if booking.symbol not in self.prices:
            self.prices = load_prices(db)
        price = self.prices.get(booking.symbol)
        if price is None:
            return committed
        taker = self.books[account_id].settings.taker_rate
        report = PositionReport(position, price.mark_price, taker)
        return TradedEntry(committed.entry, committed.balances, (report,))

    @staticmethod
    def _write_rows(db: Db, commits: list[TradingCommit]) -> None:
        m = db.dialect.to_money
        placed = {c.placed.order_id for c in commits if c.placed is not None}
        orders = [o for c in commits for o in c.orders]
        new = [_ORDERS.row(db, o) for o in orders if o.order_id in placed]
        if new:  # an order placed by its commit (as it stands after it): a new row
            db.many(_INSERT_ORDER, new)
        progressed = [
            (o.status._value_, m(o.orig_qty), m(o.price), m(o.executed_qty), m(o.cum_quote),
             m(o.avg_price), o.update_time_ms, o.modify_count, o.order_id)
            for o in orders
            if o.order_id not in placed
        ]  # fmt: skip
        if progressed:  # every other order of a commit is stored already
            db.many(_UPDATE_ORDER, progressed)
        trades = [_TRADES.row(db, t) for c in commits for t in c.trades]
        if trades:
            db.many(f"INSERT INTO um_trades ({_TRADE_COLUMNS}) VALUES ({_marks(14)})", trades)
        positions = [_POSITIONS.row(db, p) for c in commits for p in c.positions]
        if positions:
            db.many(_UPSERT_POSITION, positions)


def write_commit(db: Db, book: engine.AccountBook, commit: TradingCommit, now_ms: int) -> None:
    """Write one trading commit in the caller's transaction (:class:`Commits` of one). Raises
    AmountLimitExceeded before anything is written when a balance would pass the bound."""
    commits = Commits({book.account_id: book})
    commits.add(book, commit, now_ms)
    commits.write(db)


# -- operations (each one unit of work) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewOrder:
    """One new order for :func:`place_orders`: the account, the request, the market's filters
    and collateral rates, and the time of the request (ms)."""

    account_id: int
    request: OrderRequest
    specs: Mapping[str, SymbolSpec]
    collateral: Mapping[str, Decimal]
    now_ms: int


#: An operation's result or the exception that refused it (nothing of it written).
Outcome = tuple[Any, BaseException | None]


def place_orders(db: Db, items: Sequence[NewOrder]) -> list[Outcome]:
    """New orders through the fill model, in order, as one unit: every account read once, each
    order planned in memory on the state the ones before it left, all written together. Each
    outcome is ``(order as it stands, its fills)`` or the refusal (TradingRefused,
    UnknownAccount for an unknown account, AmountLimitExceeded), which wrote nothing."""
    books = load_books(db, [i.account_id for i in items])
    prices = load_prices(db)
    ids = _ids(db)
    commits = Commits(books, prices)
    outcomes: list[Outcome] = []
    for item in items:
        book = books.get(item.account_id)
        if book is None:
            outcomes.append((None, UnknownAccount.of(item.account_id)))
            continue
        saved = (dict(book.positions), list(book.open_orders))
        try:
            view = MarketView(item.specs, prices, item.collateral)
            commit, order = engine.place_order(book, view, item.request, ids, item.now_ms)
            commits.add(book, commit, item.now_ms)
        except LedgerError as exc:  # refused before anything was taken: the book is restored
            book.positions, book.open_orders = saved
            outcomes.append((None, exc))
            continue
        outcomes.append(((order, commit.trades), None))
    commits.write(db)
    return outcomes


def place_order(
    db: Db,
    account_id: int,
    request: OrderRequest,
    specs: Mapping[str, SymbolSpec],
    collateral: Mapping[str, Decimal],
    now_ms: int,
) -> tuple[Order, list[Trade]]:
    """A new order through the fill model; the order as it stands and its fills."""
    item = NewOrder(account_id, request, specs, collateral, now_ms)
    ((result, error),) = place_orders(db, [item])
    if error is not None:
        raise error
    placed: tuple[Order, list[Trade]] = result
    return placed


def cancel(
    db: Db,
    account_id: int,
    symbol: str,
    order_id: int | None,
    client_order_id: str | None,
    now_ms: int,
) -> Order:
    """Cancel one open order. Raises TradingRefused(UNKNOWN_ORDER_CANCEL) when the account has
    no such open order on ``symbol``."""
    book = load_book(db, account_id)
    candidates = [o for o in book.open_orders if o.symbol == symbol]
    found = engine.find_order(candidates, order_id, client_order_id)
    if found is None:
        raise TradingRefused(Refusal.UNKNOWN_ORDER_CANCEL)
    commit = engine.cancel_orders(book, [found], now_ms)
    write_commit(db, book, commit, now_ms)
    return commit.orders[0]


def modify(
    db: Db,
    account_id: int,
    amendment: engine.Amendment,
    specs: Mapping[str, SymbolSpec],
    collateral: Mapping[str, Decimal],
    now_ms: int,
) -> tuple[Order, list[Trade]]:
    """Amend one open order (:func:`papi_sandbox.trading.engine.modify_order`); the order as it
    stands and its fills. Raises TradingRefused (nothing written)."""
    book = load_book(db, account_id)
    commit, order = engine.modify_order(
        book, _view(db, specs, collateral), amendment, _ids(db), now_ms
    )
    write_commit(db, book, commit, now_ms)
    return order, commit.trades


def cancel_all(db: Db, account_id: int, symbol: str, now_ms: int) -> list[Order]:
    """Cancel every open order of the account on ``symbol``."""
    book = load_book(db, account_id)
    commit = engine.cancel_orders(book, [o for o in book.open_orders if o.symbol == symbol], now_ms)
    write_commit(db, book, commit, now_ms)
    return commit.orders


def fill_crossed(
    db: Db,
    account_ids: list[int],
    symbol: str,
    specs: Mapping[str, SymbolSpec],
    collateral: Mapping[str, Decimal],
    now_ms: int,
) -> int:
    """For each account: fill its resting orders on ``symbol`` that the current mark crosses,
    all accounts read at once, planned in memory and written together (one transaction, so
    each account's fills are atomic). An account whose fills a balance bound refuses keeps its
    orders resting (nothing of it is written). Returns the number of fills."""
    view = _view(db, specs, collateral)
    books = load_books(db, account_ids)
    ids = _ids(db)
    commits = Commits(books, view.prices)
    fills = 0
    for account_id in sorted(books):
        book = books[account_id]
        saved = (dict(book.positions), list(book.open_orders))
        commit = engine.fill_crossed(book, view, symbol, ids, now_ms)
        try:
            commits.add(book, commit, now_ms)
        except AmountLimitExceeded:
            book.positions, book.open_orders = saved
            continue
        fills += len(commit.trades)
    commits.write(db)
    return fills


def expiring_accounts(db: Db, as_of_ms: int, after_account_id: int, limit: int) -> list[int]:
    """Keyset page of the accounts with an open GTD order whose goodTillDate is at or before
    ``as_of_ms``, ascending (the partial index um_orders_expiring)."""
    rows = db.all(
        "SELECT DISTINCT account_id FROM um_orders"
        f" WHERE {_OPEN} AND good_till_date_ms > 0 AND good_till_date_ms <= ?"
        " AND account_id > ? ORDER BY account_id LIMIT ?",
        (as_of_ms, after_account_id, max(1, limit)),
    )
    return [int(r[0]) for r in rows]


def expire_due(db: Db, account_ids: list[int], as_of_ms: int, now_ms: int) -> int:
    """For each account: its open GTD orders due at ``as_of_ms`` expire
    (:func:`papi_sandbox.trading.engine.expire_due`), all accounts read at once and written
    together in one transaction. An order that filled or was cancelled meanwhile is no longer
    open, so nothing expires twice. Returns the number of orders expired."""
    books = load_books(db, account_ids)
    commits = Commits(books)
    expired = 0
    for account_id in sorted(books):
        book = books[account_id]
        commit = engine.expire_due(book, as_of_ms, now_ms)
        if commit.orders:
            commits.add(book, commit, now_ms)
            expired += len(commit.orders)
    commits.write(db)
    return expired


def set_leverage(
    db: Db,
    account_id: int,
    symbol: str,
    leverage: int,
    specs: Mapping[str, SymbolSpec],
    collateral: Mapping[str, Decimal],
) -> None:
    book = load_book(db, account_id)
    engine.check_leverage(book, _view(db, specs, collateral), symbol, leverage)
    db.execute(
        "INSERT INTO um_leverage (account_id, symbol, leverage) VALUES (?, ?, ?)"
        " ON CONFLICT (account_id, symbol) DO UPDATE SET leverage = excluded.leverage",
        (account_id, symbol, leverage),
    )


def _ensure_settings(db: Db, account_id: int) -> None:
    db.execute(
        "INSERT INTO um_settings (account_id) VALUES (?) ON CONFLICT (account_id) DO NOTHING",
        (account_id,),
    )


def set_position_mode(db: Db, account_id: int, dual_side: bool) -> None:
    book = load_book(db, account_id)
    engine.check_position_mode(book, dual_side)
    _ensure_settings(db, account_id)
    db.execute("UPDATE um_settings SET dual_side = ? WHERE account_id = ?", (dual_side, account_id))


def set_commission(db: Db, account_id: int, maker: Decimal, taker: Decimal) -> None:
    lock_account(db, account_id)
    _ensure_settings(db, account_id)
    m = db.dialect.to_money
    db.execute(
        "UPDATE um_settings SET maker_rate = ?, taker_rate = ? WHERE account_id = ?",
        (m(maker), m(taker), account_id),
    )


# -- reads -----------------------------------------------------------------------------------


def find_order(
    db: Db, account_id: int, symbol: str, order_id: int | None, client_order_id: str | None
) -> Order | None:
    """One order of the account on ``symbol`` by id or client order id (the newest of that
    client id)."""
    if order_id is not None:
        row = db.one(
            f"SELECT {_ORDER_COLUMNS} FROM um_orders"
            " WHERE order_id = ? AND account_id = ? AND symbol = ?",
            (order_id, account_id, symbol),
        )
    else:
        row = db.one(
            f"SELECT {_ORDER_COLUMNS} FROM um_orders WHERE account_id = ? AND symbol = ?"
            " AND client_order_id = ? ORDER BY order_id DESC LIMIT 1",
            (account_id, symbol, client_order_id),
        )
    return _order(db, row) if row is not None else None


def _history(
    db: Db, table: str, columns: str, key: str, account_id: int, symbol: str, page: HistoryPage
) -> list[Any]:
    """Rows of ``table`` of the account on ``symbol``, ascending by ``key``, one
    :class:`~papi_sandbox.trading.model.HistoryPage`."""
    order = "ASC" if page.from_id is not None else "DESC"
    rows = db.filtered(
        f"SELECT {columns} FROM {table} WHERE account_id = ? AND symbol = ?",
        (account_id, symbol),
        {f"{key} >= ?": page.from_id, "time_ms >= ?": page.start_ms, "time_ms <= ?": page.end_ms},
        f" ORDER BY {key} {order} LIMIT ?",
        _page(page.limit),
    )
    return rows if page.from_id is not None else rows[::-1]


def _page(limit: int) -> int:
    return max(1, min(limit, MAX_HISTORY_ROWS))


def all_orders(db: Db, account_id: int, symbol: str, page: HistoryPage) -> list[Order]:
    """Orders of the account on ``symbol``, ascending by id."""
    rows = _history(db, "um_orders", _ORDER_COLUMNS, "order_id", account_id, symbol, page)
    return [_order(db, r) for r in rows]


def user_trades(db: Db, account_id: int, symbol: str, page: HistoryPage) -> list[Trade]:
    """Trades of the account on ``symbol``, ascending by id."""
    rows = _history(db, "um_trades", _TRADE_COLUMNS, "trade_id", account_id, symbol, page)
    return [_trade(db, r) for r in rows]


def income(
    db: Db, account_id: int, page: IncomePage
) -> list[tuple[int, str, str, str, Decimal, int | None, int]]:
    """Income records ``(tranId, incomeType, symbol, asset, income, tradeId, time)`` of one
    :class:`~papi_sandbox.trading.model.IncomePage`."""
    rows = db.filtered(
        "SELECT tran_id, income_type, symbol, asset, income, trade_id, time_ms FROM um_income"
        " WHERE account_id = ? AND time_ms BETWEEN ? AND ?",
        (account_id, page.start_ms, page.end_ms),
        {"symbol = ?": page.symbol, "income_type = ?": page.income_type},
        " ORDER BY time_ms, tran_id LIMIT ? OFFSET ?",
        _page(page.limit),
        max(0, page.offset),
    )
    m = db.dialect.from_money
    return [
        (int(r[0]), r[1], r[2], r[3], m(r[4]), int(r[5]) if r[5] is not None else None, int(r[6]))
        for r in rows
    ]


def account_state(db: Db, account_id: int) -> tuple[TradingSettings, list[Position], list[Order]]:
    """What the margin figures of an account need besides balances and prices."""
    return (
        load_settings(db, account_id),
        load_positions(db, account_id),
        open_orders(db, account_id),
    )


# -- funding -------------------------------------------------------------------------------


def funding_candidates(db: Db, after_account_id: int, limit: int) -> list[int]:
    """Keyset page of accounts holding an open position, ascending."""
    rows = db.all(
        "SELECT DISTINCT account_id FROM um_positions"
        f" WHERE amount <> {FLAT} AND account_id > ? ORDER BY account_id LIMIT ?",
        (after_account_id, max(1, limit)),
    )
    return [int(r[0]) for r in rows]


@dataclass(slots=True)
class FundingBatch:
    """What one funding batch did: accounts already charged for the slot, accounts whose
    entries a balance bound refused (left unmarked), FUNDING_FEE entries booked, and the fees
    per asset in magnitude (paid and received alike)."""

    already_done: int = 0
    refused: int = 0
    entries: int = 0
    amounts: dict[str, Decimal] = field(default_factory=dict)


def run_funding_batch(
    db: Db,
    slot_ms: int,
    account_ids: list[int],
    specs: Mapping[str, SymbolSpec],
    collateral: Mapping[str, Decimal],
    now_ms: int,
) -> FundingBatch:
    """One funding slot for a batch of accounts in one transaction, each account at most once
    per slot (its marker is written with its entries)."""
    view = _view(db, specs, collateral)
    batch = FundingBatch()
    for account_id in account_ids:
        marked = db.one(
            "SELECT tran_id FROM job_marks WHERE job = ? AND slot_ms = ? AND account_id = ?",
            (FUNDING_JOB, slot_ms, account_id),
        )
        if marked is not None:
            batch.already_done += 1
            continue
        try:
            book = load_book(db, account_id)
        except LedgerError:
            continue
        commit = engine.plan_funding(book, view)
        try:
            write_commit(db, book, commit, now_ms)
        except AmountLimitExceeded:
            batch.refused += 1
            continue  # refused before writing and left unmarked, like the other jobs' refusals
        db.execute(
            "INSERT INTO job_marks (job, slot_ms, account_id, tran_id) VALUES (?, ?, ?, NULL)",
            (FUNDING_JOB, slot_ms, account_id),
        )
        batch.entries += len(commit.bookings)
        for booking in commit.bookings:
            moved = batch.amounts.get(booking.asset, money.ZERO)
            batch.amounts[booking.asset] = money.add(moved, abs(booking.income))
    return batch
