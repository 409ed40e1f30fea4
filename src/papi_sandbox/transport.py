"""The HTTP/1.1 connection protocol: uvicorn's httptools protocol with a read deadline, a
header size limit, answers a client can read, and the connection cap in Binance's shape.

uvicorn closes idle keep-alive connections, but has no deadline for a request that has begun to
arrive (or a connection that never sends anything), and httptools has no header size limit. Here:
- a request must arrive whole (request line, headers and body) within ``read_timeout_s`` of its
  first byte, and a new connection must send a whole request within ``read_timeout_s``;
- the request line and headers together may not pass MAX_HEADER_BYTES (body bytes are not
  counted: a 40 KB operator body is the operator API's to judge);
- an answer sent before the request's body has arrived whole (a 413, a 431) is followed by a
  *lingering close*: the write side is shut (the answer is complete), and up to MAX_DRAIN_BYTES
  of the rest of the request are read and thrown away, within the read deadline, before the
  connection closes. Closing at once would discard unread bytes with a TCP reset, and clients
  that write their whole body before reading (urllib, requests, httpx) would see a reset or a
  broken pipe instead of the answer;
- past the connection cap (``--max-connections``, uvicorn's ``limit_concurrency``) a request is
  answered 503 with Binance's JSON (-1008), not uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from papi_sandbox import settings as _settings
from papi_sandbox.wire import errors
from papi_sandbox.wire.errors import ApiError

log = logging.getLogger("papi_sandbox")

#: Longest request line plus headers (bytes). The query string alone may have 8 KiB.
MAX_HEADER_BYTES = 32 * 1024
#: Most bytes of a request read and thrown away after it was answered early (a 413 or 431), so
#: that the client can finish sending and read the answer; past it the connection is closed.
MAX_DRAIN_BYTES = 8 * 1024 * 1024
#: The end of a request's header block.
_HEADERS_END = b"\r\n\r\n"


def _error_bytes(reason: str, error: ApiError) -> bytes:
    body = orjson.dumps({"code": error.code, "msg": error.msg})
    head = (
        f"HTTP/1.1 {error.status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _server_busy(scope: Any, receive: Any, send: Any) -> None:
    """The answer past the connection cap: Binance's -1008 in JSON, then the connection closes."""
    busy = errors.server_busy()
    body = orjson.dumps({"code": busy.code, "msg": busy.msg})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
        (b"retry-after", b"1"),
    ]
    await send({"type": "http.response.start", "status": busy.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _AnswerTransport:
    """The transport a request's cycle writes its answer through: closing it while the
    request is still arriving becomes the protocol's lingering close."""

    def __init__(self, protocol: Any, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_answer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the read deadline, the header limit, the lingering
    close and the connection cap in Binance's shape (this module's docstring); the deadline is
    the class's ``read_timeout_s`` (set by :func:`guarded_protocol`)."""

    #: Seconds a request may take to arrive whole (and a new connection to send one).
    read_timeout_s: float = _settings.DEFAULT_REQUEST_READ_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_tail = b""  # the last bytes seen, for a header end split across reads
        self._in_headers = True
        self._message_complete = True
        self._lingering = False  # answered; the rest of the request is read, then closed
        self._discarding = False  # answered; the rest is not even parsed, then closed
        self._drained = 0

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self._in_headers and not self._discarding:  # nothing answered yet: say why
            self.transport.write(_error_bytes("Request Timeout", errors.header_timeout()))
        self.transport.close()

    def _linger(self) -> None:
        """Shut the write side (the answer is complete), keep reading the rest of the
        request within the deadline and MAX_DRAIN_BYTES, then close."""
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self._read_deadline is None:
            self._arm()

    def close_after_answer(self) -> None:
        """The cycle closes after its answer: at once when the request has arrived whole,
        else lingering."""
        if self._message_complete or self.transport.is_closing():
            self.transport.close()
        else:
            self._linger()

    def _refuse(self, answer: bytes) -> None:
        """Answer a request the parser cannot go on with, then discard what follows."""
        self.transport.write(answer)
        self._discarding = True
        self._linger()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _drain(self, data: bytes) -> bool:
        """Counts bytes read after an early answer; True when they are to be dropped."""
        answered = self.cycle is not None and self.cycle.response_complete
        if not (self._discarding or (answered and not self._message_complete)):
            return False
        self._drained += len(data)
        if self._drained > MAX_DRAIN_BYTES:
            self.transport.close()
            return True
        return self._discarding

    def _count_header_bytes(self, data: bytes) -> int:
        window = self._header_tail + data
        end = window.find(_HEADERS_END)
        self._header_tail = window[-3:]
        if end < 0:
            return len(data)
        return max(end + len(_HEADERS_END) - (len(window) - len(data)), 0)

    def data_received(self, data: bytes) -> None:
        if self._drain(data):
            return
        if self._in_headers:
            self._header_bytes += self._count_header_bytes(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._disarm()
                self._refuse(
                    _error_bytes(
                        "Request Header Fields Too Large",
                        errors.headers_too_large(MAX_HEADER_BYTES),
                    )
                )
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # Bytes the HTTP parser refuses: still answered in Binance's shape, then closed.
        self._disarm()
        self._refuse(_error_bytes("Bad Request", errors.malformed_http(msg)))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._message_complete = False
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            # uvicorn would answer its own plain-text 503: ours is Binance's JSON
            log.warning("connection cap of %d reached: answered 503 -1008", limit)
            app, self.app = self.app, _server_busy
            self.limit_concurrency = None
            try:
                super().on_headers_complete()
            finally:
                self.app, self.limit_concurrency = app, limit
        else:
            super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _AnswerTransport(self, self.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()
        self._message_complete = True
        self._in_headers = True  # the next bytes begin the next request's headers
        self._header_bytes = 0
        self._header_tail = b""
        self._drained = 0
        if self._lingering:
            self.transport.close()
            return
        if self.cycle is not None and self.cycle.response_complete and not self.pipeline:
            # answered before the body ended: uvicorn armed its idle timer at the answer and
            # the body's bytes cancelled it; the connection is idle from now
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # The connection becomes a WebSocket (the user data stream): its own protocol
        # (pings, the stream's limits) governs it from here, not the HTTP read deadline.
        self._disarm()
        super().handle_websocket_upgrade()


def guarded_protocol(read_timeout_s: float) -> type[HttpToolsProtocol]:
    """A protocol class (as uvicorn's ``http=`` takes) with this read deadline."""
    return type(
        "GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"read_timeout_s": read_timeout_s}
    )


#: True once this process's server loaded ``GuardedFromEnv``: PAPI_SANDBOX_REQUEST_READ_TIMEOUT
#: applies (an ASGI server loads its protocol before it calls the app's factory).
guarded_from_env_loaded = False


def __getattr__(name: str) -> type[HttpToolsProtocol]:
    """``GuardedFromEnv``: the protocol for ``serve --workers N``; each worker process imports
    it by name (``papi_sandbox.transport:GuardedFromEnv``) with the read deadline from the
    environment. Built when asked for, not on import: ``serve``'s own process imports this
    module too, and there a flag wins over its variable (a bad variable the flag overrides
    must not stop it). Raises SettingError for a refused variable, AttributeError for any
    other name."""
    if name == "GuardedFromEnv":
        global guarded_from_env_loaded
        guarded_from_env_loaded = True
        return guarded_protocol(_settings.settings_from_env().request_read_timeout)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
