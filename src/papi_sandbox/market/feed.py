"""The optional price feed (``[market.feed]``, off by default): moves mark and index prices by
itself, either replaying a CSV of ``time,price`` lines (time in ms from the feed's start; the
file loops) or as a seeded random walk (the same seed gives the same path). Each tick goes
through the same operation as the operator's price change, so crossed orders fill.

The path is pure (:func:`random_walk`, :func:`read_replay`); :func:`run_feed` is the asyncio
task ``serve`` starts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path

from papi_sandbox import grammar, money
from papi_sandbox.market.config import FeedConfig, MarketConfigError
from papi_sandbox.market.symbols import SymbolSpec

log = logging.getLogger("papi_sandbox.market.feed")

#: Most lines a replay file may hold (the whole file is read once).
MAX_REPLAY_LINES = 1_000_000
#: Steps of the random walk's uniform draw: a move is step × k / RESOLUTION, |k| ≤ RESOLUTION.
RESOLUTION = 1000


def random_walk(start: Decimal, spec: SymbolSpec, step: Decimal, seed: int) -> Iterator[Decimal]:
    """Prices after ``start``: each moves by at most ``step`` (relative) from the previous one,
    on the symbol's tick, within its price filter. Integer draws only: no float touches a
    price."""
    rng = random.Random(seed)
    price = start
    while True:
        k = rng.randint(-RESOLUTION, RESOLUTION)
        moved = price + price * step * k / RESOLUTION
        moved = (moved / spec.tick_size).to_integral_value() * spec.tick_size
        price = min(max(moved, spec.min_price), spec.max_price)
        yield price


def read_replay(path: Path) -> list[tuple[int, Decimal]]:
    """``(offset_ms, price)`` rows of a replay file: lines ``time,price`` (a header line and
    blank lines are skipped), times increasing. Raises MarketConfigError naming the line."""
    rows: list[tuple[int, Decimal]] = []
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise MarketConfigError(f"cannot read the replay file {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or (number == 1 and not grammar.is_integer(line[:1])):
            continue
        if len(rows) >= MAX_REPLAY_LINES:
            raise MarketConfigError(f"{path}: more than {MAX_REPLAY_LINES} lines")
        time_text, _, price_text = line.partition(",")
        if not grammar.is_integer(time_text):
            raise MarketConfigError(f"{path}:{number}: time must be ms (ASCII digits)")
        try:
            price = money.parse_amount(price_text.strip())
        except money.AmountError:
            raise MarketConfigError(f"{path}:{number}: '{price_text}' is not a price") from None
        if price <= 0 or (rows and int(time_text) < rows[-1][0]):
            raise MarketConfigError(f"{path}:{number}: prices > 0, times increasing")
        rows.append((int(time_text), price))
    if not rows:
        raise MarketConfigError(f"{path}: no prices")
    return rows


SetPrice = Callable[[str, Decimal], Awaitable[object]]


async def run_feed(
    feed: FeedConfig,
    specs: dict[str, SymbolSpec],
    current: Callable[[str], Decimal],
    set_price: SetPrice,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Forever: move each of the feed's symbols, then wait. Cancel to stop. A failed tick is
    logged and the feed goes on."""
    if feed.kind == "replay":
        assert feed.path is not None
        rows = read_replay(feed.path)
        span = rows[-1][0] + feed.interval_ms
        elapsed = 0
        while True:
            for offset, price in rows:
                await sleep(max(0, offset - elapsed) / 1000)
                elapsed = offset
                for symbol in feed.symbols:
                    await _tick(set_price, symbol, price)
            await sleep(max(0, span - elapsed) / 1000)
            elapsed = 0
    walks = {
        symbol: random_walk(current(symbol), specs[symbol], feed.step, feed.seed + index)
        for index, symbol in enumerate(feed.symbols)
    }
    while True:
        await sleep(feed.interval_ms / 1000)
        for symbol, walk in walks.items():
            await _tick(set_price, symbol, next(walk))


async def _tick(set_price: SetPrice, symbol: str, price: Decimal) -> None:
    try:
        await set_price(symbol, price)
    except Exception:  # the next tick may succeed (e.g. the store was briefly unavailable)
        log.exception("price feed tick for %s failed", symbol)
