"""The infrastructure routes of a server process (docs/operations.md, "Health"): ``/healthz``
(liveness), ``/readyz`` (readiness), ``/metrics`` (Prometheus) and the OpenAPI document; never
weighed or banned (``INFRASTRUCTURE_PATHS``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from papi_sandbox.api.http import json_response
from papi_sandbox.api.openapi import OPENAPI_PATH, openapi_document
from papi_sandbox.api.state import AppState
from papi_sandbox.health import Readiness
from papi_sandbox.observability import Metrics

#: The infrastructure endpoints (docs/security.md): exempt from IP weight and bans, like the
#: operator API.
INFRASTRUCTURE_PATHS = ("/healthz", "/readyz", "/metrics", OPENAPI_PATH)


def endpoint_label(public_paths: Iterable[str]) -> Callable[[str], str]:
    """The metrics' ``endpoint`` label of a path: bounded values (the table's paths, the
    infrastructure paths, then ``/admin/v1``, ``/ui`` or ``unmatched``)."""
    known = set(public_paths) | set(INFRASTRUCTURE_PATHS)

    def label(path: str) -> str:
        if path in known:
            return path
        if path.startswith("/admin/"):
            return "/admin/v1"
        return "/ui" if path == "/ui" or path.startswith("/ui/") else "unmatched"

    return label


def stream_figures(state: AppState) -> dict[str, int]:
    """The user data stream's figures for /metrics (``papi_stream{figure}``)."""
    streams = state.streams
    return {
        "connections": streams.connections if streams is not None else 0,
        "slow_consumers_total": streams.slow_consumers_total if streams is not None else 0,
        "queued": state.hub.queued(),
        "published_total": state.hub.published_total,
    }


def infrastructure_routes(state: AppState, readiness: Readiness, metrics: Metrics) -> list[Route]:
    """The routes of ``INFRASTRUCTURE_PATHS`` (GET), plus ``/ui`` -> ``/ui/`` (308)."""
    openapi_body = orjson.dumps(openapi_document())  # a static document, built once

    async def healthz(request: Request) -> Response:
        # Liveness only: the process's event loop answers. Readiness is /readyz.
        return json_response(200, {"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await readiness.check()
        failing = [name for name, problem in checks.items() if problem is not None]
        shown = {name: problem or "ok" for name, problem in checks.items()}
        if failing:
            return json_response(
                503, {"status": "unavailable", "failing": failing, "checks": shown}
            )
        return json_response(200, {"status": "ok", "checks": shown})

    async def openapi(request: Request) -> Response:
        return Response(openapi_body, 200, media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render(
            state.entry_counter.counts,
            limiter_unavailable=getattr(state.limiter, "unavailable_total", 0),
            store_retries=state.store.retries_total,
            admin_auth_failures=state.admin_auth.failures_total,
            admin_auth_refused=state.admin_auth.refused_total,
            store_unavailable=state.store_failures.total,
            ready=readiness.checks,
            stream=stream_figures(state),
        )
        return Response(body, 200, headers={"Content-Type": content_type})

    async def ui_home(request: Request) -> Response:
        return RedirectResponse("/ui/", 308)

    return [
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/ui", ui_home, methods=["GET"]),
    ]
