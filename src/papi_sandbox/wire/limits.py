"""IP request weight per calendar minute, as Binance counts it.

Each endpoint has a weight; an IP may spend ``limit_per_minute`` per calendar minute (UTC). A
request that would pass the limit is refused with 429 and costs nothing, so the weight an IP has
used never exceeds the limit and a refused request changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: PAPI's published IP weight limit per minute.
DEFAULT_WEIGHT_LIMIT_PER_MINUTE = 6000
#: Most distinct IPs tracked in one minute; past it the table is cleared (and the oldest minute's
#: counts lost) rather than grow without bound under a spoofed-source flood.
MAX_TRACKED_IPS = 1_000_000


@dataclass(frozen=True, slots=True)
class WeightDecision:
    allowed: bool
    used: int  # weight used by this IP this minute, after this request if allowed
    retry_after_s: int  # seconds until the minute ends (meaningful when refused)
    banned_until_ms: int | None = None  # set when refused because the IP is banned (418)


class Limiter(Protocol):
    """Counts IP weight; in-process here, shared through Redis across processes elsewhere."""

    limit_per_minute: int

    async def spend(self, ip: str, weight: int) -> WeightDecision: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class WeightLimiter:
    def __init__(self, limit_per_minute: int, clock_ms: Callable[[], int] = _now_ms) -> None:
        self.limit_per_minute = limit_per_minute  # 0 = unlimited (load tests)
        self._clock_ms = clock_ms
        self._minute = -1
        self._used: dict[str, int] = {}

    def _roll(self, now_ms: int) -> int:
        minute = now_ms // 60_000
        if minute != self._minute or len(self._used) >= MAX_TRACKED_IPS:
            self._minute = minute
            self._used = {}
        return minute

    async def spend(self, ip: str, weight: int) -> WeightDecision:
        return self.spend_now(ip, weight)

    def spend_now(self, ip: str, weight: int) -> WeightDecision:
        now = self._clock_ms()
        minute = self._roll(now)
        used = self._used.get(ip, 0)
        retry_after_s = -(-((minute + 1) * 60_000 - now) // 1000)  # ceiling
        if self.limit_per_minute and used + weight > self.limit_per_minute:
            return WeightDecision(False, used, retry_after_s)
        used += weight
        self._used[ip] = used
        return WeightDecision(True, used, retry_after_s)

    def used(self, ip: str) -> int:
        self._roll(self._clock_ms())
        return self._used.get(ip, 0)
