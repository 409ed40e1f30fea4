"""The server stack, decided by measurement: the same app on uvicorn (what ``papi-sandbox serve``
runs: ``transport.server_options``) and on granian (ASGI, ``--factory
papi_sandbox.api.app:app_from_env``), interleaved A/B/A/B in one run, on every workload of
``make bench``:

- the minimal app answering ``{"msg":"success"}`` (bench/ceiling.py; on granian also its RSGI
  twin, for the stack's own ceiling);
- ``GET /papi/v1/balance`` of one account with 20 assets (bench/run.py's read workload);
- signed repay-futures-negative-balance by accounts never seen before, fsync on every commit
  (bench/run.py's write workload);
- UM MARKET orders round-robin over 64 accounts (bench/um_trading.py's order workload);
- user-data-stream events: operator adjustments fanned out to WebSocket clients (bench/stream.py's
  rate phase).

wrk -t1 on loopback, as bench/run.py. Prints one table of per-round figures and the median of the
per-round granian/uvicorn ratios. Figures, never assertions: the machine is shared.

    .venv/bin/python bench/stack.py --rounds 3 --duration 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream as stream_bench
import um_trading
from ledgerfill import fill
from papi_sandbox.settings import Settings
from papi_sandbox.testing import free_port
from run import (
    ADMIN_TOKEN,
    BALANCE_ASSETS,
    BENCH_DIR,
    Proc,
    RepayPools,
    balance_pool,
    our_server,
    run_wrk,
    started,
    wait_ready,
)

#: granian's options closest to serve's uvicorn settings (transport.server_options): one worker,
#: uvloop, HTTP/1 only, the header limit as the read buffer, the read deadline for headers,
#: the connection cap as granian's request backpressure.
GRANIAN_OPTIONS = [
    "--workers", "1", "--loop", "uvloop", "--http", "1", "--no-access-log",
    "--http1-buffer-size", "32768",
    "--http1-header-read-timeout", str(int(Settings().request_read_timeout * 1000)),
    "--backpressure", str(Settings().max_connections),
]  # fmt: skip


def granian_command(
    target: str, port: int, interface: str = "asgi", factory: bool = False
) -> list[str]:
    return [
        sys.executable, "-m", "granian", "--interface", interface, "--host", "127.0.0.1",
        "--port", str(port), *(["--factory"] if factory else []), *GRANIAN_OPTIONS, target,
    ]  # fmt: skip


def app_env(
    db: Path, work: Path, durability: str, max_connections: int | None = None
) -> dict[str, str]:
    """What serve --workers hands its worker processes (cli._serve_workers), for app_from_env."""
    env = {
        **os.environ,
        "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN,
        "PAPI_SANDBOX_DB": f"sqlite:///{db}",
        "PAPI_SANDBOX_DATA_DIR": str(work / "data"),
        "PAPI_SANDBOX_IP_WEIGHT_LIMIT": "0",
        "PAPI_SANDBOX_ACCESS_LOG": "false",
        "PAPI_SANDBOX_DURABILITY": durability,
        "PAPI_SANDBOX_SCHEDULER": "false",
        "PAPI_SANDBOX_MAX_API_KEYS_PER_ACCOUNT": "1000",
    }
    if max_connections is not None:
        env["PAPI_SANDBOX_MAX_CONNECTIONS"] = str(max_connections)
    return env


@contextmanager
def granian_app(db: Path, work: Path, durability: str) -> Iterator[Proc]:
    subprocess.run(
        [sys.executable, "-m", "papi_sandbox", "db", "upgrade", "--db", f"sqlite:///{db}",
         "--data-dir", str(work / "data")],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    cmd = granian_command("papi_sandbox.api.app:app_from_env", port, factory=True)
    env = app_env(db, work, durability)
    with started(cmd, db.with_suffix(".granian.log"), port, "/healthz", env) as proc:
        yield proc


@dataclass
class Pair:
    """One workload on both stacks; rounds alternate uvicorn, granian."""

    name: str
    run: Callable[[str, int], float]  # (stack, round number) -> req/s (or events/s)
    unit: str = "req/s"
    figures: dict[str, list[float]] = field(default_factory=lambda: {"uvicorn": [], "granian": []})

    def ratio(self) -> float:
        """The median of the per-round ratios granian / uvicorn (0 without rounds)."""
        pairs = zip(self.figures["uvicorn"], self.figures["granian"], strict=True)
        ratios = [g / u for u, g in pairs if u]
        return statistics.median(ratios) if ratios else 0.0


def wrk_pair(name: str, procs: dict[str, Proc], pools: dict[str, Callable[[int], Path]],
             seconds: float, connections: int) -> Pair:  # fmt: skip
    def run(stack: str, number: int) -> float:
        raw = run_wrk(procs[stack].url, pools[stack](number), seconds, connections)
        errors = sum(raw[k] for k in raw if k.endswith("errors") or k == "timeouts")
        rps = raw["requests"] / (raw["duration_us"] / 1e6)
        print(f"  {name} [{stack}] round {number}: {rps:,.0f} req/s, p99"
              f" {raw['p99_us'] / 1000:.2f} ms, {errors} errors", flush=True)  # fmt: skip
        return rps

    return Pair(name, run)


class GranianStreamBox(stream_bench.Sandbox):
    """bench/stream.py's sandbox, on granian."""

    def __init__(self, data_dir: Path, max_connections: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        db = data_dir / "stream.db"
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "papi_sandbox", "db", "upgrade", "--db", f"sqlite:///{db}",
             "--data-dir", str(data_dir / "data")],
            check=True, capture_output=True,
        )  # fmt: skip
        env = app_env(db, data_dir, "full", max_connections)
        env["PAPI_SANDBOX_ADMIN_TOKEN"] = stream_bench.ADMIN_TOKEN
        self.proc = subprocess.Popen(
            granian_command("papi_sandbox.api.app:app_from_env", self.port, factory=True),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(data_dir / "server.log", "ab"),  # noqa: SIM115
        )
        wait_ready(Proc(self.proc, self.port, data_dir / "server.log"), "/healthz")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--max-rps", type=int, default=6000, help="sizes the repay pools")
    parser.add_argument("--stream-clients", type=int, default=100)
    parser.add_argument(
        "--only", default="", help="comma list: minimal,balance,repay,orders,stream"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    only = set(filter(None, args.only.split(",")))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    stream_bench.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="papi-stack-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        pairs: list[Pair] = []
        for name, start in WORKLOADS:
            if not only or name in only:
                pairs += start(stack, work, args)
        run_rounds(pairs, args.rounds)
    print_table(pairs, args)


def our_app(stack_name: str, db: Path, work: Path) -> AbstractContextManager[Proc]:
    """The service on ``db`` (durability full) on uvicorn (as serve) or on granian."""
    if stack_name == "uvicorn":
        return our_server(db, "full", work)
    return granian_app(db, work, "full")


def minimal_pairs(stack: ExitStack, work: Path, args: argparse.Namespace) -> list[Pair]:
    """bench/ceiling.py's minimal app on uvicorn against granian ASGI, and against granian RSGI."""
    procs: dict[str, Proc] = {}
    port = free_port()
    cmd = [sys.executable, str(BENCH_DIR / "ceiling.py"), str(port)]
    procs["uvicorn"] = stack.enter_context(started(cmd, work / "u-min.log", port, "/"))
    port = free_port()
    cmd = [*granian_command("ceiling:app", port), "--working-dir", str(BENCH_DIR)]
    procs["granian"] = stack.enter_context(started(cmd, work / "g-min.log", port, "/"))
    port = free_port()
    cmd = granian_command("ceiling:rsgi_app", port, "rsgi")
    cmd += ["--working-dir", str(BENCH_DIR)]
    rsgi = stack.enter_context(started(cmd, work / "g-rsgi.log", port, "/"))
    pool = work / "min.txt"
    pool.write_text("GET /\n")
    pools = {"uvicorn": lambda n: pool, "granian": lambda n: pool}
    return [
        wrk_pair("minimal app (ASGI)", procs, pools, args.duration, args.connections),
        wrk_pair("minimal app (uvicorn ASGI vs granian RSGI)",
                 {"uvicorn": procs["uvicorn"], "granian": rsgi}, pools,
                 args.duration, args.connections),
    ]  # fmt: skip


def balance_pairs(stack: ExitStack, work: Path, args: argparse.Namespace) -> list[Pair]:
    """GET balance of one account holding BALANCE_ASSETS assets (bench/run.py's read workload)."""
    procs = {}
    for name in ("uvicorn", "granian"):
        db = work / f"balance-{name}.db"
        assets = (*(f"AST{i:02d}" for i in range(BALANCE_ASSETS - 1)), "USDT")
        fill(db, 1, assets=assets, negative_um=True)
        procs[name] = stack.enter_context(our_app(name, db, work))
    pools = {n: balance_pool(work) for n in procs}
    return [wrk_pair(f"GET balance, {BALANCE_ASSETS} assets", procs, pools,
                     args.duration, args.connections)]  # fmt: skip


def repay_pairs(stack: ExitStack, work: Path, args: argparse.Namespace) -> list[Pair]:
    """Signed repays by accounts never seen before, fsync on every commit (bench/run.py's)."""
    per_round = int(args.max_rps * args.duration) + 1000
    accounts = per_round * (args.rounds + 1)
    procs, pools = {}, {}
    for name in ("uvicorn", "granian"):
        db = work / f"repay-{name}.db"
        fill(db, accounts, assets=("USDT",), negative_um=True)
        procs[name] = stack.enter_context(our_app(name, db, work))
        pools[name] = RepayPools(work, name, per_round, accounts)
    return [wrk_pair("repay, durability=full", procs, pools, args.duration,
                     args.connections)]  # fmt: skip


def orders_pairs(stack: ExitStack, work: Path, args: argparse.Namespace) -> list[Pair]:
    """UM MARKET orders round-robin over 64 accounts (bench/um_trading.py's order workload)."""
    procs: dict[str, Proc] = {}
    pools: dict[str, Callable[[int], Path]] = {}
    for name in ("uvicorn", "granian"):
        db = work / f"orders-{name}.db"
        proc = procs[name] = stack.enter_context(our_app(name, db, work))
        accounts_ = um_trading.new_accounts(proc.url, 64, "100000000")

        def orders(number: int, name: str = name, accounts_: Any = accounts_) -> Path:
            lines = um_trading.order_lines(accounts_, um_trading.POOL_ORDERS)
            return um_trading.write_pool(work / f"orders-{name}-{number}.txt", lines)

        pools[name] = orders
    return [wrk_pair("UM MARKET orders, 64 accounts", procs, pools, args.duration,
                     args.connections)]  # fmt: skip


def stream_pairs(stack: ExitStack, work: Path, args: argparse.Namespace) -> list[Pair]:
    """Operator adjustments fanned out to WebSocket clients (bench/stream.py's rate phase)."""
    boxes: dict[str, Any] = {}
    for name in ("uvicorn", "granian"):
        box_dir = work / f"stream-{name}"
        box_dir.mkdir()
        box_cls = stream_bench.Sandbox if name == "uvicorn" else GranianStreamBox
        boxes[name] = box_cls(box_dir, 20_000)
        stack.callback(boxes[name].stop)

    def run_stream(name: str, number: int) -> float:
        result = asyncio.run(
            stream_bench.rate_phase(boxes[name], args.stream_clients, 8, args.duration)
        )
        print(f"  stream [{name}] round {number}: {result['entries_per_s']:,.0f}"
              f" entries/s, {result['frames_per_s']:,.0f} frames/s"
              f" ({result['frames_received']}/{result['frames_expected']})",
              flush=True)  # fmt: skip
        return float(result["frames_per_s"])

    return [Pair(f"user data stream, {args.stream_clients} clients", run_stream, "frames/s")]


#: The workloads --only names, in the order they run in each round, with what starts them.
WORKLOADS: tuple[tuple[str, Callable[[ExitStack, Path, argparse.Namespace], list[Pair]]], ...] = (
    ("minimal", minimal_pairs),
    ("balance", balance_pairs),
    ("repay", repay_pairs),
    ("orders", orders_pairs),
    ("stream", stream_pairs),
)


def run_rounds(pairs: list[Pair], rounds: int) -> None:
    """A warm-up of each pair on both stacks, then the rounds: A, B, A, B."""
    for pair in pairs:
        for name in ("uvicorn", "granian"):
            pair.run(name, 0)
    for number in range(1, rounds + 1):
        for pair in pairs:
            for name in ("uvicorn", "granian"):
                pair.figures[name].append(pair.run(name, number))


def print_table(pairs: list[Pair], args: argparse.Namespace) -> None:
    """Per-round figures of each pair on both stacks and the median granian/uvicorn ratio."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"wrk -t1 -c{args.connections}, {args.rounds} rounds of {args.duration:.0f} s,"
        f" uvicorn and granian alternating; load average after: {load};"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| workload | uvicorn (serve), per round | granian, per round"
        " | granian / uvicorn (median) |",
        "|---|---|---|---:|",
    ]
    for pair in pairs:
        u = ", ".join(f"{x:,.0f}" for x in pair.figures["uvicorn"])
        g = ", ".join(f"{x:,.0f}" for x in pair.figures["granian"])
        lines.append(f"| {pair.name} ({pair.unit}) | {u} | {g} | {pair.ratio():.2f}x |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
