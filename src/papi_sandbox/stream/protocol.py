"""The WebSocket protocol every server process runs: uvicorn's Sans-I/O one (``websockets``'s
``ServerProtocol``: no task per connection, server pings on timers), with two limits of ours.

- :data:`SEND_BUFFER_BYTES`: the kernel's send buffer of each WebSocket is capped. Linux grows
  it up to ``tcp_wmem``'s maximum (4 MiB) for a peer that reads slowly; capped, a consumer that
  stops reading fills it after ~2 x 64 KiB (the kernel doubles the figure), its frames then wait
  in our bounded send queue (stream/ws.py) and it is disconnected, never allowed to hold
  megabytes of the server's memory per connection.
- A connection whose application has ended while the peer is not reading (the transport is
  paused: the close frame cannot be written) is aborted rather than closed gracefully, which
  would wait for the peer to read forever and keep its socket and buffers.
- Less held per idle connection: the messages for the application wait in an :class:`Inbox`
  (what uvicorn uses of ``asyncio.Queue``, without its three deques), and the handshake's
  request and response are let go once the connection is accepted (18.7 -> 14.2 KiB per idle
  connection, measured with a bare ASGI app: docs/performance.md).

Chosen by measurement over uvicorn's legacy ``websockets`` implementation (three tasks per
connection) and ``wsproto`` (no server pings): docs/performance.md, "The user data stream".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

#: The kernel send buffer asked for each WebSocket (bytes; Linux reserves twice this).
SEND_BUFFER_BYTES = 64 * 1024


class Inbox:
    """The ASGI messages waiting for the application (connect, receive, disconnect): what
    uvicorn's protocol uses of ``asyncio.Queue`` (``put_nowait``, ``get``, ``empty``), with one
    deque made on demand and at most one waiter (one task reads). Unbounded as the queue it
    replaces: uvicorn stops reading the socket while a message waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class StreamProtocol(WebSocketsSansIOProtocol):
    """uvicorn's Sans-I/O WebSocket protocol with the send buffer capped, stuck peers aborted
    and less held per connection (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":  # the handshake's objects are done with
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket: nothing to cap
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        super().connection_made(transport)

    async def run_asgi(self) -> None:
        await super().run_asgi()
        if not self.writable.is_set():  # the peer does not read: do not wait for it to drain
            self.transport.abort()
