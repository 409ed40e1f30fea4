"""The ASGI entry point: ``/papi/*`` (and Binance's other public prefixes, ``/fapi/``,
``/api/``, ``/dapi/``, ``/sapi/``) goes straight to the public API (a raw ASGI app); everything
else (operator API, health check, metrics, the OpenAPI document) through Starlette's routing and
middleware.

Why: the public API routes by its own endpoint table, answers every error itself and observes
its own requests (id, metrics, log line), so Starlette's middleware stack, router, path regexes
and Request/Response objects only added per-request work (see docs/performance.md).
Per-request features of the public API (limits, bans, metrics, logging) belong in
``PublicApi``; Starlette's own middleware stack does not see ``/papi/*`` requests.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from papi_sandbox.wire.client_ip import ClientIdentity

#: Path prefixes of Binance's public APIs the endpoint table serves (PAPI, and the UM, spot,
#: COIN-M and wallet paths clients boot with).
PUBLIC_PREFIXES = ("/papi/", "/fapi/", "/api/", "/dapi/", "/sapi/")


class PapiApp(Starlette):
    """Starlette with a direct path for the public API. ``not_direct`` lists ``/papi/`` paths
    that still go through the router (the OpenAPI document). ``identity`` decides who the
    client is (wire/client_ip.py) before any layer looks at ``scope["client"]``."""

    def __init__(
        self,
        public: ASGIApp,
        *,
        not_direct: tuple[str, ...] = (),
        identity: ClientIdentity | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._public = public
        self._not_direct = frozenset(not_direct)
        # Only trusted proxies change who the client is; without them the TCP peer stands.
        self._identity = identity if identity is not None and identity.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._identity is not None and scope["type"] != "lifespan":
            self._identity.apply(scope)
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(PUBLIC_PREFIXES)
            or path in self._not_direct
        ):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await self._public(scope, receive, send)
