"""UM trading over HTTP against the real server: Binance's refusals and codes, the fill model
driven by the operator's prices, funding slots, settings, history windows and durability."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import Account, Server, Signer

ORDER = "/papi/v1/um/order"


def trader(server: Server, margin: str = "10000") -> tuple[Account, Signer]:
    account = server.create_account("trader")
    server.adjust(account.account_id, "MARGIN", "USDT", margin, "DEPOSIT")
    return account, Signer(server.base_url, account)


def set_mark(server: Server, price: str, symbol: str = "BTCUSDT") -> dict[str, Any]:
    r = server.admin.request("PUT", f"/markets/{symbol}/price", json={"markPrice": price})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def order(signer: Signer, **params: str) -> httpx.Response:
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}
    return signer.request("POST", ORDER, base | {"newOrderRespType": "RESULT"} | params)


REFUSALS = [
    ({"symbol": "DOGEUSDT"}, -1121),
    ({"type": "STOP_MARKET"}, -1116),
    ({"type": "TAKE_PROFIT"}, -1116),
    ({"type": "TRAILING_STOP_MARKET"}, -1116),
    ({"side": "HOLD"}, -1117),
    ({"type": "LIMIT", "price": "60000"}, -1102),  # no timeInForce
    ({"type": "LIMIT", "price": "60000", "timeInForce": "GTD"}, -1102),  # no goodTillDate
    ({"type": "LIMIT", "price": "60000", "timeInForce": "DAY"}, -1115),
    ({"price": "60000"}, -1106),
    ({"quantity": "0.0101"}, -1111),
    ({"quantity": "0"}, -4003),
    ({"quantity": "121"}, -4005),
    ({"quantity": "0.001"}, -4164),
    ({"type": "LIMIT", "timeInForce": "GTC", "price": "59000.05"}, -4014),
    ({"type": "LIMIT", "timeInForce": "GTC", "price": "70000"}, -4016),
    ({"type": "LIMIT", "timeInForce": "GTC", "price": "50000"}, -4024),
    ({"type": "LIMIT", "timeInForce": "FOK", "price": "59000"}, -5021),
    ({"type": "LIMIT", "timeInForce": "GTX", "price": "61000"}, -5022),
    ({"side": "SELL", "reduceOnly": "true"}, -2022),
    ({"positionSide": "LONG"}, -4061),
    ({"quantity": "4"}, -2019),
    ({"newClientOrderId": "no spaces allowed"}, -4015),
    ({"quantity": "1e-2"}, -1100),
    ({"quantity": "٠.٠١"}, -1100),
]


@pytest.mark.parametrize(("params", "code"), REFUSALS)
def test_refusals_carry_binance_codes_and_change_nothing(
    server: Server, params: dict[str, str], code: int
) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    r = order(signer, **params)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    assert server.journal(account.account_id)[0]["type"] == "DEPOSIT"  # nothing booked
    assert signer.request("GET", "/papi/v1/um/openOrders").json() == []


def test_resting_orders_fill_at_their_price_when_the_operator_moves_the_mark(
    server: Server,
) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    buy = order(signer, type="LIMIT", timeInForce="GTC", price="58000").json()
    sell = order(signer, side="SELL", type="LIMIT", timeInForce="GTX", price="61000").json()
    assert buy["status"] == sell["status"] == "NEW"
    assert len(signer.request("GET", "/papi/v1/um/openOrders", {"symbol": "BTCUSDT"}).json()) == 2
    set_mark(server, "58500")  # crosses nothing
    assert (
        signer.request("GET", ORDER, {"symbol": "BTCUSDT", "orderId": buy["orderId"]}).json()[
            "status"
        ]
        == "NEW"
    )
    set_mark(server, "57990.5")  # crosses the BUY: it fills at 58,000 as maker
    filled = signer.request("GET", ORDER, {"symbol": "BTCUSDT", "orderId": buy["orderId"]}).json()
    assert (filled["status"], filled["avgPrice"]) == ("FILLED", "58000.00000000")
    (trade,) = signer.request("GET", "/papi/v1/um/userTrades", {"symbol": "BTCUSDT"}).json()
    assert (trade["maker"], trade["price"], trade["commission"]) == (True, "58000.00", "0.11600000")
    open_one = signer.request(
        "GET", "/papi/v1/um/openOrder", {"symbol": "BTCUSDT", "orderId": sell["orderId"]}
    )
    assert open_one.json()["status"] == "NEW"
    gone = signer.request(
        "GET", "/papi/v1/um/openOrder", {"symbol": "BTCUSDT", "orderId": buy["orderId"]}
    )
    assert (gone.status_code, gone.json()["code"]) == (400, -2013)
    set_mark(server, "61000")  # crosses the SELL: closes the long at 61,000, realizing 30
    income = signer.request("GET", "/papi/v1/um/income", {"incomeType": "REALIZED_PNL"}).json()
    assert [i["income"] for i in income] == ["30.00000000"]
    assert signer.request("GET", "/papi/v1/um/openOrders").json() == []
    assert server.admin.request("GET", "/verify").json()["ok"]
    del account


def test_ioc_expires_and_cancel_rules(server: Server) -> None:
    set_mark(server, "60000")
    _, signer = trader(server)
    ioc = order(signer, type="LIMIT", timeInForce="IOC", price="59000").json()
    assert (ioc["status"], ioc["executedQty"]) == ("EXPIRED", "0.000")
    r = signer.request("DELETE", ORDER, {"symbol": "BTCUSDT", "orderId": ioc["orderId"]})
    assert (r.status_code, r.json()["code"]) == (400, -2011)
    r = signer.request("DELETE", ORDER, {"symbol": "BTCUSDT"})
    assert (r.status_code, r.json()["code"]) == (400, -1102)
    r = signer.request("GET", ORDER, {"symbol": "BTCUSDT", "orderId": "999999999"})
    assert (r.status_code, r.json()["code"]) == (400, -2013)
    a = order(signer, type="LIMIT", timeInForce="GTC", price="59000", newClientOrderId="mine-1")
    assert a.status_code == 200
    dup = order(signer, type="LIMIT", timeInForce="GTC", price="59000", newClientOrderId="mine-1")
    assert dup.json()["code"] == -4116
    r = signer.request("GET", ORDER, {"symbol": "BTCUSDT", "origClientOrderId": "mine-1"})
    assert r.json()["clientOrderId"] == "mine-1"
    r = signer.request("DELETE", "/papi/v1/um/allOpenOrders", {"symbol": "BTCUSDT"})
    assert r.json() == {"code": 200, "msg": "The operation of cancel all open order is done."}
    statuses = [
        o["status"]
        for o in signer.request("GET", "/papi/v1/um/allOrders", {"symbol": "BTCUSDT"}).json()
    ]
    assert statuses == ["EXPIRED", "CANCELED"]


def test_settings_endpoints(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    r = signer.request("POST", "/papi/v1/um/leverage", {"symbol": "BTCUSDT", "leverage": "126"})
    assert r.json()["code"] == -4028
    r = signer.request("POST", "/papi/v1/um/leverage", {"symbol": "BTCUSDT", "leverage": "5"})
    assert r.json() == {"leverage": 5, "maxNotionalValue": "480000000", "symbol": "BTCUSDT"}
    config = signer.request("GET", "/papi/v1/um/symbolConfig", {"symbol": "BTCUSDT"}).json()
    assert config[0]["leverage"] == 5
    brackets = signer.request("GET", "/papi/v1/um/leverageBracket", {"symbol": "BTCUSDT"}).json()
    assert brackets[0]["brackets"][1] == {
        "bracket": 2,
        "initialLeverage": 100,
        "notionalCap": 600000,
        "notionalFloor": 50000,
        "maintMarginRatio": 0.005,
        "cum": 50,
    }
    assert signer.request("GET", "/papi/v1/um/positionSide/dual").json() == {
        "dualSidePosition": False
    }
    r = signer.request("POST", "/papi/v1/um/positionSide/dual", {"dualSidePosition": "false"})
    assert r.json()["code"] == -4059
    assert order(signer).status_code == 200
    r = signer.request("POST", "/papi/v1/um/positionSide/dual", {"dualSidePosition": "true"})
    assert r.json()["code"] == -4068
    rate = signer.request("GET", "/papi/v1/um/commissionRate", {"symbol": "BTCUSDT"}).json()
    assert rate == {
        "symbol": "BTCUSDT",
        "makerCommissionRate": "0.0002",
        "takerCommissionRate": "0.0005",
    }
    r = server.admin.request(
        "PUT", f"/accounts/{account.account_id}/commission", json={"maker": "0", "taker": "0.001"}
    )
    assert r.status_code == 200, r.text
    sold = order(signer, side="SELL", reduceOnly="true").json()
    assert sold["status"] == "FILLED"
    trades = signer.request("GET", "/papi/v1/um/userTrades", {"symbol": "BTCUSDT"}).json()
    assert trades[-1]["commission"] == "0.60000000"  # 600 × 0.001
    assert signer.request("GET", "/papi/v1/um/accountConfig").json()["dualSidePosition"] is False
    v2 = signer.request("GET", "/papi/v2/um/account").json()
    assert {p["symbol"] for p in v2["positions"]} == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}


def test_hedge_mode_orders(server: Server) -> None:
    set_mark(server, "3000", "ETHUSDT")
    _, signer = trader(server)
    r = signer.request("POST", "/papi/v1/um/positionSide/dual", {"dualSidePosition": "true"})
    assert r.json() == {"code": 200, "msg": "success"}
    eth = {"symbol": "ETHUSDT", "quantity": "0.100"}
    assert order(signer, **eth).json()["code"] == -4061
    assert order(signer, **eth, positionSide="LONG", reduceOnly="false").json()["code"] == -1106
    assert order(signer, **eth, positionSide="LONG").json()["status"] == "FILLED"
    assert order(signer, **eth, side="SELL", positionSide="SHORT").json()["status"] == "FILLED"
    risk = signer.request("GET", "/papi/v1/um/positionRisk", {"symbol": "ETHUSDT"}).json()
    assert {(p["positionSide"], p["positionAmt"]) for p in risk} == {
        ("LONG", "0.100"),
        ("SHORT", "-0.100"),
    }
    # a close past its position is refused whole, as Binance does in hedge mode (nothing fills)
    over = order(signer, symbol="ETHUSDT", quantity="0.101", side="SELL", positionSide="LONG")
    assert (over.status_code, over.json()) == (
        400,
        {"code": -2022, "msg": "ReduceOnly Order is rejected."},
    )
    # ... and so is an amendment that would leave one (a resting close of 0.040 made 0.101)
    resting = order(signer, **(eth | {"quantity": "0.040"}), side="SELL", positionSide="LONG",
                    type="LIMIT", timeInForce="GTC", price="3100").json()  # fmt: skip
    amend = {"symbol": "ETHUSDT", "side": "SELL", "orderId": str(resting["orderId"])}
    bigger = signer.request("PUT", ORDER, amend | {"quantity": "0.101", "price": "3100"})
    assert (bigger.status_code, bigger.json()["code"]) == (400, -2022)
    same = signer.request("PUT", ORDER, amend | {"quantity": "0.100", "price": "3100"})
    assert (same.status_code, same.json()["origQty"]) == (200, "0.100")
    signer.request("DELETE", ORDER, {"symbol": "ETHUSDT", "orderId": str(resting["orderId"])})
    close = order(signer, **eth, side="SELL", positionSide="LONG")
    assert close.json()["status"] == "FILLED"


def next_funding_slot() -> datetime:
    """The next of the funding slots (00:00, 08:00, 16:00 UTC) after now."""
    now = datetime.now(UTC)
    return min(
        datetime.combine(now.date() + timedelta(days=d), datetime.min.time(), UTC)
        + timedelta(hours=h)
        for d in (0, 1)
        for h in (0, 8, 16)
        if datetime.combine(now.date() + timedelta(days=d), datetime.min.time(), UTC)
        + timedelta(hours=h)
        > now
    )


def test_funding_is_charged_once_per_slot_and_as_of_may_name_the_next_slot(
    server: Server,
) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    short_account, short_signer = trader(server)
    assert order(signer).status_code == 200
    assert order(short_signer, side="SELL").status_code == 200
    r = server.admin.request("PUT", "/markets/BTCUSDT/funding-rate", json={"fundingRate": "0.0002"})
    assert r.json()["fundingRate"] == "0.00020000"
    set_mark(server, "50000")
    next_slot = next_funding_slot()
    as_of = next_slot.isoformat().replace("+00:00", "Z")
    first = server.admin.request("POST", "/jobs/funding", json={"asOf": as_of})
    assert first.status_code == 200, first.text
    assert first.json()["slotMs"] == int(next_slot.timestamp() * 1000)
    again = server.admin.request("POST", "/jobs/funding", json={"asOf": as_of}).json()
    assert again["entries"] == 0 and again["alreadyDone"] >= 2
    fees = signer.request("GET", "/papi/v1/um/income", {"incomeType": "FUNDING_FEE"}).json()
    assert [f["income"] for f in fees] == ["-0.10000000"]  # 0.01 × 50,000 × 0.0002, paid
    received = short_signer.request(
        "GET", "/papi/v1/um/income", {"incomeType": "FUNDING_FEE"}
    ).json()
    assert [f["income"] for f in received] == ["0.10000000"]
    server.admin.request("PUT", "/markets/BTCUSDT/funding-rate", json={"fundingRate": "0.0001"})
    del account, short_account


def test_operator_market_api(server: Server) -> None:
    markets = {m["symbol"]: m for m in server.admin.request("GET", "/markets").json()}
    assert set(markets) == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    state = server.admin.request(
        "PUT", "/markets/ETHUSDT/price", json={"markPrice": "3100", "indexPrice": "3099.5"}
    ).json()
    assert (state["markPrice"], state["indexPrice"]) == ("3100.00000000", "3099.50000000")
    premium = httpx.get(
        f"{server.base_url}/fapi/v1/premiumIndex", params={"symbol": "ETHUSDT"}
    ).json()
    assert premium["markPrice"] == "3100.00000000"
    for bad in ({"markPrice": 3100}, {"markPrice": "-1"}, {"markPrice": "1", "x": 1}, {}):
        r = server.admin.request("PUT", "/markets/ETHUSDT/price", json=bad)
        assert (r.status_code, r.json()["code"]) == (400, -1102), bad
    messages = {
        text: server.admin.request("PUT", "/markets/ETHUSDT/price", json={"markPrice": text}).json()
        for text in ("-1", "1e3", "0")
    }
    assert messages["-1"] == {"code": -1102, "msg": "'markPrice' must be greater than 0."}
    assert messages["0"] == {"code": -1102, "msg": "'markPrice' must be greater than 0."}
    assert messages["1e3"]["msg"].startswith("'markPrice' '1e3' is not a decimal: expected ASCII")
    assert (
        server.admin.request("PUT", "/markets/NOPE/price", json={"markPrice": "1"}).status_code
        == 404
    )
    r = server.admin.request("PUT", "/markets/ETHUSDT/funding-rate", json={"fundingRate": "2"})
    assert r.status_code == 400
    account, _ = trader(server)
    positions = server.admin.request("GET", f"/accounts/{account.account_id}/positions").json()
    assert positions["positions"] == [] and positions["uniMMR"] == "999999.00000000"
    r = server.admin.request(
        "PUT", f"/accounts/{account.account_id}/commission", json={"maker": "0.5"}
    )
    assert r.status_code == 400


def test_account_margin_fields_from_positions(server: Server) -> None:
    set_mark(server, "60000")
    _, signer = trader(server)
    assert order(signer).status_code == 200
    set_mark(server, "49000")
    account = signer.request("GET", "/papi/v1/account").json()
    # equity 10,000 − 0.30 − 110; IM 490 / 20; MM 490 × 0.004
    assert (
        account["accountEquity"],
        account["accountInitialMargin"],
        account["accountMaintMargin"],
        account["totalAvailableBalance"],
        account["accountStatus"],
    ) == ("9889.70000000", "24.50000000", "1.96000000", "9865.20000000", "NORMAL")
    assert account["uniMMR"] == "5045.76530612"
    set_mark(server, "60000")
    order(signer, side="SELL", reduceOnly="true")


def test_orders_survive_kill_9(fresh_server: Server) -> None:
    set_mark(fresh_server, "60000")
    _, signer = trader(fresh_server)
    resting = order(signer, type="LIMIT", timeInForce="GTC", price="59000").json()
    assert order(signer).json()["status"] == "FILLED"
    fresh_server.kill9()
    fresh_server.start()
    kept = signer.request("GET", ORDER, {"symbol": "BTCUSDT", "orderId": resting["orderId"]})
    assert kept.json()["status"] == "NEW"
    risk = signer.request("GET", "/papi/v1/um/positionRisk", {"symbol": "BTCUSDT"}).json()
    assert risk[0]["positionAmt"] == "0.010"
    markets = {m["symbol"]: m for m in fresh_server.admin.request("GET", "/markets").json()}
    assert markets["BTCUSDT"]["markPrice"] == "60000.00000000"
    set_mark(fresh_server, "58000")
    assert signer.request("GET", "/papi/v1/um/openOrders").json() == []
    assert fresh_server.verify_cli().returncode == 0


def test_open_orders_without_symbol_weigh_40(fresh_server: Server) -> None:
    _, signer = trader(fresh_server)
    one = signer.request("GET", "/papi/v1/um/openOrders", {"symbol": "BTCUSDT"})
    every = signer.request("GET", "/papi/v1/um/openOrders")
    used = int(every.headers["X-MBX-USED-WEIGHT-1M"]) - int(one.headers["X-MBX-USED-WEIGHT-1M"])
    assert used == 40


def test_funding_and_fills_keep_every_wallet_within_the_bound(server: Server) -> None:
    """docs/semantics.md, "Balance bounds": a funding fee or a fill that would push the UM wallet
    past 10^15 is refused before writing; the funding job skips that account, unmarked."""
    set_mark(server, "60000")
    account, signer = trader(server)
    assert order(signer).status_code == 200  # long 0.010 BTCUSDT; UM USDT -0.30 commission
    server.adjust(account.account_id, "UM", "USDT", "-999999999999999.69", "REALIZED_PNL")
    journal_before = len(server.journal(account.account_id))
    # Closing the long needs no margin; its 0.30 commission would take UM to -10^15 - 0.29.
    refused = order(signer, side="SELL", reduceOnly="true")
    assert refused.status_code == 400, refused.text
    assert "past the bound" in refused.json()["msg"]
    server.admin.request("PUT", "/markets/BTCUSDT/funding-rate", json={"fundingRate": "0.0002"})
    try:
        as_of = next_funding_slot().isoformat().replace("+00:00", "Z")
        run = server.admin.request("POST", "/jobs/funding", json={"asOf": as_of})
        assert run.status_code == 200, run.text
    finally:
        server.admin.request("PUT", "/markets/BTCUSDT/funding-rate", json={"fundingRate": "0.0001"})
    assert len(server.journal(account.account_id)) == journal_before
    fees = signer.request("GET", "/papi/v1/um/income", {"incomeType": "FUNDING_FEE"}).json()
    assert fees == []
    balance = signer.request("GET", "/papi/v1/balance", {"asset": "USDT"}).json()
    assert balance["umWalletBalance"] == "-999999999999999.99000000"
