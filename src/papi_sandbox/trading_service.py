"""UM trading operations, shared by the public API, the operator API, the CLI and the
dashboard: typed arguments in, domain objects or :class:`TradingRefused` out. No HTTP here.

Each operation is one store unit of work (papi_sandbox/store/trading.py) around a pure rule
(papi_sandbox/trading/engine.py). A price change is one unit for the price, then one unit per
batch of accounts whose resting orders it crosses (each account atomic), all done before the
call returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox.ledger.account import AccountSummary
from papi_sandbox.ledger.model import CommittedEntry, EntryType
from papi_sandbox.market.prices import MarketPrice
from papi_sandbox.market.state import Market
from papi_sandbox.store import trading as trading_store
from papi_sandbox.store.contract import Store
from papi_sandbox.trading.engine import Amendment
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.margin import MarginSummary, summarize
from papi_sandbox.trading.model import (
    Announcement,
    HistoryPage,
    IncomePage,
    Order,
    OrderUpdate,
    Position,
    Refusal,
    Trade,
    TradingRefused,
    TradingSettings,
)

#: Accounts whose crossed orders one write transaction fills after a price change (read at once,
#: planned in memory, written together: store/trading.fill_crossed): bounds the time one
#: transaction holds the writer whatever the number of accounts.
FILL_BATCH_ACCOUNTS = 200
#: Journal entry types that only trading books (an account with one may hold a position).
TRADING_ENTRY_TYPES = frozenset(
    {EntryType.COMMISSION, EntryType.REALIZED_PNL, EntryType.FUNDING_FEE}
)
#: Highest commission rate the operator may set (1 %: Binance's are hundredths of that).
MAX_COMMISSION_RATE = Decimal("0.01")
#: How often (s) a server expires the GTD orders whose goodTillDate has come (Binance keeps
#: goodTillDate to the second): an order expires at most this long after it.
GTD_EXPIRY_INTERVAL_S = 1.0

log = logging.getLogger("papi_sandbox.trading")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class PriceChange:
    """The result of a price change: the new prices, the accounts whose orders filled, fills."""

    price: MarketPrice
    accounts: int
    fills: int


@dataclass(frozen=True, slots=True)
class UmAccount:
    """One account's UM view: settings, positions, open orders and the margin figures."""

    settings: TradingSettings
    positions: list[Position]
    open_orders: list[Order]
    margin: MarginSummary


class Trading:
    """The UM trading operations over one store and the configured market."""

    def __init__(self, store: Store, market: Market) -> None:
        self.store = store
        self.market = market
        #: Accounts that may hold a UM position: those with one at start, and every account a
        #: trading entry was committed for since (by any process sharing the ledger, on
        #: PostgreSQL). Others have no unrealized PnL, so their balance reads skip positions.
        #: None until :meth:`open` and while it is read again (then every account is read).
        self._may_hold: set[int] | None = None
        #: While it is read: the accounts commits noted meanwhile (added to it when read).
        self._noted: set[int] | None = None
        #: The running re-read after lost announcements (one at a time: a newer one replaces it).
        self._rescan: asyncio.Task[None] | None = None

    @property
    def _specs(self):  # type: ignore[no-untyped-def]
        return self.market.specs

    @property
    def _collateral(self):  # type: ignore[no-untyped-def]
        return self.market.config.collateral_rates

    async def open(self) -> None:
        """Record the configured starting prices of symbols the ledger has no prices for, and
        note the accounts holding a position."""
        await self.store.write(trading_store.ensure_markets, self.market.initial_prices())
        await self.prices()
        await self._find_holders()

    async def _find_holders(self) -> None:
        """Read which accounts hold a position. Until it is done every account may hold one
        (``_may_hold`` None: each read looks); what commits meanwhile is noted in
        ``_noted`` and kept."""
        noted: set[int] = set()
        self._may_hold = None
        self._noted = noted
        holders: set[int] = set()
        after = 0
        while batch := await self.store.read(trading_store.funding_candidates, after, 5000):
            holders.update(batch)
            after = batch[-1]
        # The store's thread may note an account at any moment: each set op here is atomic,
        # and notes reach both sets until _noted is gone, so none is missed.
        self._may_hold = holders
        holders.update(noted)
        self._noted = None
        holders.update(noted)

    def announcements_lost(self) -> None:
        """A store listener (``on_announcements_lost``): fills of other processes may not have
        been noted, so which accounts hold a position is read again; meanwhile every read
        looks. On the event loop. A re-read still running is cancelled: two would hand notes
        to each other's sets and lose some."""
        if self._rescan is not None:
            self._rescan.cancel()
        self._rescan = asyncio.get_running_loop().create_task(self._find_holders())

    def note_commits(self, committed: list[Announcement], marks: Sequence[int] = ()) -> None:
        """A store commit listener: an account with a fill (a TRADE execution; a fill at a zero
        commission rate books no entry) or a trading entry may now hold a position. Called on
        the store's thread; a set add is atomic."""
        holders: set[int] = set()
        for c in committed:
            if isinstance(c, OrderUpdate):
                if c.trade is not None:
                    holders.add(c.order.account_id)
            elif isinstance(c, CommittedEntry) and c.entry.type in TRADING_ENTRY_TYPES:
                holders.add(c.entry.account_id)
        self._note_holders(holders)

    def _note_holders(self, account_ids: Iterable[int]) -> None:
        """Accounts this process's own fills reached may now hold a position, noted when the
        write returns: the commit listener learns of them later on PostgreSQL (NOTIFY, on the
        event loop), and not at all while its connection is being re-made."""
        for noted in (self._may_hold, self._noted):
            if noted is not None:
                noted.update(account_ids)

    async def prices(self) -> Market:
        """The market with the ledger's current prices (every process reads the same ones)."""
        self.market.update((await self.store.read(trading_store.load_prices)).values())
        return self.market

    # -- orders ------------------------------------------------------------------------------

    async def place_order(
        self, account_id: int, request: OrderRequest
    ) -> tuple[Order, list[Trade]]:
        item = trading_store.NewOrder(account_id, request, self._specs, self._collateral, now_ms())
        placed: tuple[Order, list[Trade]] = await self.store.write_grouped(
            trading_store.place_orders, item
        )
        if placed[1]:
            self._note_holders([account_id])
        return placed

    async def cancel_order(
        self, account_id: int, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> Order:
        self._require_symbol(symbol)
        return await self.store.write(
            trading_store.cancel, account_id, symbol, order_id, client_order_id, now_ms()
        )

    async def modify_order(
        self, account_id: int, amendment: Amendment
    ) -> tuple[Order, list[Trade]]:
        """Amend an open LIMIT order's price and quantity (Binance's Modify UM Order)."""
        self._require_symbol(amendment.symbol)
        modified: tuple[Order, list[Trade]] = await self.store.write(
            trading_store.modify,
            account_id,
            amendment,
            self._specs,
            self._collateral,
            now_ms(),
        )
        if modified[1]:
            self._note_holders([account_id])
        return modified

    async def cancel_all(self, account_id: int, symbol: str) -> list[Order]:
        self._require_symbol(symbol)
        return await self.store.write(trading_store.cancel_all, account_id, symbol, now_ms())

    async def order(
        self, account_id: int, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> Order:
        """One order by id or client id; TradingRefused(NO_SUCH_ORDER) when unknown."""
        self._require_symbol(symbol)
        found = await self.store.read(
            trading_store.find_order, account_id, symbol, order_id, client_order_id
        )
        if found is None:
            raise TradingRefused(Refusal.NO_SUCH_ORDER)
        return found

    async def open_orders(self, account_id: int, symbol: str | None) -> list[Order]:
        if symbol is not None:
            self._require_symbol(symbol)
        return await self.store.read(trading_store.open_orders, account_id, symbol)

    async def all_orders(self, account_id: int, symbol: str, page: HistoryPage) -> list[Order]:
        self._require_symbol(symbol)
        return await self.store.read(trading_store.all_orders, account_id, symbol, page)

    async def trades(self, account_id: int, symbol: str, page: HistoryPage) -> list[Trade]:
        self._require_symbol(symbol)
        return await self.store.read(trading_store.user_trades, account_id, symbol, page)

    async def income(
        self, account_id: int, page: IncomePage
    ) -> list[tuple[int, str, str, str, Decimal, int | None, int]]:
        return await self.store.read(trading_store.income, account_id, page)

    # -- settings ----------------------------------------------------------------------------

    async def settings(self, account_id: int) -> TradingSettings:
        return await self.store.read(trading_store.load_settings, account_id)

    async def set_leverage(self, account_id: int, symbol: str, leverage: int) -> None:
        self._require_symbol(symbol)
        await self.store.write(
            trading_store.set_leverage, account_id, symbol, leverage, self._specs, self._collateral
        )

    async def set_position_mode(self, account_id: int, dual_side: bool) -> None:
        await self.store.write(trading_store.set_position_mode, account_id, dual_side)

    async def set_commission(self, account_id: int, maker: Decimal, taker: Decimal) -> None:
        """Raises ValueError for a rate outside 0..MAX_COMMISSION_RATE."""
        for rate in (maker, taker):
            if not 0 <= rate <= MAX_COMMISSION_RATE:
                raise ValueError(f"a commission rate must be from 0 to {MAX_COMMISSION_RATE}")
        await self.store.write(trading_store.set_commission, account_id, maker, taker)

    # -- figures -----------------------------------------------------------------------------

    async def account(self, account_id: int) -> UmAccount:
        """Settings, positions, open orders and margin figures from real positions and prices."""
        market = await self.prices()
        balances = await self.store.balances(account_id)
        settings, positions, orders = await self.store.read(trading_store.account_state, account_id)
        margin = summarize(balances, positions, orders, settings, market.view())
        return UmAccount(settings, positions, orders, margin)

    async def account_summary(self, account_id: int) -> AccountSummary:
        """The account object of ``GET /papi/v1/account`` (docs/semantics.md, "Margin")."""
        view = await self.account(account_id)
        balances = await self.store.balances(account_id)
        m = view.margin
        return AccountSummary(
            uni_mmr=m.uni_mmr,
            account_equity=m.account_equity,
            actual_equity=m.actual_equity,
            initial_margin=m.initial_margin,
            maint_margin=m.maint_margin,
            status=m.status,
            virtual_max_withdraw=m.virtual_max_withdraw,
            total_available=m.total_available,
            margin_open_loss=Decimal(0),
            update_time_ms=max(balances.updated_ms.values(), default=0),
        )

    async def unrealized(self, account_id: int) -> dict[str, Decimal]:
        """UM unrealized PnL per margin asset (empty without open positions)."""
        if self._may_hold is not None and account_id not in self._may_hold:
            return {}
        positions = [
            p for p in await self.store.read(trading_store.load_positions, account_id) if p.amount
        ]
        if not positions:
            return {}
        market = await self.prices()
        settings = TradingSettings()
        from papi_sandbox.ledger.model import AccountBalances

        margin = summarize(AccountBalances(), positions, [], settings, market.view())
        return {asset: m.unrealized_pnl for asset, m in margin.assets.items()}

    # -- the operator's market ---------------------------------------------------------------

    def _require_symbol(self, symbol: str) -> None:
        if symbol not in self.market.specs:
            raise TradingRefused(Refusal.INVALID_SYMBOL)

    async def set_price(
        self, symbol: str, mark: Decimal, index: Decimal | None = None
    ) -> PriceChange:
        """Set the mark (and index, default the mark) price, then fill every resting order the
        new mark crosses, account by account, before returning."""
        self._require_symbol(symbol)
        if mark <= 0 or (index is not None and index <= 0):
            raise ValueError("prices must be greater than 0")
        price = await self.store.write(
            trading_store.set_price,
            symbol,
            mark,
            index if index is not None else mark,
            None,
            now_ms(),
        )
        self.market.update([price])
        return await self._fill_crossed(price)

    async def _fill_crossed(self, price: MarketPrice) -> PriceChange:
        accounts = await self.store.read(
            trading_store.crossed_accounts, price.symbol, price.mark_price
        )
        fills = 0
        for start in range(0, len(accounts), FILL_BATCH_ACCOUNTS):
            fills += await self.store.write(
                trading_store.fill_crossed,
                accounts[start : start + FILL_BATCH_ACCOUNTS],
                price.symbol,
                self._specs,
                self._collateral,
                now_ms(),
            )
        self._note_holders(accounts)
        return PriceChange(price, len(accounts), fills)

    async def expire_orders(self, as_of_ms: int | None = None) -> int:
        """Binance's GTD expiry: every open GTD order whose goodTillDate is at or before
        ``as_of_ms`` (default now; a later time is how an operator makes time pass, as
        funding's ``asOf`` does) expires, :data:`FILL_BATCH_ACCOUNTS` accounts per
        transaction (each account atomic), all before returning. Returns how many expired."""
        now = now_ms()
        as_of = now if as_of_ms is None else as_of_ms
        expired, after = 0, 0
        while accounts := await self.store.read(
            trading_store.expiring_accounts, as_of, after, FILL_BATCH_ACCOUNTS
        ):
            expired += await self.store.write(trading_store.expire_due, accounts, as_of, now)
            after = accounts[-1]
        return expired

    async def run_expiry(
        self,
        interval_s: float = GTD_EXPIRY_INTERVAL_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Forever (a server's background task; cancel to stop): every ``interval_s``, expire
        the GTD orders due now (:meth:`expire_orders`). A failed pass is logged and the next
        one tries again. Processes sharing a PostgreSQL ledger may all run it: each account
        is locked and re-read, so an order expires once."""
        while True:
            await sleep(interval_s)
            try:
                await self.expire_orders()
            except Exception:
                log.warning("GTD expiry failed; trying again", exc_info=True)

    async def set_funding_rate(self, symbol: str, rate: Decimal) -> MarketPrice:
        """Raises ValueError for a rate outside -1..1."""
        self._require_symbol(symbol)
        if not -1 <= rate <= 1:
            raise ValueError("fundingRate must be from -1 to 1")
        price = await self.store.write(trading_store.set_price, symbol, None, None, rate, now_ms())
        self.market.update([price])
        return price

    async def positions(self, account_id: int) -> UmAccount:
        return await self.account(account_id)
