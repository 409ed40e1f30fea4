"""IP request weight per calendar minute, as Binance counts it.

Each endpoint has a weight; an IP may spend ``limit_per_minute`` per calendar minute (UTC). A
request that would pass the limit is refused with 429 and costs nothing, so the weight an IP has
used never exceeds the limit and a refused request changes nothing.

Bans (the same rules hold for every Limiter implementation, in-process or shared):
- An IP refused with 429 more than ``ban_after_429s`` times (default 10) within one calendar
  minute is banned from that moment: the refusal that passes the count is still answered 429, the
  requests after it 418.
- The ban lasts ``min(2 minutes x 4^(n-1), 3 days)``, n = the bans this IP earned within the last
  3 days, this one included: 2 m, 8 m, 32 m, 2 h 8 m, 8 h 32 m, 34 h 8 m, then 3 days.
- While banned, every request is refused with 418 before anything else is done; it costs no
  weight and is not counted as a 429.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from papi_sandbox.wire.account_limits import AccountCall, AccountLimiter

#: PAPI's published IP weight limit per minute.
DEFAULT_WEIGHT_LIMIT_PER_MINUTE = 6000
#: Most distinct IPs tracked in one minute; past it the table is cleared (and the oldest minute's
#: counts lost) rather than grow without bound under a spoofed-source flood.
MAX_TRACKED_IPS = 1_000_000
#: 429 refusals within one calendar minute an IP may collect; one more and it is banned.
DEFAULT_BAN_AFTER_429S = 10
#: The first ban's length; each further ban within BAN_MEMORY_MS lasts BAN_GROWTH times longer.
BAN_BASE_MS = 2 * 60_000
BAN_GROWTH = 4
#: The longest ban, and how long an earned ban counts toward the next one's length.
BAN_MAX_MS = 3 * 24 * 3_600_000
BAN_MEMORY_MS = 3 * 24 * 3_600_000
#: Most IPs with a ban record kept; past it, records that no longer matter are dropped first,
#: then the ones whose ban ends soonest.
MAX_BANNED_IPS = 100_000


def ban_duration_ms(bans_in_memory: int) -> int:
    """Length of a ban that is the IP's ``bans_in_memory``-th within BAN_MEMORY_MS (>= 1)."""
    exponent = min(bans_in_memory - 1, 16)  # 4^16 x 2 min is far past the cap already
    duration_ms: int = BAN_BASE_MS * BAN_GROWTH**exponent
    return min(duration_ms, BAN_MAX_MS)


@dataclass(slots=True)  # not frozen: built on every request, and a frozen __init__ costs more
class WeightDecision:
    allowed: bool
    used: int  # weight used by this IP this minute, after this request if allowed
    retry_after_s: int  # seconds until the minute ends (meaningful when refused)
    banned_until_ms: int | None = None  # set when refused because the IP is banned (418)
    #: Set when the IP weight allowed the request but the account's rolling limit refused it:
    #: seconds until the account's oldest counted call leaves the window.
    account_retry_after_s: int | None = None


class Limiter(Protocol):
    """Counts IP weight; in-process here, shared through Redis across processes elsewhere."""

    limit_per_minute: int

    async def spend(
        self, ip: str, weight: int, account: AccountCall | None = None
    ) -> WeightDecision:
        """Spend ``weight`` for ``ip`` and, when the weight allows it and ``account`` is given,
        count the account's call against its rolling limit, in one atomic step."""
        ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ceil_s(ms: int) -> int:
    return -(-ms // 1000)


class WeightLimiter:
    def __init__(
        self,
        limit_per_minute: int,
        clock_ms: Callable[[], int] = _now_ms,
        *,
        ban_after_429s: int = DEFAULT_BAN_AFTER_429S,
    ) -> None:
        self.limit_per_minute = limit_per_minute  # 0 = unlimited (load tests)
        self.ban_after_429s = ban_after_429s  # 0 = never ban
        self._clock_ms = clock_ms
        self._minute = -1
        self._used: dict[str, int] = {}
        self._refused: dict[str, int] = {}  # 429s this minute
        # ip -> (banned until ms, start times of the bans earned within BAN_MEMORY_MS)
        self._bans: dict[str, tuple[int, tuple[int, ...]]] = {}
        #: Per-account rolling limits, decided in the same step as the weight.
        self.accounts = AccountLimiter()

    def _roll(self, now_ms: int) -> int:
        minute = now_ms // 60_000
        if minute != self._minute or len(self._used) >= MAX_TRACKED_IPS:
            self._minute = minute
            self._used = {}
            self._refused = {}
        return minute

    async def spend(
        self, ip: str, weight: int, account: AccountCall | None = None
    ) -> WeightDecision:
        return self.spend_now(ip, weight, account)

    def spend_now(self, ip: str, weight: int, account: AccountCall | None = None) -> WeightDecision:
        now = self._clock_ms()
        minute = self._roll(now)
        used = self._used.get(ip, 0)
        ban = self._bans.get(ip)
        if ban is not None and now < ban[0]:
            return WeightDecision(False, used, _ceil_s(ban[0] - now), ban[0])
        retry_after_s = _ceil_s((minute + 1) * 60_000 - now)
        if self.limit_per_minute and used + weight > self.limit_per_minute:
            refused = self._refused.get(ip, 0) + 1
            self._refused[ip] = refused
            if self.ban_after_429s and refused > self.ban_after_429s:
                self._ban(ip, now)
            return WeightDecision(False, used, retry_after_s)
        used += weight
        self._used[ip] = used
        if account is not None:
            refused_s = self.accounts.try_admit(account)
            if refused_s is not None:
                return WeightDecision(True, used, retry_after_s, None, refused_s)
        return WeightDecision(True, used, retry_after_s)

    def _ban(self, ip: str, now: int) -> None:
        previous = self._bans.get(ip)
        history = tuple(t for t in (previous[1] if previous else ()) if now - t < BAN_MEMORY_MS)
        history += (now,)
        if previous is None and len(self._bans) >= MAX_BANNED_IPS:
            self._evict(now)
        self._bans[ip] = (now + ban_duration_ms(len(history)), history)
        self._refused.pop(ip, None)  # the count that earned this ban is spent

    def _evict(self, now: int) -> None:
        self._bans = {
            ip: (until, history)
            for ip, (until, history) in self._bans.items()
            if until > now or (history and now - history[-1] < BAN_MEMORY_MS)
        }
        if len(self._bans) >= MAX_BANNED_IPS:
            soonest = sorted(self._bans, key=lambda ip: self._bans[ip][0])
            for ip in soonest[: len(self._bans) - MAX_BANNED_IPS + 1]:
                del self._bans[ip]

    def banned_until_ms(self, ip: str) -> int | None:
        ban = self._bans.get(ip)
        return ban[0] if ban is not None and self._clock_ms() < ban[0] else None

    def used(self, ip: str) -> int:
        self._roll(self._clock_ms())
        return self._used.get(ip, 0)


#: Most client IPs with failures counted in one minute; past it the minute's table is reset.
MAX_TRACKED_FAILING_IPS = 100_000


class FailureThrottle:
    """Failed attempts per client IP per calendar minute (UTC), e.g. operator authentications:
    after ``limit`` failures an IP is refused, whatever it sends, until the minute ends
    (docs/security.md). Counts what it did for the metrics. Event loop only."""

    def __init__(self, limit: int, clock_ms: Callable[[], int] = _now_ms) -> None:
        self.limit = limit
        self._clock_ms = clock_ms
        self._minute = -1
        self._failures: dict[str, int] = {}
        #: Failed attempts counted, and attempts refused because the IP had too many.
        self.failures_total = 0
        self.refused_total = 0

    def _roll(self) -> tuple[int, int]:
        now = self._clock_ms()
        minute = now // 60_000
        if minute != self._minute or len(self._failures) >= MAX_TRACKED_FAILING_IPS:
            self._minute = minute
            self._failures = {}
        return now, minute

    def refuse(self, ip: str) -> int | None:
        """Seconds until ``ip`` may try again (the attempt is counted as refused), or None."""
        now, minute = self._roll()
        if self._failures.get(ip, 0) < self.limit:
            return None
        self.refused_total += 1
        return _ceil_s((minute + 1) * 60_000 - now)

    def fail(self, ip: str) -> None:
        """Count one failed attempt of ``ip``."""
        self._roll()
        self._failures[ip] = self._failures.get(ip, 0) + 1
        self.failures_total += 1
