"""The ASGI application: one code path that limits, parses, authenticates, validates and
dispatches every public endpoint of the table, plus the operator API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route, Router

from papi_sandbox.api.endpoints import ENDPOINTS, Call, Endpoint, table
from papi_sandbox.api.fast import PapiApp
from papi_sandbox.api.http import (
    EncodedJson,
    RawHeaders,
    encode_headers,
    error_body,
    error_response,
    json_headers,
    json_response,
    read_body_raw,
)
from papi_sandbox.api.openapi import OPENAPI_PATH, openapi_document
from papi_sandbox.health import Readiness, StoreFailures
from papi_sandbox.jobs.config import JobsConfig, load_config
from papi_sandbox.jobs.scheduler import run_scheduler
from papi_sandbox.ledger.model import LedgerError
from papi_sandbox.market.state import Market
from papi_sandbox.observability import (
    Metrics,
    ObservabilityMiddleware,
    Receive,
    RequestObserver,
    Scope,
    Send,
)
from papi_sandbox.secretbox import SecretBox, SecretBoxError, load_or_create_key
from papi_sandbox.service import Service
from papi_sandbox.settings import DEFAULT_ADMIN_AUTH_FAILURES_PER_MINUTE, Settings
from papi_sandbox.store.base import ApiKeyRecord, EntryCounter, StoreUnavailable
from papi_sandbox.store.contract import KeyRevocations, Store
from papi_sandbox.stream.hub import EventHub
from papi_sandbox.stream.ws import StreamServer, websocket_app
from papi_sandbox.wire import auth, errors, params
from papi_sandbox.wire.account_limits import (
    LIMIT_OF_ENTRY_TYPE,
    LONGEST_WINDOW_MS,
    AccountCall,
    account_limit_exceeded,
    calls_from_journal,
)
from papi_sandbox.wire.client_ip import ClientIdentity
from papi_sandbox.wire.errors import ApiError
from papi_sandbox.wire.limits import FailureThrottle, Limiter, WeightDecision, WeightLimiter

log = logging.getLogger("papi_sandbox")

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
WEIGHT_HEADER_RAW = WEIGHT_HEADER.lower().encode()
#: The ledger-wide setting naming the encryption key that seals the stored HMAC secrets.
SECRET_KEY_ID_SETTING = "secret_key_id"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FORM_CONTENT_TYPE_RAW = FORM_CONTENT_TYPE.encode()
#: The infrastructure endpoints (docs/security.md): exempt from IP weight and bans, like the
#: operator API.
INFRASTRUCTURE_PATHS = ("/healthz", "/readyz", "/metrics", OPENAPI_PATH)
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
    #: Failed operator authentications per client IP (admin/api.py).
    admin_auth: FailureThrottle = field(
        default_factory=lambda: FailureThrottle(DEFAULT_ADMIN_AUTH_FAILURES_PER_MINUTE)
    )
    jobs: JobsConfig = field(default_factory=JobsConfig)
    #: Committed journal entries, fanned out per account (the user data stream, the dashboard).
    hub: EventHub = field(default_factory=EventHub)
    #: Requests refused because the store was unavailable (health.py).
    store_failures: StoreFailures = field(default_factory=StoreFailures)
    #: Journal entries by type for /metrics: seeded at start, counted as entries commit.
    entry_counter: EntryCounter = field(default_factory=EntryCounter)
    #: The user data stream's WebSocket connections (set by create_app).
    streams: StreamServer | None = None


#: What one public request is answered with: status, body, headers, Binance code (None on
#: success) and the IP weight used (for the log line).
Answer = tuple[int, bytes, RawHeaders, int | None, str]


def _refusal(error: ApiError, weight: bytes | None) -> Answer:
    body = error_body(error)
    extra = [(WEIGHT_HEADER_RAW, weight)] if weight is not None else []
    if error.headers:
        extra += encode_headers(error.headers)
    return error.status, body, json_headers(body, extra), error.code, (weight or b"").decode()


class PublicApi:
    """Serves every endpoint of the table through the same steps, as a raw ASGI app: no
    Starlette Request or Response objects, one pass over the headers, and the request's id,
    metrics and log line handled here (``RequestObserver``) rather than by a middleware."""

    def __init__(
        self,
        state: AppState,
        observer: RequestObserver,
        endpoints: tuple[Endpoint, ...] = ENDPOINTS,
    ) -> None:
        self.state = state
        self.observer = observer
        self.routes = table(endpoints)
        self._spend_now: Callable[..., WeightDecision] | None = getattr(
            state.limiter, "spend_now", None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = self.observer.next_id()
        status, code, weight = 500, None, ""
        try:
            try:
                status, body, headers, code, weight = await self._answer(scope, receive)
            except StoreUnavailable as exc:  # nothing applied; the client may retry
                self.state.store_failures.note(exc, scope["method"], scope["path"])
                status, body, headers, code, weight = _refusal(errors.disconnected(), None)
            except Exception:
                # A bug: logged with its traceback, answered in Binance's shape, never as HTML.
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                status, body, headers, code, weight = _refusal(errors.unknown(), None)
            headers.append((b"x-request-id", request_id.encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            elapsed_s = time.perf_counter() - started
            self.observer.finish(scope, request_id, status, code, weight, elapsed_s)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        state = self.state
        path: str = scope["path"]
        method: str = scope["method"]
        methods = self.routes.get(path)
        endpoint = methods.get(method) if methods else None
        client = scope.get("client")
        ip: str = client[0] if client else "unknown"
        if endpoint is not None and endpoint.account_limit is not None and endpoint.needs_key:
            return await self._answer_account_limited(endpoint, scope, receive, ip)
        # Unknown paths cost weight 1, so probing for endpoints is not free.
        try:
            weight_of_request = endpoint.weight if endpoint else 1
            decision = (
                self._spend_now(ip, weight_of_request)  # in-process: no coroutine to await
                if self._spend_now is not None
                else await state.limiter.spend(ip, weight_of_request)
            )
        except ApiError as error:  # a shared limiter is unreachable: fail closed, change nothing
            return _refusal(error, None)
        weight = b"%d" % decision.used
        if decision.banned_until_ms is not None:
            # A banned IP: answered before the body, the parameters or the key are looked at.
            self.observer.metrics.stats.ip_refused(418)
            return _refusal(
                errors.ip_banned(decision.banned_until_ms, decision.retry_after_s), weight
            )
        try:
            if not decision.allowed:
                self.observer.metrics.stats.ip_refused(429)
                raise errors.too_many_requests(
                    state.limiter.limit_per_minute, decision.retry_after_s
                )
            if methods is None:
                raise errors.not_found(path)
            if endpoint is None:
                raise errors.method_not_allowed(method, path)
            used = [decision.used]  # raised by _serve when the request turns out heavier
            try:
                result = await self._serve(endpoint, scope, receive, ip, used)
            finally:
                weight = b"%d" % used[0]
        except ApiError as error:
            return _refusal(error, weight)
        body = result if type(result) is EncodedJson else orjson.dumps(result)
        return 200, body, json_headers(body, ((WEIGHT_HEADER_RAW, weight),)), None, weight.decode()

    async def _answer_account_limited(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, ip: str
    ) -> Answer:
        """An endpoint with a per-account rolling limit: the key and the signature are checked
        first, then ONE limiter step decides the IP's ban and weight and the account's call
        together (one Redis round trip with ``--limits``: wire/limits_redis.py). A request
        refused before its account is known spends its IP weight alone; a ban or the IP weight
        is answered before any other refusal."""
        limit = endpoint.account_limit
        assert limit is not None
        refusal: ApiError | None = None
        try:
            account_id, caller_key, args = await self._authenticated(
                endpoint, scope, receive, ip, [0]
            )
        except ApiError as error:
            refusal, account_id, caller_key, args = error, 0, "", {}
        call = AccountCall(limit, account_id) if refusal is None else None
        try:
            decision = await self._spend(ip, endpoint.weight, call)
        except ApiError as error:  # a shared limiter is unreachable: fail closed
            return _refusal(error, None)
        weight = b"%d" % decision.used
        if decision.banned_until_ms is not None:
            self.observer.metrics.stats.ip_refused(418)
            return _refusal(
                errors.ip_banned(decision.banned_until_ms, decision.retry_after_s), weight
            )
        if not decision.allowed:
            self.observer.metrics.stats.ip_refused(429)
            refusal = errors.too_many_requests(
                self.state.limiter.limit_per_minute, decision.retry_after_s
            )
        elif decision.account_retry_after_s is not None:
            self.observer.metrics.stats.account_limited(limit.name)
            refusal = account_limit_exceeded(limit, decision.account_retry_after_s)
        if refusal is not None:
            return _refusal(refusal, weight)
        try:
            result = await self._handle(endpoint, account_id, args, caller_key)
        except ApiError as error:
            return _refusal(error, weight)
        body = result if type(result) is EncodedJson else orjson.dumps(result)
        return 200, body, json_headers(body, ((WEIGHT_HEADER_RAW, weight),)), None, weight.decode()

    async def _spend(self, ip: str, weight: int, account: AccountCall | None) -> WeightDecision:
        if self._spend_now is not None:  # in-process: no coroutine to await
            return self._spend_now(ip, weight, account)
        return await self.state.limiter.spend(ip, weight, account)

    async def _serve(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, ip: str, used: list[int]
    ) -> Any:
        account_id, caller_key, args = await self._authenticated(endpoint, scope, receive, ip, used)
        return await self._handle(endpoint, account_id, args, caller_key)

    async def _handle(
        self, endpoint: Endpoint, account_id: int, args: dict[str, Any], caller_key: str
    ) -> Any:
        try:
            return await endpoint.handler(Call(self.state.service, account_id, args, caller_key))
        except LedgerError as exc:
            raise errors.refusal(exc) from None

    async def _authenticated(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, ip: str, used: list[int]
    ) -> tuple[int, str, dict[str, Any]]:
        """The body read, the parameters parsed, the key and signature checked: the request's
        account (0 when the endpoint needs no key), its API key ("" then) and its bound
        parameters."""
        # One pass over the headers (ASGI servers lowercase their names); the first of each wins.
        api_key: str | None = None
        content_length: bytes | None = None
        content_type: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"x-mbx-apikey":
                if api_key is None:
                    api_key = value.decode("latin-1")
            elif name == b"content-length":
                if content_length is None:
                    content_length = value
            elif name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"transfer-encoding":
                chunked = True
        body = (
            await read_body_raw(receive, content_length, chunked, params.MAX_BODY_BYTES)
            if content_length is not None or chunked
            else b""  # HTTP/1.1: no Content-Length and no chunking means no body
        )
        if body and not _body_has_parameters(scope["method"], content_type):
            body = b""  # read (bounded) so the connection stays usable, then ignored
        raw = params.parse_raw(scope["query_string"], body)
        if endpoint.weight_without_symbol is not None and "symbol" not in raw.values:
            used[0] = await self._spend_more(ip, endpoint.weight_without_symbol - endpoint.weight)
        account_id = 0
        caller_key = ""
        if endpoint.needs_key:
            key = await auth.authenticate(api_key, ip, self.state.keys)
            if endpoint.signed:
                auth.check_timing(raw.values, _now_ms())
                signature = raw.values.get(params.SIGNATURE)
                if not signature:
                    raise errors.mandatory_missing(params.SIGNATURE)
                if not auth.verify_signature(key, raw.signed_text, signature):
                    raise errors.invalid_signature()
                if not endpoint.security.permits(key.can_read, key.can_trade):
                    raise errors.rejected_api_key(ip)
            account_id = key.account_id
            caller_key = key.api_key
        values = raw.values
        if not endpoint.refuses_unknown:
            by_name = endpoint.params_by_name
            values = {name: text for name, text in values.items() if name in by_name}
        args = params.bind(endpoint.all_params, values, endpoint.params_by_name)
        return account_id, caller_key, args

    async def _spend_more(self, ip: str, weight: int) -> int:
        """Charge ``weight`` more to ``ip`` once the parameters show the request costs more
        (an endpoint weighed higher without ``symbol``); over the limit it is refused."""
        decision = (
            self._spend_now(ip, weight)
            if self._spend_now is not None
            else await self.state.limiter.spend(ip, weight)
        )
        if decision.banned_until_ms is not None:
            raise errors.ip_banned(decision.banned_until_ms, decision.retry_after_s)
        if not decision.allowed:
            raise errors.too_many_requests(
                self.state.limiter.limit_per_minute, decision.retry_after_s
            )
        return decision.used


#: Methods whose parameters Binance reads from the query string only: a body is ignored.
QUERY_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _body_has_parameters(method: str, content_type: bytes | None) -> bool:
    """Whether a request body is read for parameters (docs/semantics.md, "Where parameters come
    from"): never for GET/HEAD/OPTIONS; otherwise when it is a form, that is when its
    Content-Type is ``application/x-www-form-urlencoded`` (any parameters such as a charset
    allowed) or absent. JSON, text/plain and every other type are ignored, not refused."""
    if method in QUERY_ONLY_METHODS:
        return False
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == FORM_CONTENT_TYPE_RAW


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(errors.method_not_allowed(request.method, request.url.path))
    if exc.status_code == 404:
        return error_response(errors.not_found(request.url.path))
    return error_response(errors.http_error(exc.status_code, str(exc.detail)))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreUnavailable)
    request.app.state.papi.store_failures.note(exc, request.method, request.url.path)
    return error_response(errors.disconnected())


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
    from papi_sandbox.ui.app import ui_routes

    box = SecretBox(load_or_create_key(settings.data_dir))

    async def load_key(api_key: str) -> ApiKeyRecord | None:
        record = await store.find_api_key(api_key)
        if record is not None and record.secret is not None:
            try:
                secret = box.open(record.secret, record.api_key)
            except SecretBoxError as exc:  # the key was rotated under a running process
                log.error("cannot open the secret of an API key: %s", exc)
                raise errors.internal_retry() from None
            # Built field by field: dataclasses.replace costs several µs, on every key miss.
            record = ApiKeyRecord(
                record.api_key,
                record.account_id,
                record.key_type,
                secret,
                record.public_key,
                record.can_read,
                record.can_trade,
                record.ip_whitelist,
                record.revoked,
            )
        return record

    jobs_config = load_config(settings.config_path)
    service = Service(store, box, Market(jobs_config.market))
    state = AppState(
        settings=settings,
        store=store,
        service=service,
        limiter=_make_limiter(settings),
        keys=auth.KeyCache(load_key),
        admin_token=admin_token,
        jobs=jobs_config,
        admin_auth=FailureThrottle(settings.admin_auth_failures_per_minute),
    )
    streams = StreamServer(state.hub, service.listen_keys, specs=service.market.specs)
    state.streams = streams
    # A store shared by several processes tells each one about keys revoked by another.
    if isinstance(store, KeyRevocations):
        store.on_key_revoked(state.keys.forget)
        store.on_key_revoked(streams.api_key_revoked)
    # Every durable commit reaches the hub once, in commit order (docs/design.md, "The event hub").
    store.on_commit(state.hub.publish)
    store.on_commit(state.entry_counter.committed)  # /metrics counts entries as they commit
    readiness = Readiness(store, state.limiter)
    # Accounts that may hold a position (so the balance endpoint reads positions only for them).
    store.on_commit(service.trading.note_commits)
    metrics = Metrics()
    routes = table(ENDPOINTS)
    openapi_body = orjson.dumps(openapi_document())
    known_paths = set(routes) | {"/healthz", "/readyz", "/metrics", OPENAPI_PATH}

    def endpoint_label(path: str) -> str:
        # Bounded label values: the table's paths, the fixed routes, then two buckets.
        if path in known_paths:
            return path
        if path.startswith("/admin/"):
            return "/admin/v1"
        return "/ui" if path == "/ui" or path.startswith("/ui/") else "unmatched"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.hub.bind()  # deliveries from the store's threads land on this loop
        await store.open()
        scheduler: asyncio.Task[None] | None = None
        probes: asyncio.Task[None] | None = None
        feed: asyncio.Task[None] | None = None
        try:
            # Once per start (one GROUP BY); from here on /metrics reads the counter (O(1)).
            state.entry_counter.seed(await store.entry_counts())
            # In-process per-account limits survive a restart: their calls re-derived from the
            # journal (wire/account_limits.py). With Redis they live there.
            in_process_accounts = getattr(state.limiter, "accounts", None)
            if in_process_accounts is not None:
                rows = await store.recent_entries(
                    tuple(LIMIT_OF_ENTRY_TYPE), _now_ms() - LONGEST_WINDOW_MS
                )
                in_process_accounts.seed(calls_from_journal(rows))
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
            await service.trading.open()  # the market's starting prices, once per ledger
            if on_ready is not None:
                await on_ready(state)
            if settings.scheduler:
                scheduler = asyncio.create_task(run_scheduler(store, state.jobs))
            probes = asyncio.create_task(readiness.run())
            if state.jobs.market.feed is not None:
                feed = asyncio.create_task(_price_feed(state))
            streams.start()
            yield
        finally:
            await streams.stop()
            if probes is not None:
                probes.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probes
            if feed is not None:
                feed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed
            if scheduler is not None:
                scheduler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scheduler
            await store.close()
            close_limiter = getattr(state.limiter, "aclose", None)
            if close_limiter is not None:
                await close_limiter()

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

    async def ui_home(request: Request) -> Response:
        return RedirectResponse("/ui/", 308)

    async def openapi(request: Request) -> Response:
        # Not weighed: a static document, built once.
        return Response(openapi_body, 200, media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render(
            state.entry_counter.counts,
            limiter_unavailable=getattr(state.limiter, "unavailable_total", 0),
            store_retries=store.retries_total,
            admin_auth_failures=state.admin_auth.failures_total,
            admin_auth_refused=state.admin_auth.refused_total,
            store_unavailable=state.store_failures.total,
            ready=readiness.checks,
            stream={
                "connections": streams.connections,
                "slow_consumers_total": streams.slow_consumers_total,
                "queued": state.hub.queued(),
                "published_total": state.hub.published_total,
            },
        )
        return Response(body, 200, headers={"Content-Type": content_type})

    observer = RequestObserver(metrics, endpoint_label, log_requests=settings.request_log)
    app = PapiApp(
        PublicApi(state, observer),  # counted, timed and logged by the same observer
        identity=ClientIdentity(settings.forwarded_allow_ips),
        # infrastructure paths, never weighed or banned, whether or not a route serves them yet
        infrastructure=INFRASTRUCTURE_PATHS,
        routes=[
            Route(OPENAPI_PATH, openapi, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            # no trailing-slash redirects in the operator API: "/accounts/" is a JSON 404
            Mount("/admin/v1", app=Router(admin_routes(state), redirect_slashes=False)),
            # The operator's dashboard (papi_sandbox/ui), on the same service layer.
            Route("/ui", ui_home, methods=["GET"]),
            Mount("/ui", routes=ui_routes(state)),
        ],
        websocket=websocket_app(lambda: streams),
        exception_handlers={
            HTTPException: _http_exception,
            StoreUnavailable: _store_unavailable,
            Exception: _unhandled,
        },
        lifespan=lifespan,
    )
    app.add_middleware(
        ObservabilityMiddleware, observer=observer
    )  # the routed paths: operator API, /healthz, /metrics, the OpenAPI document
    app.state.papi = state
    app.state.metrics = metrics
    return app


async def _price_feed(state: AppState) -> None:
    """The configured price feed ([market.feed]); with processes sharing a PostgreSQL ledger,
    only the one holding the feed's advisory lock runs it."""
    from papi_sandbox.market.feed import run_feed
    from papi_sandbox.store.contract import SharedJobStore

    trading = state.service.trading
    config = state.jobs.market.feed
    assert config is not None

    async def set_price(symbol: str, price: Decimal) -> object:
        return await trading.set_price(symbol, price)

    def current(symbol: str) -> Decimal:
        return trading.market.prices[symbol].mark_price

    async def run() -> None:
        await run_feed(config, trading.market.specs, current, set_price)

    if isinstance(state.store, SharedJobStore):
        async with state.store.advisory_lock("papi-price-feed") as held:
            if held:
                await run()
        return
    await run()


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
    from papi_sandbox.observability import configure_logging
    from papi_sandbox.settings import check_admin_token, ensure_admin_token, settings_from_env
    from papi_sandbox.store import open_store
    from papi_sandbox.transport import GC_THRESHOLDS

    # A worker process starts with Python's bare logging: give it serve's JSON lines (request
    # log, redaction) before anything is logged.
    configure_logging()
    settings = settings_from_env()
    gc.set_threshold(*GC_THRESHOLDS)  # as serve's own process (transport.server_options)
    token = check_admin_token(settings.admin_token or ensure_admin_token(settings.data_dir)[0])
    store = open_store(
        settings.db_url, durability=settings.durability, timeout_s=settings.store_timeout_s
    )
    return create_app(settings, store, token)
