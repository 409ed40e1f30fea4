"""HTTP helpers shared by the public and the operator API: JSON answers and bounded bodies, as
Starlette responses (operator API) and as raw ASGI messages (the public API's direct path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from papi_sandbox import grammar
from papi_sandbox.wire import errors
from papi_sandbox.wire.errors import ApiError


class EncodedJson(bytes):
    """A JSON document encoded in advance (e.g. cached); sent as it is."""


def json_response(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    body = content if type(content) is EncodedJson else orjson.dumps(content)
    return Response(body, status, headers, media_type="application/json")


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> Response:
    merged = {**(headers or {}), **error.headers}
    return json_response(error.status, {"code": error.code, "msg": error.msg}, merged)


def _declared_over(content_length: str, limit: int) -> bool:
    """True when a Content-Length (ASCII digits; the HTTP parser refused others) passes
    ``limit``; an over-long one is over it too."""
    return not grammar.is_integer(content_length) or int(content_length) > limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading past it."""
    declared = request.headers.get("content-length")
    if declared is None and "transfer-encoding" not in request.headers:
        return b""  # HTTP/1.1: no Content-Length and no chunking means no body (RFC 9112 6.3)
    if declared is not None and _declared_over(declared, limit):
        raise errors.request_too_large("body bytes", limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise errors.request_too_large("body bytes", limit)
            chunks.append(chunk)
    except ClientDisconnect:  # the client left, or the read deadline closed its connection
        raise errors.request_timeout() from None
    return b"".join(chunks)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- raw ASGI (the public API's direct path: no Request/Response objects per request) ----------

Message = MutableMapping[str, Any]
#: A Starlette endpoint of the operator API or the dashboard.
AdminHandler = Callable[[Request], Awaitable[Response]]
RawHeaders = list[tuple[bytes, bytes]]

_JSON_TYPE = (b"content-type", b"application/json")


def json_headers(body: bytes, extra: Iterable[tuple[bytes, bytes]] = ()) -> RawHeaders:
    """The headers of a JSON answer (names lowercased, as ASGI servers send them)."""
    return [_JSON_TYPE, (b"content-length", b"%d" % len(body)), *extra]


def error_body(error: ApiError) -> bytes:
    return orjson.dumps({"code": error.code, "msg": error.msg})


def encode_headers(headers: dict[str, str]) -> RawHeaders:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def read_body_raw(
    receive: Callable[[], Awaitable[Message]],
    content_length: bytes | None,
    chunked: bool,
    limit: int,
) -> bytes:
    """``read_body`` on raw ASGI messages: the body, refusing more than ``limit`` bytes without
    reading past it."""
    if content_length is None and not chunked:
        return b""  # HTTP/1.1: no Content-Length and no chunking means no body (RFC 9112 6.3)
    if content_length is not None and _declared_over(content_length.decode("latin-1"), limit):
        raise errors.request_too_large("body bytes", limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left, or the read deadline closed it
            raise errors.request_timeout()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.request_too_large("body bytes", limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
