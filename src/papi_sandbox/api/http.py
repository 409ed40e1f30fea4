"""HTTP helpers shared by the public and the operator API: JSON answers and bounded bodies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

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


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading past it."""
    declared = request.headers.get("content-length")
    if declared is None and "transfer-encoding" not in request.headers:
        return b""  # HTTP/1.1: no Content-Length and no chunking means no body (RFC 9112 6.3)
    if declared is not None and declared.isdigit() and int(declared) > limit:
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
