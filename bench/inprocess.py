"""In-process cost of one request through the whole ASGI app, without HTTP or a load generator.

Drives the app with hand-made ASGI messages: ``--workload balance`` (a signed GET of 20 balance
rows, one account) or ``--workload repay`` (signed repays, each by a different account, 32 in
flight so the writer's group commit works as under load). Prints requests/s and CPU µs per
request of this process. Useful with a profiler attached (``py-spy record -- python
bench/inprocess.py ...``) and for A/B runs of a change, since it measures our code alone.

    .venv/bin/python bench/inprocess.py --workload balance --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from ledgerfill import api_key, credentials, fill
from papi_sandbox import client
from papi_sandbox.api.app import create_app
from papi_sandbox.settings import Settings
from papi_sandbox.store import open_store

BALANCE_ASSETS = (*tuple(f"A{i:02d}" for i in range(19)), "USDT")
#: Requests in flight at once for the repay workload (as wrk -c32).
CONCURRENCY = 32


def thread_cpu_s() -> dict[str, tuple[float, float]]:
    """CPU seconds (user, system) of each thread of this process, by thread name."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name.rstrip("0123456789-") for t in threading.enumerate()}
    out: dict[str, tuple[float, float]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = names.get(int(task.name), "other")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = out.get(name, (0.0, 0.0))
        out[name] = (user + int(fields[11]) / ticks, system + int(fields[12]) / ticks)
    return out


def signed_query(account_id: int) -> bytes:
    return client.signed_query(credentials(account_id), recv_window=60_000).encode()


def scope(method: str, path: str, account_id: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": signed_query(account_id),
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"user-agent", b"inprocess"),
            (b"x-mbx-apikey", api_key(account_id).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8765),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Sink:
    status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def call(app: Any, s: dict[str, Any]) -> int:
    sink = Sink()
    await app(s, receive, sink)
    return sink.status


async def lifespan(app: Any) -> tuple[asyncio.Queue[Any], asyncio.Task[None]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise SystemExit(f"startup failed: {message}")
    return inbox, task


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="papi-inproc-"))
    db = work / "ledger.db"
    if args.workload == "balance":
        fill(db, 1, assets=BALANCE_ASSETS, negative_um=False)
    else:
        fill(db, args.requests + 10)
    settings = Settings(
        data_dir=work,
        db=f"sqlite:///{db}",
        ip_weight_limit=0,
        scheduler=False,
        access_log=False,
        durability="full",
    )
    app = create_app(settings, open_store(settings.db_url, durability=args.durability), "t" * 32)
    inbox, task = await lifespan(app)
    gc.set_threshold(50_000, 20, 100)
    statuses: dict[int, int] = {}
    if args.workload == "balance":
        scopes = [scope("GET", "/papi/v1/balance", 1) for _ in range(args.requests)]
    else:
        path = "/papi/v1/repay-futures-negative-balance"
        scopes = [scope("POST", path, i) for i in range(1, args.requests + 1)]
    threads0 = thread_cpu_s()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if args.workload == "balance":
        for s in scopes:
            status = await call(app, s)
            statuses[status] = statuses.get(status, 0) + 1
    else:
        pending = iter(scopes)

        async def worker() -> None:
            for s in pending:
                status = await call(app, s)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = args.requests
    print(
        f"{args.workload}: {n} requests, {n / wall:,.0f} req/s, "
        f"{cpu / n * 1e6:.1f} µs CPU/request (all threads), statuses {statuses}"
    )
    threads1 = thread_cpu_s()
    per_thread = {}
    for name, (user, system) in sorted(threads1.items()):
        user0, system0 = threads0.get(name, (0.0, 0.0))
        per_thread[name] = ((user - user0) / n * 1e6, (system - system0) / n * 1e6)
    print(
        "  CPU µs/request by thread (user+system): "
        + ", ".join(
            f"{name} {user:.0f}+{system:.0f}"
            for name, (user, system) in per_thread.items()
            if user + system >= 0.5
        )
    )
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    for f in work.iterdir():
        if f.is_file():
            os.unlink(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("balance", "repay"), default="balance")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--durability", default="full")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
