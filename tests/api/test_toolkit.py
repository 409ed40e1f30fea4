"""The negative-balance toolkit's endpoints over HTTP against a real server process."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support import Account, Server, Signer

SWITCH = "/papi/v1/repay-futures-switch"
AUTO_COLLECTION = "/papi/v1/auto-collection"
ASSET_COLLECTION = "/papi/v1/asset-collection"
BNB_TRANSFER = "/papi/v1/bnb-transfer"
INTEREST = "/papi/v1/portfolio/interest-history"
ACCOUNT = "/papi/v1/account"
BALANCE = "/papi/v1/balance"
DAY_MS = 86_400_000


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def error(r: httpx.Response, status: int, code: int) -> str:
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    msg: str = r.json()["msg"]
    return msg


def balances(signer: Signer) -> dict[str, dict[str, Any]]:
    return {row["asset"]: row for row in ok(signer.request("GET", BALANCE))}


def read_only_signer(server: Server, account: Account) -> Signer:
    """A second key of the account with reading rights only, issued by the operator API."""
    r = server.admin.request(
        "POST",
        f"/accounts/{account.account_id}/api-keys",
        json={"type": "HMAC", "enableReading": True, "enablePortfolioMarginTrading": False},
    )
    assert r.status_code == 201, r.text
    data = r.json()
    return Signer(server.base_url, Account(account.account_id, data["apiKey"], data["secretKey"]))


# -- repay-futures-switch -------------------------------------------------------------------------


def test_switch_defaults_on_and_toggles(server: Server, signer: Signer) -> None:
    assert ok(signer.request("GET", SWITCH)) == {"autoRepay": True}
    assert ok(signer.request("POST", SWITCH, {"autoRepay": "false"})) == {"msg": "success"}
    assert ok(signer.request("GET", SWITCH)) == {"autoRepay": False}
    assert ok(signer.request("POST", SWITCH, {"autoRepay": "true"}, where="body")) == {
        "msg": "success"
    }
    assert ok(signer.request("GET", SWITCH)) == {"autoRepay": True}


@pytest.mark.parametrize("value", ["yes", "TRUE", "1", ""])
def test_switch_refuses_other_values_and_changes_nothing(signer: Signer, value: str) -> None:
    ok(signer.request("POST", SWITCH, {"autoRepay": "false"}))
    r = signer.request("POST", SWITCH, {"autoRepay": value})
    error(r, 400, -1102)
    assert ok(signer.request("GET", SWITCH)) == {"autoRepay": False}


@pytest.mark.parametrize("where", ["query", "body"])
def test_switch_off_gates_the_manual_repay(
    server: Server, account: Account, signer: Signer, where: str
) -> None:
    ok(signer.request("POST", SWITCH, {"autoRepay": "false"}))
    r = server.admin.request("GET", f"/accounts/{account.account_id}/settings")
    assert r.json() == {"autoRepay": False, "vipLevel": 0}
    server.adjust(account.account_id, "MARGIN", "USDT", "10", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-4", "REALIZED_PNL")
    journal = server.journal(account.account_id)
    repay = "/papi/v1/repay-futures-negative-balance"
    msg = error(signer.request("POST", repay, where=where), 400, -21090)
    assert "auto-repay" in msg and "repay-futures-switch" in msg
    assert balances(signer)["USDT"]["umWalletBalance"] == "-4.00000000"
    assert balances(signer)["USDT"]["crossMarginFree"] == "10.00000000"
    assert server.journal(account.account_id) == journal
    ok(signer.request("POST", SWITCH, {"autoRepay": "true"}))
    ok(signer.request("POST", repay, where=where))
    assert balances(signer)["USDT"]["umWalletBalance"] == "0.00000000"


def test_switch_without_the_parameter(signer: Signer) -> None:
    error(signer.request("POST", SWITCH), 400, -1102)


def test_trade_endpoints_need_the_trade_permission(server: Server, account: Account) -> None:
    reader = read_only_signer(server, account)
    assert ok(reader.request("GET", SWITCH)) == {"autoRepay": True}  # USER_DATA: reading is enough
    ok(reader.request("GET", INTEREST))
    ok(reader.request("GET", ACCOUNT))
    for method, path, params in [
        ("POST", SWITCH, {"autoRepay": "false"}),
        ("POST", AUTO_COLLECTION, {}),
        ("POST", ASSET_COLLECTION, {"asset": "USDT"}),
        ("POST", BNB_TRANSFER, {"amount": "1", "transferSide": "TO_UM"}),
    ]:
        error(reader.request(method, path, params), 401, -2015)
    assert ok(reader.request("GET", SWITCH)) == {"autoRepay": True}


def test_unsigned_calls_are_refused(server: Server, account: Account) -> None:
    r = httpx.post(f"{server.base_url}{AUTO_COLLECTION}", headers={"X-MBX-APIKEY": account.api_key})
    error(r, 400, -1102)  # no timestamp


# -- fund collection ------------------------------------------------------------------------------


def test_auto_collection_moves_positive_futures_balances_but_bnb_in_um(
    server: Server, account: Account, signer: Signer
) -> None:
    a = account.account_id
    server.adjust(a, "UM", "USDT", "100", "REALIZED_PNL")
    server.adjust(a, "CM", "BTC", "0.5", "REALIZED_PNL")
    server.adjust(a, "UM", "BNB", "5", "DEPOSIT")
    server.adjust(a, "CM", "BNB", "2", "DEPOSIT")
    server.adjust(a, "CM", "ETH", "-1", "FUNDING_FEE")
    assert ok(signer.request("POST", AUTO_COLLECTION)) == {"msg": "success"}
    rows = balances(signer)
    assert (rows["USDT"]["crossMarginFree"], rows["USDT"]["umWalletBalance"]) == (
        "100.00000000",
        "0.00000000",
    )
    assert (rows["BTC"]["crossMarginFree"], rows["BTC"]["cmWalletBalance"]) == (
        "0.50000000",
        "0.00000000",
    )
    assert rows["BNB"]["umWalletBalance"] == "5.00000000"
    assert (rows["BNB"]["crossMarginFree"], rows["BNB"]["cmWalletBalance"]) == (
        "2.00000000",
        "0.00000000",
    )
    assert rows["ETH"]["cmWalletBalance"] == "-1.00000000"
    entry = server.journal(a)[0]
    assert entry["type"] == "AUTO_COLLECTION"
    assert len(entry["postings"]) == 6  # USDT, BTC, CM BNB: out of futures, into margin

    # Nothing left to move: a success that writes nothing.
    assert ok(signer.request("POST", AUTO_COLLECTION, where="body")) == {"msg": "success"}
    assert server.journal(a)[0]["tranId"] == entry["tranId"]


def test_asset_collection_moves_one_asset(server: Server, account: Account, signer: Signer) -> None:
    a = account.account_id
    server.adjust(a, "UM", "USDT", "100", "REALIZED_PNL")
    server.adjust(a, "CM", "USDT", "20", "REALIZED_PNL")
    server.adjust(a, "UM", "ETH", "3", "REALIZED_PNL")
    assert ok(signer.request("POST", ASSET_COLLECTION, {"asset": "USDT"}, where="split")) == {
        "msg": "success"
    }
    rows = balances(signer)
    assert rows["USDT"]["crossMarginFree"] == "120.00000000"
    assert rows["ETH"]["umWalletBalance"] == "3.00000000"
    assert server.journal(a)[0]["type"] == "ASSET_COLLECTION"


def test_asset_collection_refuses_bnb_and_bad_assets(
    server: Server, account: Account, signer: Signer
) -> None:
    server.adjust(account.account_id, "CM", "BNB", "2", "DEPOSIT")
    msg = error(signer.request("POST", ASSET_COLLECTION, {"asset": "BNB"}), 400, -1130)
    assert "BNB" in msg and "bnb-transfer" in msg.lower().replace(" ", "-")
    error(signer.request("POST", ASSET_COLLECTION), 400, -1102)
    error(signer.request("POST", ASSET_COLLECTION, {"asset": "usdt"}), 400, -1100)
    assert balances(signer)["BNB"]["cmWalletBalance"] == "2.00000000"


def test_asset_collection_of_an_amount_from_one_wallet(
    server: Server, account: Account, signer: Signer
) -> None:
    a = account.account_id
    server.adjust(a, "UM", "USDT", "100", "REALIZED_PNL")
    server.adjust(a, "CM", "USDT", "20", "REALIZED_PNL")
    params = {"asset": "USDT", "amount": "30.5", "futureType": "UM"}
    assert ok(signer.request("POST", ASSET_COLLECTION, params)) == {"msg": "success"}
    usdt = balances(signer)["USDT"]
    assert (usdt["crossMarginFree"], usdt["umWalletBalance"], usdt["cmWalletBalance"]) == (
        "30.50000000",
        "69.50000000",
        "20.00000000",
    )
    entries = server.journal(a)
    # More than the wallet holds: -2018; one of the pair alone: -1102; nothing changes.
    params = {"asset": "USDT", "amount": "20.00000001", "futureType": "CM"}
    error(signer.request("POST", ASSET_COLLECTION, params), 400, -2018)
    params = {"asset": "USDT", "amount": "1"}
    assert "futureType" in error(signer.request("POST", ASSET_COLLECTION, params), 400, -1102)
    params = {"asset": "USDT", "futureType": "CM"}
    assert "amount" in error(signer.request("POST", ASSET_COLLECTION, params), 400, -1102)
    params = {"asset": "USDT", "amount": "1", "futureType": "OPTION"}
    error(signer.request("POST", ASSET_COLLECTION, params), 400, -1102)
    assert server.journal(a) == entries


# -- BNB transfer ---------------------------------------------------------------------------------


def test_bnb_transfer_to_and_from_um(server: Server, account: Account, signer: Signer) -> None:
    server.adjust(account.account_id, "MARGIN", "BNB", "10", "DEPOSIT")
    body = ok(signer.request("POST", BNB_TRANSFER, {"amount": "4", "transferSide": "TO_UM"}))
    entry = server.journal(account.account_id)[0]
    assert body == {"tranId": entry["tranId"]} and entry["type"] == "BNB_TRANSFER"
    rows = balances(signer)
    assert (rows["BNB"]["crossMarginFree"], rows["BNB"]["umWalletBalance"]) == (
        "6.00000000",
        "4.00000000",
    )
    body = ok(
        signer.request(
            "POST", BNB_TRANSFER, {"amount": "1.5", "transferSide": "FROM_UM"}, where="body"
        )
    )
    assert body["tranId"] > entry["tranId"]
    rows = balances(signer)
    assert (rows["BNB"]["crossMarginFree"], rows["BNB"]["umWalletBalance"]) == (
        "7.50000000",
        "2.50000000",
    )


def test_bnb_transfer_errors_change_nothing(
    server: Server, account: Account, signer: Signer
) -> None:
    server.adjust(account.account_id, "MARGIN", "BNB", "1", "DEPOSIT")
    before = server.journal(account.account_id)[0]["tranId"]
    cases = [
        ({"amount": "1.00000001", "transferSide": "TO_UM"}, 400, -2018),
        ({"amount": "0.1", "transferSide": "FROM_UM"}, 400, -2018),
        ({"amount": "0", "transferSide": "TO_UM"}, 400, -1130),
        ({"amount": "-1", "transferSide": "TO_UM"}, 400, -1100),  # a sign is an illegal character
        ({"amount": "1", "transferSide": "SIDEWAYS"}, 400, -1102),
        ({"amount": "1"}, 400, -1102),
        ({"transferSide": "TO_UM"}, 400, -1102),
        ({"amount": "1.123456789", "transferSide": "TO_UM"}, 400, -1100),
    ]
    for params, status, code in cases:
        error(signer.request("POST", BNB_TRANSFER, params), status, code)
    assert server.journal(account.account_id)[0]["tranId"] == before
    assert balances(signer)["BNB"]["crossMarginFree"] == "1.00000000"


def test_bnb_transfer_rolling_limit_per_account(server: Server) -> None:
    account = server.create_account()
    other = server.create_account()
    server.adjust(account.account_id, "MARGIN", "BNB", "100", "DEPOSIT")
    server.adjust(other.account_id, "MARGIN", "BNB", "1", "DEPOSIT")
    signer, other_signer = Signer(server.base_url, account), Signer(server.base_url, other)
    params = {"amount": "1", "transferSide": "TO_UM"}
    # An admitted call counts even when it fails (here: more than is there).
    error(
        signer.request("POST", BNB_TRANSFER, {"amount": "1000", "transferSide": "TO_UM"}),
        400,
        -2018,
    )
    for _ in range(9):
        ok(signer.request("POST", BNB_TRANSFER, params))
    r = signer.request("POST", BNB_TRANSFER, params)
    msg = error(r, 429, -1003)
    assert "10 calls per rolling 10 MINUTE" in msg
    assert 1 <= int(r.headers["Retry-After"]) <= 600
    rows = balances(signer)
    assert (rows["BNB"]["crossMarginFree"], rows["BNB"]["umWalletBalance"]) == (
        "91.00000000",
        "9.00000000",
    )
    # Per account: another account is not affected.
    ok(other_signer.request("POST", BNB_TRANSFER, params))


def test_auto_collection_rolling_limit_per_account(server: Server) -> None:
    account = server.create_account()
    signer = Signer(server.base_url, account)
    with httpx.Client() as client:
        for _ in range(500):
            r = signer.request("POST", AUTO_COLLECTION, client=client)
            assert r.status_code == 200, r.text
        server.adjust(account.account_id, "UM", "USDT", "5", "REALIZED_PNL")
        r = signer.request("POST", AUTO_COLLECTION, client=client)
    msg = error(r, 429, -1003)
    assert "500 calls per rolling 60 MINUTE" in msg
    assert balances(signer)["USDT"]["umWalletBalance"] == "5.00000000"  # refused: nothing moved


# -- interest history -----------------------------------------------------------------------------


def test_interest_history_window_and_size_rules(signer: Signer) -> None:
    now = int(time.time() * 1000)
    assert ok(signer.request("GET", INTEREST)) == []
    ok(signer.request("GET", INTEREST, {"startTime": now - 30 * DAY_MS, "endTime": now}))
    msg = error(
        signer.request("GET", INTEREST, {"startTime": now - 30 * DAY_MS - 1, "endTime": now}),
        400,
        -1127,
    )
    assert "30 days" in msg
    error(signer.request("GET", INTEREST, {"startTime": now, "endTime": now - 1}), 400, -1130)
    error(signer.request("GET", INTEREST, {"size": 101}), 400, -1130)
    error(signer.request("GET", INTEREST, {"size": 0}), 400, -1130)
    error(signer.request("GET", INTEREST, {"size": "ten"}), 400, -1102)
    error(signer.request("GET", INTEREST, {"asset": "usdt"}), 400, -1100)


# -- account --------------------------------------------------------------------------------------


def test_account_object(server: Server, account: Account, signer: Signer) -> None:
    fresh = ok(signer.request("GET", ACCOUNT))
    assert fresh["accountStatus"] == "NORMAL" and fresh["updateTime"] == 0
    server.adjust(account.account_id, "MARGIN", "USDT", "1000", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-300", "REALIZED_PNL")
    # Not valued: the market has no SOLUSDT (BTC would count at its index price × 0.95).
    server.adjust(account.account_id, "MARGIN", "SOL", "1", "DEPOSIT")
    body = ok(signer.request("GET", ACCOUNT))
    assert set(body) == {
        "uniMMR",
        "accountEquity",
        "actualEquity",
        "accountInitialMargin",
        "accountMaintMargin",
        "accountStatus",
        "virtualMaxWithdrawAmount",
        "totalAvailableBalance",
        "totalMarginOpenLoss",
        "updateTime",
    }
    assert body["accountEquity"] == body["actualEquity"] == "700.00000000"
    assert body["totalAvailableBalance"] == body["virtualMaxWithdrawAmount"] == "700.00000000"
    assert body["accountInitialMargin"] == body["accountMaintMargin"] == "0.00000000"
    assert body["accountStatus"] == "NORMAL"
    latest = max(row["updateTime"] for row in balances(signer).values())
    assert body["updateTime"] == latest > 0

    server.adjust(account.account_id, "CM", "ETH", "-2", "FUNDING_FEE")
    assert ok(signer.request("GET", ACCOUNT))["accountStatus"] == "MARGIN_CALL"


# -- weights --------------------------------------------------------------------------------------


def test_weights_per_endpoint(fresh_server: Server) -> None:
    account = fresh_server.create_account()
    signer = Signer(fresh_server.base_url, account)
    fresh_server.adjust(account.account_id, "MARGIN", "BNB", "1", "DEPOSIT")
    cases = [
        ("GET", ACCOUNT, {}, 20),
        ("GET", SWITCH, {}, 30),
        ("POST", SWITCH, {"autoRepay": "true"}, 750),
        ("POST", AUTO_COLLECTION, {}, 750),
        ("POST", ASSET_COLLECTION, {"asset": "USDT"}, 30),
        ("POST", BNB_TRANSFER, {"amount": "0.1", "transferSide": "TO_UM"}, 750),
        ("GET", INTEREST, {}, 50),
    ]
    for method, path, params, weight in cases:
        for _ in range(3):  # a minute may roll over between the two calls: try again
            first = int(signer.request("GET", "/papi/v1/ping").headers["X-MBX-USED-WEIGHT-1M"])
            r = signer.request(method, path, params)
            assert r.status_code == 200, r.text
            used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
            if used > first:
                break
        assert used - first == weight, path
