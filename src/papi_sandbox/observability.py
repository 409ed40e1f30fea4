"""Operations: one JSON log line per request with a request id, and Prometheus metrics.

What a log line may hold is decided here and nowhere else: method, path (never the query string,
which carries the signature), status, Binance code, latency, client IP, weight used and the
request id. Headers and bodies are never logged; a last redaction pass removes anything that
looks like a signature, an API key header or a bearer token from any message.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from papi_sandbox.ledger.model import CommittedEntry

#: Scope key where the public API leaves the Binance error code of its answer, for the log line.
ERROR_CODE_SCOPE_KEY = "papi.error_code"
#: Latency histogram buckets (seconds).
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_REDACT = (
    re.compile(r"(signature=)[^&\s\"']*", re.IGNORECASE),
    re.compile(r"(bearer\s+)\S+", re.IGNORECASE),
    re.compile(r"(x-mbx-apikey[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+", re.IGNORECASE),
    re.compile(r"(secret(?:Key)?[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+", re.IGNORECASE),
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def redact(text: str) -> str:
    for pattern in _REDACT:
        text = pattern.sub(r"\1[REDACTED]", text)
    return text


class EntryCounter:
    """Journal entries by type, for ``/metrics`` without a query per scrape: seeded once from
    the ledger at start, then counted as entries commit (the store's ``on_commit`` listeners).
    Written by one thread, read by the event loop (single dict operations)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def seed(self, counts: dict[str, int]) -> None:
        for entry_type, count in counts.items():
            self.counts[entry_type] = self.counts.get(entry_type, 0) + count

    def resync(self, counts: dict[str, int]) -> None:
        """After announcements may have been lost (a store's ``on_announcements_lost``): each
        type's count raised to the ledger's, ``counts`` (a counter never goes down)."""
        for entry_type, count in counts.items():
            if count > self.counts.get(entry_type, 0):
                self.counts[entry_type] = count

    def committed(self, items: Sequence[object], marks: Sequence[int] = ()) -> None:
        """A store commit listener: counts the journal entries among the announcements."""
        counts = self.counts
        for committed in items:
            if not isinstance(committed, CommittedEntry):
                continue  # an order execution
            entry_type = committed.entry.type
            counts[entry_type] = counts.get(entry_type, 0) + 1


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which process of serve --workers N
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


def configure_logging(level: int = logging.INFO) -> dict[str, Any]:
    """JSON lines on stderr for our logs and uvicorn's; returns a uvicorn ``log_config``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # uvicorn's access line would print the query (signature included); our request log replaces
    # it. Off here too, because a --workers process configures logging after uvicorn did.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    return {"version": 1, "disable_existing_loggers": False}


class RequestStats:
    """Answered requests counted and timed in plain integers, turned into Prometheus metric
    families only when ``/metrics`` is scraped. The Prometheus client's own Counter and
    Histogram take a lock and walk their objects on every observation (about 5 µs per request,
    a tenth of a cached balance read); this costs a dict lookup and a bisect. Event loop only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        # endpoint -> [count per bucket (the last one is +Inf), sum of seconds]
        self.latency: dict[str, tuple[list[int], list[float]]] = {}
        self.refused: dict[int, int] = {}  # IP weight: 429 rate limited, 418 banned
        self.account_refused: dict[str, int] = {}  # per-account rolling limits, by limit name

    def observe(self, endpoint: str, status: int, elapsed_s: float) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(endpoint)
        if histogram is None:
            histogram = self.latency[endpoint] = ([0] * (len(LATENCY_BUCKETS_S) + 1), [0.0])
        histogram[0][bisect.bisect_left(LATENCY_BUCKETS_S, elapsed_s)] += 1
        histogram[1][0] += elapsed_s

    def ip_refused(self, status: int) -> None:
        """One request refused for its IP's weight (429) or ban (418)."""
        self.refused[status] = self.refused.get(status, 0) + 1

    def account_limited(self, limit: str) -> None:
        """One request refused (429) by an account's rolling limit ``limit``."""
        self.account_refused[limit] = self.account_refused.get(limit, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "papi_requests",
            "HTTP requests answered, by endpoint and status",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted(self.requests.items()):
            requests.add_metric([endpoint, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "papi_request_duration_seconds",
            "Time from the request's arrival at the app to its answer",
            labels=["endpoint"],
        )
        for endpoint, (counts, total_s) in sorted(self.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS_S, math.inf), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            latency.add_metric([endpoint], buckets, total_s[0])
        yield latency
        refused = CounterMetricFamily(
            "papi_rate_limit_refusals",
            "Requests refused for IP weight: 429 rate limited, 418 banned",
            labels=["status"],
        )
        for status, count in sorted(self.refused.items()):
            refused.add_metric([str(status)], count)
        yield refused
        account = CounterMetricFamily(
            "papi_account_limit_refusals",
            "Requests refused (429) by a per-account rolling limit, by limit",
            labels=["limit"],
        )
        for limit, count in sorted(self.account_refused.items()):
            account.add_metric([limit], count)
        yield account


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stats = RequestStats()
        self.registry.register(self.stats)
        self.entries = Gauge(
            "papi_ledger_entries",
            "Journal entries in the ledger, by type",
            ["type"],
            registry=self.registry,
        )

        self.limiter_unavailable = Gauge(
            "papi_limiter_unavailable_total",
            "Requests refused with 503 because the shared (Redis) limiter was unreachable",
            registry=self.registry,
        )
        self.store_retries = Gauge(
            "papi_store_transaction_retries_total",
            "Store transactions retried after a deadlock or serialization failure (PostgreSQL)",
            registry=self.registry,
        )
        self.store_unavailable = Gauge(
            "papi_store_unavailable_total",
            "Requests refused with 503 -1001 because the store could not serve them (disk full,"
            " lock held elsewhere, connection lost, timed out)",
            registry=self.registry,
        )
        self.ready = Gauge(
            "papi_ready",
            "1 when the part passed its last readiness probe (/readyz), else 0",
            ["check"],
            registry=self.registry,
        )
        self.admin_auth_failures = Gauge(
            "papi_admin_auth_failures_total",
            "Operator API requests with a missing or wrong bearer token",
            registry=self.registry,
        )
        self.admin_auth_refused = Gauge(
            "papi_admin_auth_throttled_total",
            "Operator API requests refused (429) because their IP had too many failed tokens",
            registry=self.registry,
        )
        self.stream = Gauge(
            "papi_stream",
            "The user data stream: open WebSocket connections (connections), connections closed"
            " for not reading in time (slow_consumers_total), announcements waiting in send"
            " queues (queued), announcements published by the store (published_total)",
            ["figure"],
            registry=self.registry,
        )

    def observe(self, endpoint: str, status: int, elapsed_s: float) -> None:
        """Count and time one answered request (endpoint labels are a bounded set)."""
        self.stats.observe(endpoint, status, elapsed_s)

    def render(
        self,
        entry_counts: dict[str, int],
        limiter_unavailable: int = 0,
        store_retries: int = 0,
        *,
        admin_auth_failures: int = 0,
        admin_auth_refused: int = 0,
        store_unavailable: int = 0,
        ready: dict[str, str | None] | None = None,
        stream: dict[str, int] | None = None,
    ) -> tuple[bytes, str]:
        for entry_type, count in list(entry_counts.items()):  # a copy: the writer adds to it
            self.entries.labels(entry_type).set(count)
        self.limiter_unavailable.set(limiter_unavailable)
        self.store_retries.set(store_retries)
        self.admin_auth_failures.set(admin_auth_failures)
        self.admin_auth_refused.set(admin_auth_refused)
        self.store_unavailable.set(store_unavailable)
        for check, problem in (ready or {}).items():
            self.ready.labels(check).set(0 if problem else 1)
        for figure, value in (stream or {}).items():
            self.stream.labels(figure).set(value)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestObserver:
    """Request ids, metrics and the log line of one answered request: the one place that
    decides them, for the public API's direct path and for the routed paths alike. A banned
    IP's 418s are counted but not logged, so a flood of them costs a counter increment and no
    I/O."""

    def __init__(
        self,
        metrics: Metrics,
        endpoint_label: Callable[[str], str],
        *,
        log_requests: bool = True,
    ) -> None:
        self.metrics = metrics
        self.endpoint_label = endpoint_label
        self.log_requests = log_requests
        self.log = logging.getLogger("papi_sandbox.request")
        # Request ids: a random per-process prefix and a counter (unique, and cheaper than
        # drawing 8 random bytes per request).
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count()

    def next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):08x}"

    def finish(
        self,
        scope: Scope,
        request_id: str,
        status: int,
        code: int | None,
        weight: str,
        elapsed_s: float,
    ) -> None:
        path = str(scope.get("path", ""))
        self.metrics.observe(self.endpoint_label(path), status, elapsed_s)
        if self.log_requests and status != 418:
            client = scope.get("client")
            self.log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": path[:256],
                        "status": status,
                        "code": code,
                        "ms": round(elapsed_s * 1000, 3),
                        "ip": client[0] if client else None,
                        "weight": weight or None,
                    }
                },
            )


class ObservabilityMiddleware:
    """The routed paths' observability as ASGI middleware: gives every HTTP request an id
    (returned in ``X-Request-Id``), counts and times it, and writes its log line."""

    def __init__(self, app: ASGIApp, observer: RequestObserver) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self.observer.next_id()
        status = 500
        weight = ""

        async def send_with_id(message: Message) -> None:
            nonlocal status, weight
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                for name, value in headers:
                    if name.lower() == b"x-mbx-used-weight-1m":
                        weight = value.decode("latin-1")
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.observer.finish(
                scope,
                request_id,
                status,
                scope.get(ERROR_CODE_SCOPE_KEY),
                weight,
                time.perf_counter() - started,
            )
