"""The vocabulary of UM futures trading: orders, trades, positions, per-account settings, and the
refusals the rules raise. Pure data, no I/O; Binance's names for every field and enum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from papi_sandbox.ledger.model import CommittedEntry, LedgerError, Posting

ZERO = Decimal(0)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class PositionSide(StrEnum):
    BOTH = "BOTH"
    LONG = "LONG"
    SHORT = "SHORT"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


#: Order types Binance knows but routes to its algo/conditional endpoints; refused here with
#: Binance's -1116 until the sandbox serves those endpoints (docs/semantics.md).
ALGO_ORDER_TYPES = (
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
)


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTX = "GTX"  # post only
    GTD = "GTD"


#: Binance's self-trade prevention modes (``selfTradePreventionMode``; NONE by default on PAPI).
SELF_TRADE_PREVENTION_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")
#: Binance's price match modes (``priceMatch``); the sandbox serves NONE only (no order book).
PRICE_MATCH_MODES = (
    "NONE",
    "OPPONENT",
    "OPPONENT_5",
    "OPPONENT_10",
    "OPPONENT_20",
    "QUEUE",
    "QUEUE_5",
    "QUEUE_10",
    "QUEUE_20",
)


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class Refusal(StrEnum):
    """Why a trading rule refused; the wire maps each to Binance's code (wire/errors.py)."""

    INVALID_SYMBOL = "INVALID_SYMBOL"  # -1121
    INVALID_ORDER_TYPE = "INVALID_ORDER_TYPE"  # -1116
    INVALID_TIME_IN_FORCE = "INVALID_TIME_IN_FORCE"  # -1115
    MANDATORY_MISSING = "MANDATORY_MISSING"  # -1102 (detail: the parameter)
    NOT_REQUIRED = "NOT_REQUIRED"  # -1106 (detail: the parameter)
    BAD_PRECISION = "BAD_PRECISION"  # -1111
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"  # -4003
    QTY_BELOW_MIN = "QTY_BELOW_MIN"  # -4004
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"  # -4005
    PRICE_BELOW_MIN = "PRICE_BELOW_MIN"  # -4013
    PRICE_NOT_TICK = "PRICE_NOT_TICK"  # -4014
    PRICE_ABOVE_MAX = "PRICE_ABOVE_MAX"  # -4016 (as Binance: above the multiplier cap)
    PRICE_ABOVE_MULTIPLIER = "PRICE_ABOVE_MULTIPLIER"  # -4016 (detail: the cap)
    PRICE_BELOW_MULTIPLIER = "PRICE_BELOW_MULTIPLIER"  # -4024 (detail: the floor)
    QTY_NOT_STEP = "QTY_NOT_STEP"  # -4023
    MIN_NOTIONAL = "MIN_NOTIONAL"  # -4164 (detail: the minimum)
    INVALID_CLIENT_ORDER_ID = "INVALID_CLIENT_ORDER_ID"  # -4015
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"  # -4116
    POSITION_SIDE_MISMATCH = "POSITION_SIDE_MISMATCH"  # -4061
    REDUCE_ONLY_REJECTED = "REDUCE_ONLY_REJECTED"  # -2022
    MARGIN_INSUFFICIENT = "MARGIN_INSUFFICIENT"  # -2019
    MAX_POSITION_EXCEEDED = "MAX_POSITION_EXCEEDED"  # -2027
    TOO_MANY_OPEN_ORDERS = "TOO_MANY_OPEN_ORDERS"  # -2025
    FOK_REJECTED = "FOK_REJECTED"  # -5021
    GTX_REJECTED = "GTX_REJECTED"  # -5022
    UNKNOWN_ORDER_CANCEL = "UNKNOWN_ORDER_CANCEL"  # -2011
    NO_SUCH_ORDER = "NO_SUCH_ORDER"  # -2013
    INVALID_LEVERAGE = "INVALID_LEVERAGE"  # -4028 (detail: the leverage)
    LEVERAGE_TOO_HIGH_FOR_POSITION = "LEVERAGE_TOO_HIGH_FOR_POSITION"  # -2027
    NO_NEED_TO_CHANGE_POSITION_SIDE = "NO_NEED_TO_CHANGE_POSITION_SIDE"  # -4059
    POSITION_SIDE_CHANGE_OPEN_ORDERS = "POSITION_SIDE_CHANGE_OPEN_ORDERS"  # -4067
    POSITION_SIDE_CHANGE_POSITION = "POSITION_SIDE_CHANGE_POSITION"  # -4068
    INVALID_SIDE = "INVALID_SIDE"  # -1117
    INVALID_PARAMETER = "INVALID_PARAMETER"  # -1130 (detail: the parameter)
    NO_NEED_TO_MODIFY = "NO_NEED_TO_MODIFY"  # -5027
    INVALID_PRICE_MATCH = "INVALID_PRICE_MATCH"  # -5037
    INVALID_SELF_TRADE_PREVENTION_MODE = "INVALID_SELF_TRADE_PREVENTION_MODE"  # -5039
    INVALID_GOOD_TILL_DATE = "INVALID_GOOD_TILL_DATE"  # -5040


class TradingRefused(LedgerError):
    """A trading rule refused the request; nothing is written. ``detail`` fills the message."""

    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(f"{reason.value}{': ' + detail if detail else ''}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Order:
    """One UM order as Binance reports it. ``price`` is 0 for MARKET orders; ``avg_price`` is 0
    until something filled. ``good_till_date_ms`` is when a GTD order expires (ms, whole
    seconds; 0 for any other time in force); ``self_trade_prevention_mode`` one of
    :data:`SELF_TRADE_PREVENTION_MODES`, as sent (a self-trade cannot happen here:
    docs/semantics.md, "The sandbox's choices")."""

    order_id: int
    account_id: int
    symbol: str
    client_order_id: str
    side: Side
    position_side: PositionSide
    type: OrderType
    time_in_force: TimeInForce
    orig_qty: Decimal
    price: Decimal
    reduce_only: bool
    status: OrderStatus
    executed_qty: Decimal
    cum_quote: Decimal
    avg_price: Decimal
    time_ms: int
    update_time_ms: int
    good_till_date_ms: int = 0
    self_trade_prevention_mode: str = "NONE"
    #: Amendments it took (Modify UM Order); one more than MAX_ORDER_MODIFICATIONS - 1 cancels it.
    modify_count: int = 0

    def progressed(
        self,
        status: OrderStatus,
        executed_qty: Decimal,
        cum_quote: Decimal,
        avg_price: Decimal,
        update_time_ms: int,
    ) -> Order:
        """This order with new fill figures and status (``dataclasses.replace`` without its
        per-call introspection: fills make one per trade)."""
        return Order(
            self.order_id,
            self.account_id,
            self.symbol,
            self.client_order_id,
            self.side,
            self.position_side,
            self.type,
            self.time_in_force,
            self.orig_qty,
            self.price,
            self.reduce_only,
            status,
            executed_qty,
            cum_quote,
            avg_price,
            self.time_ms,
            update_time_ms,
            self.good_till_date_ms,
            self.self_trade_prevention_mode,
            self.modify_count,
        )


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill of one order (``GET /papi/v1/um/userTrades``). ``commission`` is the positive
    amount charged (the wire shows it as Binance does)."""

    trade_id: int
    account_id: int
    order_id: int
    symbol: str
    side: Side
    position_side: PositionSide
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    commission_asset: str
    maker: bool
    time_ms: int

    @property
    def buyer(self) -> bool:
        return self.side is Side.BUY


@dataclass(frozen=True, slots=True)
class Position:
    """One position of one account. ``amount`` is signed (negative = short), as Binance's
    ``positionAmt``; in hedge mode a LONG row is never negative and a SHORT row never positive.
    ``open_fee`` is the commission paid to open what is still open (for the break-even price);
    ``accumulated_realized`` the realized PnL of every fill on the row, before fees (Binance's
    ``cr`` in ACCOUNT_UPDATE; docs/semantics.md, "The sandbox's choices")."""

    account_id: int
    symbol: str
    position_side: PositionSide
    amount: Decimal
    entry_price: Decimal
    open_fee: Decimal
    update_time_ms: int
    accumulated_realized: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.amount != 0


@dataclass(frozen=True, slots=True)
class TradingSettings:
    """Per-account UM settings: position mode, commission rates and leverage per symbol
    (a symbol not listed trades at :data:`papi_sandbox.market.symbols.DEFAULT_LEVERAGE`)."""

    dual_side: bool = False
    maker_rate: Decimal = Decimal("0.0002")  # Binance VIP 0 UM maker
    taker_rate: Decimal = Decimal("0.0005")  # Binance VIP 0 UM taker
    leverage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of an order or trade history: ascending from the id ``from_id`` when given,
    else the most recent ``limit`` rows in ``[start_ms, end_ms]`` (either bound optional; the
    endpoint applies Binance's rules for the window); the store caps ``limit`` at 1000."""

    from_id: int | None
    start_ms: int | None
    end_ms: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class IncomePage:
    """One page of the income history: rows in ``[start_ms, end_ms]`` of ``symbol`` and of
    ``income_type`` (None: any), oldest first, ``limit`` of them (capped at 1000) after skipping
    ``offset``."""

    symbol: str | None
    income_type: str | None
    start_ms: int
    end_ms: int
    limit: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Booking:
    """One journal entry a trading commit appends, with what the income history shows of it."""

    type: str  # EntryType: COMMISSION, REALIZED_PNL or FUNDING_FEE
    postings: tuple[Posting, ...]
    symbol: str
    asset: str
    income: Decimal  # the account's UM posting
    trade_id: int | None = None
    #: The position as the fill left it (None for funding: Binance pushes no P for it).
    position: Position | None = None


@dataclass(slots=True)
class TradingCommit:
    """What one trading operation writes in one transaction: journal entries, and the order,
    trade and position rows (upserts by id / by (account, symbol, positionSide)). Built by the
    pure rules in :mod:`papi_sandbox.trading.engine`; the store writes it whole or not at all, so
    each commit can be published as stream events (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE)."""

    bookings: list[Booking] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    #: The order this commit places, as accepted (status NEW, nothing filled): its stream
    #: reports NEW before what happened to it next. None when the commit places none.
    placed: Order | None = None
    #: The order this commit amends (PUT /papi/v1/um/order), with its new price and quantity
    #: and nothing more filled: its stream reports AMENDMENT first. None when it amends none.
    amended: Order | None = None

    @property
    def empty(self) -> bool:
        return not (self.bookings or self.orders or self.trades or self.positions)


class Execution(StrEnum):
    """Binance's execution types (``x`` of ``ORDER_TRADE_UPDATE``) the sandbox produces."""

    NEW = "NEW"
    TRADE = "TRADE"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    AMENDMENT = "AMENDMENT"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One execution of one order, as committed: what one ``ORDER_TRADE_UPDATE`` reports.
    ``order`` is the order as it stood right after this execution; ``trade`` the fill of a
    TRADE (None otherwise); amounts are exact decimals. Built by
    :func:`papi_sandbox.trading.engine.order_updates` inside the commit's transaction and handed
    to the stream only after it committed."""

    execution: Execution
    order: Order
    trade: Trade | None = None
    #: Binance's ``b`` and ``a``: the notional (price × quantity left) of the account's open
    #: BUY and SELL orders on the symbol once the commit is applied.
    bids_notional: Decimal = ZERO
    asks_notional: Decimal = ZERO

    @property
    def account_id(self) -> int:
        """The account whose stream reports the execution."""
        return self.order.account_id


@dataclass(frozen=True, slots=True)
class PositionReport:
    """A position as a trading commit left it, with what values it on the stream: the mark
    price of the commit and the account's taker rate (``up`` and ``bep`` of ACCOUNT_UPDATE's
    ``P``, by :mod:`papi_sandbox.trading.positions`)."""

    position: Position
    mark_price: Decimal
    taker_rate: Decimal


@dataclass(frozen=True, slots=True)
class TradedEntry(CommittedEntry):
    """A trading fill's journal entry as committed, with the positions the fill changed (its
    ACCOUNT_UPDATE's ``P``)."""

    positions: tuple[PositionReport, ...] = ()


#: What a store announces once a transaction is durable, in commit order: each journal entry
#: (a :class:`TradedEntry` for a fill's), and each order execution (docs/design.md, "The event
#: hub").
Announcement = CommittedEntry | OrderUpdate
