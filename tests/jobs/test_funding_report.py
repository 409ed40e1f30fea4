"""The funding job's report (``POST /admin/v1/jobs/funding``, ``papi-sandbox jobs run funding``)
says what it did: the fees it booked per asset (paid and received, in magnitude), the accounts a
balance bound refused, and an unknown job's refusal names every job, funding included."""

from __future__ import annotations

from tests.api.test_um_trading import next_funding_slot, order, set_mark, trader
from tests.support import Server


def test_the_funding_report_counts_amounts_and_refusals(fresh_server: Server) -> None:
    server = fresh_server
    set_mark(server, "60000")
    _long, long_signer = trader(server)
    _short, short_signer = trader(server)
    capped, capped_signer = trader(server)
    assert order(long_signer).status_code == 200
    assert order(short_signer, side="SELL").status_code == 200
    assert order(capped_signer).status_code == 200
    # this account's fee would take its UM wallet past 10^15: refused, left unmarked
    server.adjust(capped.account_id, "UM", "USDT", "-999999999999999.69", "REALIZED_PNL")
    server.admin.request("PUT", "/markets/BTCUSDT/funding-rate", json={"fundingRate": "0.0002"})
    set_mark(server, "50000")
    as_of = next_funding_slot().isoformat().replace("+00:00", "Z")
    r = server.admin.request("POST", "/jobs/funding", json={"asOf": as_of})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["accounts"], report["entries"], report["refused"]) == (3, 2, 1)
    assert report["amounts"] == {"USDT": "0.20000000"}  # 0.10 paid by the long, 0.10 received
    again = server.admin.request("POST", "/jobs/funding", json={"asOf": as_of}).json()
    assert (again["alreadyDone"], again["refused"], again["amounts"]) == (2, 1, {})
    unknown = server.admin.request("POST", "/jobs/payday", json={})
    assert "funding" in unknown.json()["msg"], unknown.text
