"""The ASGI application: one code path that limits, parses, authenticates, validates and
dispatches every public endpoint of the table, plus the operator API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from papi_sandbox.api.endpoints import ENDPOINTS, Call, Endpoint, table
from papi_sandbox.api.fast import PapiApp
from papi_sandbox.api.http import client_ip, error_response, json_response, read_body
from papi_sandbox.api.openapi import OPENAPI_PATH, openapi_document
from papi_sandbox.jobs.config import JobsConfig, load_config
from papi_sandbox.jobs.scheduler import run_scheduler
from papi_sandbox.ledger.model import InsufficientBalance, LedgerError
from papi_sandbox.observability import ERROR_CODE_SCOPE_KEY, Metrics, ObservabilityMiddleware
from papi_sandbox.secretbox import SecretBox, SecretBoxError, load_or_create_key
from papi_sandbox.service import Service
from papi_sandbox.settings import Settings
from papi_sandbox.store.base import ApiKeyRecord, Store
from papi_sandbox.wire import auth, errors, params
from papi_sandbox.wire.account_limits import AccountLimiter
from papi_sandbox.wire.errors import ApiError
from papi_sandbox.wire.limits import Limiter, WeightLimiter

log = logging.getLogger("papi_sandbox")

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
#: The ledger-wide setting naming the encryption key that seals the stored HMAC secrets.
SECRET_KEY_ID_SETTING = "secret_key_id"
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
    account_limits: AccountLimiter = field(default_factory=AccountLimiter)
    jobs: JobsConfig = field(default_factory=JobsConfig)


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
        try:
            decision = await state.limiter.spend(ip, endpoint.weight if endpoint else 1)
        except ApiError as error:  # a shared limiter is unreachable: fail closed, change nothing
            return error_response(error)
        headers = {WEIGHT_HEADER: str(decision.used)}
        if decision.banned_until_ms is not None:
            # A banned IP: answered before the body, the parameters or the key are looked at.
            request.scope[ERROR_CODE_SCOPE_KEY] = -1003
            return error_response(
                errors.ip_banned(decision.banned_until_ms, decision.retry_after_s), headers
            )
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
            request.scope[ERROR_CODE_SCOPE_KEY] = error.code
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
                if not endpoint.security.permits(key.can_read, key.can_trade):
                    raise errors.rejected_api_key()
            account_id = key.account_id
            if endpoint.account_limit is not None:
                self.state.account_limits.admit(endpoint.account_limit, account_id)
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

    box = SecretBox(load_or_create_key(settings.data_dir))

    async def load_key(api_key: str) -> ApiKeyRecord | None:
        record = await store.find_api_key(api_key)
        if record is not None and record.secret is not None:
            try:
                secret = box.open(record.secret, record.api_key)
            except SecretBoxError as exc:  # the key was rotated under a running process
                log.error("cannot open the secret of an API key: %s", exc)
                raise ApiError(
                    503, -1001, "Internal error; unable to process your request. Please try again."
                ) from None
            record = dataclasses.replace(record, secret=secret)
        return record

    service = Service(store, box)
    state = AppState(
        settings=settings,
        store=store,
        service=service,
        limiter=_make_limiter(settings),
        keys=auth.KeyCache(load_key),
        admin_token=admin_token,
        jobs=load_config(settings.config_path),
    )
    # A store shared by several processes tells each one about keys revoked by another.
    on_key_revoked = getattr(store, "on_key_revoked", None)
    if on_key_revoked is not None:
        on_key_revoked(state.keys.forget)
    public = PublicApi(state)
    metrics = Metrics()
    openapi_body = orjson.dumps(openapi_document())
    known_paths = set(public.routes) | {"/healthz", "/metrics", OPENAPI_PATH}

    def endpoint_label(path: str) -> str:
        # Bounded label values: the table's paths, the fixed routes, then two buckets.
        if path in known_paths:
            return path
        return "/admin/v1" if path.startswith("/admin/") else "unmatched"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        scheduler: asyncio.Task[None] | None = None
        try:
            # Secrets of databases from before encryption at rest are sealed at first start.
            sealed = await store.rewrite_api_key_secrets(
                lambda secret, api_key: box.reseal(secret, api_key, None)
            )
            if sealed:
                log.info("sealed %d plain-text API secret(s) at rest", sealed)
            # Every process sharing this ledger must seal with the same key: the first one to
            # start records its key's id; a process with another key refuses to start.
            ledger_key_id = await store.claim_setting(SECRET_KEY_ID_SETTING, box.key_id)
            if ledger_key_id != box.key_id:
                raise SecretBoxError(
                    f"this ledger's secrets are sealed with encryption key {ledger_key_id}, but"
                    f" this process has key {box.key_id}: give every process the same"
                    " PAPI_SANDBOX_SECRET_KEY (or the same data folder)"
                )
            if on_ready is not None:
                await on_ready(state)
            if settings.scheduler:
                scheduler = asyncio.create_task(run_scheduler(store, state.jobs))
            yield
        finally:
            if scheduler is not None:
                scheduler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scheduler
            await store.close()
            close_limiter = getattr(state.limiter, "aclose", None)
            if close_limiter is not None:
                await close_limiter()

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    async def openapi(request: Request) -> Response:
        # Not weighed: a static document, built once.
        return Response(openapi_body, 200, media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render(
            await store.entry_counts(),
            limiter_unavailable=getattr(state.limiter, "unavailable_total", 0),
            store_retries=getattr(store, "retries_total", 0),
        )
        return Response(body, 200, headers={"Content-Type": content_type})

    def observed(inner: ASGIApp) -> ASGIApp:
        return ObservabilityMiddleware(
            inner, metrics=metrics, endpoint_label=endpoint_label, log_requests=settings.request_log
        )

    app = PapiApp(
        public.handle,
        direct_wrapper=observed,  # the fast path is counted, timed and logged like the rest
        not_direct=(OPENAPI_PATH,),
        routes=[
            Route(OPENAPI_PATH, openapi, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Mount("/admin/v1", routes=admin_routes(state)),
        ],
        exception_handlers={HTTPException: _http_exception, Exception: _unhandled},
        lifespan=lifespan,
    )
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        endpoint_label=endpoint_label,
        log_requests=settings.request_log,
    )  # the routed paths: operator API, /healthz, /metrics, the OpenAPI document
    app.state.papi = state
    app.state.metrics = metrics
    return app


def _make_limiter(settings: Settings) -> Limiter:
    """In-process unless ``settings.limits`` names a Redis shared by every server process."""
    if settings.limits:
        from papi_sandbox.wire.limits_redis import RedisWeightLimiter

        return RedisWeightLimiter(
            settings.limits,
            settings.ip_weight_limit,
            key_prefix=settings.limits_prefix,
            ban_after_429s=settings.ip_ban_after_429s,
        )
    return WeightLimiter(settings.ip_weight_limit, ban_after_429s=settings.ip_ban_after_429s)


def app_from_env() -> Starlette:
    """The app built from ``PAPI_SANDBOX_*`` variables alone, for worker processes:
    ``uvicorn --factory papi_sandbox.api.app:app_from_env`` or ``serve --workers N``."""
    from papi_sandbox.settings import ensure_admin_token, settings_from_env
    from papi_sandbox.store import open_store

    settings = settings_from_env()
    token = settings.admin_token or ensure_admin_token(settings.data_dir)[0]
    return create_app(settings, open_store(settings.db_url), token)
