"""Mark and index prices, funding rates and the funding clock of each symbol (pure).

The operator sets them (``PUT /admin/v1/markets/{symbol}/price``), or the optional feed
(:mod:`papi_sandbox.market.feed`) moves them. Funding happens at 00:00, 08:00 and 16:00 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox.market.config import FUNDING_HOURS_UTC

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class MarketPrice:
    """One symbol's prices: ``markPrice``, ``indexPrice``, ``lastFundingRate`` and when they
    last changed (ms)."""

    symbol: str
    mark_price: Decimal
    index_price: Decimal
    funding_rate: Decimal
    update_time_ms: int


def next_funding_time(time_ms: int) -> int:
    """Binance's ``nextFundingTime``: the first funding slot strictly after ``time_ms``."""
    day = time_ms - time_ms % DAY_MS
    for hour in FUNDING_HOURS_UTC:
        slot = day + hour * HOUR_MS
        if slot > time_ms:
            return slot
    return day + DAY_MS + FUNDING_HOURS_UTC[0] * HOUR_MS
