"""Bad input, tried systematically against a live server (bounded in time).

Pass means: no 5xx, every error in Binance's shape, and ``papi-sandbox verify`` clean afterwards.
- schemathesis generates requests from /papi/openapi.json (the description of the table);
- hypothesis builds raw requests: random bytes, encodings, duplicate and missing parameters, huge
  numbers, non-ASCII, bad percent-escapes, wrong content types, JSON bodies, validly signed or not.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from papi_sandbox.api.endpoints import ENDPOINTS
from tests.support import Account, Server, now_ms, sign

TESTS_DIR = Path(__file__).parent
#: (status, Binance code) of every raw fuzzing answer, to show the fuzzer got past the door.
SEEN: Counter[tuple[int, int]] = Counter()
#: Examples per schemathesis operation and per hypothesis test: bounds the run to seconds.
SCHEMATHESIS_EXAMPLES = 100
HYPOTHESIS_EXAMPLES = 1000


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Account]]:
    server = Server(tmp_path_factory.mktemp("fuzz"), ["--ip-weight-limit", "0"])
    server.start()
    account = server.create_account("fuzz")
    server.adjust(account.account_id, "MARGIN", "USDT", "1000", "DEPOSIT")
    server.adjust(account.account_id, "MARGIN", "BTC", "1", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-100", "REALIZED_PNL")
    server.adjust(account.account_id, "CM", "BTC", "-0.5", "FUNDING_FEE")
    yield server, account
    server.stop()
    result = server.verify_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def assert_binance_shaped(status: int, content: bytes) -> None:
    assert status < 500, (status, content[:300])
    if status >= 400:
        import orjson

        data = orjson.loads(content)
        assert isinstance(data, dict) and set(data) == {"code", "msg"}, data
        assert isinstance(data["code"], int) and data["code"] < 0, data
        assert isinstance(data["msg"], str) and data["msg"], data


def test_schemathesis_against_the_openapi_description(target: tuple[Server, Account]) -> None:
    server, account = target
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.base_url}/papi/openapi.json",
            "--checks",
            "not_a_server_error,binance_shaped_errors",
            "--max-examples",
            str(SCHEMATHESIS_EXAMPLES),
            "--seed",
            "20261124",
            "--header",
            f"X-MBX-APIKEY: {account.api_key}",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        cwd=TESTS_DIR,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks"},
        capture_output=True,
        text=True,
        timeout=600,  # every endpoint of the table (UM trading added ~35): minutes under load
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout


PARAM_NAMES = sorted({p.name for e in ENDPOINTS for p in e.all_params} | {"x", "Asset", "a b"})
ROUTES = sorted((e.method, e.path) for e in ENDPOINTS)
PATHS = sorted({e.path for e in ENDPOINTS} | {"/papi/v1/nope", "/papi/", "/papi/v1/ping/"})

values = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(
        [
            "",
            "USDT",
            "BTC",
            "true",
            "false",
            "1e999",
            "NaN",
            "-0",
            "0.000000001",
            "1" * 40,
            "99999999999999999999.99999999",
            "é",
            "😀",
            "\x00",
            "TO_UM",
            "%",
        ]
    ),
    st.text(max_size=30),
)


@st.composite
def encoded_pair(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(PARAM_NAMES) | st.text(max_size=8))
    value = draw(values)
    style = draw(st.sampled_from(["quote", "plus", "bad-escape", "latin1", "bare", "no-equals"]))
    if style == "quote":
        return f"{quote(name, safe='')}={quote(value, safe='')}"
    if style == "plus":
        return f"{quote(name, safe='')}={quote(value, safe='').replace('%20', '+')}"
    if style == "bad-escape":
        return f"{quote(name, safe='')}=%{draw(st.sampled_from(['zz', 'e9', 'c3', 'G1', '', '2']))}"
    if style == "latin1":  # percent-encoded bytes that are not UTF-8
        raw = value.encode("latin-1", "replace")
        return quote(name, safe="") + "=" + "".join(f"%{b:02X}" for b in raw)
    if style == "no-equals":
        return quote(name, safe="")
    return f"{quote(name, safe='')}={quote(value, safe='=&')}"


CONTENT_TYPES = [
    None,
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "\xff/\xff",
]


@st.composite
def raw_requests(draw: st.DrawFn) -> dict[str, Any]:
    pairs = draw(st.lists(encoded_pair(), max_size=10))
    if draw(st.booleans()) and pairs:
        pairs.append(draw(st.sampled_from(pairs)))  # a duplicate
    if draw(st.booleans()):
        pairs.append(f"timestamp={now_ms()}")
    split = draw(st.integers(min_value=0, max_value=len(pairs)))
    query, body_text = "&".join(pairs[:split]), "&".join(pairs[split:])
    body_kind = draw(st.sampled_from(["form", "form", "form", "json", "bytes", "none"]))
    if body_kind == "json":
        body = draw(
            st.sampled_from([b'{"timestamp": 1}', b"[1,2]", b'{"asset": "USDT"}', b"null", b"{"])
        )
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif body_kind == "none":
        body = b""
    else:
        body = body_text.encode()
    if draw(st.integers(min_value=0, max_value=4)) == 0:  # 1 in 5: anywhere, any method
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
        path = draw(st.sampled_from(PATHS))
    else:
        method, path = draw(st.sampled_from(ROUTES))
    return {
        "method": method,
        "path": path,
        "query": query,
        "body": body,
        "content_type": draw(st.sampled_from(CONTENT_TYPES)),
        "key": draw(st.sampled_from(["valid", "valid", "valid", "none", "bad", "unknown"])),
        "sign": draw(st.sampled_from(["valid", "valid", "valid", "none", "garbage"])),
    }


def _pinned(**spec: Any) -> dict[str, Any]:
    """An example run on every test run, whatever the generator draws: each refusal the guard
    test below counts on is met at least once. ``timestamp=NOW`` is filled in when it runs."""
    return {
        "method": "POST",
        "path": "/papi/v1/repay-futures-negative-balance",
        "query": "",
        "body": b"",
        "content_type": None,
        "key": "valid",
        "sign": "valid",
        **spec,
    }


@settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(spec=raw_requests())
@example(spec=_pinned(query="timestamp=NOW", sign="garbage"))  # -1022
@example(spec=_pinned(path="/papi/v1/balance", method="GET", query="timestamp=NOW"))  # 200
@example(spec=_pinned(query="timestamp=NOW&timestamp=NOW"))  # -1101
@example(spec=_pinned(query="timestamp=NOW&bogus=1"))  # -1104
@example(spec=_pinned(query="recvWindow=1"))  # -1102
@example(spec=_pinned(query="timestamp=NOW", key="none"))  # -2014
@example(spec=_pinned(query="timestamp=NOW", key="unknown"))  # -2015
@example(spec=_pinned(query="timestamp=NOW&asset=%FF", path="/papi/v1/balance", method="GET"))
def test_raw_requests_never_5xx_and_errors_are_binance_shaped(
    target: tuple[Server, Account], http: httpx.Client, spec: dict[str, Any]
) -> None:
    server, account = target
    query, body = spec["query"].replace("timestamp=NOW", f"timestamp={now_ms()}"), spec["body"]
    if spec["sign"] == "valid":
        signed = query + body.decode("latin-1")
        signature = sign(account.secret, signed) if signed.isascii() else "0" * 64
        query = f"{query}&signature={signature}" if query else f"signature={signature}"
    elif spec["sign"] == "garbage":
        query = f"{query}&signature=%2B%2F%3D%E2%82%AC"
    headers: dict[str, str | bytes] = {}
    if spec["key"] == "valid":
        headers["X-MBX-APIKEY"] = account.api_key
    elif spec["key"] == "bad":
        headers["X-MBX-APIKEY"] = "not a key!"
    elif spec["key"] == "unknown":
        headers["X-MBX-APIKEY"] = "A" * 64
    if spec["content_type"] is not None:
        headers["Content-Type"] = spec["content_type"].encode("latin-1")
    path = spec["path"]
    url = httpx.URL(server.base_url + path).copy_with(
        raw_path=(path + ("?" + query if query else "")).encode("latin-1")
    )
    r = http.request(spec["method"], url, content=body or None, headers=headers)
    if spec["method"] == "HEAD":
        assert r.status_code < 500
        return
    assert_binance_shaped(r.status_code, r.content)
    SEEN[(r.status_code, r.json().get("code", 0) if r.status_code >= 400 else 0)] += 1


def test_raw_fuzzing_reached_the_handlers() -> None:
    """The generated requests were not all refused at the door: some passed signature checks
    and reached the handlers, and many different refusals were met."""
    assert SEEN[(200, 0)] > 0, SEEN
    codes = {code for _, code in SEEN}
    assert {-1100, -1101, -1102, -1104, -1022, -2014, -2015} <= codes, SEEN


def _raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@settings(max_examples=120, deadline=None, derandomize=True)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=100).map(lambda b: b"GET /papi/v1/ping?" + b + b" HTTP/1.1\r\n\r\n"),
        st.binary(max_size=100).map(
            lambda b: b"POST /papi/v1/balance HTTP/1.1\r\nContent-Length: 3\r\n" + b + b"\r\n\r\n"
        ),
        st.text(max_size=50).map(
            lambda t: f"GET /papi/v1/{t} HTTP/1.1\r\nHost: x\r\n\r\n".encode(errors="replace")
        ),
    )
)
def test_random_bytes_on_the_socket_never_5xx(target: tuple[Server, Account], data: bytes) -> None:
    """Whatever arrives on the socket: no 5xx, and every answer in Binance's shape (a request the
    HTTP parser itself refuses too: 400 with code -1000, then the connection is closed)."""
    server, _ = target
    answer = _raw_exchange(server.port, data)
    if answer:
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0]
        assert not status_line.startswith(b"HTTP/1.1 5"), answer[:300]
        if b"content-length" in head.lower() and body:
            status = int(status_line.split()[1])
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            assert_binance_shaped(status, body[:length])
    assert httpx.get(f"{server.base_url}/papi/v1/ping").status_code == 200
