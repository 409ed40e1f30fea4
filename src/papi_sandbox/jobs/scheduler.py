"""The jobs' clock inside ``papi-sandbox serve``: an asyncio task that sleeps until the next
scheduled slot of any job and runs it. A slot missed while the service was down is not caught up
(run it on demand with ``papi-sandbox jobs run ... --as-of``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from papi_sandbox.jobs.config import JobsConfig
from papi_sandbox.jobs.runner import Job, next_slot_after, run_job
from papi_sandbox.store.base import Store

log = logging.getLogger("papi_sandbox.jobs")

#: Longest single sleep (s): the clock is looked at again at least this often, so a wall-clock
#: jump (NTP, suspend) delays a job by at most this much.
MAX_SLEEP_S = 30.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def run_scheduler(
    store: Store,
    config: JobsConfig,
    *,
    now: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Forever: wait for the next slot, run its job, log the report. Cancel to stop."""
    last = now()
    while True:
        slot, job = min((next_slot_after(job.times(config), last), job) for job in Job)
        while (wait_s := (slot - now()).total_seconds()) > 0:
            await sleep(min(wait_s, MAX_SLEEP_S))
        try:
            report = await run_job(store, job, slot, config, now=now())
        except Exception:  # a failed run is logged; the next slot still runs
            log.exception("job %s for %s failed", job.value, slot.isoformat())
        else:
            log.info("job %s", report.to_json())
        last = slot
