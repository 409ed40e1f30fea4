"""The composition root: :func:`create_app` builds one server process's ASGI app from its
settings and store (the shared state, the public API, the operator API, the dashboard, the user
data stream and the infrastructure routes), and its lifespan starts and stops what runs beside
the requests (the store, the scheduler, the readiness probes, the price feed, the streams).
:func:`app_from_env` is the same app from ``PAPI_SANDBOX_*`` variables alone.

Nothing imports this module but the entry points (the CLI, the package's public names, the
ASGI servers' ``--factory``): the layers it assembles import :mod:`papi_sandbox.api.state`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Router

from papi_sandbox.admin.api import admin_routes
from papi_sandbox.api.endpoints import ENDPOINTS, table
from papi_sandbox.api.fast import PapiApp
from papi_sandbox.api.http import error_response
from papi_sandbox.api.infra import INFRASTRUCTURE_PATHS, endpoint_label, infrastructure_routes
from papi_sandbox.api.public import PublicApi, now_ms
from papi_sandbox.api.state import AppState, make_limiter
from papi_sandbox.health import Readiness
from papi_sandbox.jobs.config import JobsConfig, load_config
from papi_sandbox.jobs.scheduler import run_scheduler
from papi_sandbox.market.state import Market
from papi_sandbox.observability import Metrics, ObservabilityMiddleware, RequestObserver
from papi_sandbox.secretbox import SecretBox, SecretBoxError, load_or_create_key
from papi_sandbox.service import Service
from papi_sandbox.settings import Settings, server_option_warnings
from papi_sandbox.store import outbox
from papi_sandbox.store.base import StoreUnavailable
from papi_sandbox.store.contract import KeyRevocations, SharedJobStore, Store
from papi_sandbox.stream.ws import StreamServer, websocket_app
from papi_sandbox.ui.app import ui_routes
from papi_sandbox.wire import auth, errors
from papi_sandbox.wire.account_limits import (
    LIMIT_OF_ENTRY_TYPE,
    LONGEST_WINDOW_MS,
    calls_from_journal,
)
from papi_sandbox.wire.client_ip import ClientIdentity
from papi_sandbox.wire.limits import FailureThrottle

log = logging.getLogger("papi_sandbox")
jobs_log = logging.getLogger("papi_sandbox.jobs")

#: The ledger-wide setting naming the encryption key that seals the stored HMAC secrets.
SECRET_KEY_ID_SETTING = "secret_key_id"

OnReady = Callable[[AppState], Awaitable[None]]


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


def build_state(
    settings: Settings, store: Store, admin_token: str, jobs: JobsConfig | None = None
) -> AppState:
    """The process's shared state over ``store``, wired to the store's commit and revocation
    notices: every durable commit reaches the hub once, in commit order (docs/design.md, "The
    event hub"), the /metrics counter and the trading service's position index; a store shared
    by several processes tells each one about keys revoked by another."""
    jobs = jobs if jobs is not None else load_config(settings.config)
    box = SecretBox(load_or_create_key(settings.data_dir))
    service = Service(store, box, Market(jobs.market))
    state = AppState(
        settings=settings,
        store=store,
        service=service,
        limiter=make_limiter(settings),
        keys=auth.KeyCache(auth.SealedKeyLoader(store, box)),
        admin_token=admin_token,
        jobs=jobs,
        admin_auth=FailureThrottle(settings.admin_auth_failures_per_minute),
    )
    state.streams = StreamServer(
        state.hub,
        service.listen_keys,
        specs=service.market.specs,
        horizon=functools.partial(outbox.durable_now, store),
    )
    if isinstance(store, KeyRevocations):
        store.on_key_revoked(state.keys.forget)
        store.on_key_revoked(state.streams.api_key_revoked)
    store.on_commit(state.hub.publish)
    store.on_commit(state.entry_counter.committed)
    store.on_commit(service.trading.note_commits)
    # What lives on announcements is read again when some may have been lost (PostgreSQL).
    store.on_announcements_lost(state.hub.drop_all)
    store.on_announcements_lost(service.trading.announcements_lost)
    store.on_announcements_lost(functools.partial(_recount_entries, state))
    return state


#: The tasks :func:`_recount_entries` starts, held until done.
_recounts: set[asyncio.Task[None]] = set()


def _recount_entries(state: AppState) -> None:
    """Entries may have committed unannounced: /metrics' entry counts read again from the
    ledger (papi_sandbox.observability.EntryCounter.resync). On the event loop."""

    async def recount() -> None:
        try:
            state.entry_counter.resync(await state.store.entry_counts())
        except StoreUnavailable as exc:  # the counts stay as they are until the next loss
            log.warning("entry counts not read again: %s", exc)

    task = asyncio.get_running_loop().create_task(recount())
    _recounts.add(task)
    task.add_done_callback(_recounts.discard)


async def _prepare_ledger(state: AppState) -> None:
    """Once per start, before serving: the /metrics counter seeded (one GROUP BY), the
    in-process per-account limits re-derived from the journal (wire/account_limits.py; with
    Redis they live there), plain-text secrets of older databases sealed, this process's
    encryption key checked against the ledger's, the market's starting prices."""
    store, box = state.store, state.service.box
    assert box is not None  # build_state gives the service the process's key
    state.entry_counter.seed(await store.entry_counts())
    in_process_accounts = getattr(state.limiter, "accounts", None)
    if in_process_accounts is not None:
        since = now_ms() - LONGEST_WINDOW_MS
        rows = await store.recent_entries(tuple(LIMIT_OF_ENTRY_TYPE), since)
        in_process_accounts.seed(calls_from_journal(rows))
    sealed = await store.rewrite_api_key_secrets(
        lambda secret, api_key: box.reseal(secret, api_key, None)
    )
    if sealed:
        log.info("sealed %d plain-text API secret(s) at rest", sealed)
    # Every process sharing this ledger must seal with the same key: the first one to start
    # records its key's id; a process with another key refuses to start.
    ledger_key_id = await store.claim_setting(SECRET_KEY_ID_SETTING, box.key_id)
    if ledger_key_id != box.key_id:
        raise SecretBoxError(
            f"this ledger's secrets are sealed with encryption key {ledger_key_id}, but this"
            f" process has key {box.key_id}: give every process the same"
            " PAPI_SANDBOX_SECRET_KEY (or the same data folder)"
        )
    await state.service.trading.open()


def _background_tasks(state: AppState, readiness: Readiness) -> list[asyncio.Task[None]]:
    """What runs beside the requests: the scheduler (unless turned off), the readiness probes,
    the GTD orders' expiry and the configured price feed."""
    tasks = [
        asyncio.create_task(readiness.run()),
        asyncio.create_task(state.service.trading.run_expiry()),
    ]
    if state.settings.scheduler:
        tasks.append(asyncio.create_task(run_scheduler(state.store, state.jobs)))
    jobs_log.info("scheduler %s", "on" if state.settings.scheduler else "off")
    if state.jobs.market.feed is not None:
        tasks.append(asyncio.create_task(_price_feed(state)))
    return tasks


def _lifespan(
    state: AppState, readiness: Readiness, on_ready: OnReady | None
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """Start: the hub bound to the loop, the store opened, the ledger prepared, ``on_ready``,
    the background tasks and the streams. Stop: all of them, in reverse."""
    streams = state.streams
    assert streams is not None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.hub.bind()  # deliveries from the store's threads land on this loop
        await state.store.open()
        tasks: list[asyncio.Task[None]] = []
        try:
            await _prepare_ledger(state)
            if on_ready is not None:
                await on_ready(state)
            tasks = _background_tasks(state, readiness)
            streams.start()
            yield
        finally:
            await streams.stop()
            for task in reversed(tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await state.store.close()
            close_limiter = getattr(state.limiter, "aclose", None)
            if close_limiter is not None:
                await close_limiter()

    return lifespan


def _routes(state: AppState, readiness: Readiness, metrics: Metrics) -> list[BaseRoute]:
    return [
        *infrastructure_routes(state, readiness, metrics),
        # no trailing-slash redirects in the operator API: "/accounts/" is a JSON 404
        Mount("/admin/v1", app=Router(admin_routes(state), redirect_slashes=False)),
        # The operator's dashboard (papi_sandbox/ui), on the same service layer.
        Mount("/ui", routes=ui_routes(state)),
    ]


def create_app(
    settings: Settings,
    store: Store,
    admin_token: str,
    *,
    on_ready: OnReady | None = None,
    jobs: JobsConfig | None = None,
) -> Starlette:
    """The ASGI app of one server process over ``store`` (not yet opened: the lifespan opens
    and closes it). ``on_ready`` runs once the ledger is prepared (``serve --demo``); ``jobs``
    is the parsed ``settings.config`` when the caller has read it already."""
    state = build_state(settings, store, admin_token, jobs)
    readiness = Readiness(store, state.limiter)
    metrics = Metrics()
    label = endpoint_label(table(ENDPOINTS))
    observer = RequestObserver(metrics, label, log_requests=settings.access_log)
    app = PapiApp(
        PublicApi(state, observer),  # counted, timed and logged by the same observer
        identity=ClientIdentity(settings.forwarded_allow_ips),
        # infrastructure paths, never weighed or banned, whether or not a route serves them yet
        infrastructure=INFRASTRUCTURE_PATHS,
        routes=_routes(state, readiness, metrics),
        websocket=websocket_app(lambda: state.streams),
        exception_handlers={
            HTTPException: _http_exception,
            StoreUnavailable: _store_unavailable,
            Exception: _unhandled,
        },
        lifespan=_lifespan(state, readiness, on_ready),
    )
    # the routed paths: operator API, /healthz, /metrics, the OpenAPI document
    app.add_middleware(ObservabilityMiddleware, observer=observer)
    app.state.papi = state
    app.state.metrics = metrics
    return app


async def _price_feed(state: AppState) -> None:
    """The configured price feed ([market.feed]); with processes sharing a PostgreSQL ledger,
    only the one holding the feed's advisory lock runs it."""
    from papi_sandbox.market.feed import run_feed

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


def app_from_env() -> Starlette:
    """The app built from ``PAPI_SANDBOX_*`` variables alone (papi_sandbox.settings), for an
    ASGI server's factory: ``uvicorn --factory papi_sandbox.api.app:app_from_env`` or
    granian's ``--factory``. A refusal is one ``Cannot start:`` line on stderr and exit status
    2, as under ``serve``; before it serves, one ``Warning:`` line for each variable nothing
    reads and each option the ASGI server decides rather than the app
    (:func:`papi_sandbox.settings.server_option_warnings`)."""
    return _app_from_environment(factory=True)


def app_for_workers() -> Starlette:
    """:func:`app_from_env` for each process of ``serve --workers N``, whose supervisor
    applies the server's options and has said its warnings once already."""
    return _app_from_environment(factory=False)


def _app_from_environment(*, factory: bool) -> Starlette:
    import os
    import sys

    from papi_sandbox import transport
    from papi_sandbox.observability import configure_logging
    from papi_sandbox.preflight import CannotStart, prepare, read_settings
    from papi_sandbox.store import open_store

    try:
        settings = read_settings()
        if settings.demo:  # serve prints the demo's keys and the address it binds; no one here
            raise CannotStart(
                "PAPI_SANDBOX_DEMO is for `papi-sandbox serve --demo` (one process that prints"
                " its address and the demo's keys); under an ASGI server's --factory, leave it"
                " unset and create accounts with the operator API"
            )
        if factory:  # the ASGI server's own --workers decides (a warning says so), not this
            settings = settings.model_copy(update={"workers": 1})
        startup = prepare(settings)
    except CannotStart as exc:
        print(f"Cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if factory:
        applied = transport.guarded_from_env_loaded
        server = server_option_warnings(os.environ, read_deadline_applied=applied)
        for warning in [*startup.warnings, *server]:
            print(f"Warning: {warning}", file=sys.stderr, flush=True)

    # A worker process starts with Python's bare logging: give it serve's JSON lines (request
    # log, redaction) before anything is logged.
    configure_logging()
    settings = startup.settings
    gc.set_threshold(*transport.GC_THRESHOLDS)  # as serve's own process (server_options)
    store = open_store(
        settings.db_url, durability=settings.durability, timeout_s=settings.store_timeout
    )
    return create_app(settings, store, startup.token, jobs=startup.jobs)
