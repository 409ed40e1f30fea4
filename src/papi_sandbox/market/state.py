"""The market as one process sees it: the configured symbols and the current prices.

Prices live in the store (so every process and every restart agrees); this object holds the
configuration and the latest prices this process read or wrote, which the public market-data
endpoints answer from.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from papi_sandbox.market.config import MarketConfig
from papi_sandbox.market.prices import MarketPrice
from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.trading.margin import MarketView


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Market:
    """Symbols (fixed by configuration) and their latest prices."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = config or MarketConfig()
        self.specs: dict[str, SymbolSpec] = {s.symbol: s for s in self.config.symbols}
        now = _now_ms()
        self.prices: dict[str, MarketPrice] = {
            symbol: MarketPrice(
                symbol,
                self.config.initial_marks[symbol],
                self.config.initial_marks[symbol],
                self.config.funding_rate(symbol),
                now,
            )
            for symbol in self.specs
        }

    def initial_prices(self) -> list[MarketPrice]:
        """Each symbol's configured starting prices (what the store records on first start)."""
        return list(self.prices.values())

    def update(self, prices: Iterable[MarketPrice]) -> None:
        """Adopt prices read from or written to the store (symbols not configured are ignored)."""
        for price in prices:
            if price.symbol in self.specs:
                self.prices[price.symbol] = price

    def view(self) -> MarketView:
        return MarketView(self.specs, dict(self.prices), self.config.collateral_rates)

    def spec(self, symbol: str) -> SymbolSpec | None:
        return self.specs.get(symbol)

    def assets(self) -> list[str]:
        return self.config.assets()
