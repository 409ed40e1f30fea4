"""Modify UM Order (``PUT /papi/v1/um/order``) against the real server: an open LIMIT order takes
a new price and quantity and keeps its id; every refusal leaves it as it was; a new price the
mark reaches fills at once; ccxt's ``edit_order`` in Portfolio Margin mode reaches it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from papi_sandbox.store.contract import Store
from papi_sandbox.store.dialect import Db
from papi_sandbox.trading.engine import MAX_ORDER_MODIFICATIONS
from tests.api.test_market_data import ccxt_client
from tests.api.test_um_trading import ORDER, order, set_mark, trader
from tests.support import Server, Signer, with_store


def rest(signer: Signer, **params: str) -> dict[str, Any]:
    """A resting GTC BUY of 0.010 at 58,000 (mark 60,000)."""
    r = order(signer, **({"type": "LIMIT", "timeInForce": "GTC", "price": "58000"} | params))
    assert r.status_code == 200 and r.json()["status"] == "NEW", r.text
    result: dict[str, Any] = r.json()
    return result


def modify(signer: Signer, **params: str) -> httpx.Response:
    base = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.020", "price": "57000"}
    return signer.request("PUT", ORDER, base | params)


def open_orders(signer: Signer) -> list[dict[str, Any]]:
    r = signer.request("GET", "/papi/v1/um/openOrders", {"symbol": "BTCUSDT"})
    assert r.status_code == 200, r.text
    result: list[dict[str, Any]] = r.json()
    return result


def test_an_open_order_takes_a_new_price_and_quantity_and_keeps_its_id(server: Server) -> None:
    set_mark(server, "60000")
    _account, signer = trader(server)
    placed = rest(signer, newClientOrderId="edit-me")
    r = modify(signer, orderId=str(placed["orderId"]), modifyId="7")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["orderId"], body["clientOrderId"], body["status"]) == (
        placed["orderId"],
        "edit-me",
        "NEW",
    )
    assert (body["price"], body["origQty"], body["modifyId"]) == ("57000.00", "0.020", 7)
    assert body["updateTime"] >= placed["updateTime"]
    (listed,) = open_orders(signer)
    assert (listed["orderId"], listed["price"], listed["origQty"]) == (
        placed["orderId"],
        "57000.00",
        "0.020",
    )
    by_client = modify(signer, origClientOrderId="edit-me", price="57500", quantity="0.020")
    assert by_client.status_code == 200 and by_client.json()["price"] == "57500.00"
    # the new price fills when the mark reaches it, at that price, as maker
    set_mark(server, "57500")
    r = signer.request("GET", ORDER, {"symbol": "BTCUSDT", "orderId": str(placed["orderId"])})
    assert (r.json()["status"], r.json()["avgPrice"]) == ("FILLED", "57500.00000000")


REFUSED = [
    ({"orderId": "999999999"}, -2013),
    ({"side": "SELL"}, -1130),
    ({"price": "57000.05"}, -4014),
    ({"price": "70000"}, -4016),
    ({"quantity": "0.0101"}, -1111),
    ({"quantity": "0"}, -4003),
    ({"quantity": "0.001"}, -4164),
    ({"quantity": "50"}, -2019),
    ({"quantity": "0.010", "price": "58000"}, -5027),
    ({"priceMatch": "OPPONENT"}, -1130),
    ({"priceMatch": "BEST"}, -5037),  # not one of Binance's modes
    ({"price": None}, -1102),
    ({"quantity": None}, -1102),
    ({"orderId": None}, -1102),
    ({"quantity": "1e-2"}, -1100),
    ({"price": "５７０００"}, -1100),
    ({"symbol": "ETHUSDT"}, -2013),
    ({"symbol": "btcusdt"}, -1121),
]


@pytest.mark.parametrize(("change", "code"), REFUSED)
def test_a_refused_amendment_leaves_the_order_as_it_was(
    server: Server, change: dict[str, str | None], code: int
) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    placed = rest(signer)
    params: dict[str, str | None] = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "orderId": str(placed["orderId"]),
        "quantity": "0.020",
        "price": "57000",
    }
    params |= change  # None: not sent
    r = signer.request("PUT", ORDER, {k: v for k, v in params.items() if v is not None})
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    (still,) = open_orders(signer)
    assert (still["price"], still["origQty"], still["updateTime"]) == (
        "58000.00",
        "0.010",
        placed["updateTime"],
    )
    assert server.journal(account.account_id)[0]["type"] == "DEPOSIT"  # nothing booked


def test_closed_orders_cannot_be_modified(server: Server) -> None:
    set_mark(server, "60000")
    _account, signer = trader(server)
    placed = rest(signer)
    signer.request("DELETE", ORDER, {"symbol": "BTCUSDT", "orderId": str(placed["orderId"])})
    r = modify(signer, orderId=str(placed["orderId"]))
    assert (r.status_code, r.json()["code"]) == (400, -2013), r.text
    filled = order(signer).json()
    r = modify(signer, orderId=str(filled["orderId"]))
    assert (r.status_code, r.json()["code"]) == (400, -2013), r.text


def test_a_new_price_the_mark_reaches_fills_at_once_as_taker(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    placed = rest(signer)
    r = modify(signer, orderId=str(placed["orderId"]), price="61000", quantity="0.010")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["avgPrice"]) == ("FILLED", "60000.00000000")
    assert open_orders(signer) == []
    (trade,) = signer.request("GET", "/papi/v1/um/userTrades", {"symbol": "BTCUSDT"}).json()
    assert (trade["maker"], trade["commission"]) == (False, "0.30000000")  # taker 0.05 %
    assert server.journal(account.account_id)[0]["type"] == "COMMISSION"


def test_a_gtx_order_whose_new_price_would_take_is_cancelled(server: Server) -> None:
    set_mark(server, "60000")
    _account, signer = trader(server)
    placed = rest(signer, timeInForce="GTX")
    r = modify(signer, orderId=str(placed["orderId"]), price="61000", quantity="0.010")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CANCELED"
    assert open_orders(signer) == []


def _set_modify_count(db_url: str, order_id: int, count: int) -> None:
    """Record ``count`` amendments of the order (another process on the same ledger)."""

    def unit(db: Db) -> None:
        db.execute("UPDATE um_orders SET modify_count = ? WHERE order_id = ?", (count, order_id))

    async def body(store: Store) -> None:
        await store.write(unit)

    with_store(db_url, body)


def test_the_amendment_past_binance_s_limit_cancels_the_order(server: Server) -> None:
    """Binance: "one order can only be modified for less than 10000 times"; its doc lists this
    among the cases where the amendment cancels the order (docs/semantics.md)."""
    set_mark(server, "60000")
    _account, signer = trader(server)
    placed = rest(signer)
    ref = str(placed["orderId"])
    assert modify(signer, orderId=ref).json()["status"] == "NEW"  # amendment 1
    _set_modify_count(server.db_url, placed["orderId"], MAX_ORDER_MODIFICATIONS - 2)
    last = modify(signer, orderId=ref, price="57100")  # amendment 9,999: still taken
    assert (last.status_code, last.json()["status"], last.json()["price"]) == (
        200,
        "NEW",
        "57100.00",
    )
    r = modify(signer, orderId=ref, price="57200")  # the 10,000th: cancels the order
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["price"]) == ("CANCELED", "57100.00")
    assert open_orders(signer) == []
    again = modify(signer, orderId=ref, price="57300")
    assert (again.status_code, again.json()["code"]) == (400, -2013)


def test_ccxt_edit_order_in_portfolio_margin_mode(server: Server) -> None:
    set_mark(server, "60000")
    account, _signer = trader(server)
    exchange = ccxt_client(server, account)
    exchange.load_markets()
    symbol = "BTC/USDT:USDT"
    placed = exchange.create_order(symbol, "limit", "buy", 0.010, 58000)
    edited = exchange.edit_order(placed["id"], symbol, "limit", "buy", 0.020, 57000)
    assert (edited["id"], edited["price"], edited["amount"]) == (placed["id"], 57000, 0.02)
    (listed,) = exchange.fetch_open_orders(symbol)
    assert (listed["price"], listed["amount"]) == (57000, 0.02)
