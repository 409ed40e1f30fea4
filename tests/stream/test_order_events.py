"""ORDER_TRADE_UPDATE end to end: UM orders placed, filled, cancelled and expired over REST reach
a real WebSocket client as Binance's Portfolio Margin order events, with exact decimals, each
after its commit and in commit order with the ACCOUNT_UPDATEs of the same fill (both stores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.stream.test_websocket import listen_key, recv, ws_url
from tests.support import (
    Account,
    Server,
    Signer,
    create_test_database,
    drop_test_database,
    postgres_admin_url,
)

ORDER = "/papi/v1/um/order"


def trader(server: Server) -> tuple[Account, Signer]:
    account = server.create_account("orders")
    server.adjust(account.account_id, "MARGIN", "USDT", "10000", "DEPOSIT")
    return account, Signer(server.base_url, account)


def set_mark(server: Server, price: str) -> None:
    r = server.admin.request("PUT", "/markets/BTCUSDT/price", json={"markPrice": price})
    assert r.status_code == 200, r.text


def place(signer: Signer, **params: str) -> dict[str, Any]:
    base = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.010",
        "newOrderRespType": "RESULT",
    }
    r: httpx.Response = signer.request("POST", ORDER, base | params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def drain(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every event already sent (the stream goes quiet between steps)."""
    events = []
    while True:
        try:
            events.append(recv(ws, timeout=0.5))
        except TimeoutError:
            return events


def test_market_order_new_then_trade_then_account_updates(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        placed = place(signer, newClientOrderId="stream-market-1")
        events = [recv(ws) for _ in range(3)] + drain(ws)
        # Opening a position realizes no PnL: the commission is the fill's only entry.
        assert [e["e"] for e in events] == [
            "ORDER_TRADE_UPDATE",
            "ORDER_TRADE_UPDATE",
            "ACCOUNT_UPDATE",
        ]
        new, trade, commission = events
        trades = signer.request("GET", "/papi/v1/um/userTrades", {"symbol": "BTCUSDT"}).json()
        (fill,) = trades
        assert new["fs"] == "UM" and new["i"] == "" and isinstance(new["E"], int)
        assert new["T"] == new["o"]["T"] == fill["time"]
        assert new["o"] == {
            "s": "BTCUSDT",
            "c": "stream-market-1",
            "S": "BUY",
            "o": "MARKET",
            "f": "GTC",
            "q": "0.010",
            "p": "0",
            "ap": "0.00000000",
            "sp": "0",
            "x": "NEW",
            "X": "NEW",
            "i": placed["orderId"],
            "l": "0",
            "z": "0.000",
            "L": "0",
            "T": fill["time"],
            "t": 0,
            "b": "0.00000000",
            "a": "0.00000000",
            "m": False,
            "R": False,
            "ps": "BOTH",
            "rp": "0",
            "V": "NONE",
            "pm": "NONE",
            "gtd": 0,
        }
        o = trade["o"]
        assert (o["x"], o["X"], o["i"], o["t"]) == (
            "TRADE",
            "FILLED",
            placed["orderId"],
            fill["id"],
        )
        assert (o["l"], o["z"], o["L"], o["ap"]) == ("0.010", "0.010", "60000.00", "60000.00000000")
        # 0.010 × 60000 × 0.0005 (taker): exact, as userTrades shows it.
        assert (o["N"], o["n"], o["m"], o["rp"]) == ("USDT", "0.30000000", False, "0.00000000")
        assert o["n"] == fill["commission"]
        assert commission["a"]["m"] == "ORDER"
        assert commission["a"]["B"] == [
            {"a": "USDT", "wb": "-0.30000000", "cw": "-0.30000000", "bc": "0.00000000"}
        ]
        # The order events came first, then the entry's, all after their commit.
        assert commission["T"] == trade["T"]


def test_resting_order_new_then_fill_by_the_mark_then_close(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        resting = place(signer, type="LIMIT", timeInForce="GTC", price="59000.10")
        (new,) = drain(ws)
        assert (new["o"]["x"], new["o"]["X"], new["o"]["p"]) == ("NEW", "NEW", "59000.10")
        assert new["o"]["b"] == "590.00100000" and new["o"]["a"] == "0.00000000"
        set_mark(server, "59000")
        events = drain(ws)
        assert [e["e"] for e in events] == ["ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
        o = events[0]["o"]
        assert (o["x"], o["X"], o["i"], o["m"]) == ("TRADE", "FILLED", resting["orderId"], True)
        assert (o["l"], o["L"], o["z"], o["b"]) == ("0.010", "59000.10", "0.010", "0.00000000")
        assert o["n"] == "0.11800020"  # 590.001 × 0.0002 (maker), rounded up to 8 digits
        # Closing at a profit: TRADE with realized profit, then commission and PnL entries.
        set_mark(server, "61000")
        place(signer, side="SELL", reduceOnly="true")
        events = drain(ws)
        assert [(e["e"], e.get("o", {}).get("x")) for e in events] == [
            ("ORDER_TRADE_UPDATE", "NEW"),
            ("ORDER_TRADE_UPDATE", "TRADE"),
            ("ACCOUNT_UPDATE", None),
            ("ACCOUNT_UPDATE", None),
        ]
        assert events[1]["o"]["rp"] == "19.99900000" and events[1]["o"]["R"] is True
        reasons = [e["a"]["m"] for e in events[2:]]
        assert reasons == ["ORDER", "ORDER"]


def _updates(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["a"] for e in events if e["e"] == "ACCOUNT_UPDATE"]


def _risk(signer: Signer) -> dict[str, Any]:
    r = signer.request("GET", "/papi/v1/um/positionRisk", {"symbol": "BTCUSDT"})
    assert r.status_code == 200, r.text
    (row,) = r.json()
    return {k: row[k] for k in ("positionAmt", "entryPrice", "unRealizedProfit", "breakEvenPrice")}


def test_account_update_p_reports_the_positions_each_fill_left(server: Server) -> None:
    """Issue 13's story on the stream: BUY 0.010 BTCUSDT at 60,000, the mark falls to 49,000,
    a reduce-only SELL realizes -110. Each fill's ACCOUNT_UPDATEs carry the position it left,
    valued as positionRisk values it (up at the commit's mark, bep at the taker rate); cr is the
    position's realized PnL before fees (the -0.245 commission is not in it)."""
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        place(signer)
        (opened,) = _updates([recv(ws) for _ in range(3)] + drain(ws))
        # bep = (0.010 x 60000 + 0.3 open fee) / (0.010 x (1 - 0.0005))
        assert opened["P"] == [
            {"s": "BTCUSDT", "pa": "0.01", "ep": "60000", "cr": "0", "up": "0", "ps": "BOTH",
             "bep": "60060.03001501"}
        ]  # fmt: skip
        assert _risk(signer) == {
            "positionAmt": "0.010",
            "entryPrice": "60000.00000000",
            "unRealizedProfit": "0.00000000",
            "breakEvenPrice": "60060.03001501",
        }
        set_mark(server, "49000")  # a mark change alone streams nothing
        assert drain(ws) == []
        place(signer, side="SELL", reduceOnly="true")
        pnl, fee = _updates(drain(ws))
        assert [u["B"][0]["wb"] for u in (pnl, fee)] == ["-110.30000000", "-110.54500000"]
        closed = [
            {"s": "BTCUSDT", "pa": "0", "ep": "0", "cr": "-110", "up": "0", "ps": "BOTH",
             "bep": "0"}
        ]  # fmt: skip
        assert pnl["P"] == fee["P"] == closed  # both entries of the one fill


def test_account_update_p_of_a_partial_close_is_valued_at_the_commits_mark(
    server: Server,
) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        place(signer, quantity="0.020")
        assert _updates([recv(ws) for _ in range(3)] + drain(ws))[0]["P"][0]["pa"] == "0.02"
        set_mark(server, "49000")
        place(signer, side="SELL", reduceOnly="true", quantity="0.010")
        pnl, fee = _updates(drain(ws))
        # Half the 0.6 opening fee is left: bep as before; up = 0.010 x (49000 - 60000).
        half = {"s": "BTCUSDT", "pa": "0.01", "ep": "60000", "cr": "-110", "up": "-110",
                "ps": "BOTH", "bep": "60060.03001501"}  # fmt: skip
        assert pnl["P"] == fee["P"] == [half]
        assert _risk(signer) == {
            "positionAmt": "0.010",
            "entryPrice": "60000.00000000",
            "unRealizedProfit": "-110.00000000",
            "breakEvenPrice": "60060.03001501",
        }
        place(signer, side="SELL", reduceOnly="true", quantity="0.010")
        (pnl, _) = _updates(drain(ws))
        assert pnl["P"][0] | {} == half | {
            "pa": "0",
            "ep": "0",
            "cr": "-220",
            "up": "0",
            "bep": "0",
        }


def test_cancel_is_canceled_and_ioc_is_expired(server: Server) -> None:
    set_mark(server, "60000")
    account, signer = trader(server)
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        resting = place(signer, type="LIMIT", timeInForce="GTC", price="58000")
        assert [e["o"]["x"] for e in drain(ws)] == ["NEW"]
        r = signer.request(
            "DELETE", ORDER, {"symbol": "BTCUSDT", "orderId": str(resting["orderId"])}
        )
        assert r.status_code == 200, r.text
        (canceled,) = drain(ws)
        assert (canceled["o"]["x"], canceled["o"]["X"], canceled["o"]["i"]) == (
            "CANCELED",
            "CANCELED",
            resting["orderId"],
        )
        assert canceled["o"]["z"] == "0.000" and "n" not in canceled["o"]
        ioc = place(signer, type="LIMIT", timeInForce="IOC", price="58000", side="BUY")
        assert ioc["status"] == "EXPIRED"
        events = drain(ws)
        assert [(e["o"]["x"], e["o"]["X"]) for e in events] == [
            ("NEW", "NEW"),
            ("EXPIRED", "EXPIRED"),
        ]
        assert {e["o"]["i"] for e in events} == {ioc["orderId"]}
        assert [e["o"]["f"] for e in events] == ["IOC", "IOC"]
        # A refused order changes nothing and streams nothing.
        r = signer.request(
            "POST",
            ORDER,
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "4"},
        )
        assert r.json()["code"] == -2019
        assert drain(ws) == []


def test_order_events_across_two_postgres_processes(tmp_path: Path) -> None:
    """An order placed and filled through one process reaches a client of the other process on
    the same PostgreSQL ledger with the same events, in the same order (NOTIFY)."""
    admin = postgres_admin_url()
    db_url = create_test_database(admin)
    first = Server(tmp_path / "shared", ["--ip-weight-limit", "0"], db_url=db_url)
    second = Server(tmp_path / "shared", ["--ip-weight-limit", "0"], db_url=db_url)
    try:
        first.start()
        second.start()
        set_mark(first, "60000")
        account, _ = trader(first)
        signer = Signer(second.base_url, account)
        key = listen_key(first, account)
        with (
            connect(ws_url(first, f"/pm/ws/{key}")) as ws_first,
            connect(ws_url(second, f"/pm/ws/{key}")) as ws_second,
        ):
            resting = place(signer, type="LIMIT", timeInForce="GTC", price="59000")
            set_mark(first, "58000")  # the fill is committed by the other process
            place(signer, newClientOrderId="across")
            streams = [[recv(ws) for _ in range(6)] + drain(ws) for ws in (ws_first, ws_second)]
        same = [[{k: v for k, v in e.items() if k != "E"} for e in s] for s in streams]
        assert same[0] == same[1]
        assert [(e["e"], e.get("o", {}).get("x")) for e in streams[0]] == [
            ("ORDER_TRADE_UPDATE", "NEW"),
            ("ORDER_TRADE_UPDATE", "TRADE"),
            ("ACCOUNT_UPDATE", None),
            ("ORDER_TRADE_UPDATE", "NEW"),
            ("ORDER_TRADE_UPDATE", "TRADE"),
            ("ACCOUNT_UPDATE", None),
        ]
        assert streams[0][1]["o"]["i"] == resting["orderId"]
        assert (streams[0][1]["o"]["L"], streams[0][1]["o"]["n"]) == ("59000.00", "0.11800000")
        assert streams[0][4]["o"]["c"] == "across" and streams[0][4]["o"]["L"] == "58000.00"
        assert streams[0][5]["a"]["B"][0]["wb"] == "-0.40800000"  # 0.118 + 0.290 commission
        # Each fill's position travels with its commit's NOTIFY: the same P on both processes,
        # valued at the mark of the commit that filled it (58,000 both times).
        assert [streams[0][i]["a"]["P"] for i in (2, 5)] == [
            [{"s": "BTCUSDT", "pa": "0.01", "ep": "59000", "cr": "0", "up": "-10", "ps": "BOTH",
              "bep": "59041.32066033"}],
            [{"s": "BTCUSDT", "pa": "0.02", "ep": "58500", "cr": "0", "up": "-10", "ps": "BOTH",
              "bep": "58549.67483742"}],
        ]  # fmt: skip
    finally:
        first.stop()
        second.stop()
        drop_test_database(admin, db_url)
