"""Per-account rolling limits some endpoints add on top of the IP weight (papi-wire.md, "Limits"):
BNB transfer 10 calls per rolling 10 minutes, fund auto-collection 500 per rolling hour.

A refused call answers HTTP 429 with code -1003 (TOO_MANY_REQUESTS, Binance's code for every
request-rate refusal) and a ``Retry-After`` header: the seconds until the oldest counted call
leaves the window. A refused call is not counted and changes nothing (it still spends its IP
weight, like every request the limits let through); an admitted call counts whatever its
outcome, as on Binance, where the limit is on calls, not on successes.

Where the counts live (docs/security.md, "Limits that hold across processes and restarts"):
- With ``--limits redis://...`` they are kept in Redis, decided by the same Lua script and in the
  same round trip as the IP weight (wire/limits_redis.py), so every process sees one count and a
  restart forgets nothing.
- Without Redis they live in this process (:class:`AccountLimiter`, decided in the same
  synchronous step as the in-process IP weight) and are re-derived from the journal at start
  (:func:`calls_from_journal`): every admitted call that moved money left an entry, so a restart
  does not reset an account's window. Calls that moved nothing (a transfer refused for balance,
  a collection with nothing to collect) are not in the journal and are forgotten by a restart.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
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


@dataclass(frozen=True, slots=True)
class AccountCall:
    """One call of ``account_id`` counted against ``limit``."""

    limit: RollingLimit
    account_id: int


#: Journal entry types each admitted call of a limit leaves when it moves money.
LIMIT_OF_ENTRY_TYPE = {
    "BNB_TRANSFER": BNB_TRANSFER_LIMIT,
    "AUTO_COLLECTION": AUTO_COLLECTION_LIMIT,
}
#: The longest window among the published limits (ms): older calls can refuse nothing.
LONGEST_WINDOW_MS = max(limit.window_s for limit in LIMIT_OF_ENTRY_TYPE.values()) * 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def calls_from_journal(rows: Iterable[tuple[str, int, int]]) -> list[tuple[AccountCall, int]]:
    """``(entry type, account id, time ms)`` rows of the journal as counted calls."""
    return [
        (AccountCall(LIMIT_OF_ENTRY_TYPE[entry_type], account_id), time_ms)
        for entry_type, account_id, time_ms in rows
        if entry_type in LIMIT_OF_ENTRY_TYPE
    ]


class AccountLimiter:
    """The in-process counts: per (limit, account), the times (ms, wall clock, so that calls
    re-derived from the journal line up) of the calls in the window. Event loop only."""

    def __init__(self, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._clock_ms = clock_ms
        self._calls: dict[tuple[str, int], deque[int]] = {}

    def try_admit(self, call: AccountCall) -> int | None:
        """Count the call and return None, or return the seconds until it could be admitted
        (nothing counted)."""
        limit = call.limit
        now = self._clock_ms()
        key = (limit.name, call.account_id)
        calls = self._calls.get(key)
        if calls is None:
            if len(self._calls) >= MAX_TRACKED_COUNTERS:
                self._drop_idle(now)
            calls = self._calls[key] = deque(maxlen=limit.calls)
        window_ms = limit.window_s * 1000
        while calls and calls[0] <= now - window_ms:
            calls.popleft()
        if len(calls) >= limit.calls:
            return max(1, math.ceil((calls[0] + window_ms - now) / 1000))
        calls.append(now)
        return None

    def seed(self, calls: Iterable[tuple[AccountCall, int]]) -> int:
        """Count calls made before this process started (``(call, time ms)``, any order);
        returns how many still fall in their window."""
        now = self._clock_ms()
        kept = 0
        for call, time_ms in sorted(calls, key=lambda item: item[1]):
            if time_ms <= now - call.limit.window_s * 1000:
                continue
            key = (call.limit.name, call.account_id)
            queue = self._calls.get(key)
            if queue is None:
                queue = self._calls[key] = deque(maxlen=call.limit.calls)
            queue.append(time_ms)
            kept += 1
        return kept

    def _drop_idle(self, now: int) -> None:
        horizon = now - LONGEST_WINDOW_MS
        for key in [k for k, calls in self._calls.items() if not calls or calls[-1] <= horizon]:
            del self._calls[key]
