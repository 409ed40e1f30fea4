"""Reader threads for SQLite reads, answering in batches.

``loop.run_in_executor`` costs, per read, a concurrent Future chained to an asyncio Future and one
``call_soon_threadsafe`` (a write to the loop's self-pipe plus a GIL hand-over). Under load most
reads are API key lookups of requests arriving together, so each reader thread here takes every
read queued, runs them, and answers the whole batch with one wake-up per event loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from papi_sandbox.store.dialect import Db

T = TypeVar("T")

#: Most reads one thread runs before answering them.
MAX_READ_BATCH = 64

_Item = tuple[Callable[[Db], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]]
Settled = tuple[asyncio.Future[Any], Any, BaseException | None]


def settle_all(settled: list[Settled]) -> None:
    """Answer each waiting future (on its event loop) with its result or error."""
    for future, result, error in settled:
        if future.done():  # the caller went away (cancelled); a change stands regardless
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def answer(settled: list[tuple[asyncio.AbstractEventLoop, Settled]]) -> None:
    """One wake-up per event loop for a whole batch, not one per operation: each
    ``call_soon_threadsafe`` writes to the loop's self-pipe and takes the GIL once more."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Settled]] = {}
    for loop, outcome in settled:
        by_loop.setdefault(loop, []).append(outcome)
    for loop, outcomes in by_loop.items():
        loop.call_soon_threadsafe(settle_all, outcomes)


def take_batch(
    q: queue.Queue[T | None] | queue.SimpleQueue[T | None],
    limit: int,
    timeout_s: float | None = None,
) -> tuple[list[T], bool]:
    """Wait for one item (at most ``timeout_s``: then ``([], False)``), then take whatever else
    is queued, up to ``limit`` in all. ``None`` in the queue means stop: returns ``(batch so
    far, True)``."""
    try:
        first = q.get(timeout=timeout_s)
    except queue.Empty:
        return [], False
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < limit:
        try:
            item = q.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


class ReadPool:
    def __init__(self, threads: int, connect: Callable[[], Db], name: str = "papi-read") -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # Every thread connects before the pool is used, so a bad path fails here, at open.
        connections = [connect() for _ in range(threads)]
        self._threads = [
            threading.Thread(target=self._run, args=(conn,), name=f"{name}-{n}", daemon=True)
            for n, conn in enumerate(connections)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, fn: Callable[[Db], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, loop, future))
        return await future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self, db: Db) -> None:
        try:
            while True:
                batch, stop = take_batch(self._queue, MAX_READ_BATCH)
                if not batch:
                    return
                settled: list[tuple[asyncio.AbstractEventLoop, Settled]] = []
                for fn, loop, future in batch:
                    try:
                        outcome: Settled = (future, fn(db), None)
                    except BaseException as exc:  # the caller gets it; the thread goes on
                        outcome = (future, None, exc)
                    settled.append((loop, outcome))
                answer(settled)
                if stop:
                    return
        finally:
            db.conn.close()
