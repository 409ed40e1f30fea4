"""ORDER_TRADE_UPDATE of Modify UM Order (``PUT /papi/v1/um/order``): each amendment streams one
AMENDMENT with the order's new price and quantity (a second amendment is a second event, never
the first one again); an amendment the mark reaches streams AMENDMENT then TRADE."""

from __future__ import annotations

from websockets.sync.client import connect

from tests.stream.test_order_events import ORDER, drain, place, set_mark, trader
from tests.stream.test_websocket import listen_key, ws_url
from tests.support import Server


def test_each_amendment_streams_its_own_event(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        resting = place(signer, type="LIMIT", timeInForce="GTC", price="58000")
        assert [e["o"]["x"] for e in drain(ws)] == ["NEW"]
        ref = {"symbol": "BTCUSDT", "side": "BUY", "orderId": str(resting["orderId"])}
        seen = []
        for price, qty in (("57500", "0.020"), ("57600", "0.020"), ("57500", "0.020")):
            r = signer.request("PUT", ORDER, ref | {"price": price, "quantity": qty})
            assert r.status_code == 200, r.text
            (event,) = drain(ws)
            o = event["o"]
            seen.append((o["x"], o["X"], o["i"], o["p"], o["q"]))
        assert seen == [
            ("AMENDMENT", "NEW", resting["orderId"], "57500.00", "0.020"),
            ("AMENDMENT", "NEW", resting["orderId"], "57600.00", "0.020"),
            ("AMENDMENT", "NEW", resting["orderId"], "57500.00", "0.020"),
        ]
        r = signer.request("PUT", ORDER, ref | {"price": "61000", "quantity": "0.010"})
        assert r.status_code == 200 and r.json()["status"] == "FILLED", r.text
        events = drain(ws)
        assert [(e["e"], e.get("o", {}).get("x")) for e in events][:2] == [
            ("ORDER_TRADE_UPDATE", "AMENDMENT"),
            ("ORDER_TRADE_UPDATE", "TRADE"),
        ]
        assert events[1]["o"]["L"] == "60000.00" and events[1]["o"]["m"] is False
