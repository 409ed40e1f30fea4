"""The ASGI entry point: every HTTP path goes straight to the public API (a raw ASGI app) unless
Starlette's router serves it (the operator API under ``/admin/v1``, ``/healthz``, ``/metrics``,
the OpenAPI document, and whatever else is declared as a Starlette route).

So every public path, known or unknown (``/papi/...``, ``/fapi/v1/time``, ``//papi/v1/ping``,
``/healthz/``), is weighed and refused while its IP is banned by one code path, the public API's
(docs/security.md); the routed paths are exempt. Trailing slashes are never redirected: a path
the router does not serve exactly is a JSON 404, never a 307.

Why a raw path: the public API routes by its own endpoint table, answers every error itself and
observes its own requests (id, metrics, log line), so Starlette's middleware stack, router, path
regexes and Request/Response objects only added per-request work (see docs/performance.md).
Per-request features of the public API (limits, bans, metrics, logging) belong in
``PublicApi``; Starlette's own middleware stack does not see public requests.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from papi_sandbox.wire.client_ip import ClientIdentity


class PapiApp(Starlette):
    """Starlette with a direct path for the public API: a request goes to the router only when
    a route of the router serves its path (an exact route path, a route pattern, or a path
    under a mount); every other HTTP request goes to ``public``. ``identity`` decides who the
    client is (wire/client_ip.py) before any layer looks at ``scope["client"]``."""

    def __init__(
        self,
        public: ASGIApp,
        *,
        infrastructure: tuple[str, ...] = (),
        identity: ClientIdentity | None = None,
        websocket: ASGIApp | None = None,
        **kwargs: Any,
    ) -> None:
        """``infrastructure``: paths exempt from weight and bans even while no route serves them
        (the router answers them a JSON 404). ``websocket``: serves every WebSocket directly
        (the user data stream, stream/ws.py), without the middleware stack."""
        super().__init__(**kwargs)
        self._public = public
        self._websocket = websocket
        # Only trusted proxies change who the client is; without them the TCP peer stands.
        self._identity = identity if identity is not None and identity.enabled else None
        self.router.redirect_slashes = False  # "/healthz/" is a 404, not a 307 to "/healthz"
        exact: set[str] = set(infrastructure)
        patterns: list[re.Pattern[str]] = []
        mounts: list[str] = []
        for route in self.router.routes:
            if isinstance(route, Mount):
                mounts.append(route.path.rstrip("/") + "/")
            elif isinstance(route, Route | WebSocketRoute):
                if "{" in route.path:
                    patterns.append(route.path_regex)
                else:
                    exact.add(route.path)
        self._routed_exact = frozenset(exact)
        self._routed_patterns = tuple(patterns)
        self._routed_mounts = tuple(mounts)

    def routed(self, path: str) -> bool:
        """Whether the router serves ``path`` (exempt from weight and bans)."""
        if path in self._routed_exact or path.startswith(self._routed_mounts):
            return True
        return any(pattern.match(path) for pattern in self._routed_patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._identity is not None and scope["type"] != "lifespan":
            self._identity.apply(scope)
        if scope["type"] == "websocket" and self._websocket is not None:
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http" or self.routed(scope.get("path", "")):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await self._public(scope, receive, send)
