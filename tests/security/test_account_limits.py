"""Issue 11: the per-account rolling limits (BNB transfer 10 per 10 minutes) hold across
processes (shared through Redis, in the same script call as the IP weight) and across restarts
(without Redis, re-derived from the journal)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from papi_sandbox.secretbox import SECRET_KEY_ENV, new_key_text
from papi_sandbox.wire.account_limits import BNB_TRANSFER_LIMIT, AccountCall
from papi_sandbox.wire.limits_redis import RedisWeightLimiter
from tests.security.test_limits_redis import Clock, redis_url
from tests.support import Account, Server, Signer

TRANSFER = "/papi/v1/bnb-transfer"


def transfer(server: Server, account: Account) -> int:
    r = Signer(server.base_url, account).request(
        "POST", TRANSFER, {"amount": "0.1", "transferSide": "TO_UM"}
    )
    if r.status_code == 429:
        assert r.json()["code"] == -1003 and "bnb-transfer" in r.json()["msg"], r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 600
    return r.status_code


@pytest.fixture
def shared_prefix() -> Iterator[str]:
    url = redis_url()
    value = f"papi-test-{secrets.token_hex(6)}:"
    yield value
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=value + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_the_account_limit_survives_a_restart_without_redis(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--ip-weight-limit", "0"])
    server.start()
    try:
        account = server.create_account()
        server.adjust(account.account_id, "MARGIN", "BNB", "100")
        assert [transfer(server, account) for _ in range(6)] == [200] * 6
        server.stop()
        server.start()
        assert [transfer(server, account) for _ in range(5)] == [200] * 4 + [429]
    finally:
        server.stop()


def test_two_processes_share_the_account_limit_through_redis(
    tmp_path: Path, pg_url: str, shared_prefix: str
) -> None:
    env = {SECRET_KEY_ENV: new_key_text()}  # one ledger, one encryption key
    args = ["--ip-weight-limit", "0", "--limits", redis_url(), "--limits-prefix", shared_prefix]
    one = Server(tmp_path / "one", args, db_url=pg_url, env=env)
    two = Server(tmp_path / "two", args, db_url=pg_url, env=env)
    one.start()
    two.start()
    try:
        account = one.create_account()
        one.adjust(account.account_id, "MARGIN", "BNB", "100")
        codes = [transfer(one if i % 2 else two, account) for i in range(8)]
        assert codes == [200] * 8
        one.stop()  # a restart in between forgets nothing
        one.start()
        codes = [transfer(one, account), transfer(two, account)]
        assert codes == [200, 200]
        assert transfer(one, account) == 429
        assert transfer(two, account) == 429
    finally:
        one.stop()
        two.stop()
    assert one.verify_cli().returncode == 0


def test_the_redis_script_decides_weight_and_account_together(shared_prefix: str) -> None:
    clock = Clock(1_800_000_000_000)

    async def main() -> None:
        limiter = RedisWeightLimiter(redis_url(), 6000, key_prefix=shared_prefix, clock_ms=clock)
        try:
            call = AccountCall(BNB_TRANSFER_LIMIT, 7)
            for i in range(10):
                decision = await limiter.spend(f"10.0.0.{i}", 750, call)
                assert decision.allowed and decision.account_retry_after_s is None
                clock.now_ms += 1000
            refused = await limiter.spend("10.0.0.99", 750, call)
            # The weight is spent (the request was let through), the call is not counted.
            assert refused.allowed and refused.used == 750
            assert refused.account_retry_after_s == 600 - 10
            # Another account is not touched; an IP over its weight is refused before the
            # account is counted.
            assert await limiter.spend("10.0.0.99", 750, AccountCall(BNB_TRANSFER_LIMIT, 8))
            clock.now_ms += 600_000 - 9_000  # the first call leaves the window
            assert (await limiter.spend("10.0.0.98", 750, call)).account_retry_after_s is None
        finally:
            await limiter.aclose()

    asyncio.run(main())
