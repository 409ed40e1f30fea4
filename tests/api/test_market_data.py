"""The public market data clients boot with (/fapi, /api/v3, /dapi, /sapi), over HTTP against
the real server, and ccxt's load_markets() with every URL pointed at the sandbox."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import ccxt
import httpx
import pytest

from tests.support import Account, Server, Signer


def ccxt_client(server: Server, account: Account | None) -> Any:
    """ccxt in Portfolio Margin mode with every API URL pointed at the sandbox (README recipe)."""
    exchange = ccxt.binance(
        {
            "apiKey": account.api_key if account else None,
            "secret": account.secret if account else None,
            "options": {"portfolioMargin": True},
        }
    )

    def point(urls: dict[str, Any]) -> None:
        for key, value in urls.items():
            if isinstance(value, str):
                urls[key] = re.sub(r"^https://[a-z0-9.-]+", server.base_url, value)
            elif isinstance(value, dict):
                point(value)

    point(exchange.urls["api"])
    return exchange


def recording(exchange: Any) -> list[str]:
    """Every URL the client requests from now on."""
    seen: list[str] = []
    original = exchange.fetch

    def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(url)
        return original(url, *args, **kwargs)

    exchange.fetch = fetch
    return seen


@pytest.mark.parametrize("with_keys", [False, True])
def test_ccxt_load_markets_reaches_only_the_sandbox(
    server: Server, account: Account, with_keys: bool
) -> None:
    exchange = ccxt_client(server, account if with_keys else None)
    urls = recording(exchange)
    markets = exchange.load_markets()
    assert {"BTC/USDT:USDT", "ETH/USDT:USDT", "BNB/USDT:USDT", "BTC/USDT"} <= set(markets)
    btc = markets["BTC/USDT:USDT"]
    assert btc["linear"] and btc["swap"] and btc["settle"] == "USDT"
    assert btc["precision"]["price"] == 0.1 and btc["precision"]["amount"] == 0.001
    assert btc["limits"]["cost"]["min"] == 100
    assert urls and all(u.startswith(server.base_url) for u in urls)
    paths = {re.sub(r"\?.*", "", u[len(server.base_url) :]) for u in urls}
    expected = {"/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"}
    if with_keys:
        expected |= {
            "/sapi/v1/capital/config/getall",
            "/sapi/v1/margin/allPairs",
            "/sapi/v1/margin/isolated/allPairs",
        }
        assert "USDT" in exchange.currencies
    assert paths == expected


def test_boot_endpoints_shapes_and_weights(server: Server) -> None:
    get = httpx.Client(base_url=server.base_url, timeout=10).get
    for path in ("/fapi/v1/ping", "/api/v3/ping"):
        assert get(path).json() == {}
    for path in ("/fapi/v1/time", "/api/v3/time"):
        assert isinstance(get(path).json()["serverTime"], int)
    info = get("/fapi/v1/exchangeInfo").json()
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.10"
    assert filters["MIN_NOTIONAL"]["notional"] == "100"
    assert filters["LOT_SIZE"]["stepSize"] == "0.001"
    assert btc["contractType"] == "PERPETUAL" and btc["marginAsset"] == "USDT"
    one = get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"})
    assert one.headers["X-MBX-USED-WEIGHT-1M"]
    body = one.json()
    assert set(body) == {
        "symbol",
        "markPrice",
        "indexPrice",
        "estimatedSettlePrice",
        "lastFundingRate",
        "interestRate",
        "nextFundingTime",
        "time",
    }
    assert body["nextFundingTime"] % (8 * 3_600_000) == 0
    assert len(get("/fapi/v1/premiumIndex").json()) == 3
    assert get("/fapi/v1/ticker/price", params={"symbol": "ETHUSDT"}).json()["symbol"] == "ETHUSDT"
    bad = get("/fapi/v1/premiumIndex", params={"symbol": "NOPEUSDT"})
    assert bad.status_code == 400 and bad.json()["code"] == -1121
    spot = get("/api/v3/exchangeInfo").json()
    assert {s["symbol"] for s in spot["symbols"]} == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    assert get("/dapi/v1/exchangeInfo").json()["symbols"] == []


def test_weight_is_higher_without_symbol(fresh_server: Server) -> None:
    client = httpx.Client(base_url=fresh_server.base_url, timeout=10)
    first = int(
        client.get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"}).headers[
            "X-MBX-USED-WEIGHT-1M"
        ]
    )
    second = int(client.get("/fapi/v1/premiumIndex").headers["X-MBX-USED-WEIGHT-1M"])
    assert second - first == 10


def test_sapi_endpoints_are_signed(server: Server, signer: Signer) -> None:
    unsigned = httpx.get(f"{server.base_url}/sapi/v1/capital/config/getall", timeout=10)
    assert unsigned.status_code == 401
    coins = signer.request("GET", "/sapi/v1/capital/config/getall").json()
    assert {c["coin"] for c in coins} >= {"USDT", "BTC", "ETH", "BNB"}
    pairs = signer.request("GET", "/sapi/v1/margin/allPairs").json()
    assert {p["symbol"] for p in pairs} == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    assert len(signer.request("GET", "/sapi/v1/margin/isolated/allPairs").json()) == 3


def test_the_price_feed_moves_prices(tmp_path: Path) -> None:
    config = tmp_path / "papi.toml"
    config.write_text(
        '[market.feed]\nkind = "random_walk"\nsymbols = ["ETHUSDT"]\ninterval_ms = 50\n'
        'seed = 3\nstep = "0.01"\n'
    )
    server = Server(tmp_path / "feed-server", env={"PAPI_SANDBOX_CONFIG": str(config)})
    server.start()
    try:
        seen = set()
        deadline = time.monotonic() + 20
        while len(seen) < 4 and time.monotonic() < deadline:
            r = httpx.get(f"{server.base_url}/fapi/v1/premiumIndex", params={"symbol": "ETHUSDT"})
            seen.add(r.json()["markPrice"])
            time.sleep(0.1)
        assert len(seen) >= 4  # the walk moves the mark by itself
        btc = httpx.get(f"{server.base_url}/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"})
        assert btc.json()["markPrice"] == "60000.00000000"  # only the feed's symbols move
    finally:
        server.stop()
