"""New UM Order's ``timeInForce=GTD`` with ``goodTillDate``, ``selfTradePreventionMode`` and
``priceMatch`` against the real server (both stores): each accepted value is stored and echoed
by the order's answers and its stream events; each refused one gets Binance's code and changes
nothing; a GTD order still open at its goodTillDate expires (EXPIRED, its margin freed), by the
operator's ``POST /admin/v1/orders/expire`` with a later ``asOf`` and by the server on its own."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from websockets.sync.client import connect

from papi_sandbox.market.state import Market
from papi_sandbox.store import trading as trading_store
from papi_sandbox.store.contract import Store
from papi_sandbox.trading.filters import OrderRequest
from papi_sandbox.trading.model import OrderType, Side, TimeInForce
from tests.api.test_market_data import ccxt_client
from tests.api.test_um_trading import ORDER, order, set_mark, trader
from tests.stream.test_order_events import drain
from tests.stream.test_websocket import listen_key, ws_url
from tests.support import Server, Signer, now_ms, sdk_client, with_store

HOUR_MS = 3_600_000


def gtd(signer: Signer, good_till: int, **params: str) -> dict[str, Any]:
    """A resting GTD BUY of 0.010 at 58,000 (mark 60,000) until ``good_till``."""
    limit = {"type": "LIMIT", "timeInForce": "GTD", "price": "58000"}
    r = order(signer, **(limit | {"goodTillDate": str(good_till)} | params))
    assert r.status_code == 200 and r.json()["status"] == "NEW", r.text
    placed: dict[str, Any] = r.json()
    return placed


def views(signer: Signer, order_id: int) -> list[dict[str, Any]]:
    """The order as query, openOrder, openOrders and allOrders show it."""
    ref = {"symbol": "BTCUSDT", "orderId": str(order_id)}
    found = [
        signer.request("GET", ORDER, ref).json(),
        signer.request("GET", "/papi/v1/um/openOrder", ref).json(),
        *(
            o
            for o in signer.request("GET", "/papi/v1/um/openOrders", {"symbol": "BTCUSDT"}).json()
            if o["orderId"] == order_id
        ),
        *(
            o
            for o in signer.request("GET", "/papi/v1/um/allOrders", {"symbol": "BTCUSDT"}).json()
            if o["orderId"] == order_id
        ),
    ]
    assert len(found) == 4, found
    return found


def test_each_parameter_is_stored_and_echoed_by_answers_and_stream(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        good_till = now_ms() + HOUR_MS + 789  # the milliseconds are dropped
        placed = gtd(signer, good_till, selfTradePreventionMode="EXPIRE_MAKER", priceMatch="NONE")
        kept = good_till - good_till % 1000
        expected = ("GTD", kept, "EXPIRE_MAKER", "NONE", "NEW")
        for shown in [placed, *views(signer, placed["orderId"])]:
            assert (
                shown["timeInForce"],
                shown["goodTillDate"],
                shown["selfTradePreventionMode"],
                shown["priceMatch"],
                shown["status"],
            ) == expected
        (new,) = drain(ws)
        assert (new["o"]["x"], new["o"]["f"], new["o"]["gtd"], new["o"]["V"], new["o"]["pm"]) == (
            "NEW",
            "GTD",
            kept,
            "EXPIRE_MAKER",
            "NONE",
        )
        # any time in force and MARKET orders take a mode too; goodTillDate only with GTD
        market = order(signer, selfTradePreventionMode="EXPIRE_BOTH", goodTillDate=str(kept))
        assert market.status_code == 200, market.text
        assert (
            market.json()["status"],
            market.json()["selfTradePreventionMode"],
            market.json()["goodTillDate"],
        ) == ("FILLED", "EXPIRE_BOTH", 0)
        updates = [e["o"] for e in drain(ws) if e["e"] == "ORDER_TRADE_UPDATE"]
        assert [(o["x"], o["V"]) for o in updates] == [
            ("NEW", "EXPIRE_BOTH"),
            ("TRADE", "EXPIRE_BOTH"),
        ]
        plain = order(signer, type="LIMIT", timeInForce="GTC", price="58000").json()
        assert (plain["selfTradePreventionMode"], plain["goodTillDate"]) == ("NONE", 0)


def _refusals(now: int) -> list[tuple[dict[str, str], int]]:
    limit = {"type": "LIMIT", "timeInForce": "GTD", "price": "58000"}
    return [
        (limit, -1102),  # GTD without goodTillDate
        (limit | {"goodTillDate": str(now + 600_000)}, -5040),  # not more than 600 s ahead
        (limit | {"goodTillDate": str(now + 300_000)}, -5040),
        (limit | {"goodTillDate": str(now - HOUR_MS)}, -5040),
        (limit | {"goodTillDate": "253402300799000"}, -5040),
        (limit | {"goodTillDate": "253402300800000"}, -5040),
        (limit | {"goodTillDate": "99999999999999999999"}, -1102),  # past a LONG
        (limit | {"goodTillDate": "1e12"}, -1102),
        (limit | {"goodTillDate": str(now + HOUR_MS), "timeInForce": "GTE"}, -1115),
        ({"selfTradePreventionMode": "EXPIRE"}, -5039),
        ({"selfTradePreventionMode": "expire_maker"}, -5039),
        ({"priceMatch": "OPPONENT"}, -1130),
        ({"priceMatch": "QUEUE_5"}, -1130),
        ({"priceMatch": "BEST"}, -5037),
    ]


@pytest.mark.parametrize("case", range(14))
def test_bad_values_are_refused_with_binance_codes_and_change_nothing(
    server: Server, case: int
) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    cases = _refusals(now_ms())
    assert len(cases) == 14
    params, code = cases[case]
    r = order(signer, **params)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    assert server.journal(account.account_id)[0]["type"] == "DEPOSIT"  # nothing booked
    assert signer.request("GET", "/papi/v1/um/openOrders").json() == []
    assert signer.request("GET", "/papi/v1/um/allOrders", {"symbol": "BTCUSDT"}).json() == []


def _open_order_margin(signer: Signer) -> str:
    assets = signer.request("GET", "/papi/v1/um/account").json()["assets"]
    (usdt,) = [a for a in assets if a["asset"] == "USDT"]
    margin: str = usdt["openOrderInitialMargin"]
    return margin


def test_a_gtd_order_expires_at_its_good_till_date(fresh_server: Server) -> None:
    # A server of its own: the counts of expired orders below are the whole server's.
    server = fresh_server
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    now = now_ms()
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        soon = gtd(signer, now + 700_000)
        later = gtd(signer, now + 2 * HOUR_MS)
        gtc = order(signer, type="LIMIT", timeInForce="GTC", price="58000").json()
        drain(ws)
        # three orders of 0.010 at 58,000 hold 58000 × 0.010 / 20 = 29 each
        assert _open_order_margin(signer) == "87.00000000"
        due = soon["goodTillDate"]
        before = server.admin.expire_orders(due - 1000)
        assert before == {"asOf": due - 1000, "expired": 0}
        assert views(signer, soon["orderId"])[0]["status"] == "NEW"
        assert server.admin.expire_orders(due) == {"asOf": due, "expired": 1}
        r = signer.request("GET", ORDER, {"symbol": "BTCUSDT", "orderId": str(soon["orderId"])})
        expired = r.json()
        assert (expired["status"], expired["executedQty"], expired["goodTillDate"]) == (
            "EXPIRED",
            "0.000",
            due,
        )
        assert expired["updateTime"] >= soon["updateTime"]
        (event,) = drain(ws)
        o = event["o"]
        assert (event["e"], o["x"], o["X"], o["i"], o["f"], o["gtd"], o["T"]) == (
            "ORDER_TRADE_UPDATE",
            "EXPIRED",
            "EXPIRED",
            soon["orderId"],
            "GTD",
            due,
            expired["updateTime"],
        )
        assert o["b"] == "1160.00000000"  # the two still open: 2 × 58000 × 0.010
        listed = signer.request("GET", "/papi/v1/um/openOrders", {"symbol": "BTCUSDT"}).json()
        assert [x["orderId"] for x in listed] == [later["orderId"], gtc["orderId"]]
        assert _open_order_margin(signer) == "58.00000000"  # its 29 freed
        gone = signer.request(
            "GET", "/papi/v1/um/openOrder", {"symbol": "BTCUSDT", "orderId": str(soon["orderId"])}
        )
        assert (gone.status_code, gone.json()["code"]) == (400, -2013)
        assert server.admin.expire_orders(due)["expired"] == 0  # once
        cancel = signer.request(
            "DELETE", ORDER, {"symbol": "BTCUSDT", "orderId": str(soon["orderId"])}
        )
        assert (cancel.status_code, cancel.json()["code"]) == (400, -2011)
        # a mark that crosses 58,000 fills the two open orders only
        set_mark(server, "57900")
        trades = signer.request("GET", "/papi/v1/um/userTrades", {"symbol": "BTCUSDT"}).json()
        assert sorted(t["orderId"] for t in trades) == sorted([later["orderId"], gtc["orderId"]])
    assert server.admin.verify().ok


def _backdated_gtd(db_url: str, account_id: int, age_ms: int) -> int:
    """A GTD order placed (by another process on the same ledger) ``age_ms`` ago with the
    earliest goodTillDate then allowed: already due now. Returns its id."""
    placed: list[int] = []

    async def body(store: Store) -> None:
        market = Market()
        then = now_ms() - age_ms
        request = OrderRequest(
            "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.010"), Decimal(58000),
            TimeInForce.GTD, None, None, None, then + 601_000,
        )  # fmt: skip
        order_placed, _ = await store.write(
            trading_store.place_order,
            account_id,
            request,
            market.specs,
            market.config.collateral_rates,
            then,
        )
        placed.append(order_placed.order_id)

    with_store(db_url, body)
    return placed[0]


def test_the_server_expires_a_due_gtd_order_by_itself(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    order_id = _backdated_gtd(server.db_url, account.account_id, 700_000)
    ref = {"symbol": "BTCUSDT", "orderId": str(order_id)}
    deadline = time.monotonic() + 15  # the server looks every second
    status = signer.request("GET", ORDER, ref).json()["status"]
    while status == "NEW" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = signer.request("GET", ORDER, ref).json()["status"]
    assert status == "EXPIRED"
    assert signer.request("GET", "/papi/v1/um/openOrders").json() == []


def test_ccxt_python_binance_and_the_sdk_send_gtd_and_the_stp_mode(server: Server) -> None:
    from binance.client import Client

    set_mark(server, "60000")
    account, _signer = trader(server)
    good_till = now_ms() + HOUR_MS
    exchange = ccxt_client(server, account)
    exchange.load_markets()
    placed = exchange.create_order(
        "BTC/USDT:USDT",
        "limit",
        "buy",
        0.010,
        58000,
        {"timeInForce": "GTD", "goodTillDate": good_till, "selfTradePrevention": "expire_taker"},
    )
    fetched = exchange.fetch_order(placed["id"], "BTC/USDT:USDT")
    assert (fetched["timeInForce"], fetched["status"]) == ("GTD", "open")
    assert (
        fetched["info"]["goodTillDate"],
        fetched["info"]["selfTradePreventionMode"],
    ) == (good_till - good_till % 1000, "EXPIRE_TAKER")
    client = Client(account.api_key, account.secret, ping=False)
    client.PAPI_URL = server.base_url + "/papi"
    other = client.papi_create_um_order(
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTD",
        goodTillDate=good_till + 5000,
        selfTradePreventionMode="EXPIRE_BOTH",
        quantity="0.010",
        price="57000",
    )
    shown = client.papi_get_um_order(symbol="BTCUSDT", orderId=other["orderId"])
    assert (shown["timeInForce"], shown["goodTillDate"], shown["selfTradePreventionMode"]) == (
        "GTD",
        good_till + 5000 - (good_till + 5000) % 1000,
        "EXPIRE_BOTH",
    )
    api = sdk_client(server, account)
    third = api.new_um_order(
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        quantity=0.01,
        price=57500,
        time_in_force="GTD",
        good_till_date=good_till + 9000,
        self_trade_prevention_mode="EXPIRE_MAKER",
    ).data()
    queried = api.query_um_order(symbol="BTCUSDT", order_id=third.order_id).data()
    assert (
        queried.status,
        queried.time_in_force,
        queried.good_till_date,
        queried.self_trade_prevention_mode,
    ) == ("NEW", "GTD", good_till + 9000 - (good_till + 9000) % 1000, "EXPIRE_MAKER")
