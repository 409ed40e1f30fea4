"""The ASGI application: one code path that limits, parses, authenticates, validates and
dispatches every public endpoint of the table, plus the operator API."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from papi_sandbox.api.endpoints import ENDPOINTS, Call, Endpoint, Security, table
from papi_sandbox.api.fast import PapiApp
from papi_sandbox.api.http import client_ip, error_response, json_response, read_body
from papi_sandbox.ledger.model import InsufficientBalance, LedgerError
from papi_sandbox.service import Service
from papi_sandbox.settings import Settings
from papi_sandbox.store.base import Store
from papi_sandbox.wire import auth, errors, params
from papi_sandbox.wire.errors import ApiError
from papi_sandbox.wire.limits import Limiter, WeightLimiter

log = logging.getLogger("papi_sandbox")

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: Every method reaches the table, so a wrong one gets Binance's JSON error, not Starlette's.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class AppState:
    settings: Settings
    store: Store
    service: Service
    limiter: Limiter
    keys: auth.KeyCache
    admin_token: str


class PublicApi:
    """Serves every endpoint of the table through the same steps."""

    def __init__(self, state: AppState, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
        self.state = state
        self.routes = table(endpoints)

    async def handle(self, request: Request) -> Response:
        state = self.state
        path: str = request.scope["path"]  # not request.url: building a URL costs ~5% CPU
        methods = self.routes.get(path)
        endpoint = methods.get(request.method) if methods else None
        ip = client_ip(request)
        # Unknown paths cost weight 1, so probing for endpoints is not free.
        decision = await state.limiter.spend(ip, endpoint.weight if endpoint else 1)
        headers = {WEIGHT_HEADER: str(decision.used)}
        try:
            if not decision.allowed:
                raise errors.too_many_requests(
                    state.limiter.limit_per_minute, decision.retry_after_s
                )
            if methods is None:
                raise errors.not_found(path)
            if endpoint is None:
                raise errors.method_not_allowed(request.method, path)
            result = await self._serve(endpoint, request, ip)
        except ApiError as error:
            return error_response(error, headers)
        return json_response(200, result, headers)

    async def _serve(self, endpoint: Endpoint, request: Request, ip: str) -> Any:
        body = await read_body(request, params.MAX_BODY_BYTES)
        if body:
            content_type = request.headers.get("content-type", FORM_CONTENT_TYPE)
            if content_type.split(";")[0].strip().lower() != FORM_CONTENT_TYPE:
                raise ApiError(
                    400,
                    -1100,
                    f"Request body must be {FORM_CONTENT_TYPE}, not '{content_type[:64]}'.",
                )
        raw = params.parse_raw(request.scope["query_string"], body)
        account_id = 0
        if endpoint.security.needs_key:
            key = await auth.authenticate(request.headers, ip, self.state.keys)
            if endpoint.security.signed:
                auth.check_timing(raw.values, _now_ms())
                signature = raw.values.get(params.SIGNATURE)
                if not signature:
                    raise errors.mandatory_missing(params.SIGNATURE)
                if not auth.verify_signature(key, raw.signed_text, signature):
                    raise errors.invalid_signature()
                allowed = key.can_trade if endpoint.security is Security.TRADE else key.can_read
                if not allowed:
                    raise errors.rejected_api_key()
            account_id = key.account_id
        args = params.bind(endpoint.all_params, raw.values)
        try:
            return await endpoint.handler(Call(self.state.service, account_id, args))
        except InsufficientBalance:
            raise errors.balance_insufficient() from None
        except LedgerError as exc:
            raise ApiError(400, -1000, str(exc)) from None


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(errors.method_not_allowed(request.method, request.url.path))
    if exc.status_code == 404:
        return error_response(errors.not_found(request.url.path))
    return error_response(ApiError(exc.status_code, -1000, str(exc.detail)))


async def _unhandled(request: Request, exc: Exception) -> Response:
    # A bug: logged with its traceback, answered in Binance's shape, never as HTML.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(errors.unknown())


def create_app(
    settings: Settings,
    store: Store,
    admin_token: str,
    *,
    on_ready: Callable[[AppState], Awaitable[None]] | None = None,
) -> Starlette:
    from papi_sandbox.admin.api import admin_routes

    service = Service(store)
    state = AppState(
        settings=settings,
        store=store,
        service=service,
        limiter=WeightLimiter(settings.ip_weight_limit),
        keys=auth.KeyCache(store.find_api_key),
        admin_token=admin_token,
    )
    public = PublicApi(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        try:
            if on_ready is not None:
                await on_ready(state)
            yield
        finally:
            await store.close()

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    app = PapiApp(
        public.handle,
        routes=[
            Route("/papi/{rest:path}", public.handle, methods=ALL_METHODS),
            Route("/healthz", healthz, methods=["GET"]),
            Mount("/admin/v1", routes=admin_routes(state)),
        ],
        exception_handlers={HTTPException: _http_exception, Exception: _unhandled},
        lifespan=lifespan,
    )
    app.state.papi = state
    return app
