"""IP weight and bans shared by every server process through Redis (``--limits redis://...``).

The rules are those of Binance and of the in-process limiter: an IP may spend
``limit_per_minute`` weight per calendar minute (UTC); a request that would pass it is refused
(429) and costs nothing. An IP refused more than :data:`MAX_REFUSALS_PER_MINUTE` times in one
calendar minute is banned (418): the refusal that passes the threshold starts the ban but is
still answered 429; 418 comes from the next request on. The ban lasts
``min(2 min x 4^(n-1), 3 days)``, n being the bans that IP earned within the last 3 days, this
one included. While banned every request is refused with
``banned_until_ms`` set and spends nothing.

One round trip per request: the whole decision is one Lua script, which Redis runs atomically, so
processes on different machines never lose or double-count weight. All keys of one IP carry the
hash tag ``{ip}`` so the script stays valid on Redis Cluster (one IP = one slot).

Fail closed: when Redis cannot be reached (or does not answer within :data:`REDIS_TIMEOUT_S`),
``spend`` raises an :class:`~papi_sandbox.wire.errors.ApiError` with HTTP 503 and code -1001
("Internal error; unable to process your request. Please try again.") - before any other work, so
the request changes nothing. Binance answers 503 for "the server could not handle it, retry". Each
such request increments :attr:`RedisWeightLimiter.unavailable_total` and is logged (at most once
per :data:`UNAVAILABLE_LOG_INTERVAL_S`, with the count).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from papi_sandbox.wire import errors
from papi_sandbox.wire.account_limits import AccountCall
from papi_sandbox.wire.errors import ApiError
from papi_sandbox.wire.limits import (
    BAN_BASE_MS,
    BAN_GROWTH,
    BAN_MAX_MS,
    BAN_MEMORY_MS,
    DEFAULT_BAN_AFTER_429S,
    WeightDecision,
)

log = logging.getLogger("papi_sandbox.limits")

# The ban rules are the in-process limiter's (wire/limits.py), shared by name.
MAX_REFUSALS_PER_MINUTE = DEFAULT_BAN_AFTER_429S
BAN_GROWTH_FACTOR = BAN_GROWTH
BAN_HISTORY_MS = BAN_MEMORY_MS
#: Per-minute keys live this long: the minute itself plus slack for clocks that disagree.
MINUTE_KEY_TTL_MS = 120_000
#: Longest wait for Redis on one request (connect or answer) before failing closed.
REDIS_TIMEOUT_S = 2.0
#: Connections per process to Redis.
REDIS_MAX_CONNECTIONS = 64
#: At most one log line per this many seconds while Redis is unreachable.
UNAVAILABLE_LOG_INTERVAL_S = 10.0

# KEYS: 1 weight used this minute, 2 refusals this minute, 3 banned-until, 4 ban history (zset),
#       5 (optional) the account's calls of one rolling limit (zset of call times).
# ARGV: weight, limit (0 = off), now_ms, minute key ttl, max refusals, ban base, growth, ban max,
#       ban history window, and with KEYS[5]: the limit's calls, its window (ms), a unique member.
# Returns {allowed 0/1, used, banned_until_ms or 0, account refused until ms or 0}: the IP weight
# first; only when it allows the request is the account's call counted (or refused: the weight is
# still spent, the call is not counted).
_SPEND_LUA = """
local weight = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local minute_ttl = tonumber(ARGV[4])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local banned_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if banned_until > now then
  return {0, used, banned_until, 0}
end
if limit > 0 and used + weight > limit then
  local refused = redis.call('INCR', KEYS[2])
  if refused == 1 then redis.call('PEXPIRE', KEYS[2], minute_ttl) end
  local max_refusals = tonumber(ARGV[5])
  if max_refusals > 0 and refused > max_refusals then
    local window = tonumber(ARGV[9])
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
    redis.call('ZADD', KEYS[4], now, tostring(now))
    redis.call('PEXPIRE', KEYS[4], window)
    local n = redis.call('ZCARD', KEYS[4])
    local duration = tonumber(ARGV[6]) * tonumber(ARGV[7]) ^ (n - 1)
    if duration > tonumber(ARGV[8]) then duration = tonumber(ARGV[8]) end
    duration = math.floor(duration)
    banned_until = now + duration
    redis.call('SET', KEYS[3], banned_until, 'PX', duration)
    redis.call('DEL', KEYS[2])
    return {0, used, 0, 0}
  end
  return {0, used, 0, 0}
end
used = redis.call('INCRBY', KEYS[1], weight)
if used == weight then redis.call('PEXPIRE', KEYS[1], minute_ttl) end
if KEYS[5] then
  local calls = tonumber(ARGV[10])
  local window = tonumber(ARGV[11])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
  if redis.call('ZCARD', KEYS[5]) >= calls then
    local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    return {1, used, 0, tonumber(oldest[2]) + window}
  end
  redis.call('ZADD', KEYS[5], now, ARGV[12])
  redis.call('PEXPIRE', KEYS[5], window)
end
return {1, used, 0, 0}
"""


def limiter_unavailable() -> ApiError:
    return errors.internal_retry()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RedisWeightLimiter:
    """The :class:`~papi_sandbox.wire.limits.Limiter` shared through one Redis."""

    def __init__(
        self,
        url: str,
        limit_per_minute: int,
        *,
        key_prefix: str = "papi:",
        ban_after_429s: int = MAX_REFUSALS_PER_MINUTE,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.ban_after_429s = ban_after_429s  # 0 = never ban
        self.limit_per_minute = limit_per_minute  # 0 = unlimited (weight is still counted)
        self.key_prefix = key_prefix
        self._clock_ms = clock_ms
        # No client-side retries: one attempt within the timeout, then fail closed.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            max_connections=REDIS_MAX_CONNECTIONS,
        )
        self._script = self._redis.register_script(_SPEND_LUA)
        #: Requests refused because Redis was unreachable (for the metrics endpoint).
        self.unavailable_total = 0
        self._last_log_s = 0.0

    def keys(self, ip: str, minute: int) -> list[str]:
        base = f"{self.key_prefix}{{{ip}}}"  # hash tag: every key of one IP in one cluster slot
        return [f"{base}:w:{minute}", f"{base}:r:{minute}", f"{base}:ban", f"{base}:bans"]

    def account_key(self, account: AccountCall) -> str:
        """The account's calls of one limit: one key for every process and every client IP.
        (On Redis Cluster it is in another slot than the IP's keys: use one Redis node.)"""
        return f"{self.key_prefix}acct:{account.limit.name}:{account.account_id}"

    async def spend(
        self, ip: str, weight: int, account: AccountCall | None = None
    ) -> WeightDecision:
        now = self._clock_ms()
        minute = now // 60_000
        retry_after_s = -(-((minute + 1) * 60_000 - now) // 1000)  # ceiling
        keys = self.keys(ip, minute)
        extra: list[int | str] = []
        if account is not None:
            keys.append(self.account_key(account))
            extra = [
                account.limit.calls,
                account.limit.window_s * 1000,
                f"{now}-{secrets.token_hex(6)}",  # members are unique: two calls, two members
            ]
        try:
            allowed, used, banned_until, account_until = await self._script(
                keys=keys,
                args=[
                    weight,
                    self.limit_per_minute,
                    now,
                    MINUTE_KEY_TTL_MS,
                    self.ban_after_429s,
                    BAN_BASE_MS,
                    BAN_GROWTH_FACTOR,
                    BAN_MAX_MS,
                    BAN_HISTORY_MS,
                    *extra,
                ],
            )
        except (RedisError, OSError) as exc:
            self._note_unavailable(exc)
            raise limiter_unavailable() from None
        if banned_until:
            retry_after_s = -(-(int(banned_until) - now) // 1000)
        return WeightDecision(
            bool(allowed),
            int(used),
            retry_after_s,
            int(banned_until) if banned_until else None,
            max(1, -(-(int(account_until) - now) // 1000)) if account_until else None,
        )

    def _note_unavailable(self, exc: BaseException) -> None:
        self.unavailable_total += 1
        now_s = time.monotonic()
        if now_s - self._last_log_s >= UNAVAILABLE_LOG_INTERVAL_S:
            self._last_log_s = now_s
            log.error(
                "Redis limiter unreachable (%s: %s); refusing requests with 503 (%d so far)",
                type(exc).__name__,
                exc,
                self.unavailable_total,
            )

    async def ping(self) -> None:
        """Raises when Redis does not answer within REDIS_TIMEOUT_S (for ``/readyz``)."""
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
