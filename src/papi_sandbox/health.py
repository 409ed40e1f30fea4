"""Liveness, readiness and failures of what the service depends on (docs/operations.md).

- ``/healthz``: liveness, answered by the event loop alone (cheap; says the process serves).
- ``/readyz``: readiness. 200 ``{"status": "ok", "checks": {...}}`` when every part works, else
  503 ``{"status": "unavailable", "failing": [...], "checks": {...}}`` naming each failing part:
  ``store`` (a small write cannot commit within READINESS_DEADLINE_S: disk full or read-only, a
  lock held by another process, the database unreachable), ``writer`` (SQLite's writer thread is
  gone or one batch has run longer than the deadline) and ``limiter`` (the shared Redis limiter
  does not answer). Probes run at most once per READINESS_CACHE_S (one at a time, whoever asks)
  and every READINESS_INTERVAL_S in the background, so ``/metrics`` shows the same states
  (``papi_ready{check}``) without probing on a scrape.
- A request the store cannot serve (StoreUnavailable) is answered 503 -1001 with nothing
  applied, and logged on one line; the traceback is included at most once per
  FAILURE_TRACEBACK_INTERVAL_S so a failing disk under load does not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from papi_sandbox.store.base import StoreUnavailable
from papi_sandbox.store.contract import Store

log = logging.getLogger("papi_sandbox.health")

#: Longest a readiness probe may take, per part (seconds).
READINESS_DEADLINE_S = 2.0
#: A readiness result younger than this is reused (``/readyz`` costs no store write per call).
READINESS_CACHE_S = 1.0
#: Background probes keep ``/metrics`` current even when nobody calls ``/readyz``.
READINESS_INTERVAL_S = 10.0
#: At most one traceback per this many seconds in the log lines of store failures.
FAILURE_TRACEBACK_INTERVAL_S = 10.0


class StoreFailures:
    """Counts requests refused because the store was unavailable, and logs each on one line."""

    def __init__(self) -> None:
        self.total = 0
        self._traceback_at = -FAILURE_TRACEBACK_INTERVAL_S

    def note(self, exc: StoreUnavailable, method: str, path: str) -> None:
        self.total += 1
        now = time.monotonic()
        with_traceback = now - self._traceback_at >= FAILURE_TRACEBACK_INTERVAL_S
        if with_traceback:
            self._traceback_at = now
        cause = exc.__cause__
        log.error(
            "store unavailable on %s %s, answered 503 -1001 (%d so far): %s%s",
            method,
            path[:256],
            self.total,
            exc,
            f" ({type(cause).__name__})" if cause is not None else "",
            # One traceback: where the storage failed (the cause), not our re-raise of it too.
            exc_info=(cause or exc) if with_traceback else None,
        )


class Readiness:
    """The ``/readyz`` checks of one process: the store's ``readiness`` and the limiter's
    ``ping`` when it has one (see the module's text)."""

    def __init__(self, store: Store, limiter: Any) -> None:
        self.store = store
        self.limiter = limiter
        self.checks: dict[str, str | None] = {}
        self._checked_at = -READINESS_CACHE_S
        self._running: asyncio.Task[dict[str, str | None]] | None = None

    @property
    def ready(self) -> bool:
        return all(problem is None for problem in self.checks.values())

    async def check(self) -> dict[str, str | None]:
        """The checks, probed now unless a result younger than READINESS_CACHE_S exists."""
        if time.monotonic() - self._checked_at < READINESS_CACHE_S and self.checks:
            return self.checks
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._probe())
        return await asyncio.shield(self._running)

    async def _probe(self) -> dict[str, str | None]:
        checks: dict[str, str | None] = {}
        limiter_probe = getattr(self.limiter, "ping", None)  # only a shared limiter has one
        probes = [self.store.readiness(READINESS_DEADLINE_S)]
        if limiter_probe is not None:
            probes.append(self._limiter(limiter_probe))
        for result in await asyncio.gather(*probes, return_exceptions=True):
            if isinstance(result, BaseException):
                checks["store"] = f"probe failed: {type(result).__name__}: {result}"
            else:
                checks.update(result)
        self.checks = checks
        self._checked_at = time.monotonic()
        failing = [name for name, problem in checks.items() if problem is not None]
        if failing:
            log.warning("not ready: %s", "; ".join(f"{n}: {checks[n]}" for n in failing))
        return checks

    async def _limiter(self, ping: Any) -> dict[str, str | None]:
        try:
            await asyncio.wait_for(ping(), READINESS_DEADLINE_S)
        except Exception as exc:
            return {"limiter": f"unreachable: {type(exc).__name__}: {exc}"}
        return {"limiter": None}

    async def run(self) -> None:
        """Probe every READINESS_INTERVAL_S until cancelled."""
        while True:
            with contextlib.suppress(Exception):
                await self.check()
            await asyncio.sleep(READINESS_INTERVAL_S)
