"""The user data stream's WebSocket endpoints, served by the same server as the REST API.

Paths (the ones Binance serves under ``wss://fstream.binance.com``, and the ones the four client
libraries build; README, "The user data stream"):
- ``/pm/ws/<listenKey>``: one listen key; each frame is one event (python-binance, ccxt.pro,
  the Node ``binance`` package).
- ``/pm/stream`` and ``/pm/ws``: listen keys added and removed with Binance's method messages
  ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": [<listenKey>...], "id": <id>}`` and
  ``LIST_SUBSCRIPTIONS``; ``/pm/stream`` (also ``?streams=<k1>/<k2>``) frames each event as
  ``{"stream": <listenKey>, "data": <event>}`` (the official SDK), ``/pm/ws`` sends it bare.

Each connected listen key subscribes to its account's committed entries and order executions
on the event hub; the events of each (stream/events.py) are built once and sent in commit order.
A key that expires, is closed (``DELETE``) or loses its API key gets ``listenKeyExpired``, then
its connection is closed (on ``/pm/stream`` only that key is unsubscribed). Every limit below is
named; a refused handshake is answered HTTP 403 before the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from papi_sandbox.market.symbols import SymbolSpec
from papi_sandbox.store.base import StoreUnavailable
from papi_sandbox.store.listen_keys import MAX_LISTEN_KEYS_PER_READ, ListenKeyRecord
from papi_sandbox.stream.events import entry_events, listen_key_expired, order_trade_update
from papi_sandbox.stream.hub import (
    LOST,
    EventHub,
    HorizonReader,
    SubscriberDropped,
    Subscription,
    TooManySubscribers,
    subscribe_from_now,
)
from papi_sandbox.stream.listen_keys import ListenKeys, is_listen_key_text
from papi_sandbox.trading.model import Announcement, Execution, OrderUpdate

log = logging.getLogger("papi_sandbox.stream")

#: Connections one listen key may have open at once (the issue asks for at least 64).
MAX_CONNECTIONS_PER_LISTEN_KEY = 64
#: Connections one client IP may have open at once, by default (``serve --ws-max-per-ip``).
DEFAULT_MAX_CONNECTIONS_PER_IP = 1000
#: Longest a connection lives (Binance: 24 hours); then it is closed (code 1001).
MAX_CONNECTION_LIFETIME_S = 24 * 3600
#: Listen keys one ``/pm/stream`` connection may subscribe to (Binance: 1024 streams).
MAX_STREAMS_PER_CONNECTION = 1024
#: Method messages a client may send per second (Binance: 10); past it the connection closes.
MAX_INCOMING_PER_S = 10
#: Largest message a client may send (bytes); the server's WebSocket layer enforces it too.
MAX_INCOMING_BYTES = 4096
#: Entries waiting to be sent on one connection: past it the consumer is too slow and the
#: connection is closed (code 1008), never allowed to grow the server's memory.
MAX_PENDING_ENTRIES = 1024
#: Longest one frame may wait for the client to read (the socket's buffer is full): past it
#: the consumer is too slow and the connection is closed.
SEND_TIMEOUT_S = 10.0
#: Server pings (uvicorn's ``ws_ping_interval``; Binance pings every 3 minutes) and how long a
#: pong may take before the connection is dropped (Binance: 10 minutes).
PING_INTERVAL_S = 180.0
PING_TIMEOUT_S = 600.0
#: How often expiries are checked (s), and how often every connected key is re-read from the
#: store, to learn of extensions and closures made through another server process (s).
EXPIRY_CHECK_S = 1.0
REFRESH_S = 30.0
#: Built events kept for reuse by every connection of an account (entries).
EVENT_CACHE_ENTRIES = 4096

#: Close codes.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def websocket_server_options() -> dict[str, Any]:
    """uvicorn's WebSocket options for every server process (transport.server_options)."""
    return {
        # No task per connection, server pings on timers, capped send buffers (protocol.py).
        "ws": "papi_sandbox.stream.protocol:StreamProtocol",
        # No permessage-deflate: its zlib state costs ~30 KiB per connection (halving what an
        # idle connection costs; docs/performance.md), for frames of a few hundred bytes.
        "ws_per_message_deflate": False,
        "ws_ping_interval": PING_INTERVAL_S,
        "ws_ping_timeout": PING_TIMEOUT_S,
        "ws_max_size": MAX_INCOMING_BYTES,
    }


class _EventCache:
    """Committed entry or order execution -> its events encoded once (JSON text), shared by
    every connection."""

    def __init__(self, clock_ms: Callable[[], int], specs: Mapping[str, SymbolSpec]) -> None:
        self.clock_ms = clock_ms
        self.specs = specs
        self._cache: dict[tuple[int, ...], list[str]] = {}

    def frames(self, item: Announcement) -> list[str]:
        if isinstance(item, OrderUpdate):
            # One NEW, one CANCELED or EXPIRED per order, one TRADE per fill; AMENDMENTs, as
            # many as the order had, told apart by their time and new price and quantity.
            trade_id = item.trade.trade_id if item.trade is not None else 0
            key: tuple[int, ...] = (item.order.order_id, _EXECUTIONS[item.execution], trade_id)
            if item.execution is Execution.AMENDMENT:
                order = item.order
                key += (order.update_time_ms, hash((order.price, order.orig_qty)))
        else:
            key = (item.entry.tran_id,)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        now = self.clock_ms()
        if isinstance(item, OrderUpdate):
            events = [order_trade_update(item, self.specs.get(item.order.symbol), now)]
        else:
            events = entry_events(item, now)
        frames = [orjson.dumps(e).decode() for e in events]
        if len(self._cache) >= EVENT_CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = frames
        return frames


_EXECUTIONS = {execution: n for n, execution in enumerate(Execution)}


@dataclass(eq=False, slots=True)
class _Stream:
    """One listen key on one connection."""

    conn: _Connection
    record: ListenKeyRecord
    sub: Subscription
    task: asyncio.Task[None] | None = None


@dataclass(eq=False, slots=True)
class _Connection:
    ws: WebSocket
    ip: str
    #: Frames as {"stream": key, "data": event}: set by the path, changed by SET_PROPERTY.
    combined: bool
    #: An expired key ends the connection (every form but ``/pm/stream``), whatever
    #: ``combined`` became since.
    closes_on_expiry: bool
    streams: dict[str, _Stream] = field(default_factory=dict)
    #: Sends under way, and since when (time.monotonic()) at least one has been: a send
    #: waits only while the peer does not read; the sweeper closes one waiting too long.
    sending: int = 0
    sending_since: float = 0.0
    #: time.monotonic() of the handshake: the sweeper ends the connection at its lifetime.
    opened: float = field(default_factory=time.monotonic)
    closing: bool = False
    close_code: int = CLOSE_NORMAL
    close_reason: str = ""
    #: The task serving the connection (it reads the client's messages); close() interrupts it.
    task: asyncio.Task[None] | None = None

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (the serving task sends the close frame)."""
        if self.closing:
            return
        self.closing = True
        self.close_code, self.close_reason = code, reason
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class StreamServer:
    """Every user-data WebSocket of this process: connections, their listen keys, the limits."""

    def __init__(
        self,
        hub: EventHub,
        listen_keys: ListenKeys,
        *,
        max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP,
        clock_ms: Callable[[], int] = _now_ms,
        specs: Mapping[str, SymbolSpec] | None = None,
        horizon: HorizonReader | None = None,
    ) -> None:
        self.hub = hub
        #: Reads the store's horizon for each new subscription (store/outbox.py): a client
        #: never receives a commit that was durable before it subscribed.
        self.horizon = horizon
        self.listen_keys = listen_keys
        self.max_connections_per_ip = max_connections_per_ip
        self.clock_ms = clock_ms
        self._events = _EventCache(clock_ms, specs if specs is not None else {})
        self._by_key: dict[str, set[_Stream]] = {}
        self._per_ip: dict[str, int] = {}
        self._connections: set[_Connection] = set()
        self._task: asyncio.Task[None] | None = None
        #: Counters for metrics.
        self.connections = 0
        self.slow_consumers_total = 0
        listen_keys.on_change(self.listen_key_changed)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch_expiries())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- listen keys changed or expiring ---------------------------------------------------

    def listen_key_changed(self, record: ListenKeyRecord) -> None:
        """A key was extended or closed (in this process, or seen on a re-read)."""
        streams = self._by_key.get(record.listen_key)
        if not streams:
            return
        for stream in list(streams):
            stream.record = record
        if not record.active(self.clock_ms()):
            self._expire(record.listen_key)

    def api_key_revoked(self, api_key: str) -> None:
        """Close every listen key of a revoked API key (its connections get listenKeyExpired)."""
        for key, streams in list(self._by_key.items()):
            if any(s.record.api_key == api_key for s in streams):
                self._expire(key)

    def _expire(self, listen_key: str) -> None:
        for stream in list(self._by_key.get(listen_key, ())):
            asyncio.get_running_loop().create_task(self._end_stream(stream, expired=True))

    def _close_stuck(self) -> None:
        """Close every connection whose send has waited more than SEND_TIMEOUT_S for its peer
        to read, or that reached MAX_CONNECTION_LIFETIME_S (one pass a second, instead of a
        timer per frame and one per connection)."""
        now = time.monotonic()
        deadline, born_before = now - SEND_TIMEOUT_S, now - MAX_CONNECTION_LIFETIME_S
        for conn in self._connections:
            if conn.sending and conn.sending_since < deadline:
                self._slow_consumer(conn)
            elif conn.opened < born_before:
                conn.close(CLOSE_GOING_AWAY, "Connection lifetime of 24 hours reached.")

    async def _watch_expiries(self) -> None:
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            self._close_stuck()
            try:
                now = self.clock_ms()
                due = [
                    key
                    for key, streams in self._by_key.items()
                    if streams and next(iter(streams)).record.expires_ms <= now
                ]
                refresh = time.monotonic() - last_refresh >= REFRESH_S
                if refresh:
                    last_refresh = time.monotonic()
                    due = list(self._by_key)
                for start in range(0, len(due), MAX_LISTEN_KEYS_PER_READ):
                    page = due[start : start + MAX_LISTEN_KEYS_PER_READ]
                    found = await self.listen_keys.find_many(page)
                    for key in page:
                        record = found.get(key)
                        if record is None or not record.active(self.clock_ms()):
                            self._expire(key)
                        else:
                            self.listen_key_changed(record)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is unreachable: try again at the next tick
                log.exception("listen key expiry check failed")

    # -- one connection -------------------------------------------------------------------

    async def serve(self, ws: WebSocket, listen_key: str | None, *, combined: bool) -> None:
        """Serve one WebSocket: ``listen_key`` from the path (``/pm/ws/<key>``), or None for
        the method-message forms (``/pm/stream``, ``/pm/ws``)."""
        client = ws.scope.get("client")
        ip: str = client[0] if client else "unknown"
        if self._per_ip.get(ip, 0) >= self.max_connections_per_ip:
            await ws.close(CLOSE_POLICY, "Too many connections from this IP.")
            return
        conn = _Connection(ws, ip, combined, closes_on_expiry=not combined)
        initial: list[ListenKeyRecord] = []
        keys = [listen_key] if listen_key is not None else []
        if combined and listen_key is None:
            streams_param = ws.query_params.get("streams")
            if streams_param:
                # A key named twice is one subscription (as SUBSCRIBE treats it).
                keys = list(dict.fromkeys(streams_param.split("/")))[:MAX_STREAMS_PER_CONNECTION]
        for key in keys:
            refusal, record = await self._admit(key)
            if record is None:
                await ws.close(CLOSE_POLICY, refusal)
                return
            initial.append(record)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.connections += 1
        self._connections.add(conn)
        try:
            # Subscribed before the handshake completes: the client, once connected, receives
            # every commit made after, and none made before (store/outbox.py).
            try:
                for record in initial:
                    await self._add_stream(conn, record)
            except TooManySubscribers:
                conn.close(CLOSE_GOING_AWAY, "The server has too many subscribers; try later.")
            except StoreUnavailable:
                conn.close(CLOSE_GOING_AWAY, "The store is unavailable; try later.")
            await ws.accept()
            for stream in list(conn.streams.values()):
                self._activate(stream)
            await self._run(conn, path_key=listen_key)
        finally:
            for stream in list(conn.streams.values()):
                await self._end_stream(stream, expired=False)
            self._connections.discard(conn)
            self.connections -= 1
            left = self._per_ip[ip] - 1
            if left:
                self._per_ip[ip] = left
            else:
                del self._per_ip[ip]

    async def _admit(self, key: str) -> tuple[str, ListenKeyRecord | None]:
        if not is_listen_key_text(key):
            return "Invalid listen key.", None
        record = await self.listen_keys.find(key)
        if record is None or not record.active(self.clock_ms()):
            return "This listenKey does not exist.", None
        if len(self._by_key.get(key, ())) >= MAX_CONNECTIONS_PER_LISTEN_KEY:
            return (
                f"Too many connections for this listen key (at most"
                f" {MAX_CONNECTIONS_PER_LISTEN_KEY})."
            ), None
        return "", record

    async def _add_stream(self, conn: _Connection, record: ListenKeyRecord) -> None:
        """Subscribe the connection to the key's account, from now on (``subscribe_from_now``);
        TooManySubscribers past the hub's limit, StoreUnavailable when the horizon cannot be
        read. A key the connection already has stays as it is (a second subscription would
        send each event twice and outlive the connection)."""
        if record.listen_key in conn.streams:
            return
        sub = await subscribe_from_now(
            self.hub, record.account_id, self.horizon, limit=MAX_PENDING_ENTRIES
        )
        if record.listen_key in conn.streams:  # added while the horizon was read
            sub.close()
            return
        stream = _Stream(conn, record, sub)
        conn.streams[record.listen_key] = stream
        self._by_key.setdefault(record.listen_key, set()).add(stream)
        if conn.ws.application_state is WebSocketState.CONNECTED:
            self._activate(stream)

    def _activate(self, stream: _Stream) -> None:
        """Send the stream's events from now on (once the handshake is complete), starting
        with what arrived while it was being subscribed."""
        stream.sub.on_ready = functools.partial(self._kick, stream)
        if stream.sub.pending() or stream.sub.dropped:
            self._kick(stream)

    def _kick(self, stream: _Stream) -> None:
        """Entries are waiting: make sure a sender runs (it exits when nothing is left, so an
        idle connection holds no task of its own). The subscriber was dropped (its queue is
        full: the peer does not read): close the connection now, not when its sender wakes."""
        if stream.sub.dropped:
            self._dropped(stream)
        elif stream.task is None:
            stream.task = asyncio.get_running_loop().create_task(self._pump(stream))

    def _dropped(self, stream: _Stream) -> None:
        """Close the connection of a dropped subscriber: a slow consumer (1008), or events
        that may have been lost before this process (1001: reconnect and read the state)."""
        if stream.sub.dropped != LOST:
            self._slow_consumer(stream.conn)
        elif not stream.conn.closing:
            stream.conn.close(CLOSE_GOING_AWAY, "Events may have been missed; reconnect.")

    def _slow_consumer(self, conn: _Connection) -> None:
        if not conn.closing:
            self.slow_consumers_total += 1
            conn.close(CLOSE_POLICY, "Slow consumer: events were not read in time.")

    async def _end_stream(self, stream: _Stream, *, expired: bool) -> None:
        conn, key = stream.conn, stream.record.listen_key
        if conn.streams.get(key) is not stream:
            return  # already ended
        del conn.streams[key]
        streams = self._by_key.get(key)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._by_key[key]
        stream.sub.close()
        if stream.task is not None and stream.task is not asyncio.current_task():
            stream.task.cancel()
        if expired:
            event = orjson.dumps(listen_key_expired(key, self.clock_ms())).decode()
            with contextlib.suppress(Exception):
                await self._send(conn, _framed(conn, key, event))
            if conn.closes_on_expiry:
                conn.close(CLOSE_NORMAL, "listenKeyExpired")

    async def _pump(self, stream: _Stream) -> None:
        """Send the stream's queued events in commit order, then exit (``_kick`` starts it
        again when more arrive)."""
        conn, key = stream.conn, stream.record.listen_key
        try:
            while True:
                item = stream.sub.get_nowait()
                if item is None:
                    if stream.sub.dropped:
                        raise SubscriberDropped
                    return
                for frame in self._events.frames(item):
                    await self._send(conn, _framed(conn, key, frame))
        except asyncio.CancelledError:
            raise
        except SubscriberDropped:
            self._dropped(stream)
        except Exception:  # the socket went away mid-send
            conn.close(CLOSE_GOING_AWAY, "")
        finally:
            if stream.task is asyncio.current_task():
                stream.task = None

    async def _send(self, conn: _Connection, frame: str) -> None:
        """One frame. Each is written whole (concurrent sends of one connection never mix);
        no timer per frame: ``_close_stuck`` watches the sends that wait."""
        if not conn.sending:
            conn.sending_since = time.monotonic()
        conn.sending += 1
        try:
            await conn.ws.send_text(frame)
        finally:
            conn.sending -= 1

    async def _run(self, conn: _Connection, path_key: str | None) -> None:
        """Read the client's messages until it leaves, the connection must close (close()
        interrupts the read), or its lifetime ends. One task per connection, the server's own:
        idle connections cost no other task than their streams' senders."""
        task = asyncio.current_task()
        assert task is not None
        conn.task = task
        try:
            if not conn.closing:
                await self._read(conn, path_key)
        except asyncio.CancelledError:
            if not conn.closing:
                raise  # the server is stopping
            task.uncancel()
        finally:
            conn.task = None
        if conn.closing and conn.ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    conn.ws.close(conn.close_code, conn.close_reason), SEND_TIMEOUT_S
                )

    async def _read(self, conn: _Connection, path_key: str | None) -> None:
        window_start, count = time.monotonic(), 0
        while True:
            try:
                message = await conn.ws.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            now = time.monotonic()
            if now - window_start >= 1.0:
                window_start, count = now, 0
            count += 1
            if count > MAX_INCOMING_PER_S:
                conn.close(CLOSE_POLICY, f"Too many messages: at most {MAX_INCOMING_PER_S}/s.")
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", "replace")
            if text is None:
                continue
            if len(text) > MAX_INCOMING_BYTES:
                conn.close(CLOSE_TOO_BIG, f"Message over {MAX_INCOMING_BYTES} bytes.")
                return
            reply = await self._method(conn, text, path_key)
            if reply is not None:
                await self._send(conn, reply)

    async def _method(self, conn: _Connection, text: str, path_key: str | None) -> str | None:
        """Binance's method messages: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS (and the
        property ones, answered as Binance does). Errors as Binance's ``{"error": ...}``."""
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return _error(
                3, f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", None
            )
        if not isinstance(message, dict):
            return _error(2, "Invalid request: expected a JSON object.", None)
        request_id = message.get("id")
        if not _valid_request_id(request_id):
            return _error(
                2, "Invalid request: request ID must be an unsigned integer or a string", None
            )
        method = message.get("method")
        params = message.get("params", [])
        if method is None:
            return _error(2, "Invalid request: missing field `method`", request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return _result(list(conn.streams), request_id)
        if method == "SET_PROPERTY" or method == "GET_PROPERTY":
            return _property(conn, method, params, request_id)
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            variant = f"`{method}`" if isinstance(method, str) else "(not a string)"
            return _error(
                2, f"Invalid request: unknown variant {variant}, {_METHODS_EXPECTED}", request_id
            )
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _error(2, "Invalid request: params must be a list of stream names.", request_id)
        if method == "UNSUBSCRIBE":
            for key in params:
                stream = conn.streams.get(key)
                if stream is not None and key != path_key:
                    await self._end_stream(stream, expired=False)
            return _result(None, request_id)
        # All or nothing: every new key is admitted before any is subscribed.
        new = [key for key in dict.fromkeys(params) if key not in conn.streams]
        if len(conn.streams) + len(new) > MAX_STREAMS_PER_CONNECTION:
            return _error(
                2,
                f"Invalid request: at most {MAX_STREAMS_PER_CONNECTION} streams a connection.",
                request_id,
            )
        records = []
        for key in new:
            refusal, record = await self._admit(key)
            if record is None:
                return _error(2, f"Invalid request: {refusal}", request_id)
            records.append(record)
        added: list[_Stream] = []
        try:
            for record in records:
                if record.listen_key not in conn.streams:  # not added while we awaited
                    await self._add_stream(conn, record)
                    added.append(conn.streams[record.listen_key])
        except (TooManySubscribers, StoreUnavailable) as exc:
            for stream in added:
                await self._end_stream(stream, expired=False)
            busy = (
                "the server is at its subscriber limit"
                if isinstance(exc, TooManySubscribers)
                else "the store is unavailable; try later"
            )
            return _error(2, f"Invalid request: {busy}.", request_id)
        return _result(None, request_id)


#: A request id is an unsigned 64-bit integer, a string, or absent (null).
MAX_REQUEST_ID = 2**64 - 1


def _valid_request_id(request_id: Any) -> bool:
    """True for None, a string, or an int in 0..MAX_REQUEST_ID; bool is no int here (Python's
    ``True`` is an ``int``, JSON's ``true`` is not a number)."""
    if request_id is None or isinstance(request_id, str):
        return True
    return type(request_id) is int and 0 <= request_id <= MAX_REQUEST_ID


#: The methods a message may name, as Binance's "unknown variant" refusal lists them.
_METHODS_EXPECTED = (
    "expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`,"
    " `GET_PROPERTY`"
)


def _property(conn: _Connection, method: str, params: Any, request_id: Any) -> str:
    """``SET_PROPERTY ["combined", <bool>]`` and ``GET_PROPERTY ["combined"]``: the one property
    Binance's streams have, whether frames are wrapped as ``{"stream", "data"}``. Errors as
    Binance's table ("Live Subscribing/Unsubscribing to streams"): code 0 unknown property,
    1 a value that is no boolean, 2 a name that is no string."""
    if not isinstance(params, list) or not params or not isinstance(params[0], str):
        return _error(2, "Invalid request: property name must be a string", request_id)
    if params[0] != "combined":
        return _error(0, "Unknown property", request_id)
    if method == "GET_PROPERTY":
        return _result(conn.combined, request_id)
    if len(params) != 2 or type(params[1]) is not bool:
        return _error(1, "Invalid value type: expected Boolean", request_id)
    conn.combined = params[1]
    return _result(None, request_id)


def _framed(conn: _Connection, key: str, event: str) -> str:
    """An event as sent on ``conn``: bare, or ``{"stream": key, "data": event}`` on
    ``/pm/stream``."""
    return f'{{"stream":"{key}","data":{event}}}' if conn.combined else event


def _result(result: Any, request_id: Any) -> str:
    return orjson.dumps({"result": result, "id": request_id}).decode()


def _error(code: int, msg: str, request_id: Any) -> str:
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": request_id}).decode()


def websocket_app(server: Callable[[], StreamServer | None]) -> ASGIApp:
    """The ASGI app of the stream's paths (``/pm/ws/<listenKey>``, ``/pm/ws``, ``/pm/stream``),
    called for every WebSocket without Starlette's middleware and router, whose frames would
    stay alive as long as each connection (measured: docs/performance.md); ``server()`` returns
    the app's StreamServer. Any other path is refused at the handshake (HTTP 403)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        ws = WebSocket(scope, receive, send)
        streams = server()
        if streams is None:  # not started: no stream yet
            await ws.close(CLOSE_GOING_AWAY, "The server is starting.")
        elif path.startswith("/pm/ws/") and "/" not in path[7:]:
            await streams.serve(ws, path[7:], combined=False)
        elif path in ("/pm/ws", "/pm/stream"):
            await streams.serve(ws, None, combined=path == "/pm/stream")
        else:
            await ws.close(CLOSE_POLICY, "Unknown stream path.")

    return app
