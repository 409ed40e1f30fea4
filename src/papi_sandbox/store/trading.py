"""UM trading state: orders, trades, positions, per-account settings, income records, market
prices and funding slots; each statement once, as units of work over a
:class:`~papi_sandbox.store.dialect.Db` (docs/design.md, "Adding persisted state").

A trading operation is one unit: lock the account, read its book (balances, positions, open
orders, settings) and the market's prices, run the pure rule (:mod:`papi_sandbox.trading.engine`),
then :func:`write_commit` appends its journal entries (through
:func:`~papi_sandbox.store.journal.append_entry`, the one path of money) and upserts its order,
trade and position rows, all in the same transaction. Each commit's rows stay readable by
order id and trade id, so the user data stream can turn them into events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from papi_sandbox import money
from papi_sandbox.ledger.model import AmountLimitExceeded, LedgerError
from papi_sandbox.ledger.rules import check_bounds
from papi_sandbox.market.prices import MarketPrice
from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.store.accounts import lock_account
from papi_sandbox.store.dialect import Db
from papi_sandbox.store.journal import append_entry, load_balances
from papi_sandbox.trading import engine
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.margin import MarketView
from papi_sandbox.trading.model import (
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    Refusal,
    Side,
    TimeInForce,
    Trade,
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

#: The job name of funding in the (job, slot, account) markers.
FUNDING_JOB = "funding"
#: Most rows one history read returns (Binance's own maximum is 1000).
MAX_HISTORY_ROWS = 1000
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
#: A flat position's amount, as a literal both stores compare correctly (canonical text in
#: SQLite, coerced to NUMERIC by PostgreSQL); must match the partial index um_positions_open.
FLAT = "'0.00000000'"

_ORDER_COLUMNS = (
    "order_id, account_id, symbol, client_order_id, side, position_side, type, time_in_force,"
    " orig_qty, price, reduce_only, status, executed_qty, cum_quote, avg_price, time_ms,"
    " update_time_ms"
)
_TRADE_COLUMNS = (
    "trade_id, account_id, order_id, symbol, side, position_side, price, qty, quote_qty,"
    " realized_pnl, commission, commission_asset, maker, time_ms"
)
_POSITION_COLUMNS = (
    "account_id, symbol, position_side, amount, entry_price, open_fee, update_time_ms"
)
_OPEN = "status IN ('NEW', 'PARTIALLY_FILLED')"


# -- rows ----------------------------------------------------------------------------------------


def _order(db: Db, r: Sequence[Any]) -> Order:
    m = db.dialect.from_money
    return Order(
        order_id=int(r[0]),
        account_id=int(r[1]),
        symbol=r[2],
        client_order_id=r[3],
        side=Side(r[4]),
        position_side=PositionSide(r[5]),
        type=OrderType(r[6]),
        time_in_force=TimeInForce(r[7]),
        orig_qty=m(r[8]),
        price=m(r[9]),
        reduce_only=bool(r[10]),
        status=OrderStatus(r[11]),
        executed_qty=m(r[12]),
        cum_quote=m(r[13]),
        avg_price=m(r[14]),
        time_ms=int(r[15]),
        update_time_ms=int(r[16]),
    )


def _order_row(db: Db, o: Order) -> tuple[Any, ...]:
    m = db.dialect.to_money
    return (
        o.order_id,
        o.account_id,
        o.symbol,
        o.client_order_id,
        o.side.value,
        o.position_side.value,
        o.type.value,
        o.time_in_force.value,
        m(o.orig_qty),
        m(o.price),
        o.reduce_only,
        o.status.value,
        m(o.executed_qty),
        m(o.cum_quote),
        m(o.avg_price),
        o.time_ms,
        o.update_time_ms,
    )


def _trade(db: Db, r: Sequence[Any]) -> Trade:
    m = db.dialect.from_money
    return Trade(
        trade_id=int(r[0]),
        account_id=int(r[1]),
        order_id=int(r[2]),
        symbol=r[3],
        side=Side(r[4]),
        position_side=PositionSide(r[5]),
        price=m(r[6]),
        qty=m(r[7]),
        quote_qty=m(r[8]),
        realized_pnl=m(r[9]),
        commission=m(r[10]),
        commission_asset=r[11],
        maker=bool(r[12]),
        time_ms=int(r[13]),
    )


def _position(db: Db, r: Sequence[Any]) -> Position:
    m = db.dialect.from_money
    return Position(int(r[0]), r[1], PositionSide(r[2]), m(r[3]), m(r[4]), m(r[5]), int(r[6]))


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
    row = db.one(
        "SELECT dual_side, maker_rate, taker_rate FROM um_settings WHERE account_id = ?",
        (account_id,),
    )
    leverage = {
        symbol: int(value)
        for symbol, value in db.all(
            "SELECT symbol, leverage FROM um_leverage WHERE account_id = ?", (account_id,)
        )
    }
    defaults = TradingSettings()
    if row is None:
        return TradingSettings(leverage=leverage)
    m = db.dialect.from_money
    return TradingSettings(
        dual_side=bool(row[0]),
        maker_rate=m(row[1]) if row[1] is not None else defaults.maker_rate,
        taker_rate=m(row[2]) if row[2] is not None else defaults.taker_rate,
        leverage=leverage,
    )


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
    """Lock the account and read everything its trading rules see."""
    lock_account(db, account_id)
    return engine.AccountBook(
        account_id,
        load_settings(db, account_id),
        load_balances(db, account_id),
        {(p.symbol, p.position_side): p for p in load_positions(db, account_id)},
        open_orders(db, account_id),
    )


def _ids(db: Db) -> engine.IdBlock:
    """Order and trade ids from their id tables (a sequence in both stores)."""

    def order_id() -> int:
        return int(db.one("INSERT INTO um_order_ids DEFAULT VALUES RETURNING id")[0])

    def trade_id() -> int:
        return int(db.one("INSERT INTO um_trade_ids DEFAULT VALUES RETURNING id")[0])

    return engine.IdBlock(order_id, trade_id)


def write_commit(db: Db, book: engine.AccountBook, commit: TradingCommit, now_ms: int) -> None:
    """Write one trading commit in the caller's transaction: each booking as a journal entry
    (with its income record), then the order, trade and position rows. Every resulting wallet
    balance is checked against the bound first (docs/semantics.md, "Balance bounds"): raises
    :class:`~papi_sandbox.ledger.model.AmountLimitExceeded` before anything is written."""
    check_bounds(
        book.account_id, book.balances.amounts, [p for b in commit.bookings for p in b.postings]
    )
    d = db.dialect
    m = d.to_money
    # The stream reports the orders' executions first, then the entries (Binance's order).
    for update in engine.order_updates(commit, book.open_orders):
        d.announce(db, update)
    before = dict(book.balances.amounts)
    for booking in commit.bookings:
        entry = append_entry(
            db, book.account_id, booking.type, list(booking.postings), now_ms, before
        )
        for p in booking.postings:
            if p.account_id == book.account_id:
                key = (p.wallet, p.asset)
                before[key] = money.add(before.get(key, money.ZERO), p.amount)
        db.execute(
            "INSERT INTO um_income"
            " (tran_id, account_id, income_type, symbol, asset, income, trade_id, time_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.tran_id,
                book.account_id,
                booking.type,
                booking.symbol,
                booking.asset,
                m(booking.income),
                booking.trade_id,
                now_ms,
            ),
        )
    book.balances.amounts.update(before)
    if commit.orders:
        db.many(
            f"INSERT INTO um_orders ({_ORDER_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (order_id) DO UPDATE SET status = excluded.status,"
            " executed_qty = excluded.executed_qty, cum_quote = excluded.cum_quote,"
            " avg_price = excluded.avg_price, update_time_ms = excluded.update_time_ms",
            [_order_row(db, o) for o in commit.orders],
        )
    if commit.trades:
        db.many(
            f"INSERT INTO um_trades ({_TRADE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    t.trade_id,
                    t.account_id,
                    t.order_id,
                    t.symbol,
                    t.side.value,
                    t.position_side.value,
                    m(t.price),
                    m(t.qty),
                    m(t.quote_qty),
                    m(t.realized_pnl),
                    m(t.commission),
                    t.commission_asset,
                    t.maker,
                    t.time_ms,
                )
                for t in commit.trades
            ],
        )
    if commit.positions:
        db.many(
            f"INSERT INTO um_positions ({_POSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (account_id, symbol, position_side) DO UPDATE SET"
            " amount = excluded.amount, entry_price = excluded.entry_price,"
            " open_fee = excluded.open_fee, update_time_ms = excluded.update_time_ms",
            [
                (
                    p.account_id,
                    p.symbol,
                    p.position_side.value,
                    m(p.amount),
                    m(p.entry_price),
                    m(p.open_fee),
                    p.update_time_ms,
                )
                for p in commit.positions
            ],
        )


# -- operations (each one unit of work) ------------------------------------------------------


def place_order(
    db: Db,
    account_id: int,
    request: OrderRequest,
    specs: Mapping[str, SymbolSpec],
    collateral: Mapping[str, Decimal],
    now_ms: int,
) -> tuple[Order, list[Trade]]:
    """A new order through the fill model; the order as it stands and its fills."""
    book = load_book(db, account_id)
    commit, order = engine.place_order(
        book, _view(db, specs, collateral), request, _ids(db), now_ms
    )
    write_commit(db, book, commit, now_ms)
    return order, commit.trades


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
    """For each account (one transaction holds them all, so each is atomic): fill its resting
    orders on ``symbol`` that the current mark crosses. Returns the number of fills."""
    view = _view(db, specs, collateral)
    ids = _ids(db)
    fills = 0
    for account_id in account_ids:
        book = load_book(db, account_id)
        commit = engine.fill_crossed(book, view, symbol, ids, now_ms)
        write_commit(db, book, commit, now_ms)
        fills += len(commit.trades)
    return fills


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


def all_orders(
    db: Db,
    account_id: int,
    symbol: str,
    from_order_id: int | None,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
) -> list[Order]:
    """Orders of the account on ``symbol``, ascending by id: from ``from_order_id`` when given,
    else the most recent ``limit`` in the time window."""
    sql = f"SELECT {_ORDER_COLUMNS} FROM um_orders WHERE account_id = ? AND symbol = ?"
    args: list[Any] = [account_id, symbol]
    if from_order_id is not None:
        sql += " AND order_id >= ?"
        args.append(from_order_id)
    if start_ms is not None:
        sql += " AND time_ms >= ?"
        args.append(start_ms)
    if end_ms is not None:
        sql += " AND time_ms <= ?"
        args.append(end_ms)
    order = "ASC" if from_order_id is not None else "DESC"
    sql += f" ORDER BY order_id {order} LIMIT ?"
    args.append(max(1, min(limit, MAX_HISTORY_ROWS)))
    rows = [_order(db, r) for r in db.all(sql, args)]
    return sorted(rows, key=lambda o: o.order_id)


def user_trades(
    db: Db,
    account_id: int,
    symbol: str,
    from_id: int | None,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
) -> list[Trade]:
    """Trades of the account on ``symbol``, ascending by id (Binance's rules for the window
    are applied by the caller)."""
    sql = f"SELECT {_TRADE_COLUMNS} FROM um_trades WHERE account_id = ? AND symbol = ?"
    args: list[Any] = [account_id, symbol]
    if from_id is not None:
        sql += " AND trade_id >= ?"
        args.append(from_id)
    if start_ms is not None:
        sql += " AND time_ms >= ?"
        args.append(start_ms)
    if end_ms is not None:
        sql += " AND time_ms <= ?"
        args.append(end_ms)
    order = "ASC" if from_id is not None else "DESC"
    sql += f" ORDER BY trade_id {order} LIMIT ?"
    args.append(max(1, min(limit, MAX_HISTORY_ROWS)))
    return sorted((_trade(db, r) for r in db.all(sql, args)), key=lambda t: t.trade_id)


def trades_of_orders(db: Db, order_ids: Sequence[int]) -> list[Trade]:
    """The fills of the given orders, by trade id (what one commit produced)."""
    if not order_ids:
        return []
    marks = ", ".join("?" for _ in order_ids)
    return [
        _trade(db, r)
        for r in db.all(
            f"SELECT {_TRADE_COLUMNS} FROM um_trades WHERE order_id IN ({marks}) ORDER BY trade_id",
            list(order_ids),
        )
    ]


def income(
    db: Db,
    account_id: int,
    symbol: str | None,
    income_type: str | None,
    start_ms: int,
    end_ms: int,
    limit: int,
    offset: int = 0,
) -> list[tuple[int, str, str, str, Decimal, int | None, int]]:
    """Income records ``(tranId, incomeType, symbol, asset, income, tradeId, time)`` in the
    window, oldest first, skipping ``offset``."""
    sql = (
        "SELECT tran_id, income_type, symbol, asset, income, trade_id, time_ms FROM um_income"
        " WHERE account_id = ? AND time_ms BETWEEN ? AND ?"
    )
    args: list[Any] = [account_id, start_ms, end_ms]
    if symbol is not None:
        sql += " AND symbol = ?"
        args.append(symbol)
    if income_type is not None:
        sql += " AND income_type = ?"
        args.append(income_type)
    sql += " ORDER BY time_ms, tran_id LIMIT ? OFFSET ?"
    args += [max(1, min(limit, MAX_HISTORY_ROWS)), max(0, offset)]
    m = db.dialect.from_money
    return [
        (int(r[0]), r[1], r[2], r[3], m(r[4]), int(r[5]) if r[5] is not None else None, int(r[6]))
        for r in db.all(sql, args)
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


def run_funding_batch(
    db: Db,
    slot_ms: int,
    account_ids: list[int],
    specs: Mapping[str, SymbolSpec],
    collateral: Mapping[str, Decimal],
    now_ms: int,
) -> tuple[int, int, int]:
    """One funding slot for a batch of accounts in one transaction, each account at most once
    per slot (its marker is written with its entries). Returns (charged accounts, already done,
    FUNDING_FEE entries)."""
    view = _view(db, specs, collateral)
    charged = done = entries = 0
    for account_id in account_ids:
        marked = db.one(
            "SELECT tran_id FROM job_marks WHERE job = ? AND slot_ms = ? AND account_id = ?",
            (FUNDING_JOB, slot_ms, account_id),
        )
        if marked is not None:
            done += 1
            continue
        try:
            book = load_book(db, account_id)
        except LedgerError:
            continue
        commit = engine.plan_funding(book, view)
        try:
            write_commit(db, book, commit, now_ms)
        except AmountLimitExceeded:
            continue  # refused before writing and left unmarked, like the other jobs' refusals
        db.execute(
            "INSERT INTO job_marks (job, slot_ms, account_id, tran_id) VALUES (?, ?, ?, NULL)",
            (FUNDING_JOB, slot_ms, account_id),
        )
        charged += 1 if commit.bookings else 0
        entries += len(commit.bookings)
    return charged, done, entries


def positions_with_wallet(db: Db, account_id: int) -> tuple[list[Position], Any]:
    """The account's positions and balances (read-only view for operator reads)."""
    return load_positions(db, account_id), load_balances(db, account_id)
