"""The ceiling: the smallest ASGI app, answering {"msg":"success"} to every request, on exactly
the server stack and settings ``papi-sandbox serve`` runs (``transport.server_options``: uvicorn,
uvloop, httptools with the service's read deadline and header limit, its keep-alive and
connection limits, its GC thresholds; one process, access log off)."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from papi_sandbox.settings import Settings
from papi_sandbox.transport import server_options

BODY = b'{"msg":"success"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    defaults = Settings()  # the service's defaults for what serve would set
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        lifespan="off",
        **server_options(
            read_timeout_s=defaults.request_read_timeout,
            keep_alive_timeout_s=defaults.keep_alive_timeout,
            max_connections=defaults.max_connections,
        ),
    )
