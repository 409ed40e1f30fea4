"""``make bench`` (second part): the user data stream.

1. Commit-to-receive latency with ``--clients`` (1,000) WebSocket clients connected to one
   account (16 API keys, one listen key each, at most 64 connections per key): the operator
   commits ``--events`` changes one at a time; every client receives each one. Latency is taken
   from the moment the change's request is sent (an upper bound on commit-to-receive, with the
   HTTP round trip and the fsync in it) and from the entry's own time ``T`` (server clock, ms).
   These clients are minimal (:class:`LightClient`: the handshake, then only frame boundaries
   and arrival times), so that the figure is the server's, not a client library's parsing on
   the same 2 cores (``--library-clients`` measures with the ``websockets`` library instead).
2. The event rate one server process sustains: ``--rate-clients`` clients, changes committed by
   ``--writers`` concurrent operator requests for ``--rate-seconds``; entries and frames per second.
3. Peak RSS of the server with ``--idle`` (10,000) idle connections (listen keys of several
   accounts, clients spread over loopback addresses 127.0.0.2..., the per-IP limit being 1,000;
   the file-descriptor limit is raised to its hard limit first).

Figures, never assertions: the machine is shared with other engineers' runs (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from papi_sandbox.client import AdminClient

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
STARTUP_TIMEOUT_S = 60.0
PER_KEY = 64  # the server's MAX_CONNECTIONS_PER_LISTEN_KEY
PER_IP = 1000  # the server's DEFAULT_MAX_CONNECTIONS_PER_IP
RECV_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of a process, MiB (/proc/<pid>/status VmRSS, VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class Sandbox:
    def __init__(self, data_dir: Path, max_connections: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN,
            "PAPI_SANDBOX_SCHEDULER": "false",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "papi_sandbox",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--ip-weight-limit",
                "0",
                "--no-access-log",
                "--max-connections",
                str(max_connections),
                "--max-api-keys-per-account",
                "1000",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(data_dir / "server.log", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def account_with_keys(self, keys: int) -> tuple[int, list[str]]:
        """A new account and ``keys`` listen keys of it (one per API key)."""
        with AdminClient(self.base, ADMIN_TOKEN) as admin:
            created = admin.create_account("bench-stream")
            account, api_keys = created.account_id, [created.api_key]
            for _ in range(keys - 1):
                api_keys.append(admin.create_api_key(account)["apiKey"])
        listen_keys = []
        for api_key in api_keys:
            r = httpx.post(
                f"{self.base}/papi/v1/listenKey", headers={"X-MBX-APIKEY": api_key}, timeout=30
            )
            r.raise_for_status()
            listen_keys.append(r.json()["listenKey"])
        return account, listen_keys


async def connect_many(port: int, listen_keys: list[str], count: int) -> list[Any]:
    """``count`` connections, at most PER_KEY per listen key, spread over source addresses."""
    conns: list[Any] = []
    sem = asyncio.Semaphore(200)

    async def one(n: int) -> Any:
        key = listen_keys[n // PER_KEY]
        source = f"127.0.0.{2 + n // PER_IP}"
        async with sem:
            return await websockets.connect(
                f"ws://127.0.0.1:{port}/pm/ws/{key}",
                local_addr=(source, 0),
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
            )

    conns = await asyncio.gather(*(one(n) for n in range(count)))
    return conns


class LightClient(asyncio.Protocol):
    """A WebSocket client that notes when each frame arrives (wall clock) and keeps the payload
    of the first frame of each event for one of them (``keep``); it parses nothing else."""

    def __init__(self, path: str, port: int, board: Board, keep: bool) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.board, self.keep = board, keep
        self.buf = b""
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(buf[:200].decode(errors="replace")))
                return
            self.upgraded, buf = True, buf[end + 4 :]
            self.ready.set_result(None)
        while len(buf) >= 2:
            size, head = buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    break
                size, head = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    break
                size, head = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < head + size:
                break
            self.board.arrived(now, buf[head : head + size] if self.keep else None)
            buf = buf[head + size :]
        self.buf = buf


class Board:
    """Arrivals of every light client: wakes the driver once all clients have an event."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.count = 0
        self.arrivals: list[float] = []
        self.payloads: list[bytes] = []
        self.done = asyncio.Event()

    def arrived(self, at: float, payload: bytes | None) -> None:
        self.arrivals.append(at)
        if payload is not None:
            self.payloads.append(payload)
        self.count += 1
        if self.count == self.clients:
            self.done.set()

    def next_event(self) -> None:
        self.count = 0
        self.arrivals = []
        self.done.clear()


async def connect_light(
    port: int, listen_keys: list[str], count: int, board: Board
) -> list[LightClient]:
    """``count`` light clients, at most PER_KEY per listen key, spread over source addresses."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(200)

    async def one(n: int) -> LightClient:
        path = f"/pm/ws/{listen_keys[n // PER_KEY]}"
        async with sem:
            _, client = await loop.create_connection(
                lambda: LightClient(path, port, board, keep=n == 0),
                "127.0.0.1",
                port,
                local_addr=(f"127.0.0.{2 + n // PER_IP}", 0),
            )
            await asyncio.wait_for(client.ready, 60)
            return client

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def light_latency_phase(box: Sandbox, clients: int, events: int) -> dict[str, Any]:
    account, listen_keys = box.account_with_keys(-(-clients // PER_KEY))
    board = Board(clients)
    conns = await connect_light(box.port, listen_keys, clients, board)
    from_request: list[float] = []
    from_commit: list[float] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"{box.base}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:
            for _ in range(events):
                board.next_event()
                t0 = time.time()
                r = await http.post(
                    f"/accounts/{account}/adjustments",
                    json={"wallet": "UM", "asset": "USDT", "amount": "1", "reason": "DEPOSIT"},
                )
                r.raise_for_status()
                await asyncio.wait_for(board.done.wait(), RECV_TIMEOUT_S)
                entry_ms = json.loads(board.payloads[-1])["T"]
                from_request += [(at - t0) * 1000 for at in board.arrivals]
                from_commit += [at * 1000 - entry_ms for at in board.arrivals]
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    return {
        "clients": clients,
        "events": events,
        "from_request_p50_ms": percentile(from_request, 50),
        "from_request_p99_ms": percentile(from_request, 99),
        "from_commit_p50_ms": percentile(from_commit, 50),
        "from_commit_p99_ms": percentile(from_commit, 99),
    }


async def latency_phase(box: Sandbox, clients: int, events: int) -> dict[str, Any]:
    keys_needed = -(-clients // PER_KEY)
    account, listen_keys = box.account_with_keys(keys_needed)
    conns = await connect_many(box.port, listen_keys, clients)
    from_request: list[float] = []
    from_commit: list[float] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"{box.base}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:
            for n in range(events):
                amount = "1.00000001"
                t0 = time.perf_counter()
                send = asyncio.ensure_future(
                    http.post(
                        f"/accounts/{account}/adjustments",
                        json={
                            "wallet": "UM",
                            "asset": "USDT",
                            "amount": amount,
                            "reason": "DEPOSIT",
                        },
                    )
                )

                async def receive(ws: Any, t0: float = t0) -> None:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
                    now_perf, now_wall = time.perf_counter(), time.time() * 1000
                    from_request.append((now_perf - t0) * 1000)
                    from_commit.append(now_wall - frame["T"])

                await asyncio.gather(*(receive(ws) for ws in conns))
                (await send).raise_for_status()
                del n
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return {
        "clients": clients,
        "events": events,
        "from_request_p50_ms": percentile(from_request, 50),
        "from_request_p99_ms": percentile(from_request, 99),
        "from_commit_p50_ms": percentile(from_commit, 50),
        "from_commit_p99_ms": percentile(from_commit, 99),
    }


async def rate_phase(box: Sandbox, clients: int, writers: int, seconds: float) -> dict[str, Any]:
    account, listen_keys = box.account_with_keys(-(-clients // PER_KEY))
    conns = await connect_many(box.port, listen_keys, clients)
    frames = 0
    committed = 0
    stop = time.monotonic() + seconds

    async def reader(ws: Any) -> None:
        nonlocal frames
        try:
            while True:
                await ws.recv()
                frames += 1
        except (websockets.ConnectionClosed, asyncio.CancelledError):
            return

    async def writer(http: httpx.AsyncClient) -> None:
        nonlocal committed
        while time.monotonic() < stop:
            r = await http.post(
                f"/accounts/{account}/adjustments",
                json={
                    "wallet": "UM",
                    "asset": "USDT",
                    "amount": "0.00000001",
                    "reason": "DEPOSIT",
                },
            )
            r.raise_for_status()
            committed += 1

    readers = [asyncio.ensure_future(reader(ws)) for ws in conns]
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=f"{box.base}/admin/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    ) as http:
        await asyncio.gather(*(writer(http) for _ in range(writers)))
    await asyncio.sleep(1.0)  # let the last frames arrive
    elapsed = time.monotonic() - started
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return {
        "clients": clients,
        "writers": writers,
        "entries_per_s": committed / (elapsed - 1.0),
        "frames_per_s": frames / elapsed,
        "frames_expected": committed * clients,
        "frames_received": frames,
    }


async def idle_phase(box: Sandbox, idle: int) -> dict[str, Any]:
    before, _ = rss_mib(box.proc.pid)
    keys: list[str] = []
    per_account = 100
    while len(keys) * PER_KEY < idle:
        _, more = box.account_with_keys(per_account)
        keys += more
    started = time.monotonic()
    conns = await connect_many(box.port, keys, idle)
    opened_s = time.monotonic() - started
    await asyncio.sleep(2.0)
    current, peak = rss_mib(box.proc.pid)
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return {
        "idle": len(conns),
        "open_s": opened_s,
        "rss_before_mib": before,
        "rss_mib": current,
        "peak_rss_mib": peak,
        "per_connection_kib": (current - before) * 1024 / max(1, len(conns)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate-clients", type=int, default=100)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument(
        "--library-clients",
        action="store_true",
        help="measure latency with websockets-library clients instead of minimal ones",
    )
    args = parser.parse_args()
    fd_limit = raise_fd_limit()
    print(f"# user data stream bench (fd limit {fd_limit}; shared machine, load {os.getloadavg()})")
    with tempfile.TemporaryDirectory(prefix="papi-stream-bench-") as tmp:
        box = Sandbox(Path(tmp), max_connections=args.idle + args.clients + 2000)
        try:
            phase = latency_phase if args.library_clients else light_latency_phase
            latency = asyncio.run(phase(box, args.clients, args.events))
            kind = "websockets-library" if args.library_clients else "minimal"
            print(
                f"commit-to-receive, {latency['clients']} {kind} clients x"
                f" {latency['events']} events:"
                f" from request p50 {latency['from_request_p50_ms']:.1f} ms"
                f" p99 {latency['from_request_p99_ms']:.1f} ms;"
                f" from entry time p50 {latency['from_commit_p50_ms']:.1f} ms"
                f" p99 {latency['from_commit_p99_ms']:.1f} ms"
            )
            rate = asyncio.run(rate_phase(box, args.rate_clients, args.writers, args.rate_seconds))
            print(
                f"event rate, {rate['clients']} clients, {rate['writers']} writers:"
                f" {rate['entries_per_s']:.0f} entries/s committed,"
                f" {rate['frames_per_s']:.0f} frames/s delivered"
                f" ({rate['frames_received']} of {rate['frames_expected']})"
            )
            idle = asyncio.run(idle_phase(box, args.idle))
            print(
                f"idle connections: {idle['idle']} opened in {idle['open_s']:.1f} s;"
                f" server RSS {idle['rss_before_mib']:.0f} -> {idle['rss_mib']:.0f} MiB"
                f" (peak {idle['peak_rss_mib']:.0f} MiB,"
                f" {idle['per_connection_kib']:.1f} KiB per connection)"
            )
        finally:
            box.stop()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
