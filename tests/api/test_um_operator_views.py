"""The operator's views of an account holding a UM position agree with the public API: the
balance objects of ``GET /admin/v1/accounts/{id}/balances`` and of an adjustment's answer carry
the same ``umUnrealizedPNL`` at the mark as ``GET /papi/v1/balance``."""

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
