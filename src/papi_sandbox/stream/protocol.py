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

Chosen by measurement over uvicorn's legacy ``websockets`` implementation (three tasks per
connection) and ``wsproto`` (no server pings): docs/performance.md, "The user data stream".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

#: The kernel send buffer asked for each WebSocket (bytes; Linux reserves twice this).
SEND_BUFFER_BYTES = 64 * 1024


class StreamProtocol(WebSocketsSansIOProtocol):
    """uvicorn's Sans-I/O WebSocket protocol with the send buffer capped and stuck peers
    aborted (module docstring)."""

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
