"""``make bench``: the service against the machine's ceiling and against Stoplight Prism.

Everything runs on loopback, one workload at a time, each bounded (a short warm-up, then
``--duration`` seconds of wrk at ``--connections`` connections, one wrk thread). Prints one table
and writes it to ``bench/results/latest.md``, the figures to ``latest.json`` and, drawn by
``bench/plot.py``, to ``latest.png`` (throughput and p99 per workload). Figures, never assertions:
the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledgerfill import api_key, credentials, fill
from papi_sandbox.client import AdminClient, Credentials, PapiClient, signed_query
from papi_sandbox.progress import progress_for
from papi_sandbox.testing import free_port, new_token
from plot import plot

BENCH_DIR = Path(__file__).resolve().parent
PRISM = BENCH_DIR / ".node" / "node_modules" / ".bin" / "prism"
ADMIN_TOKEN = new_token()
REPAY_PATH = "/papi/v1/repay-futures-negative-balance"
BALANCE_PATH = "/papi/v1/balance"
RECV_WINDOW_MS = 60_000  # the largest Binance allows: the pools are signed before each run
#: The first start on a bulk-filled ledger seals its plain-text secrets: about 60 s for 10^6 keys
#: on a loaded machine.
STARTUP_TIMEOUT_S = 180.0
BALANCE_ASSETS = 20
MIB = 1024 * 1024
#: bench/run.py's workloads: ours (repay at two durabilities, balance), the two ceilings (a bare
#: Starlette app and the minimal ASGI app, both on serve's server stack) and Prism.
WORKLOADS = ("full", "normal", "balance", "starlette", "ceiling", "prism")


def signed_target(path: str, key: Credentials) -> str:
    return f"{path}?{signed_query(key, recv_window=RECV_WINDOW_MS)}"


def write_pool(path: Path, lines: Iterator[str]) -> int:
    count = 0
    with path.open("w") as f:
        for line in lines:
            f.write(line + "\n")
            count += 1
    return count


def repay_lines(first: int, last: int) -> Iterator[str]:
    for account_id in range(first, last + 1):
        target = signed_target(REPAY_PATH, credentials(account_id))
        yield f"POST {target} {api_key(account_id)}"


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields[name] = rest.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_ready(proc: Proc, path: str, method: str = "GET") -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.log.name} exited:\n{proc.log.read_text()[-2000:]}")
        try:
            httpx.request(method, proc.url + path, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.log} did not start in {STARTUP_TIMEOUT_S} s")


@contextmanager
def started(cmd: list[str], log: Path, port: int, probe: str, env: dict[str, str] | None = None):
    with log.open("wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    proc = Proc(p, port, log)
    try:
        wait_ready(proc, probe)
        yield proc
    finally:
        proc.stop()


@contextmanager
def our_server(db: Path, durability: str, work: Path) -> Iterator[Proc]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "papi_sandbox", "serve", "--port", str(port),
        "--db", f"sqlite:///{db}", "--data-dir", str(work / "data"),
        "--ip-weight-limit", "0", "--no-access-log", "--durability", durability,
    ]  # fmt: skip
    env = {**os.environ, "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    with started(cmd, db.with_suffix(f".{durability}.log"), port, "/healthz", env) as proc:
        yield proc


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


@dataclass
class Workload:
    """One server under one kind of request; measured in several rounds interleaved with the
    other workloads, so a burst of load from elsewhere on the machine hits all of them alike."""

    name: str
    proc: Proc
    pools: Callable[[int], Path]  # round number (0 = warm-up) -> a file of requests
    notes: list[str] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    user_s: float = 0.0
    system_s: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    @property
    def median(self) -> Round:
        ordered = sorted(self.rounds, key=lambda r: r.rps)
        return ordered[len(ordered) // 2]

    def cpu_us(self, seconds: float) -> float:
        """Server CPU microseconds per request over every measured round."""
        return 1e6 * seconds / self.requests if self.requests else 0.0


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def run_round(workload: Workload, number: int, seconds: float, connections: int) -> None:
    pool = workload.pools(number)
    user, system = cpu_times(workload.proc.proc.pid)
    raw = run_wrk(workload.proc.url, pool, seconds, connections)
    if number == 0:
        return  # warm-up
    user_after, system_after = cpu_times(workload.proc.proc.pid)
    workload.user_s += user_after - user
    workload.system_s += system_after - system
    errors = sum(raw[k] for k in raw if k.endswith("errors") or k == "timeouts")
    result = Round(
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        requests=raw["requests"],
        errors=errors,
    )
    workload.rounds.append(result)
    print(
        f"  round {number} {workload.name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms,"
        f" p99 {result.p99_ms:.2f} ms, {errors} errors",
        flush=True,
    )


def run_wrk(url: str, pool: Path, seconds: float, connections: int) -> dict[str, int]:
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
        "-s", str(BENCH_DIR / "pool.lua"), url, "--", str(pool),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            result: dict[str, int] = json.loads(line.removeprefix("BENCH-RESULT "))
            return result
    raise RuntimeError(f"no result from wrk:\n{out.stdout}\n{out.stderr}")


def count_repays(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM entries WHERE type = 'REPAY_FUTURES_NEGATIVE_BALANCE'"
            ).fetchone()[0]
        )


def verify_db(db: Path) -> str:
    verify = subprocess.run(
        [sys.executable, "-m", "papi_sandbox", "verify", "--db", f"sqlite:///{db}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return "verify OK" if verify.returncode == 0 else "VERIFY FAILED: " + verify.stdout[-300:]


class RepayPools:
    """Round n uses accounts no earlier round used, signed just before the round starts."""

    def __init__(self, work: Path, tag: str, per_round: int, accounts: int) -> None:
        self.work, self.tag, self.per_round, self.accounts = work, tag, per_round, accounts

    def __call__(self, number: int) -> Path:
        first = 1 + number * self.per_round
        last = min(self.accounts, first + self.per_round - 1)
        if first > last:
            raise RuntimeError("not enough prepared accounts: raise --write-accounts")
        pool = self.work / f"repay-{self.tag}-{number}.txt"
        write_pool(pool, repay_lines(first, last))
        return pool


def balance_pool(work: Path) -> Callable[[int], Path]:
    def pools(number: int) -> Path:
        pool = work / f"balance-{number}.txt"
        write_pool(pool, iter([f"GET {signed_target(BALANCE_PATH, credentials(1))} {api_key(1)}"]))
        return pool

    return pools


def prism_command(port: int) -> list[str]:
    return [
        str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "--verboseLevel", "error",
        str(BENCH_DIR / "openapi.yaml"),
    ]  # fmt: skip


def million(work: Path, args: argparse.Namespace) -> list[str]:
    """Start the service on a ledger of ``--memory-accounts`` accounts; RSS after some traffic."""
    db = work / "million.db"
    with progress_for(args.progress) as progress:
        took = fill(
            db, args.memory_accounts, assets=("USDT",), negative_um=False, progress=progress
        )
    size = db.stat().st_size / MIB
    lines = [
        f"filled {args.memory_accounts:,} accounts (one DEPOSIT entry and one HMAC key each) by"
        f" bulk SQL in {took:.1f} s ({size:,.0f} MiB file)"
    ]
    rng = random.Random(6)
    with our_server(db, "full", work) as proc:
        start_rss = memory_mib(proc.proc.pid)[0]
        with AdminClient(proc.url, ADMIN_TOKEN) as admin:
            for _ in range(200):
                n = rng.randint(1, args.memory_accounts)
                with PapiClient(proc.url, credentials(n)) as papi:
                    papi.call("GET", BALANCE_PATH, recv_window=RECV_WINDOW_MS)
            for _ in range(20):
                n = rng.randint(1, args.memory_accounts)
                admin.adjust(n, "UM", "USDT", "-5", "REALIZED_PNL")
                with PapiClient(proc.url, credentials(n)) as papi:
                    assert papi.call("POST", REPAY_PATH) == {"msg": "success"}
        rss, peak = memory_mib(proc.proc.pid)
    lines.append(
        f"server RSS after start {start_rss:.0f} MiB; after 200 balance reads and 20"
        f" adjustment+repay pairs on random accounts: {rss:.0f} MiB, peak {peak:.0f} MiB"
    )
    print("  " + lines[-1], flush=True)
    return lines


def machine() -> list[str]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return [
        f"machine: {os.cpu_count()} CPUs ({model}), {mem_kib / MIB:.1f} GiB RAM,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def ratio(a: Workload | None, b: Workload | None) -> str:
    """Median over rounds of a's req/s over b's in the same round."""
    if not a or not b or not a.rounds or not b.rounds:
        return "n/a"
    ratios = sorted(x.rps / y.rps for x, y in zip(a.rounds, b.rounds, strict=True) if y.rps)
    return f"{ratios[len(ratios) // 2]:.2f}x" if ratios else "n/a"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per workload")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the duration is split in")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--max-rps", type=int, default=12_000, help="sizes the account pools")
    parser.add_argument("--memory-accounts", type=int, default=1_000_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress of the ledger fills on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--only", default="", help="comma list: full,normal,balance,starlette,ceiling,prism"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run `make bench` (installs it) or apt-get install wrk")
    only = set(filter(None, args.only.split(",")))
    names = [n for n in WORKLOADS if not only or n in only]
    if "prism" in names and not PRISM.exists():
        print("Prism is not installed (`make bench` installs it): skipped", flush=True)
        names.remove("prism")
    round_s = args.duration / args.rounds
    per_round = int(args.max_rps * max(round_s, args.warmup)) + 1000
    accounts = per_round * (args.rounds + 1)

    header = machine()
    for line in header:
        print(line, flush=True)
    with tempfile.TemporaryDirectory(prefix="papi-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        workloads, dbs = start_ours(stack, work, names, args.progress, per_round, accounts)
        workloads.update(start_references(stack, work, names, per_round, accounts))
        check_answers(workloads)
        measure(workloads, args)
        add_notes(workloads, dbs)
        memory = [] if args.skip_memory else million(work, args)
    header.append(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    write_results(header, workloads, memory, args)


def start_ours(
    stack: ExitStack,
    work: Path,
    names: list[str],
    progress: bool | None,
    per_round: int,
    accounts: int,
) -> tuple[dict[str, Workload], dict[str, Path]]:
    """The service's workloads among ``names`` (repay at each durability, then balance), each on
    its own filled ledger and server; also the repay ledgers by durability, to count and verify.
    """
    workloads: dict[str, Workload] = {}
    dbs: dict[str, Path] = {}
    for durability in ("full", "normal"):
        if durability in names:
            db = dbs[durability] = work / f"write-{durability}.db"
            with progress_for(progress) as bar:
                took = fill(db, accounts, assets=("USDT",), negative_um=True, progress=bar)
            print(f"filled {accounts:,} accounts for repay ({durability}) in {took:.1f} s")
            proc = stack.enter_context(our_server(db, durability, work))
            workloads[durability] = Workload(
                f"repay, durability={durability}",
                proc,
                RepayPools(work, durability, per_round, accounts),
            )
    if "balance" in names:
        db = work / "balance.db"
        assets = (*(f"AST{i:02d}" for i in range(BALANCE_ASSETS - 1)), "USDT")
        fill(db, 1, assets=assets, negative_um=True)
        proc = stack.enter_context(our_server(db, "full", work))
        workloads["balance"] = Workload(
            f"GET balance, {BALANCE_ASSETS} assets", proc, balance_pool(work)
        )
    return workloads, dbs


def start_references(
    stack: ExitStack, work: Path, names: list[str], per_round: int, accounts: int
) -> dict[str, Workload]:
    """The ceilings and Prism among ``names``; they answer the same repay requests (accounts they
    never see)."""
    workloads: dict[str, Workload] = {}
    other = RepayPools(work, "other", per_round, accounts)
    if "starlette" in names:
        port = free_port()
        cmd = [sys.executable, str(BENCH_DIR / "ceiling.py"), str(port), "starlette"]
        proc = stack.enter_context(started(cmd, work / "starlette.log", port, "/"))
        workloads["starlette"] = Workload("ceiling: bare Starlette app", proc, other)
    if "ceiling" in names:
        port = free_port()
        cmd = [sys.executable, str(BENCH_DIR / "ceiling.py"), str(port)]
        proc = stack.enter_context(started(cmd, work / "ceiling.log", port, "/"))
        workloads["ceiling"] = Workload("ceiling: minimal ASGI app", proc, other)
    if "prism" in names:
        port = free_port()
        proc = stack.enter_context(started(prism_command(port), work / "prism.log", port, "/"))
        workloads["prism"] = Workload("Prism static mock", proc, other)
    return workloads


def check_answers(workloads: dict[str, Workload]) -> None:
    """Each server but the repay ones answers its first pooled request as benchmarked on."""
    for key in ("balance", "starlette", "ceiling", "prism"):
        if key in workloads:
            w = workloads[key]
            method, target, key_header = w.pools(0).read_text().splitlines()[0].split()
            r = httpx.request(method, w.proc.url + target, headers={"X-MBX-APIKEY": key_header})
            body = r.json()
            ok = len(body) == BALANCE_ASSETS if key == "balance" else body == {"msg": "success"}
            assert r.status_code == 200 and ok, (key, r.text)


def measure(workloads: dict[str, Workload], args: argparse.Namespace) -> None:
    """A warm-up of each workload, then the rounds interleaved; peak RSS and errors noted."""
    round_s = args.duration / args.rounds
    print(f"warm-up {args.warmup:.0f} s each, then {args.rounds} rounds of {round_s:.0f} s")
    for w in workloads.values():
        run_round(w, 0, args.warmup, args.connections)
    for number in range(1, args.rounds + 1):
        for w in workloads.values():
            run_round(w, number, round_s, args.connections)
    for w in workloads.values():
        w.peak_rss_mib = memory_mib(w.proc.proc.pid)[1]
        if w.errors:
            w.notes.append(f"{w.errors} non-2xx/socket errors")


def add_notes(workloads: dict[str, Workload], dbs: dict[str, Path]) -> None:
    """Stop the repay servers and note what their ledgers hold; the others' fixed notes."""
    for key, db in dbs.items():
        w = workloads[key]
        w.proc.stop()
        w.notes.append(f"{count_repays(db):,} repay entries written (warm-up included)")
        w.notes.append(verify_db(db))
    if "balance" in workloads:
        workloads["balance"].notes.append("one signed request, 20 rows of 13 fields")
    for key in ("starlette", "ceiling"):
        if key in workloads:
            workloads[key].notes.append("uvicorn with serve's options (server_options)")
    if "prism" in workloads:
        workloads["prism"].notes.append("static example; --verboseLevel error")


def write_results(
    header: list[str], workloads: dict[str, Workload], memory: list[str], args: argparse.Namespace
) -> None:
    """Print the report; write it, the figures and their plot under bench/results/."""
    report = render(header, workloads, memory, args)
    print("\n" + report)
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(report + "\n")
    figures = as_json(header, workloads)
    (out / "latest.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"plot: {plot(figures, out / 'latest.png')}")


def as_json(header: list[str], results: dict[str, Workload]) -> dict[str, object]:
    """The measured figures, for bench/plot.py (and for comparing runs)."""
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "note": "shared machine: figures are noisy (whiskers: slowest..fastest round)",
        "header": header,
        "workloads": [
            {
                "key": key,
                "name": w.name,
                "median": {
                    "rps": w.median.rps,
                    "p50_ms": w.median.p50_ms,
                    "p99_ms": w.median.p99_ms,
                },
                "rounds": [
                    {"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors}
                    for r in w.rounds
                ],
                "errors": w.errors,
            }
            for key, w in results.items()
        ],
    }


def render(
    header: list[str], results: dict[str, Workload], memory: list[str], args: argparse.Namespace
) -> str:
    lines = [
        f"- wrk -t1 -c{args.connections}; per workload a {args.warmup:.0f} s warm-up, then"
        f" {args.rounds} rounds of {args.duration / args.rounds:.0f} s interleaved with the other"
        " workloads; the round with the median req/s is shown. Servers on 127.0.0.1, one process"
        " each, access log off.",
        *[f"- {line}" for line in header],
        "",
        "| workload | req/s | p50 ms | p99 ms | CPU µs/req user+sys | peak RSS MiB | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for w in results.values():
        m = w.median
        lines.append(
            f"| {w.name} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} |"
            f" {w.cpu_us(w.user_s):.0f}+{w.cpu_us(w.system_s):.0f} | {w.peak_rss_mib:.0f} |"
            f" {'; '.join(w.notes)} |"
        )
    full, normal = results.get("full"), results.get("normal")
    bal, ceil, pri = results.get("balance"), results.get("ceiling"), results.get("prism")
    star = results.get("starlette")
    p99 = f"p99 {full.median.p99_ms:.1f} ms" if full else ""
    lines += [
        "",
        "Write path: each request is a signed POST repay-futures-negative-balance by a different"
        " account prepared with UM -100 USDT and MARGIN 100 USDT, so every request moves 100 USDT"
        " (one journal entry, two postings, two balance updates) and uses an API key not seen"
        " before (its lookup is part of the cost). Requests are HMAC-signed just before each"
        f" round with recvWindow={RECV_WINDOW_MS}; the IP weight limit is off"
        " (--ip-weight-limit 0). The ceilings and Prism get the same requests.",
        "",
        "| ratio (median of per-round ratios) | value | target |",
        "|---|---:|---|",
        f"| repay (full) / Prism | {ratio(full, pri)} | >= 3x, and p99 < 20 ms ({p99}) |",
        f"| repay (full) / minimal ASGI app | {ratio(full, ceil)} | |",
        f"| balance / bare Starlette app on uvicorn | {ratio(bal, star)} | >= 0.60x |",
        f"| balance / minimal ASGI app on the chosen stack (uvicorn) | {ratio(bal, ceil)} |"
        " >= 0.35x |",
        f"| repay fsync every commit (full) / no fsync (normal) | {ratio(full, normal)} |"
        " >= 0.80x |",
        "",
        "Memory with a large ledger:",
        *[f"- {line}" for line in memory],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
