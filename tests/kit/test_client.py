"""papi_sandbox.client against the plugin's session sandbox: every operator method, and signed
requests with each key type and placement (what the CLI, the tests and the benches rely on)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import httpx
import pytest

from papi_sandbox.client import (
    Account,
    AdminClient,
    AdminError,
    ApiError,
    PapiClient,
    Placement,
    signed_query,
)
from papi_sandbox.testing import Sandbox

BALANCE = "/papi/v1/balance"
REPAY = "/papi/v1/repay-futures-negative-balance"
SWITCH = "/papi/v1/repay-futures-switch"


def indebted(admin: AdminClient) -> Account:
    account = admin.create_account("client")
    admin.adjust(account.account_id, "MARGIN", "USDT", "100")
    admin.adjust(account.account_id, "UM", "USDT", "-25", "REALIZED_PNL")
    return account


@pytest.mark.parametrize("key_type", ["RSA", "ED25519"])
@pytest.mark.parametrize("where", ["query", "body", "split"])
def test_asymmetric_keys_sign_in_every_placement(
    papi_sandbox: Sandbox, key_type: Literal["RSA", "ED25519"], where: Placement
) -> None:
    admin = papi_sandbox.admin
    account = indebted(admin)
    key = admin.create_asymmetric_key(account.account_id, key_type)
    assert key.key_type == key_type
    assert [k["type"] for k in admin.api_keys(account.account_id)] == ["HMAC", key_type]
    with papi_sandbox.papi(key) as papi:
        r = papi.request("POST", REPAY, where=where)
        assert r.json() == {"msg": "success"}, r.text
        row = papi.call("GET", BALANCE, {"asset": "USDT"}, recv_window=10_000)
    assert (row["crossMarginFree"], row["umWalletBalance"]) == ("75.00000000", "0.00000000")


def test_hmac_placements_and_refusals(papi_sandbox: Sandbox, papi_account: Account) -> None:
    with papi_sandbox.papi(papi_account) as papi:
        for where, auto_repay in (("query", "false"), ("body", "true"), ("split", "false")):
            r = papi.request("POST", SWITCH, [("autoRepay", auto_repay)], where=where)
            assert r.json() == {"msg": "success"}, (where, r.text)
            assert papi.call("GET", SWITCH) == {"autoRepay": auto_repay == "true"}
        late = papi.request("GET", BALANCE, timestamp=1)
        assert (late.status_code, late.json()["code"]) == (400, -1021)
        with pytest.raises(ApiError) as refused:
            papi.call("GET", BALANCE, timestamp=1)
        assert (refused.value.status, refused.value.code) == (400, -1021)
    forged = PapiClient(papi_sandbox.base_url, Account(0, papi_account.api_key, "not-the-secret"))
    with forged, pytest.raises(ApiError) as bad_signature:
        forged.call("GET", BALANCE)
    assert bad_signature.value.code == -1022


def test_signed_query_for_any_http_client(papi_sandbox: Sandbox, papi_account: Account) -> None:
    query = signed_query(papi_account, {"asset": "USDT"}, recv_window=5000)
    assert query.index("asset=USDT") < query.index("recvWindow=5000") < query.index("timestamp=")
    r = httpx.get(
        f"{papi_sandbox.base_url}{BALANCE}?{query}",
        headers={"X-MBX-APIKEY": papi_account.api_key},
    )
    assert r.status_code == 200 and r.json()["asset"] == "USDT"


def test_operator_methods(papi_admin: AdminClient, papi_account: Account) -> None:
    aid = papi_account.account_id
    assert papi_admin.settings(aid) == {"autoRepay": True, "vipLevel": 0}
    assert papi_admin.set_settings(aid, auto_repay=False) == {"autoRepay": False, "vipLevel": 0}
    assert papi_admin.set_settings(aid, vip_level=3) == {"autoRepay": False, "vipLevel": 3}
    assert papi_admin.balance(aid, "USDT") is None and papi_admin.balances(aid) == []
    tran_ids = [papi_admin.adjust(aid, "MARGIN", "USDT", str(n))["tranId"] for n in (1, 2, 3)]
    assert [e["tranId"] for e in papi_admin.journal(aid)] == tran_ids[::-1]
    older = papi_admin.journal(aid, limit=1, before_tran_id=tran_ids[2])
    assert [e["tranId"] for e in older] == [tran_ids[1]]
    issued = papi_admin.create_api_key(aid, enable_portfolio_margin_trading=False)
    assert issued["type"] == "HMAC" and len(issued["secretKey"]) == 64
    papi_admin.revoke_api_key(aid, issued["apiKey"])
    assert [k["revoked"] for k in papi_admin.api_keys(aid)] == [False, True]
    with pytest.raises(AdminError) as twice:
        papi_admin.revoke_api_key(aid, issued["apiKey"])
    assert (twice.value.status, twice.value.code) == (404, -2015)
    with pytest.raises(AdminError) as bad:
        papi_admin.adjust(aid, "SPOT", "USDT", "1")
    assert (bad.value.status, bad.value.code) == (400, -1102) and "'wallet'" in bad.value.msg


def test_jobs_run_as_of_a_time(papi_admin: AdminClient) -> None:
    account = papi_admin.create_account("jobs")
    papi_admin.adjust(account.account_id, "MARGIN", "USDT", "10")
    papi_admin.adjust(account.account_id, "UM", "USDT", "-4", "REALIZED_PNL")
    # Auto-repay's slot is 23:00 UTC daily (docs/jobs.md): the latest at or before as_of runs.
    report = papi_admin.run_job("auto-repay", as_of=datetime(2030, 1, 2, 9, 30, tzinfo=UTC))
    assert (report["job"], report["slot"]) == ("auto-repay", "2030-01-01T23:00:00Z")
    assert report["entries"] >= 1
    again = papi_admin.run_job("auto-repay", as_of="2030-01-02T09:30:00Z")
    assert again["slotMs"] == report["slotMs"] and again["entries"] == 0  # once per slot
    usdt = papi_admin.balance(account.account_id, "USDT")
    assert usdt is not None and usdt["umWalletBalance"] == "0.00000000"
    with pytest.raises(AdminError) as unknown:
        papi_admin.run_job("nope")
    assert unknown.value.status == 404


def test_market_methods(papi_admin: AdminClient, papi_account: Account) -> None:
    btc = next(m for m in papi_admin.markets() if m["symbol"] == "BTCUSDT")
    assert set(btc) >= {"markPrice", "indexPrice", "fundingRate", "nextFundingTime"}
    moved = papi_admin.set_price("BTCUSDT", "65000.5")
    assert (moved["markPrice"], moved["indexPrice"]) == ("65000.50000000", "65000.50000000")
    moved = papi_admin.set_price("BTCUSDT", Decimal("65001"), index_price="64990")
    assert (moved["markPrice"], moved["indexPrice"]) == ("65001.00000000", "64990.00000000")
    assert papi_admin.set_funding_rate("BTCUSDT", "-0.0003")["fundingRate"] == "-0.00030000"
    aid = papi_account.account_id
    assert papi_admin.set_commission(aid, "0.0002", "0.0005") == {
        "accountId": aid,
        "maker": "0.0002",
        "taker": "0.0005",
    }
    view = papi_admin.positions(aid)
    assert view["positions"] == [] and view["takerCommissionRate"] == "0.0005"
    report = papi_admin.run_job("funding", as_of="2030-01-01T08:00:00Z")
    assert (report["job"], report["slot"]) == ("funding", "2030-01-01T08:00:00Z")
    with pytest.raises(AdminError) as unknown:
        papi_admin.set_price("NOPEUSDT", "1")
    assert (unknown.value.status, unknown.value.code) == (404, -1121)
    with pytest.raises(TypeError):
        papi_admin.set_price("BTCUSDT", 65000.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", ["body", "split"])
def test_a_get_with_its_parameters_in_the_body_is_refused_before_sending(where: str) -> None:
    """Binance reads a GET's query string only: such a request could only ever be refused by
    the server for a missing timestamp, so the client says why instead."""
    client = PapiClient("http://127.0.0.1:9", Account(1, "k" * 64, "s" * 64))
    with pytest.raises(ValueError, match="a GET sends its parameters in the query string"):
        client.request("GET", "/papi/v1/balance", {"asset": "USDT"}, where=where)  # type: ignore[arg-type]
