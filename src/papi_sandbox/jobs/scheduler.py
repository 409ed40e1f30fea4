"""The jobs' clock inside ``papi-sandbox serve``: an asyncio task that sleeps until the next
scheduled slot of any job and runs it. A slot missed while the service was down is not caught up
(run it on demand with ``papi-sandbox jobs run ... --as-of``).

Several processes on one PostgreSQL ledger each run this clock; a store that offers
``advisory_lock`` (PostgreSQL) lets one process at a time work on a slot, and records the slot as
done when it finishes. A process that finds the slot locked waits and tries again, so if the
worker on it dies (its lock goes with its connection) another finishes the rest; the per-account
markers make that re-run apply nothing twice."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from papi_sandbox.jobs.config import JobsConfig
from papi_sandbox.jobs.runner import Job, next_slot_after, run_job
from papi_sandbox.store.contract import SharedJobStore, Store

log = logging.getLogger("papi_sandbox.jobs")

#: Longest single sleep (s): the clock is looked at again at least this often, so a wall-clock
#: jump (NTP, suspend) delays a job by at most this much.
MAX_SLEEP_S = 30.0
#: While another process works on a slot, look again this often (s) ...
SLOT_RETRY_S = 30.0
#: ... for at most this long (s); then the slot is left to its worker or an on-demand run.
SLOT_RETRY_WINDOW_S = 3600.0
#: How long a finished slot stays recorded as done (ms): longer than any retry window.
SLOT_DONE_TTL_MS = 2 * 86_400_000


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def run_scheduler(
    store: Store,
    config: JobsConfig,
    *,
    now: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Forever: wait for the next slot, run every job due at it (in the order of ``Job``: two
    jobs may share a time, e.g. interest and funding at 00:00), log the reports. Cancel to
    stop."""
    last = now()
    while True:
        due = {job: next_slot_after(job.times(config), last) for job in Job}
        slot = min(due.values())
        while (wait_s := (slot - now()).total_seconds()) > 0:
            await sleep(min(wait_s, MAX_SLEEP_S))
        for job in (j for j in Job if due[j] == slot):
            try:
                await run_slot_once(store, job, slot, config, now=now, sleep=sleep)
            except Exception:  # a failed run is logged; the other jobs and slots still run
                log.exception("job %s for %s failed", job.value, slot.isoformat())
        last = slot


async def run_slot_once(
    store: Store,
    job: Job,
    slot: datetime,
    config: JobsConfig,
    *,
    now: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    holder: str | None = None,
) -> bool:
    """Run ``job`` for ``slot`` unless another process has done it or is doing it.

    Returns True when this process ran it. Without ``advisory_lock`` (SQLite: one process) it
    simply runs."""
    if not isinstance(store, SharedJobStore):
        log.info("job %s", (await run_job(store, job, slot, config, now=now())).to_json())
        return True
    name = f"papi-job:{job.value}:{int(slot.timestamp() * 1000)}"
    holder = holder or f"{socket.gethostname()}:{os.getpid()}"
    deadline = now().timestamp() + SLOT_RETRY_WINDOW_S
    while True:
        if await store.lease_active(f"done:{name}"):
            return False
        async with store.advisory_lock(name) as held:
            if held:
                if await store.lease_active(f"done:{name}"):
                    return False
                report = await run_job(store, job, slot, config, now=now())
                await store.try_lease(f"done:{name}", holder, SLOT_DONE_TTL_MS)
                log.info("job %s", report.to_json())
                return True
        if now().timestamp() >= deadline:
            log.warning("job %s for %s: left to the process working on it", job.value, slot)
            return False
        await sleep(SLOT_RETRY_S)
