"""The ceilings: the smallest apps answering {"msg":"success"} to every request, on exactly the
server stack and settings ``papi-sandbox serve`` runs (``transport.server_options``: uvicorn,
uvloop, httptools with the service's read deadline and header limit, its keep-alive and
connection limits, its GC thresholds; one process, access log off).

    python bench/ceiling.py PORT            # the minimal ASGI app (the chosen stack's ceiling)
    python bench/ceiling.py PORT starlette  # a bare Starlette app: one route, a JSON response
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from papi_sandbox.settings import Settings
from papi_sandbox.transport import server_options

BODY = b'{"msg":"success"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def _success(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


#: The bare Starlette app: the framework the service is built on, with no middleware and no work.
starlette_app = Starlette(routes=[Route("/{path:path}", _success, methods=["GET", "POST"])])


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """The same answer through granian's RSGI interface (bench/stack.py: that stack's ceiling)."""
    protocol.response_bytes(200, [("content-type", "application/json")], BODY)


if __name__ == "__main__":
    defaults = Settings()  # the service's defaults for what serve would set
    uvicorn.run(
        starlette_app if sys.argv[2:] == ["starlette"] else app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        lifespan="off",
        **server_options(
            read_timeout_s=defaults.request_read_timeout,
            keep_alive_timeout_s=defaults.keep_alive_timeout,
            max_connections=defaults.max_connections,
        ),
    )
