"""Interleaved A/B of two source trees: the same repay workload as bench/run.py (signed repays
by accounts never seen before, durability=full), or with ``--workload balance`` its balance read
(a signed GET /papi/v1/balance of 20 assets), against two servers, one running the ``src``
folder of tree A and one of tree B (``PYTHONPATH``), on copies of one filled ledger, rounds
alternating A, B, B, A, ... Prints per-round req/s, p99 and server CPU per request, and the
median of the per-round ratios B/A. Figures, never assertions.

    git archive main src | tar -x -C /tmp/base
    .venv/bin/python bench/ab_trees.py /tmp/base/src src --rounds 8 --duration 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledgerfill import fill
from run import (
    BALANCE_ASSETS,
    RepayPools,
    balance_pool,
    cpu_times,
    our_server,
    run_wrk,
    verify_db,
)

PER_ROUND = 20_000  # accounts per round: more than a round of a few seconds can repay


def tree_cpu(pid: int) -> float:
    """User+system CPU seconds of a process and of its child processes (a writer process)."""
    user, system = cpu_times(pid)
    total = user + system
    children = {c for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()}  # fmt: skip
    return total + sum(tree_cpu(int(child)) for child in children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tree_a", type=Path, help="the src folder of tree A")
    parser.add_argument("tree_b", type=Path, help="the src folder of tree B")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workload", choices=("repay", "balance"), default="repay")
    args = parser.parse_args()
    trees = {"A": args.tree_a.resolve(), "B": args.tree_b.resolve()}
    accounts = PER_ROUND * (args.rounds + 1)
    rps: dict[str, list[float]] = {k: [] for k in trees}
    p99: dict[str, list[float]] = {k: [] for k in trees}
    cpu: dict[str, list[float]] = {k: [] for k in trees}
    errors = {k: 0 for k in trees}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="papi-ab-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        if args.workload == "balance":
            assets = (*(f"AST{i:02d}" for i in range(BALANCE_ASSETS - 1)), "USDT")
            fill(work / "base.db", 1, assets=assets, negative_um=True)
        else:
            fill(work / "base.db", accounts, assets=("USDT",), negative_um=True)
        procs = {}
        for name, src in trees.items():
            db = work / f"{name}.db"
            shutil.copy(work / "base.db", db)
            os.environ["PYTHONPATH"] = str(src)
            procs[name] = stack.enter_context(our_server(db, "full", work))
        os.environ.pop("PYTHONPATH")
        pools = {
            name: balance_pool(work)
            if args.workload == "balance"
            else RepayPools(work, name, PER_ROUND, accounts)
            for name in trees
        }
        for number in range(args.rounds + 1):  # round 0 warms up
            for name in ("A", "B") if number % 2 == 0 else ("B", "A"):
                pid = procs[name].proc.pid
                before = tree_cpu(pid)
                seconds = args.duration if number else 1
                raw = run_wrk(procs[name].url, pools[name](number), seconds, args.connections)
                spent = tree_cpu(pid) - before
                errors[name] += sum(v for k, v in raw.items() if k.endswith("errors"))
                if not number:
                    continue
                rps[name].append(raw["requests"] / (raw["duration_us"] / 1e6))
                p99[name].append(raw["p99_us"] / 1000)
                cpu[name].append(1e6 * spent / raw["requests"])
                print(
                    f"round {number} {name}: {rps[name][-1]:,.0f} req/s,"
                    f" p99 {p99[name][-1]:.1f} ms, {cpu[name][-1]:.0f} µs CPU/req",
                    flush=True,
                )
        for name, proc in procs.items():
            proc.stop()
            print(f"{name}: {errors[name]} non-2xx/socket errors;"
                  f" {verify_db(work / f'{name}.db')}", flush=True)  # fmt: skip
    ratios = sorted(b / a for a, b in zip(rps["A"], rps["B"], strict=True))
    print(
        f"B/A per round: {', '.join(f'{r:.2f}' for r in ratios)};"
        f" median {statistics.median(ratios):.2f}x\n"
        f"median round: A {statistics.median(rps['A']):,.0f} req/s,"
        f" p99 {statistics.median(p99['A']):.1f} ms, {statistics.median(cpu['A']):.0f} µs CPU/req;"
        f" B {statistics.median(rps['B']):,.0f} req/s, p99 {statistics.median(p99['B']):.1f} ms,"
        f" {statistics.median(cpu['B']):.0f} µs CPU/req\n"
        f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
