"""The ASGI entry point: ``/papi/*`` goes straight to the public API's handler; everything else
(operator API, health check) through Starlette's routing and middleware.

Why: the public handler already routes by its own endpoint table and answers every error itself,
so Starlette's middleware stack, router and path regexes only added per-request work (about a
tenth of the server's CPU on the balance read, see docs/performance.md). Per-request features of
the public API (limits, bans, metrics, logging) belong in ``PublicApi.handle``, which this path
keeps calling, or in the pure-ASGI ``direct_wrapper`` (metrics, request ids, logs); Starlette's own
middleware stack does not see ``/papi/*`` requests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from papi_sandbox.api.http import error_response
from papi_sandbox.wire import errors

log = logging.getLogger("papi_sandbox")

PUBLIC_PREFIX = "/papi/"


class PapiApp(Starlette):
    """Starlette with a direct path for the public API.

    ``direct_wrapper`` wraps the direct path in pure-ASGI middleware (metrics, request ids and
    logs); ``not_direct`` lists ``/papi/`` paths that still go through the router (the OpenAPI
    document)."""

    def __init__(
        self,
        public: Callable[[Request], Awaitable[Response]],
        *,
        direct_wrapper: Callable[[ASGIApp], ASGIApp] | None = None,
        not_direct: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._public = public
        self._not_direct = frozenset(not_direct)
        direct: ASGIApp = self._serve_public
        self._direct = direct_wrapper(direct) if direct_wrapper is not None else direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(PUBLIC_PREFIX)
            or path in self._not_direct
        ):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await self._direct(scope, receive, send)

    async def _serve_public(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self._public(request)
        except Exception:
            # A bug: logged with its traceback, answered in Binance's shape, never as HTML.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = error_response(errors.unknown())
        await response(scope, receive, send)
