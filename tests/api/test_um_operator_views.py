"""The operator's views of an account holding a UM position agree with the public API: the
balance objects of ``GET /admin/v1/accounts/{id}/balances`` and of an adjustment's answer carry
the same ``umUnrealizedPNL`` at the mark as ``GET /papi/v1/balance``, and that one is right for
an account whose fills book no entry (the operator set its commission rates to 0)."""

from __future__ import annotations

from tests.api.test_um_trading import order, set_mark, trader
from tests.support import Server


def test_operator_balance_objects_show_the_unrealized_pnl_at_the_mark(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    assert order(signer).json()["status"] == "FILLED"
    set_mark(server, "49000")
    public = signer.request("GET", "/papi/v1/balance", {"asset": "USDT"}).json()
    assert public["umUnrealizedPNL"] == "-110.00000000"
    r = server.admin.request("GET", f"/accounts/{account.account_id}/balances")
    assert r.status_code == 200, r.text
    (usdt,) = [row for row in r.json() if row["asset"] == "USDT"]
    assert usdt == public | {"updateTime": usdt["updateTime"]}
    adjusted = server.adjust(account.account_id, "MARGIN", "USDT", "1", "DEPOSIT")
    assert adjusted["balance"]["umUnrealizedPNL"] == "-110.00000000"


def test_unrealized_pnl_of_fills_at_a_zero_commission_rate(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    r = server.admin.request(
        "PUT", f"/accounts/{account.account_id}/commission", json={"maker": "0", "taker": "0"}
    )
    assert r.status_code == 200, r.text
    assert order(signer).json()["status"] == "FILLED"  # opening, no commission: no entry
    resting = order(signer, type="LIMIT", timeInForce="GTC", price="58000")
    assert resting.json()["status"] == "NEW", resting.text
    set_mark(server, "58000")  # the resting order fills as maker, at 0
    set_mark(server, "49000")
    assert server.journal(account.account_id)[0]["type"] == "DEPOSIT"
    (position,) = signer.request("GET", "/papi/v1/um/positionRisk", {"symbol": "BTCUSDT"}).json()
    assert position["unRealizedProfit"] == "-200.00000000"  # 0.01 × −11,000 + 0.01 × −9,000
    public = signer.request("GET", "/papi/v1/balance", {"asset": "USDT"}).json()
    assert public["umUnrealizedPNL"] == "-200.00000000"
