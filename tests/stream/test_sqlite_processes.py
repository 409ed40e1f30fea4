"""SQLite: changes committed by another process on the same file (the `jobs run` CLI, a second
server process) reach the clients connected to this server, in commit order, once each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from tests.stream.test_order_events import drain, place, set_mark, trader
from tests.stream.test_websocket import listen_key, recv, ws_url
from tests.support import Server, Signer

JOBS_RUN = (sys.executable, "-m", "papi_sandbox", "jobs", "run")


def without_event_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "E"} for e in events]


def test_the_jobs_cli_on_the_same_file_streams_to_the_server_clients(tmp_path: Path) -> None:
    server = Server(tmp_path / "one", ["--ip-weight-limit", "0"])
    server.start()
    try:
        account = server.create_account("cli")
        server.adjust(account.account_id, "MARGIN", "USDT", "5", "DEPOSIT")
        server.adjust(account.account_id, "UM", "USDT", "-7", "REALIZED_PNL")
        key = listen_key(server, account)
        with connect(ws_url(server, f"/pm/ws/{key}")) as ws:
            done = subprocess.run(
                [*JOBS_RUN, "auto-repay", "--db", f"sqlite:///{server.db_path}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert '"entries":1' in done.stdout
            bu, oap, au = (recv(ws) for _ in range(3))
            (repay,) = server.journal(account.account_id, 1)
            assert (bu["e"], bu["d"], bu["U"], bu["T"]) == (
                "balanceUpdate",
                "-5.00000000",
                repay["tranId"],
                repay["time"],
            )
            assert oap["B"] == [{"a": "USDT", "f": "0.00000000", "l": "0.00000000"}]
            assert (au["e"], au["a"]["m"]) == ("ACCOUNT_UPDATE", "MARGIN_TRANSFER")
            assert au["a"]["B"] == [
                {"a": "USDT", "wb": "-2.00000000", "cw": "-2.00000000", "bc": "5.00000000"}
            ]
            # The server's own commits after it keep streaming, once each, in order.
            server.adjust(account.account_id, "UM", "USDT", "2", "DEPOSIT")
            (after,) = drain(ws)
            assert after["a"]["B"][0]["wb"] == "0.00000000"
    finally:
        server.stop()


def test_two_server_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    """Orders and entries committed through either process reach the clients of both, with the
    same events in the same (commit) order, none twice."""
    first = Server(tmp_path / "shared", ["--ip-weight-limit", "0"])
    first.start()
    second = Server(tmp_path / "shared", ["--ip-weight-limit", "0"], db_url=first.db_url)
    second.start()
    try:
        set_mark(first, "60000")
        account, signer_first = trader(first)
        signer_second = Signer(second.base_url, account)
        key = listen_key(first, account)
        with (
            connect(ws_url(first, f"/pm/ws/{key}")) as ws_first,
            connect(ws_url(second, f"/pm/ws/{key}")) as ws_second,
        ):
            place(signer_second, newClientOrderId="via-second")
            place(signer_first, newClientOrderId="via-first")
            second.adjust(account.account_id, "MARGIN", "USDT", "1.5", "DEPOSIT")
            first.adjust(account.account_id, "UM", "USDT", "0.25", "DEPOSIT")
            streams = [[recv(ws) for _ in range(9)] + drain(ws) for ws in (ws_first, ws_second)]
        assert without_event_time(streams[0]) == without_event_time(streams[1])
        assert [(e["e"], e.get("o", {}).get("x"), e.get("o", {}).get("c")) for e in streams[0]] == [
            ("ORDER_TRADE_UPDATE", "NEW", "via-second"),
            ("ORDER_TRADE_UPDATE", "TRADE", "via-second"),
            ("ACCOUNT_UPDATE", None, None),
            ("ORDER_TRADE_UPDATE", "NEW", "via-first"),
            ("ORDER_TRADE_UPDATE", "TRADE", "via-first"),
            ("ACCOUNT_UPDATE", None, None),
            ("balanceUpdate", None, None),
            ("outboundAccountPosition", None, None),
            ("ACCOUNT_UPDATE", None, None),
        ]
        assert streams[0][5]["a"]["B"][0]["wb"] == "-0.60000000"  # two 0.3 commissions
        # The fill's position travels in the outbox row: the other process reports the same P.
        assert [streams[0][i]["a"]["P"][0]["pa"] for i in (2, 5)] == ["0.01", "0.02"]
        assert streams[0][8]["a"]["B"][0]["wb"] == "-0.35000000"
        journal = first.journal(account.account_id)
        tran_ids = {e["U"] for e in streams[0] if "U" in e}
        assert tran_ids <= {e["tranId"] for e in journal}
    finally:
        second.stop()
        first.stop()
