"""The issue's story through real clients, unmodified, pointed at the sandbox: a new account
with 10,000 USDT of margin buys 0.010 BTCUSDT at 60,000 (commission 0.30), the operator marks
49,000 (unrealized −110), a reduce-only sell realizes −110 and pays 0.245 (UM −110.545), and
repay-futures-negative-balance moves 110.545 from margin (free 9,889.455), leaving UM at 0.

ccxt in Portfolio Margin mode (README recipe), the official SDK, python-binance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.api.test_market_data import ccxt_client, recording
from tests.support import Account, Server, Signer, sdk_client

STORY_MARGIN = "10000"


def new_story_account(server: Server, label: str) -> Account:
    account = server.create_account(label)
    server.adjust(account.account_id, "MARGIN", "USDT", STORY_MARGIN, "DEPOSIT")
    mark(server, "60000")
    return account


def mark(server: Server, price: str, symbol: str = "BTCUSDT") -> dict[str, Any]:
    r = server.admin.request("PUT", f"/markets/{symbol}/price", json={"markPrice": price})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def usdt(server: Server, account: Account) -> dict[str, Any]:
    r = Signer(server.base_url, account).request("GET", "/papi/v1/balance", {"asset": "USDT"})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def assert_story_end(server: Server, account: Account) -> None:
    row = usdt(server, account)
    assert (row["crossMarginFree"], row["umWalletBalance"], row["negativeBalance"]) == (
        "9889.45500000",
        "0.00000000",
        "0.00000000",
    )
    r = server.admin.request("GET", "/verify")
    assert r.status_code == 200 and r.json()["ok"], r.text


def test_story_with_ccxt_portfolio_margin(server: Server) -> None:
    account = new_story_account(server, "ccxt-story")
    exchange = ccxt_client(server, account)
    urls = recording(exchange)
    exchange.load_markets()
    symbol = "BTC/USDT:USDT"
    assert exchange.fetch_balance()["total"]["USDT"] == 10000

    exchange.set_leverage(10, symbol)
    limit = exchange.create_order(symbol, "limit", "buy", 0.010, 58000)
    assert limit["status"] == "open" and limit["price"] == 58000
    open_orders = exchange.fetch_open_orders(symbol)
    assert [o["id"] for o in open_orders] == [limit["id"]]
    cancelled = exchange.cancel_order(limit["id"], symbol)
    assert cancelled["status"] == "canceled"
    assert exchange.fetch_open_orders(symbol) == []

    bought = exchange.create_order(symbol, "market", "buy", 0.010)
    assert bought["status"] == "closed" and bought["average"] == 60000 and bought["filled"] == 0.01
    assert usdt(server, account)["umWalletBalance"] == "-0.30000000"

    mark(server, "49000")
    (position,) = [p for p in exchange.fetch_positions([symbol]) if p["contracts"]]
    assert position["side"] == "long" and position["contracts"] == 0.01
    assert position["unrealizedPnl"] == -110 and position["entryPrice"] == 60000
    assert usdt(server, account)["umUnrealizedPNL"] == "-110.00000000"

    sold = exchange.create_order(symbol, "market", "sell", 0.010, None, {"reduceOnly": True})
    assert sold["status"] == "closed" and sold["reduceOnly"] is True
    assert usdt(server, account)["umWalletBalance"] == "-110.54500000"

    trades = exchange.fetch_my_trades(symbol)
    assert [(t["side"], t["price"], t["fee"]["cost"]) for t in trades] == [
        ("buy", 60000, 0.3),
        ("sell", 49000, 0.245),
    ]
    assert trades[1]["info"]["realizedPnl"] == "-110.00000000"
    assert exchange.fetch_funding_history(symbol) == []

    Signer(server.base_url, account).request("POST", "/papi/v1/repay-futures-negative-balance")
    assert_story_end(server, account)
    assert all(u.startswith(server.base_url) for u in urls)


def test_story_with_the_official_sdk(server: Server) -> None:
    account = new_story_account(server, "sdk-story")
    api = sdk_client(server, account)
    placed = api.new_um_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.01, new_order_resp_type="RESULT"
    ).data()
    assert (placed.status, placed.executed_qty) == ("FILLED", "0.010")
    queried = api.query_um_order(symbol="BTCUSDT", order_id=placed.order_id).data()
    assert (queried.status, queried.avg_price, queried.orig_type) == (
        "FILLED",
        "60000.00000000",
        "MARKET",
    )
    mark(server, "49000")
    (position,) = api.query_um_position_information(symbol="BTCUSDT").data()
    assert (position.position_amt, position.un_realized_profit, position.entry_price) == (
        "0.010",
        "-110.00000000",
        "60000.00000000",
    )
    account_detail = api.get_um_account_detail().data()
    assert account_detail.assets[0].cross_un_pnl == "-110.00000000"

    # A resting order, queried and cancelled through the SDK.
    resting = api.new_um_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=0.01, price=48000, time_in_force="GTC"
    ).data()
    assert resting.status == "NEW"
    cancelled = api.cancel_um_order(symbol="BTCUSDT", order_id=resting.order_id).data()
    assert cancelled.status == "CANCELED"

    sold = api.new_um_order(
        symbol="BTCUSDT",
        side="SELL",
        type="MARKET",
        quantity=0.01,
        reduce_only="true",
        new_order_resp_type="RESULT",
    ).data()
    assert sold.status == "FILLED"
    assert usdt(server, account)["umWalletBalance"] == "-110.54500000"
    assert api.repay_futures_negative_balance().data().msg == "success"
    assert_story_end(server, account)


def test_story_with_python_binance(server: Server) -> None:
    from binance.client import Client

    account = new_story_account(server, "python-binance-story")
    client = Client(account.api_key, account.secret, ping=False)
    client.PAPI_URL = server.base_url + "/papi"
    placed = client.papi_create_um_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newOrderRespType="RESULT"
    )
    assert (placed["status"], placed["avgPrice"]) == ("FILLED", "60000.00000000")
    assert client.papi_get_um_order(symbol="BTCUSDT", orderId=placed["orderId"])["status"] == (
        "FILLED"
    )
    mark(server, "49000")
    sold = client.papi_create_um_order(
        symbol="BTCUSDT",
        side="SELL",
        type="MARKET",
        quantity="0.010",
        reduceOnly="true",
        newOrderRespType="RESULT",
    )
    assert sold["status"] == "FILLED"
    trades = client.papi_get_um_user_trades(symbol="BTCUSDT")
    assert [(t["commission"], t["realizedPnl"]) for t in trades] == [
        ("0.30000000", "0.00000000"),
        ("0.24500000", "-110.00000000"),
    ]
    income = client.papi_get_um_income_history(symbol="BTCUSDT")
    assert sum(Decimal(i["income"]) for i in income) == Decimal("-110.545")
    assert client.papi_repay_futures_negative_balance() == {"msg": "success"}
    assert_story_end(server, account)


@pytest.mark.parametrize("where", ["query", "body", "split"])
def test_story_over_raw_http_in_every_parameter_place(server: Server, where: str) -> None:
    account = new_story_account(server, f"raw-{where}")
    signer = Signer(server.base_url, account)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}
    r = signer.request("POST", "/papi/v1/um/order", order, where=where)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "NEW"  # ACK: the order as accepted
    mark(server, "49000")
    close = order | {"side": "SELL", "reduceOnly": "true", "newOrderRespType": "RESULT"}
    r = signer.request("POST", "/papi/v1/um/order", close, where=where)
    assert r.status_code == 200 and r.json()["status"] == "FILLED", r.text
    signer.request("POST", "/papi/v1/repay-futures-negative-balance")
    assert_story_end(server, account)
