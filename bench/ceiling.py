"""The ceiling: the smallest ASGI app, answering {"msg":"success"} to every request, on the same
server stack and settings as ``papi-sandbox serve`` (uvicorn, uvloop, httptools, one process,
access log off as in the benchmark runs of the service)."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

BODY = b'{"msg":"success"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
