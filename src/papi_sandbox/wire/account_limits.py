"""Per-account rolling limits some endpoints add on top of the IP weight (papi-wire.md, "Limits"):
BNB transfer 10 calls per rolling 10 minutes, fund auto-collection 500 per rolling hour.

A refused call answers HTTP 429 with code -1003 (TOO_MANY_REQUESTS, Binance's code for every
request-rate refusal) and a ``Retry-After`` header: the seconds until the oldest counted call
leaves the window. A refused call is not counted and changes nothing; an admitted call counts
whatever its outcome, as on Binance, where the limit is on calls, not on successes.

The counters live in this process (like :class:`~papi_sandbox.wire.limits.WeightLimiter`); several
processes behind one address would need a shared store for them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from papi_sandbox.wire import errors
from papi_sandbox.wire.errors import ApiError

#: Most (limit, account) counters kept; past it, counters whose window has passed are dropped.
#: Each holds at most `calls` timestamps, so memory is bounded by accounts active in a window.
MAX_TRACKED_COUNTERS = 100_000


@dataclass(frozen=True, slots=True)
class RollingLimit:
    name: str  # names the counter: endpoints sharing a name share it
    calls: int
    window_s: int

    def describe(self) -> str:
        minutes = self.window_s // 60
        span = f"{minutes} MINUTE" if minutes * 60 == self.window_s else f"{self.window_s} SECOND"
        return f"{self.calls} calls per rolling {span}"


#: The published per-account limits.
BNB_TRANSFER_LIMIT = RollingLimit("bnb-transfer", 10, 600)
AUTO_COLLECTION_LIMIT = RollingLimit("auto-collection", 500, 3600)


def account_limit_exceeded(limit: RollingLimit, retry_after_s: int) -> ApiError:
    return errors.account_rate_limited(
        f"Too many requests; current limit of this account is {limit.describe()} for {limit.name}.",
        retry_after_s,
    )


class AccountLimiter:
    def __init__(self, clock_s: Callable[[], float] = time.monotonic) -> None:
        self._clock_s = clock_s
        self._calls: dict[tuple[str, int], deque[float]] = {}

    def admit(self, limit: RollingLimit, account_id: int) -> None:
        """Count one call, or raise the 429 without counting it."""
        now = self._clock_s()
        key = (limit.name, account_id)
        calls = self._calls.get(key)
        if calls is None:
            if len(self._calls) >= MAX_TRACKED_COUNTERS:
                self._drop_idle(now)
            calls = self._calls[key] = deque(maxlen=limit.calls)
        while calls and calls[0] <= now - limit.window_s:
            calls.popleft()
        if len(calls) >= limit.calls:
            retry_after_s = max(1, math.ceil(calls[0] + limit.window_s - now))
            raise account_limit_exceeded(limit, retry_after_s)
        calls.append(now)

    def _drop_idle(self, now: float) -> None:
        # The longest window among the published limits: older counters can refuse nothing.
        horizon = now - max(BNB_TRANSFER_LIMIT.window_s, AUTO_COLLECTION_LIMIT.window_s)
        for key in [k for k, calls in self._calls.items() if not calls or calls[-1] <= horizon]:
            del self._calls[key]
