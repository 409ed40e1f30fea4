"""IP bans after repeated 429s, hard limits on request size, and slow or half-sent requests."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest

from papi_sandbox.wire import limits, params
from papi_sandbox.wire.limits import WeightLimiter, ban_duration_ms
from tests.support import Server, Signer, raw_request, wait_for_fresh_minute

MINUTE_MS = 60_000


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def earn_ban(limiter: WeightLimiter, ip: str) -> int:
    """Spend the limit, then collect 429s until the ban; returns its end (ms)."""
    while limiter.spend_now(ip, 1).allowed:  # ends on the first 429
        pass
    for _ in range(limiter.ban_after_429s - 1):  # the first ten 429s are only 429s
        decision = limiter.spend_now(ip, 1)
        assert not decision.allowed and decision.banned_until_ms is None
    decision = limiter.spend_now(ip, 1)  # the eleventh is still a 429, and bans
    assert not decision.allowed and decision.banned_until_ms is None
    banned = limiter.spend_now(ip, 1)
    assert banned.banned_until_ms is not None
    return banned.banned_until_ms


def test_ban_lengths_grow_from_two_minutes_to_three_days() -> None:
    assert [ban_duration_ms(n) // MINUTE_MS for n in range(1, 8)] == [
        2,
        8,
        32,
        128,
        512,
        2048,
        3 * 24 * 60,
    ]
    assert ban_duration_ms(50) == limits.BAN_MAX_MS


def test_ban_after_more_than_ten_429s_in_a_minute_and_repeat_offenders() -> None:
    clock = FakeClock(1_000 * MINUTE_MS)
    limiter = WeightLimiter(5, clock)
    # Each ban earned right after the previous one ends; a 3-day ban outlasts the memory of the
    # bans before it (bans count from when they were earned), so the next one starts over.
    expected_minutes = [2, 8, 32, 128, 512, 2048, 4320, 2, 8]
    for minutes in expected_minutes:
        clock.now_ms = (clock.now_ms // MINUTE_MS + 1) * MINUTE_MS  # a fresh minute
        start = clock.now_ms
        until = earn_ban(limiter, "1.2.3.4")
        assert until == start + minutes * MINUTE_MS
        # While banned: refused, costs nothing, says how long; other IPs are untouched.
        clock.now_ms = until - 1500
        decision = limiter.spend_now("1.2.3.4", 1)
        assert (decision.allowed, decision.banned_until_ms, decision.retry_after_s) == (
            False,
            until,
            2,
        )
        assert limiter.spend_now("5.6.7.8", 1).allowed
        clock.now_ms = until  # the ban is over
        assert limiter.spend_now("1.2.3.4", 1).allowed
    # Three quiet days later a ban is a first ban again.
    clock.now_ms += limits.BAN_MEMORY_MS + MINUTE_MS
    clock.now_ms = (clock.now_ms // MINUTE_MS + 1) * MINUTE_MS
    start = clock.now_ms
    assert earn_ban(limiter, "1.2.3.4") == start + 2 * MINUTE_MS


def test_429s_are_counted_per_calendar_minute() -> None:
    clock = FakeClock(500 * MINUTE_MS + 50_000)
    limiter = WeightLimiter(1, clock)
    assert limiter.spend_now("ip", 1).allowed
    for _ in range(10):
        assert limiter.spend_now("ip", 1).banned_until_ms is None
    clock.now_ms = 501 * MINUTE_MS  # next minute: the count starts again
    assert limiter.spend_now("ip", 1).allowed
    for _ in range(11):
        assert limiter.spend_now("ip", 1).banned_until_ms is None
    assert limiter.spend_now("ip", 1).banned_until_ms == 503 * MINUTE_MS


def test_bans_can_be_turned_off_and_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(10 * MINUTE_MS)
    never = WeightLimiter(1, clock, ban_after_429s=0)
    for _ in range(100):
        assert never.spend_now("ip", 5).banned_until_ms is None
    monkeypatch.setattr(limits, "MAX_BANNED_IPS", 50)
    limiter = WeightLimiter(1, clock, ban_after_429s=1)
    for i in range(200):
        ip = f"10.0.0.{i}"
        limiter.spend_now(ip, 1)
        limiter.spend_now(ip, 1)
        limiter.spend_now(ip, 1)
        assert limiter.banned_until_ms(ip) is not None
        assert len(limiter._bans) <= 50
    assert asyncio.run(limiter.spend("10.0.0.199", 1)).banned_until_ms is not None


def test_banned_ip_gets_418_everywhere_and_changes_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--ip-weight-limit", "30"])
    server.start()
    try:
        account = server.create_account()
        server.adjust(account.account_id, "MARGIN", "USDT", "50", "DEPOSIT")
        server.adjust(account.account_id, "UM", "USDT", "-5", "REALIZED_PNL")
        signer = Signer(server.base_url, account)
        wait_for_fresh_minute(15)
        with httpx.Client(base_url=server.base_url) as client:
            statuses = [client.get("/papi/v1/ping").status_code for _ in range(30)]
            assert statuses == [200] * 30
            started_ms = time.time_ns() // 1_000_000
            statuses = [client.get("/papi/v1/ping").status_code for _ in range(11)]
            assert statuses == [429] * 11
            r = client.get("/papi/v1/ping")
        assert r.status_code == 418
        body = r.json()
        assert body["code"] == -1003
        until = int(body["msg"].split("IP banned until ")[1].split(".")[0])
        assert body["msg"] == (
            f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
        assert 0 <= until - started_ms - 120_000 <= 5_000
        assert 115 <= int(r.headers["Retry-After"]) <= 120
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == "30"

        before = server.journal(account.account_id)
        r = signer.request("POST", "/papi/v1/repay-futures-negative-balance")
        assert (r.status_code, r.json()["code"]) == (418, -1003)
        r = raw_request(server.base_url, "GET", "/papi/v1/nowhere", "a=%zz&a=1", b"\xff" * 10)
        assert (r.status_code, r.json()["code"]) == (418, -1003)
        assert server.journal(account.account_id) == before
        # The operator API is never limited, and metrics count the refusals.
        assert (
            server.admin.request("GET", f"/accounts/{account.account_id}/balances").status_code
            == 200
        )
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert 'papi_rate_limit_refusals_total{status="429"} 11.0' in metrics
        assert 'papi_rate_limit_refusals_total{status="418"} 3.0' in metrics
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("query", "body", "status", "code"),
    [
        ("a=" + "x" * (params.MAX_QUERY_BYTES), "", 413, -1101),
        ("&".join(f"p{i}=1" for i in range(params.MAX_PARAMS + 1)), "", 400, -1101),
        ("asset=" + "A" * (params.MAX_VALUE_CHARS + 1), "", 413, -1101),
        ("timestamp=1", "a=" + "x" * params.MAX_BODY_BYTES, 413, -1101),
        ("a=1&a=1", "", 400, -1101),
    ],
)
def test_hard_request_limits_are_binance_errors(
    server: Server, query: str, body: str, status: int, code: int
) -> None:
    r = raw_request(server.base_url, "GET", "/papi/v1/balance", query, body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert isinstance(r.json()["msg"], str)


def test_oversized_headers_are_refused(server: Server) -> None:
    r = httpx.get(f"{server.base_url}/papi/v1/ping", headers={"X-Big": "y" * 40_000})
    assert (r.status_code, r.json()["code"]) == (431, -1101)


def _read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    sock.settimeout(limit_s)
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return received
        received += chunk


def test_half_sent_requests_are_dropped_and_others_still_served(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--request-read-timeout", "1"])
    server.start()
    try:
        stalled = []
        for opening in (
            b"",  # connects, says nothing
            b"GET /papi/v1/ping HTTP/1.1\r\nHost: x\r\n",  # headers never finish
            b"POST /papi/v1/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab",  # body
        ):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(opening)
            stalled.append(sock)
        # While they stall, everyone else is served.
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(20):
                assert client.get("/papi/v1/ping").status_code == 200
        # The server closes each of them (recv returns EOF well before the 15 s safety net).
        answers = [_read_until_closed(sock, 15) for sock in stalled]
        for sock in stalled:
            sock.close()
        assert b"408" in answers[0] and b"408" in answers[1]
        assert b"-1007" in answers[1]
        assert httpx.get(f"{server.base_url}/papi/v1/ping").status_code == 200
    finally:
        server.stop()
