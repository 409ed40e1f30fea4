"""The user data stream end to end: listen keys over REST, a real WebSocket client on the
server's /pm/ws/<listenKey> and /pm/stream, on both stores."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from papi_sandbox.stream.ws import MAX_CONNECTIONS_PER_LISTEN_KEY
from tests.support import (
    Account,
    Server,
    Signer,
    create_test_database,
    drop_test_database,
    postgres_admin_url,
)

LISTEN_KEY = "/papi/v1/listenKey"


def ws_url(server: Server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def user_stream(server: Server, account: Account, method: str, **params: str) -> httpx.Response:
    """A USER_STREAM request: the API key header only, parameters in the body as
    python-binance sends them."""
    return httpx.request(
        method,
        f"{server.base_url}{LISTEN_KEY}",
        headers={"X-MBX-APIKEY": account.api_key},
        data=params or None,
        timeout=10,
    )


def listen_key(server: Server, account: Account) -> str:
    r = user_stream(server, account, "POST")
    assert r.status_code == 200, r.text
    key: str = r.json()["listenKey"]
    return key


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return data


def recv_events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [recv(ws) for _ in range(count)]


def test_listen_key_lifecycle(server: Server, account: Account) -> None:
    r = user_stream(server, account, "POST")
    assert r.status_code == 200 and r.headers["X-MBX-USED-WEIGHT-1M"]
    key = r.json()["listenKey"]
    assert len(key) == 64 and key.isascii() and key.isalnum()
    assert listen_key(server, account) == key  # the same key while it is active
    # PAPI's keepalive answers {} (its USDⓈ-M twin echoes the key).
    assert user_stream(server, account, "PUT").json() == {}
    assert user_stream(server, account, "PUT", listenKey=key).json() == {}
    # A listenKey that is not the caller's active key is refused, with Binance's -1125.
    other = server.create_account("other")
    other_key = listen_key(server, other)
    for method in ("PUT", "DELETE"):
        r = user_stream(server, account, method, listenKey=other_key)
        assert (r.status_code, r.json()["code"]) == (400, -1125), r.text
        r = user_stream(server, account, method, listenKey="x" * 65)
        assert (r.status_code, r.json()["code"]) == (400, -1125), r.text
    assert user_stream(server, account, "DELETE", listenKey=key).json() == {}
    r = user_stream(server, account, "PUT")
    assert (r.status_code, r.json()) == (
        400,
        {"code": -1125, "msg": "This listenKey does not exist."},
    )
    assert user_stream(server, account, "DELETE").json() == {}  # nothing to close: harmless
    fresh = listen_key(server, account)
    assert fresh != key
    # USER_STREAM: no key, no stream.
    r = httpx.post(f"{server.base_url}{LISTEN_KEY}", timeout=10)
    assert r.status_code == 401 and r.json()["code"] in (-2014, -2015)
    # The other account's key is untouched by all this.
    assert user_stream(server, other, "PUT").json() == {}
    assert listen_key(server, other) == other_key


def test_events_of_loss_repay_auto_repay_and_collection_in_order(
    server: Server, account: Account, signer: Signer
) -> None:
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        # Connected before the deposit: on PostgreSQL a commit made just before connecting may
        # still be on its way to this process (NOTIFY) and reach the new subscriber.
        server.adjust(account.account_id, "MARGIN", "USDT", "1000.12345678")
        deposit = recv_events(ws, 2)
        assert [e["e"] for e in deposit] == ["balanceUpdate", "outboundAccountPosition"]
        assert deposit[1]["B"] == [{"a": "USDT", "f": "1000.12345678", "l": "0.00000000"}]
        # An operator loss on UM.
        server.adjust(account.account_id, "UM", "USDT", "-250.5", "REALIZED_PNL")
        (event,) = recv_events(ws, 1)
        (loss,) = server.journal(account.account_id, 1)
        assert event["e"] == "ACCOUNT_UPDATE" and event["fs"] == "UM"
        assert isinstance(event["E"], int) and event["T"] == loss["time"]
        assert event["a"] == {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": "-250.50000000", "cw": "-250.50000000", "bc": "0.00000000"}],
            "P": [],
        }
        # The manual repay: margin first, then UM, in one entry.
        r = signer.request("POST", "/papi/v1/repay-futures-negative-balance")
        assert r.status_code == 200, r.text
        bu, oap, au = recv_events(ws, 3)
        (repay,) = server.journal(account.account_id, 1)
        assert bu == {
            "e": "balanceUpdate",
            "E": bu["E"],
            "a": "USDT",
            "d": "-250.50000000",
            "U": repay["tranId"],
            "T": repay["time"],
        }
        assert oap["e"] == "outboundAccountPosition" and oap["U"] == repay["tranId"]
        assert oap["B"] == [{"a": "USDT", "f": "749.62345678", "l": "0.00000000"}]
        assert au["e"] == "ACCOUNT_UPDATE" and au["a"]["m"] == "MARGIN_TRANSFER"
        assert au["a"]["B"] == [
            {"a": "USDT", "wb": "0.00000000", "cw": "0.00000000", "bc": "250.50000000"}
        ]
        # An auto-repay job run, for a CM loss.
        server.adjust(account.account_id, "CM", "USDT", "-0.00000001", "FUNDING_FEE")
        (funding,) = recv_events(ws, 1)
        assert (funding["fs"], funding["a"]["m"], funding["a"]["B"][0]["bc"]) == (
            "CM",
            "FUNDING_FEE",
            "-0.00000001",
        )
        r = server.admin.request("POST", "/jobs/auto-repay", json={})
        assert r.status_code == 200, r.text
        bu, oap, au = recv_events(ws, 3)
        assert (bu["e"], bu["d"]) == ("balanceUpdate", "-0.00000001")
        assert oap["B"] == [{"a": "USDT", "f": "749.62345677", "l": "0.00000000"}]
        assert (au["fs"], au["a"]["m"], au["a"]["B"][0]["wb"]) == (
            "CM",
            "MARGIN_TRANSFER",
            "0.00000000",
        )
        # A collection: UM profit back into cross margin.
        server.adjust(account.account_id, "UM", "USDT", "10", "REALIZED_PNL")
        recv_events(ws, 1)
        r = signer.request("POST", "/papi/v1/auto-collection")
        assert r.status_code == 200, r.text
        bu, oap, au = recv_events(ws, 3)
        assert (bu["d"], oap["B"][0]["f"]) == ("10.00000000", "759.62345677")
        assert (au["fs"], au["a"]["m"], au["a"]["B"][0]) == (
            "UM",
            "MARGIN_TRANSFER",
            {"a": "USDT", "wb": "0.00000000", "cw": "0.00000000", "bc": "-10.00000000"},
        )
        # Every event is for a change in the ledger, and in commit order.
        tran_ids = [e["tranId"] for e in reversed(server.journal(account.account_id))]
        assert tran_ids == sorted(tran_ids)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # nothing more


def test_combined_stream_subscribe_list_and_unsubscribe(server: Server) -> None:
    first, second = server.create_account("one"), server.create_account("two")
    key1, key2 = listen_key(server, first), listen_key(server, second)
    with connect(ws_url(server, "/pm/stream")) as ws:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": [key1, key2], "id": "a-1"}))
        assert recv(ws) == {"result": None, "id": "a-1"}
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert sorted(recv(ws)["result"]) == sorted([key1, key2])
        server.adjust(second.account_id, "UM", "BTC", "0.5")
        frame = recv(ws)
        assert frame["stream"] == key2 and frame["data"]["e"] == "ACCOUNT_UPDATE"
        assert frame["data"]["a"]["B"][0]["wb"] == "0.50000000"
        ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": [key2], "id": 3}))
        assert recv(ws) == {"result": None, "id": 3}
        server.adjust(second.account_id, "UM", "BTC", "0.5")
        server.adjust(first.account_id, "CM", "BTC", "1")
        frame = recv(ws)
        assert frame["stream"] == key1 and frame["data"]["fs"] == "CM"
        # Bad requests get Binance's error shape; the connection stays.
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["nope"], "id": 4}))
        reply = recv(ws)
        assert reply["id"] == 4 and reply["error"]["code"] == 2
        ws.send("not json")
        assert "error" in recv(ws)
    # The ?streams= form subscribes at connect time.
    with connect(ws_url(server, f"/pm/stream?streams={key1}")) as ws:
        server.adjust(first.account_id, "MARGIN", "ETH", "2")
        frames = [recv(ws), recv(ws)]
        assert [f["data"]["e"] for f in frames] == ["balanceUpdate", "outboundAccountPosition"]


def test_request_ids_are_unsigned_integers_or_strings(server: Server) -> None:
    """The request id of a method message: an unsigned integer (under 2**64) or a string, as the
    refusal itself says; JSON's true/false are no integers, and -1 is not unsigned."""
    with connect(ws_url(server, "/pm/stream")) as ws:  # two connections: 10 messages/s each
        for good in (0, 7, 2**64 - 1, "a-1", None):
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": good}))
            assert recv(ws) == {"result": [], "id": good}
    with connect(ws_url(server, "/pm/stream")) as ws:
        for bad in (-1, True, False, 2**64, 1.5, [1], {"a": 1}):
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": bad}))
            reply = recv(ws)
            assert reply["error"]["code"] == 2 and reply["id"] is None, (bad, reply)


def test_refusals_carry_binances_codes(server: Server) -> None:
    """Binance's table ("Live Subscribing/Unsubscribing to streams"): 3 for JSON that does not
    parse, 2 for a request that is no valid method message (no method, an unknown one, a bad
    id), 0 for an unknown property, 1 for a property value that is no boolean."""
    cases = [
        ("not json", 3),
        ('{"method":"SUBSCRIBE"', 3),
        ("[]", 2),
        ("{}", 2),
        ('{"method":"FOO","id":1}', 2),
        ('{"method":1,"id":1}', 2),
        ('{"method":"LIST_SUBSCRIPTIONS","id":1.5}', 2),
        ('{"method":"GET_PROPERTY","params":["nope"],"id":1}', 0),
        ('{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}', 1),
        ('{"method":"SET_PROPERTY","params":[1,true],"id":1}', 2),
    ]
    for start in range(0, len(cases), 5):  # 10 messages/s per connection
        with connect(ws_url(server, "/pm/stream")) as ws:
            for text, code in cases[start : start + 5]:
                ws.send(text)
                reply = recv(ws)
                assert reply["error"]["code"] == code, (text, reply)


def test_the_combined_property_reads_and_switches_the_framing(
    server: Server, account: Account
) -> None:
    """``GET_PROPERTY combined`` tells the connection's framing (true on /pm/stream, false on
    /pm/ws/<key>); ``SET_PROPERTY`` switches it, and the next event is framed so."""
    key = listen_key(server, account)
    with connect(ws_url(server, "/pm/stream")) as ws:
        ws.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 1}))
        assert recv(ws) == {"result": True, "id": 1}
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        ws.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 1}))
        assert recv(ws) == {"result": False, "id": 1}
        ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 2}))
        assert recv(ws) == {"result": None, "id": 2}
        ws.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 3}))
        assert recv(ws) == {"result": True, "id": 3}
        server.adjust(account.account_id, "UM", "USDT", "1.5")
        frame = recv(ws)
        assert frame["stream"] == key and frame["data"]["a"]["B"][0]["wb"] == "1.50000000"
        # The key closed: listenKeyExpired, then /pm/ws/<key> still closes.
        user_stream(server, account, "DELETE")
        assert recv(ws)["data"]["e"] == "listenKeyExpired"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_a_key_named_twice_in_streams_is_one_subscription(server: Server, account: Account) -> None:
    """``/pm/stream?streams=<k>/<k>``: one subscription, each event once, and nothing left
    behind once the connection closes (a leaked one counted against the key's connection
    limit for good, until the key could not be connected at all)."""
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/stream?streams={key}/{key}")) as ws:
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        assert recv(ws) == {"result": [key], "id": 1}
        server.adjust(account.account_id, "UM", "USDT", "2.5")
        frame = recv(ws)
        assert frame["stream"] == key and frame["data"]["a"]["B"][0]["wb"] == "2.50000000"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # not twice
    for _ in range(MAX_CONNECTIONS_PER_LISTEN_KEY + 1):
        with connect(ws_url(server, f"/pm/stream?streams={key}/{key}")):
            pass
    with contextlib.ExitStack() as stack:  # every slot of the key is free again
        for _ in range(MAX_CONNECTIONS_PER_LISTEN_KEY):
            stack.enter_context(connect(ws_url(server, f"/pm/ws/{key}")))


def test_a_refused_subscribe_subscribes_nothing(server: Server, account: Account) -> None:
    """SUBSCRIBE names a good key and a bad one: the error, and no key subscribed (a refusal
    changes nothing), whatever the order of the keys."""
    key = listen_key(server, account)
    with connect(ws_url(server, "/pm/stream")) as ws:
        for params in ([key, "nope"], [key, "A" * 64], ["A" * 64, key]):
            ws.send(json.dumps({"method": "SUBSCRIBE", "params": params, "id": 1}))
            assert recv(ws)["error"]["code"] == 2
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            assert recv(ws) == {"result": [], "id": 2}, params
        server.adjust(account.account_id, "UM", "USDT", "1")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)


def test_unknown_closed_and_revoked_keys(server: Server) -> None:
    account = server.create_account("k")
    for path in ("/pm/ws/" + "A" * 64, "/pm/ws/bad-key!", "/pm/stream?streams=" + "B" * 64):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(server, path))
        assert refused.value.response.status_code == 403
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        assert user_stream(server, account, "DELETE").json() == {}
        expired = recv(ws)
        assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == key
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    with pytest.raises(InvalidStatus):  # closed: no longer accepted
        connect(ws_url(server, f"/pm/ws/{key}"))
    # Revoking the API key closes its listen key and its connections.
    key = listen_key(server, account)
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        server.admin.revoke_api_key(account.account_id, account.api_key)
        assert recv(ws)["e"] == "listenKeyExpired"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    with pytest.raises(InvalidStatus):
        connect(ws_url(server, f"/pm/ws/{key}"))


def test_many_connections_per_key_each_get_every_event(server: Server, account: Account) -> None:
    key = listen_key(server, account)
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(connect(ws_url(server, f"/pm/ws/{key}"))) for _ in range(64)]
        with pytest.raises(InvalidStatus):  # the 65th: over MAX_CONNECTIONS_PER_LISTEN_KEY
            connect(ws_url(server, f"/pm/ws/{key}"))
        server.adjust(account.account_id, "UM", "USDT", "1.5")
        for ws in conns:
            assert recv(ws)["a"]["B"][0]["wb"] == "1.50000000"


def test_kill9_then_reconnect_with_the_same_key(fresh_server: Server) -> None:
    server = fresh_server
    account = server.create_account("crash")
    key = listen_key(server, account)
    seen: list[dict[str, Any]] = []
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        for n in range(5):
            server.adjust(account.account_id, "UM", "USDT", f"{n + 1}")
        seen += recv_events(ws, 5)
        server.kill9()
        with pytest.raises(ConnectionClosed):
            while True:
                seen.append(recv(ws, timeout=10))
    server.start()
    # The key survived the restart; the same key reconnects and streams again.
    assert listen_key(server, account) == key
    with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
        server.adjust(account.account_id, "UM", "USDT", "0.1")
        seen.append(recv(ws))
    # Every event ever sent is for an entry in the ledger, with its resulting balance.
    balances = {"1.00000000", "3.00000000", "6.00000000", "10.00000000", "15.00000000"}
    assert [e["a"]["B"][0]["wb"] for e in seen] == [*sorted(balances, key=float), "15.10000000"]
    journal = server.journal(account.account_id)
    assert {e["time"] for e in journal} >= {e["T"] for e in seen}
    assert len(journal) == 6


def test_two_processes_on_one_postgres(tmp_path: Path) -> None:
    """A change committed through one server process reaches a client of another process on
    the same PostgreSQL ledger (NOTIFY), in the same order as the process's own."""
    admin = postgres_admin_url()
    db_url = create_test_database(admin)
    # One data folder: both processes share its encryption key, as the ledger requires.
    first = Server(tmp_path / "shared", ["--ip-weight-limit", "0"], db_url=db_url)
    second = Server(tmp_path / "shared", ["--ip-weight-limit", "0"], db_url=db_url)
    try:
        first.start()
        second.start()
        account = first.create_account("two-processes")
        key = listen_key(first, account)
        assert listen_key(second, account) == key  # one ledger, one active key
        with (
            connect(ws_url(first, f"/pm/ws/{key}")) as ws_first,
            connect(ws_url(second, f"/pm/ws/{key}")) as ws_second,
        ):
            second.adjust(account.account_id, "UM", "USDT", "-7.25", "REALIZED_PNL")
            first.adjust(account.account_id, "MARGIN", "USDT", "100")
            signer = Signer(second.base_url, account)
            assert signer.request("POST", "/papi/v1/repay-futures-negative-balance").is_success
            # Both clients see all three entries' events, in the same (commit) order.
            streams = [recv_events(ws, 1 + 2 + 3) for ws in (ws_first, ws_second)]
            without_event_time = [
                [{k: v for k, v in e.items() if k != "E"} for e in s] for s in streams
            ]
            assert without_event_time[0] == without_event_time[1]
            kinds = [e["e"] for e in streams[0]]
            assert kinds == [
                "ACCOUNT_UPDATE",
                "balanceUpdate",
                "outboundAccountPosition",
                "balanceUpdate",
                "outboundAccountPosition",
                "ACCOUNT_UPDATE",
            ]
            assert streams[0][-1]["a"]["B"][0]["wb"] == "0.00000000"
            assert streams[0][-2]["B"] == [{"a": "USDT", "f": "92.75000000", "l": "0.00000000"}]
            # A job run by the other process reaches both clients too.
            second.adjust(account.account_id, "CM", "USDT", "-1", "FUNDING_FEE")
            recv_events(ws_first, 1), recv_events(ws_second, 1)
            r = second.admin.request("POST", "/jobs/auto-repay", json={})
            assert r.status_code == 200, r.text
            for ws in (ws_first, ws_second):
                events = recv_events(ws, 3)
                assert events[2]["fs"] == "CM" and events[2]["a"]["B"][0]["wb"] == "0.00000000"
    finally:
        first.stop()
        second.stop()
        drop_test_database(admin, db_url)


def test_a_lost_notification_connection_closes_the_streams_to_resync(tmp_path: Path) -> None:
    """PostgreSQL: while a process's listener reconnects, commits cannot reach its clients.
    Once it listens again, each of its streams closes with 1001 so the client reconnects and
    reads the state (it stayed open, silently missing them); a new stream gets every event."""
    import psycopg

    admin = postgres_admin_url()
    db_url = create_test_database(admin)
    server = Server(tmp_path / "srv", ["--ip-weight-limit", "0"], db_url=db_url)
    try:
        server.start()
        account = server.create_account("resync")
        key = listen_key(server, account)
        with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
            server.adjust(account.account_id, "MARGIN", "USDT", "5")
            recv_events(ws, 2)  # the stream works
            with psycopg.connect(db_url, autocommit=True) as conn:
                (ended,) = conn.execute(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE %s",
                    ("LISTEN %",),
                ).fetchone()
            assert ended == 1
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=15)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1001,
                "Events may have been missed; reconnect.",
            )
        with connect(ws_url(server, f"/pm/ws/{key}")) as again:
            server.adjust(account.account_id, "MARGIN", "USDT", "6")
            events = recv_events(again, 2)
            assert events[1]["B"] == [{"a": "USDT", "f": "11.00000000", "l": "0.00000000"}]
    finally:
        server.stop()
        drop_test_database(admin, db_url)
