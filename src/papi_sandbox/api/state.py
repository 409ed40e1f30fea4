"""The shared runtime state of one server process: what the public API, the operator API, the
dashboard, the user data stream and the infrastructure routes all read (:class:`AppState`).
Built once by the composition root (:mod:`papi_sandbox.api.app`); imports nothing of the web
layers that read it, so they all depend on it and not on each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from papi_sandbox.health import StoreFailures
from papi_sandbox.jobs.config import JobsConfig
from papi_sandbox.observability import EntryCounter
from papi_sandbox.service import Service
from papi_sandbox.settings import DEFAULT_ADMIN_AUTH_FAILURES_PER_MINUTE, Settings
from papi_sandbox.store.contract import Store
from papi_sandbox.stream.hub import EventHub
from papi_sandbox.stream.ws import StreamServer
from papi_sandbox.wire import auth
from papi_sandbox.wire.limits import FailureThrottle, Limiter, WeightLimiter


@dataclass(slots=True)
class AppState:
    """One process's state: its settings, the store, the service layer, the IP limiter, the
    API key cache and the operator token, plus the counters and fan-outs below."""

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


def make_limiter(settings: Settings) -> Limiter:
    """The IP weight limiter: in-process, unless ``settings.limits`` names a Redis shared by
    every server process (wire/limits_redis.py)."""
    if settings.limits:
        from papi_sandbox.wire.limits_redis import RedisWeightLimiter

        return RedisWeightLimiter(
            settings.limits,
            settings.ip_weight_limit,
            key_prefix=settings.limits_prefix,
            ban_after_429s=settings.ban_after_429s,
        )
    return WeightLimiter(settings.ip_weight_limit, ban_after_429s=settings.ban_after_429s)
