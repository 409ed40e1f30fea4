"""A client that connects and stops reading, over a real socket: the server disconnects it once
its bounded send queue is full (or a frame waits too long), holds no more than that queue for it
meanwhile, and every other client keeps receiving every event."""

from __future__ import annotations

import base64
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from websockets.sync.client import connect

from papi_sandbox.stream.ws import MAX_PENDING_ENTRIES
from tests.stream.test_websocket import listen_key, recv, ws_url
from tests.support import Server

#: Events pushed at most before the test gives up on seeing the stuck client dropped.
MAX_EVENTS = 40_000
CHUNK = 400


def stream_figures(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return {
        m[1]: float(m[2]) for m in re.finditer(r'^papi_stream\{figure="(\w+)"\} (\S+)$', text, re.M)
    }


def stuck_client(server: Server, path: str) -> socket.socket:
    """A WebSocket handshake over a plain socket with a small receive buffer; after the
    server's 101 nothing is ever read (unless the test drains it at the end)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    nonce = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # one byte at a time: leave the frames unread
        byte = sock.recv(1)
        assert byte, head
        head += byte
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def test_a_client_that_stops_reading_is_dropped_and_others_get_everything(
    fresh_server: Server,
) -> None:
    server = fresh_server
    account = server.create_account("slow")
    key = listen_key(server, account)
    stuck = stuck_client(server, f"/pm/ws/{key}")
    pushed = 0
    queued_seen: list[float] = []
    admin = server.admin

    def push(n: int) -> None:
        r = admin.request(
            "POST",
            f"/accounts/{account.account_id}/adjustments",
            json={"wallet": "UM", "asset": "USDT", "amount": "0.00000001", "reason": "DEPOSIT"},
        )
        assert r.status_code == 200, r.text

    with connect(ws_url(server, f"/pm/ws/{key}"), max_queue=None) as reader:
        received = 0
        with ThreadPoolExecutor(4) as pool:
            while pushed < MAX_EVENTS:
                list(pool.map(push, range(CHUNK)))
                pushed += CHUNK
                # The reader keeps up: it gets every event, in order.
                for _ in range(CHUNK):
                    event = recv(reader)
                    received += 1
                    assert event["a"]["B"][0]["wb"] == f"{received / 10**8:.8f}"
                figures = stream_figures(server)
                queued_seen.append(figures["queued"])
                if figures["slow_consumers_total"] >= 1:
                    break
        assert figures["slow_consumers_total"] == 1, f"not dropped after {pushed} events"
        print(f"dropped after {pushed} events; queued at most {max(queued_seen)}")
        # Its connection is then closed (the close frame cannot reach it: the server gives up
        # on the closing handshake after its timeout), and nothing is kept for it.
        for _ in range(600):
            figures = stream_figures(server)
            if figures["connections"] == 1:
                break
            time.sleep(0.1)
        assert figures["connections"] == 1  # the reader's
        assert figures["queued"] == 0
        # While stuck, the server never held more for it than its bounded queue.
        assert max(queued_seen) <= MAX_PENDING_ENTRIES
        # The reader goes on receiving.
        server.adjust(account.account_id, "UM", "USDT", "1")
        assert recv(reader)["a"]["B"][0]["wb"] == f"{1 + received / 10**8:.8f}"
    # The stuck client finds, under what the socket had buffered, the end of the connection.
    stuck.settimeout(10)
    got = b""
    while chunk := stuck.recv(65536):
        got += chunk
    stuck.close()
    assert 0 < got.count(b'"ACCOUNT_UPDATE"') < pushed
