"""IP request weight per minute: the header on every response, and 429 past the limit."""

from __future__ import annotations

import httpx

from tests.support import Server, Signer, wait_for_fresh_minute

REPAY = "/papi/v1/repay-futures-negative-balance"


def test_weight_header_and_429(fresh_server: Server) -> None:
    server = fresh_server
    account = server.create_account()
    server.adjust(account.account_id, "MARGIN", "USDT", "100", "DEPOSIT")
    signer = Signer(server.base_url, account)
    wait_for_fresh_minute()

    base = int(httpx.get(f"{server.base_url}/papi/v1/ping").headers["X-MBX-USED-WEIGHT-1M"])
    used = base
    # Errors carry the header too, and cost their endpoint's weight.
    r = signer.request("GET", "/papi/v1/balance", {"asset": "bad!"})
    used += 20
    assert (r.status_code, int(r.headers["X-MBX-USED-WEIGHT-1M"])) == (400, used)
    r = signer.request("GET", "/papi/v1/balance")
    used += 20
    assert (r.status_code, int(r.headers["X-MBX-USED-WEIGHT-1M"])) == (200, used)

    # Repay weighs 750: spend up to the 6000 limit, then one more is refused.
    while used + 750 <= 6000:
        r = signer.request("POST", REPAY)
        used += 750
        assert r.status_code == 200
        assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) == used

    server.adjust(account.account_id, "UM", "USDT", "-7", "REALIZED_PNL")
    entries = server.journal(account.account_id)
    r = signer.request("POST", REPAY)
    assert r.status_code == 429
    assert r.json()["code"] == -1003
    assert "6000" in r.json()["msg"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) == used  # a refused request costs nothing
    assert server.journal(account.account_id) == entries  # and changes nothing

    # A lighter endpoint still fits under the limit.
    r = httpx.get(f"{server.base_url}/papi/v1/ping")
    assert r.status_code == 200 and int(r.headers["X-MBX-USED-WEIGHT-1M"]) == used + 1

    # The operator API is never weighed.
    assert (
        server.admin.request("GET", f"/accounts/{account.account_id}/balances").status_code == 200
    )
    assert "X-MBX-USED-WEIGHT-1M" not in server.admin.request("GET", "/verify").headers
