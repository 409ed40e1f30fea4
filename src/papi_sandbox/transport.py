"""The HTTP/1.1 connection protocol: uvicorn's httptools protocol with a read deadline and a
header size limit, so slow or half-sent requests cannot pin the server.

uvicorn closes idle keep-alive connections, but has no deadline for a request that has begun to
arrive (or a connection that never sends anything), and httptools has no header size limit. Here:
- a request must arrive whole (request line, headers and body) within ``read_timeout_s`` of its
  first byte, and a new connection must send a whole request within ``read_timeout_s``;
- the request line and headers together may not pass MAX_HEADER_BYTES.
Either way the connection is answered (when the headers are not complete yet) and closed.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Longest request line plus headers (bytes). The query string alone may have 8 KiB.
MAX_HEADER_BYTES = 32 * 1024


def _error_bytes(status: int, reason: str, code: int, msg: str) -> bytes:
    body = orjson.dumps({"code": code, "msg": msg})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def guarded_protocol(read_timeout_s: float) -> type[HttpToolsProtocol]:
    """A protocol class (as uvicorn's ``http=`` takes) with this read deadline."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._read_deadline: asyncio.TimerHandle | None = None
            self._header_bytes = 0
            self._in_headers = True

        def _arm(self) -> None:
            self._disarm()
            self._read_deadline = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _disarm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _read_timed_out(self) -> None:
            self._read_deadline = None
            if self.transport.is_closing():
                return
            if self._in_headers:  # nothing of ours has been answered: say why we close
                self.transport.write(
                    _error_bytes(
                        408, "Request Timeout", -1007, "Timeout waiting for the request headers."
                    )
                )
            self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_headers:
                self._header_bytes += len(data)
                if self._header_bytes > MAX_HEADER_BYTES:
                    self._disarm()
                    self.transport.write(
                        _error_bytes(
                            431,
                            "Request Header Fields Too Large",
                            -1101,
                            f"Request too large: request line and headers over the limit of"
                            f" {MAX_HEADER_BYTES} bytes.",
                        )
                    )
                    self.transport.close()
                    return
            super().data_received(data)

        def send_400_response(self, msg: str) -> None:
            # Bytes the HTTP parser refuses: still answered in Binance's shape, then closed.
            self._disarm()
            self.transport.write(
                _error_bytes(400, "Bad Request", -1000, f"Malformed HTTP request: {msg[:200]}")
            )
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = 0
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            # The connection becomes a WebSocket (the user data stream): its own protocol
            # (pings, the stream's limits) governs it from here, not the HTTP read deadline.
            self._disarm()
            super().handle_websocket_upgrade()

    return GuardedHttpToolsProtocol


#: The protocol for ``serve --workers N``: each worker process imports it by name
#: (``papi_sandbox.transport:GuardedFromEnv``) with the read deadline from the environment.
GuardedFromEnv = guarded_protocol(float(os.environ.get("PAPI_SANDBOX_REQUEST_READ_TIMEOUT", "10")))


#: gc.set_threshold for a server process (Python's default is 700, 10, 10). Refcounting frees
#: almost everything a request allocates, while each full pass walks every cached key and balance
#: snapshot (up to ~10^5 objects) and showed as the p99 tail of the write path
#: (docs/performance.md).
GC_THRESHOLDS = (50_000, 20, 100)


def server_options(
    *, read_timeout_s: float, keep_alive_timeout_s: int, max_connections: int
) -> dict[str, Any]:
    """uvicorn's options for one server process, and the process's GC thresholds: the server
    stack ``serve`` runs, in one place, so that the benchmark's ceiling app runs on exactly the
    same one (bench/ceiling.py)."""
    from papi_sandbox.stream.ws import websocket_server_options

    gc.set_threshold(*GC_THRESHOLDS)
    return {
        **websocket_server_options(),  # the user data stream's pings and message size
        "loop": "uvloop",
        "http": guarded_protocol(read_timeout_s),
        # uvicorn's access line holds the query string (and so the signature): ours replaces it.
        "access_log": False,
        # uvicorn would trust X-Forwarded-For from 127.0.0.1: who the client is is decided by
        # wire/client_ip.py instead (the TCP peer unless --forwarded-allow-ips names proxies).
        "proxy_headers": False,
        "timeout_keep_alive": keep_alive_timeout_s,
        "limit_concurrency": max_connections,
        "timeout_graceful_shutdown": 5,
    }
