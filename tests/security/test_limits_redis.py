"""The Redis limiter: weight shared across limiter objects (processes), bans, and fail-closed.

Each test uses its own random key prefix on the Redis named by PAPI_SANDBOX_TEST_REDIS_URL and
deletes its keys afterwards. A fake clock drives minutes and bans; Redis TTLs only clean up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from papi_sandbox.wire.errors import ApiError
from papi_sandbox.wire.limits_redis import (
    BAN_BASE_MS,
    BAN_MAX_MS,
    MAX_REFUSALS_PER_MINUTE,
    RedisWeightLimiter,
)
from tests.support import REDIS_URL_ENV, Server, Signer, free_port

MINUTE_MS = 60_000
DAY_MS = 24 * 3600_000
T0 = 1_800_000_000_000 - (1_800_000_000_000 % MINUTE_MS)  # a minute boundary


def redis_url() -> str:
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        pytest.skip(f"{REDIS_URL_ENV} is unset: the Redis tests do not run")
    return url


@pytest.fixture
def prefix() -> Iterator[str]:
    url = redis_url()
    value = f"papi-test-{secrets.token_hex(6)}:"
    yield value
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=value + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def run(
    prefix: str, limit: int, clock: Clock, body: Callable[..., Awaitable[None]], count: int = 2
) -> None:
    async def main() -> None:
        limiters = [
            RedisWeightLimiter(redis_url(), limit, key_prefix=prefix, clock_ms=clock)
            for _ in range(count)
        ]
        try:
            await body(*limiters)
        finally:
            for limiter in limiters:
                await limiter.aclose()

    asyncio.run(main())


def test_weight_is_shared_and_refusals_cost_nothing(prefix: str) -> None:
    clock = Clock(T0 + 1_500)

    async def body(one: RedisWeightLimiter, two: RedisWeightLimiter) -> None:
        assert (await one.spend("10.0.0.1", 700)).used == 700
        decision = await two.spend("10.0.0.1", 250)  # another process sees the same count
        assert (decision.allowed, decision.used) == (True, 950)
        refused = await one.spend("10.0.0.1", 51)
        assert (refused.allowed, refused.used, refused.banned_until_ms) == (False, 950, None)
        assert refused.retry_after_s == 59  # ceiling of the 58.5 s left in the minute
        assert (await two.spend("10.0.0.1", 50)).used == 1000  # exactly the limit still fits
        assert (await one.spend("10.0.0.2", 1)).used == 1  # per IP
        clock.now_ms = T0 + MINUTE_MS  # a new calendar minute starts from zero
        assert (await two.spend("10.0.0.1", 1)).used == 1

    run(prefix, 1000, clock, body)


def test_concurrent_spends_never_pass_the_limit(prefix: str) -> None:
    clock = Clock(T0 + 10)

    async def body(*limiters: RedisWeightLimiter) -> None:
        decisions = await asyncio.gather(
            *(limiters[i % 4].spend("10.0.0.3", 7) for i in range(200))
        )
        allowed = sorted(d.used for d in decisions if d.allowed)
        assert allowed == [7 * (i + 1) for i in range(142)]  # 142 * 7 = 994 <= 1000 < 1001

    run(prefix, 1000, clock, body, count=4)


def test_ban_after_more_than_ten_refusals_in_a_minute_and_its_growth(prefix: str) -> None:
    clock = Clock(T0 + 100)
    ip = "10.0.0.4"

    async def refuse_until_banned(one: RedisWeightLimiter, two: RedisWeightLimiter) -> int:
        assert (await one.spend(ip, 10)).allowed
        for i in range(MAX_REFUSALS_PER_MINUTE):
            decision = await (one, two)[i % 2].spend(ip, 10)
            assert (decision.allowed, decision.banned_until_ms) == (False, None), i
        decision = await one.spend(ip, 10)  # the 11th refusal: the ban starts, still a 429
        assert (decision.allowed, decision.banned_until_ms) == (False, None)
        decision = await two.spend(ip, 1)  # from now on: banned (418), in every process
        assert not decision.allowed and decision.banned_until_ms is not None
        return decision.banned_until_ms

    async def body(one: RedisWeightLimiter, two: RedisWeightLimiter) -> None:
        until = await refuse_until_banned(one, two)
        assert until == clock.now_ms + BAN_BASE_MS
        clock.now_ms += 30_000
        banned = await two.spend(ip, 1)  # even a light request, from another process
        assert (banned.allowed, banned.banned_until_ms) == (False, until)
        assert banned.retry_after_s == 90
        assert (await one.spend("10.0.0.5", 1)).allowed  # other IPs are not affected
        clock.now_ms = until  # the ban is over; a new minute, weight from zero
        assert (await one.spend(ip, 10)).allowed

        # Second and third bans within 3 days: 4x and 16x longer.
        clock.now_ms = T0 + 10 * MINUTE_MS
        assert await refuse_until_banned(one, two) == clock.now_ms + 4 * BAN_BASE_MS
        clock.now_ms = T0 + 30 * MINUTE_MS
        until = await refuse_until_banned(one, two)
        assert until == clock.now_ms + 16 * BAN_BASE_MS
        # ... growing with each ban right after the last (all within 3 days), capped at 3 days.
        for n in (4, 5, 6, 7):
            clock.now_ms = until
            until = await refuse_until_banned(one, two)
            assert until - clock.now_ms == min(BAN_BASE_MS * 4 ** (n - 1), BAN_MAX_MS), n
        assert until - clock.now_ms == BAN_MAX_MS  # the 7th: 2 min x 4^6 > 3 days
        # Bans older than 3 days no longer count.
        clock.now_ms = until + 4 * DAY_MS
        assert await refuse_until_banned(one, two) == clock.now_ms + BAN_BASE_MS

    run(prefix, 10, clock, body)


def test_unreachable_redis_fails_closed_and_is_counted(prefix: str) -> None:
    async def main() -> None:
        limiter = RedisWeightLimiter(f"redis://127.0.0.1:{free_port()}/0", 1000, key_prefix=prefix)
        try:
            for expected in (1, 2):
                with pytest.raises(ApiError) as caught:
                    await limiter.spend("10.0.0.6", 1)
                assert (caught.value.status, caught.value.code) == (503, -1001)
                assert limiter.unavailable_total == expected
        finally:
            await limiter.aclose()

    asyncio.run(main())


def test_service_answers_503_and_changes_nothing_without_redis(tmp_path: Path) -> None:
    redis_url()  # same precondition as the other Redis tests
    srv = Server(
        tmp_path / "no-redis",
        ["--limits", f"redis://127.0.0.1:{free_port()}/0"],
    )
    srv.start()
    try:
        account = srv.create_account()  # the operator API is not weighed, so it still works
        srv.adjust(account.account_id, "MARGIN", "USDT", "10", "DEPOSIT")
        srv.adjust(account.account_id, "UM", "USDT", "-4", "REALIZED_PNL")
        before = srv.journal(account.account_id)
        r = Signer(srv.base_url, account).request("POST", "/papi/v1/repay-futures-negative-balance")
        assert r.status_code == 503
        assert r.json() == {
            "code": -1001,
            "msg": "Internal error; unable to process your request. Please try again.",
        }
        assert "X-MBX-USED-WEIGHT-1M" not in r.headers
        assert srv.journal(account.account_id) == before  # nothing changed
        metrics = httpx.get(f"{srv.base_url}/metrics").text
        assert "papi_limiter_unavailable_total 1.0" in metrics  # said in the metrics too
    finally:
        srv.stop()
    assert srv.log_path is not None
    assert "Redis limiter unreachable" in srv.log_path.read_text()
