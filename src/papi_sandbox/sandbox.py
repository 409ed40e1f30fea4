"""The :class:`Sandbox`: a real ``papi-sandbox serve`` process for your own tests, started and
stopped for you. Import it from :mod:`papi_sandbox.testing` (the documented name, also the pytest
plugin); this module imports nothing of pytest."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from papi_sandbox.client import AdminClient, Credentials, PapiClient, VerifyReport

#: Seconds to wait for a started server to answer before giving up (it prints why into its log).
STARTUP_TIMEOUT_S = 30.0
#: Seconds a stopped server may take to finish after SIGINT before it is killed.
STOP_TIMEOUT_S = 10.0
#: Bytes of the server's log quoted in an error when it fails to start.
LOG_TAIL_BYTES = 4000
#: Random bytes in a generated operator token (token_urlsafe(36): 48 characters; the server
#: refuses tokens shorter than 32).
TOKEN_BYTES = 36
#: Server options that relax the request limits for tests: no IP weight limit, no ban, and no
#: operator-token throttle (tests that send wrong tokens on purpose share one server).
RELAXED_LIMIT_ARGS = (
    *("--ip-weight-limit", "0", "--ban-after-429s", "0"),
    *("--admin-auth-failures-per-minute", "1000000"),
)
#: The SQLite file a server keeps in its data folder.
SQLITE_FILE_NAME = "papi-sandbox.db"
#: Environment variables the server reads start with this; inherited ones are dropped so that a
#: developer's own settings (a PostgreSQL URL, a port) never redirect a test's sandbox.
ENV_PREFIX = "PAPI_SANDBOX_"


class SandboxError(RuntimeError):
    """The server did not start (the message quotes the end of its log) or was used wrongly."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def new_token() -> str:
    """An operator token: 48 URL-safe random characters."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class Sandbox:
    """One ``papi-sandbox serve`` process for a test session or a script.

    Arguments (all optional):

    - ``data_dir``: the server's data folder; by default a new temporary one, removed by
      :meth:`close`. A given folder is kept.
    - ``args``: more ``serve`` options (``papi-sandbox serve --help``); they come after the
      relaxed limits, so ``args=["--ip-weight-limit", "1200"]`` restores a limit.
    - ``db_url``: the ledger, as ``serve --db`` takes it: ``postgresql://...`` to run on
      PostgreSQL, ``sqlite:///path`` for another SQLite file (default: ``papi-sandbox.db`` in
      the data folder).
    - ``relaxed_limits``: False to keep the server's default limits (:data:`RELAXED_LIMIT_ARGS`).
    - ``scheduler``: True to let auto-repay and interest fire at their scheduled times.
    - ``token``: the operator token (default: generated); ``port`` (default: a free one).
    - ``env``: extra environment for the server process.

    Attributes: ``base_url`` (point your client here), ``admin`` (:class:`AdminClient`),
    ``token``, ``port``, ``data_dir``, ``log_path``, ``db_url`` (the ledger's URL).
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        args: Sequence[str] = (),
        db_url: str | None = None,
        relaxed_limits: bool = True,
        scheduler: bool = False,
        token: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="papi-sandbox-")) if data_dir is None else Path(data_dir)
        )
        self.extra_args = [*(RELAXED_LIMIT_ARGS if relaxed_limits else ()), *args]
        self._db_url = db_url
        self.scheduler = scheduler
        self.token = token or new_token()
        self.host = host
        self.port = port or free_port(host)
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "server.log"
        self._admin: AdminClient | None = None

    # -- where it is --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the root every client is pointed at."""
        return f"http://{self.host}:{self.port}"

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgres``."""
        return "postgres" if self.db_url.startswith(("postgresql:", "postgres:")) else "sqlite"

    @property
    def db_path(self) -> Path:
        """The data folder's SQLite file (the ledger unless ``db_url`` names another)."""
        return self.data_dir / SQLITE_FILE_NAME

    @property
    def db_url(self) -> str:
        """The ledger's URL, as ``papi-sandbox verify --db`` takes it."""
        return self._db_url or f"sqlite:///{self.db_path}"

    @property
    def admin(self) -> AdminClient:
        """The operator client (one pooled connection set, renewed at each start)."""
        if self._admin is None:
            self._admin = AdminClient(self.base_url, self.token)
        return self._admin

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def papi(self, credentials: Credentials) -> PapiClient:
        """A signing client for one API key (:class:`~papi_sandbox.client.Account` or
        :class:`~papi_sandbox.client.AsymmetricKey`); close it, or use it in ``with``."""
        return PapiClient(self.base_url, credentials)

    def verify(self) -> VerifyReport:
        """The ledger's proof, through the operator API (``ok`` False when inconsistent)."""
        return self.admin.verify()

    def log_text(self) -> str:
        """The server's log so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- life -----------------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The ``serve`` command line this sandbox runs."""
        return [
            *(sys.executable, "-m", "papi_sandbox", "serve"),
            *("--host", self.host, "--port", str(self.port), "--no-access-log"),
            *(("--db", self._db_url) if self._db_url else ()),
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        """The server's environment: this process's, minus inherited ``PAPI_SANDBOX_*``, plus the
        data folder, the token, the scheduler switch and ``env``."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        return {
            **inherited,
            "PAPI_SANDBOX_DATA_DIR": str(self.data_dir),
            "PAPI_SANDBOX_ADMIN_TOKEN": self.token,
            "PAPI_SANDBOX_SCHEDULER": "true" if self.scheduler else "false",
            **self.env,
        }

    def start(self) -> Self:
        """Start the server and wait until it answers ``/healthz``; raises :class:`SandboxError`
        (with the end of its log) when it exits or stays silent for ``startup_timeout_s``."""
        if self.running:
            raise SandboxError("this sandbox is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._renew_admin()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(self.proc)
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Until ``/healthz`` answers 200. (Not an unknown path: on a server without it, that
        would cost IP weight, or meet the limiter's refusals.)"""
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(base_url=self.base_url, timeout=1) as http:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise SandboxError(f"the sandbox exited ({proc.returncode}):\n{self._tail()}")
                try:
                    if http.get("/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise SandboxError(
            f"the sandbox did not answer in {self.startup_timeout_s} s:\n{self._tail()}"
        )

    def _tail(self) -> str:
        return self.log_text()[-LOG_TAIL_BYTES:]

    def _renew_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def stop(self) -> None:
        """Stop the server (SIGINT, then SIGKILL after :data:`STOP_TIMEOUT_S`); its data stays,
        so :meth:`start` brings the same ledger back."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._renew_admin()

    def kill9(self) -> None:
        """SIGKILL the server, as a crash would (acknowledged changes must survive it)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
        self._renew_admin()

    def close(self) -> None:
        """Stop, and remove the data folder if this sandbox made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
