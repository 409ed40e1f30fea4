"""``GET /papi/v1/um/income`` takes Binance's window: the last 7 days when no time is sent, and
otherwise any span (Binance sets no 7-day limit here, unlike allOrders and userTrades): a bot
asking for a month of funding gets it, and ``startTime`` alone reaches up to now."""

from __future__ import annotations

from tests.api.test_um_trading import order, set_mark, trader
from tests.support import Server, now_ms

DAY_MS = 86_400_000


def test_income_spans_more_than_seven_days(server: Server) -> None:
    set_mark(server, "60000")
    _account, signer = trader(server)
    assert order(signer).status_code == 200
    now = now_ms()
    month = {"startTime": str(now - 30 * DAY_MS), "endTime": str(now + 60_000)}
    r = signer.request("GET", "/papi/v1/um/income", month)
    assert r.status_code == 200, r.text
    assert [i["incomeType"] for i in r.json()] == ["COMMISSION"]
    since = signer.request("GET", "/papi/v1/um/income", {"startTime": str(now - 10 * DAY_MS)})
    assert since.status_code == 200 and len(since.json()) == 1, since.text
    until = signer.request("GET", "/papi/v1/um/income", {"endTime": str(now + 60_000)})
    assert until.status_code == 200 and len(until.json()) == 1, until.text
    default = signer.request("GET", "/papi/v1/um/income")
    assert len(default.json()) == 1
    old = {"startTime": str(now - 30 * DAY_MS), "endTime": str(now - 20 * DAY_MS)}
    assert signer.request("GET", "/papi/v1/um/income", old).json() == []
    backwards = {"startTime": str(now), "endTime": str(now - DAY_MS)}
    r = signer.request("GET", "/papi/v1/um/income", backwards)
    assert (r.status_code, r.json()["code"]) == (400, -1130), r.text
