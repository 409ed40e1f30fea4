"""Pure wire-layer logic: totalParams, parameter limits, timing windows, weight minutes."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from papi_sandbox import money
from papi_sandbox.wire import auth, params
from papi_sandbox.wire.errors import ApiError
from papi_sandbox.wire.limits import WeightLimiter


def test_signed_text_is_query_then_body_without_signature() -> None:
    raw = params.parse_raw(b"a=1&b=2", b"c=3&timestamp=1591702613943&signature=abc")
    assert raw.signed_text == "a=1&b=2c=3&timestamp=1591702613943"
    assert raw.values == {
        "a": "1",
        "b": "2",
        "c": "3",
        "timestamp": "1591702613943",
        "signature": "abc",
    }


def test_signed_text_keeps_percent_encoding_and_drops_signature_anywhere() -> None:
    raw = params.parse_raw(b"signature=x&asset=US%44T&note=a+b", b"")
    assert raw.signed_text == "asset=US%44T&note=a+b"
    assert raw.values["asset"] == "USDT" and raw.values["note"] == "a b"


def test_signed_text_keeps_empty_segments_and_drops_an_encoded_signature_name() -> None:
    raw = params.parse_raw(b"a=1&&sig%6Eature=ff&b=2&", b"")
    assert raw.signed_text == "a=1&&b=2&"  # exactly the bytes sent, minus the signature
    assert raw.values == {"a": "1", "signature": "ff", "b": "2"}


def test_a_name_refused_once_is_refused_again() -> None:
    # Valid names are remembered to skip the regex; an invalid one never is.
    for _ in range(2):
        with pytest.raises(ApiError) as info:
            params.parse_raw(b"bad-name=1", b"")
        assert info.value.code == -1100


@pytest.mark.parametrize("text", ["\u00b2", "\u0661", "1" * 19, "-1", "+1", " 1", "1.0"])
def test_long_parameters_are_ascii_digits_only(text: str) -> None:
    # Unicode digits (superscripts, Arabic-Indic) pass str.isdigit but are not ^[0-9]{1,18}$.
    with pytest.raises(ApiError) as info:
        params.convert(params.Param("timestamp", params.Kind.LONG, mandatory=True), text)
    assert info.value.code == -1102
    with pytest.raises(ApiError):
        auth.check_timing({"timestamp": text}, 1_700_000_000_000)


@pytest.mark.parametrize(
    ("query", "body", "code"),
    [
        (b"a=1&a=2", b"", -1101),
        (b"a=1", b"b=1&b=2", -1101),
        (b"&".join(b"p%d=1" % i for i in range(40)), b"", -1101),
        (b"x" * (params.MAX_QUERY_BYTES + 1), b"", -1101),
        (b"a=%FF", b"", -1100),
        (b"1bad=1", b"", -1100),
        ("a=\u00e9".encode(), b"", -1100),
    ],
)
def test_parse_raw_refusals(query: bytes, body: bytes, code: int) -> None:
    with pytest.raises(ApiError) as info:
        params.parse_raw(query, body)
    assert info.value.code == code


def test_parse_raw_query_wins_and_signs_both_sources() -> None:
    raw = params.parse_raw(b"asset=USDT&signature=ab", b"asset=BTC&timestamp=5&signature=cd")
    assert raw.values == {"asset": "USDT", "signature": "ab", "timestamp": "5"}
    assert raw.signed_text == "asset=USDTasset=BTC&timestamp=5"
    ignored = params.parse_raw(b"timestamp=5&signature=ab", b"")
    assert ignored.values == {"timestamp": "5", "signature": "ab"}
    assert ignored.signed_text == "timestamp=5"


def test_bind_counts_unread_and_missing() -> None:
    declared = (
        params.Param("asset", params.Kind.ASSET),
        params.Param("timestamp", params.Kind.LONG, mandatory=True),
    )
    assert params.bind(declared, {"timestamp": "5", "asset": "BTC"}) == {
        "timestamp": 5,
        "asset": "BTC",
    }
    with pytest.raises(ApiError) as info:
        params.bind(declared, {"timestamp": "5", "x": "1", "y": "2"})
    assert (info.value.code, info.value.msg) == (
        -1104,
        "Not all sent parameters were read; read '1' parameter(s) but was sent '3'.",
    )
    with pytest.raises(ApiError) as info:
        params.bind(declared, {"asset": "BTC"})
    assert info.value.code == -1102
    with pytest.raises(ApiError) as info:
        params.bind(declared, {"asset": "", "timestamp": "1"})
    assert info.value.code == -1105


@pytest.mark.parametrize(
    ("values", "now", "code"),
    [
        ({"timestamp": "10000"}, 15000, None),  # exactly recvWindow old: accepted
        ({"timestamp": "10000"}, 15001, -1021),
        ({"timestamp": "10999"}, 10000, None),  # timestamp < serverTime + 1000
        ({"timestamp": "11000"}, 10000, -1021),
        ({"timestamp": "1000", "recvWindow": "60000"}, 61000, None),
        ({"timestamp": "1000", "recvWindow": "60001"}, 1000, -1131),
        ({"timestamp": "x"}, 1000, -1102),
        ({}, 1000, -1102),
        ({"timestamp": "1000", "recvWindow": "5.5"}, 1000, -1102),
    ],
)
def test_timing_window(values: dict[str, str], now: int, code: int | None) -> None:
    if code is None:
        auth.check_timing(values, now)
    else:
        with pytest.raises(ApiError) as info:
            auth.check_timing(values, now)
        assert info.value.code == code


def test_weight_is_per_calendar_minute_and_refusals_cost_nothing() -> None:
    clock = [60_000 * 100 + 59_000]  # one second before a minute ends
    limiter = WeightLimiter(1000, clock_ms=lambda: clock[0])
    spend = lambda w: asyncio.run(limiter.spend("1.2.3.4", w))  # noqa: E731
    assert spend(750).used == 750
    refused = spend(750)
    assert (refused.allowed, refused.used, refused.retry_after_s) == (False, 750, 1)
    assert spend(250).used == 1000
    assert asyncio.run(limiter.spend("5.6.7.8", 750)).allowed  # per IP
    clock[0] += 1000  # the next calendar minute starts
    assert spend(750).used == 750
    assert WeightLimiter(0, clock_ms=lambda: 0).spend_now("x", 10**9).allowed  # 0 = off


def test_money_parse_refuses_floats_exponents_and_excess_digits() -> None:
    for bad in ["1e3", "0.000000001", "NaN", "Infinity", " 1", "1,000", "", "1000000000000000.1"]:
        with pytest.raises(money.AmountError):
            money.parse_amount(bad)
    assert money.parse_amount("-0") == 0 and money.format_amount(Decimal("-0")) == "0.00000000"
    assert money.format_amount(Decimal("1000000000000000")) == "1000000000000000.00000000"
