"""A sandbox for your own tests: a real server process, started and stopped for you.

``with Sandbox() as sb:`` (unittest, scripts, any framework) starts ``papi-sandbox serve`` on a
free loopback port with its own temporary data folder (a SQLite ledger), an operator token it
generates (48 characters), the scheduler off (your test decides when jobs run, through
``sb.admin.run_job(..., as_of=...)``) and the request limits relaxed (no IP weight limit, no
bans), waits until it answers, and stops it and removes the folder afterwards::

    from papi_sandbox.testing import Sandbox

    with Sandbox() as sb:
        account = sb.admin.create_account()
        sb.admin.adjust(account.account_id, "MARGIN", "USDT", "100")
        sb.papi(account).call("GET", "/papi/v1/balance")   # Binance's JSON
        assert sb.verify().ok

Under pytest the same comes as fixtures (``papi_sandbox``, ``papi_admin``, ``papi_account``,
``papi_client``): this module is a pytest plugin registered through the ``pytest11`` entry point,
so it is active wherever papi-sandbox is installed (``-p no:papi_sandbox`` turns it off;
``-p papi_sandbox.testing`` turns it on where plugin autoloading is disabled). The fixtures live
in :mod:`papi_sandbox.pytest_plugin`; ``Sandbox`` itself lives in :mod:`papi_sandbox.sandbox`,
which imports nothing of pytest, so it works without it. Recipes for ccxt, python-binance,
Binance's SDK and the Node ``binance`` package:
``docs/testing.md``.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

from papi_sandbox.sandbox import Sandbox, SandboxError, free_port, new_token

if TYPE_CHECKING:
    import pytest


# -- the pytest plugin's entry: hooks only, so that importing this module never needs pytest ----


def pytest_addoption(parser: pytest.Parser) -> None:
    """Ini options of the fixtures (``pytest.ini``, ``[tool.pytest.ini_options]``)."""
    parser.addini(
        "papi_sandbox_args",
        type="args",
        default=[],
        help="papi-sandbox: more `serve` options for the session's sandbox",
    )
    parser.addini(
        "papi_sandbox_relaxed_limits",
        type="bool",
        default=True,
        help="papi-sandbox: run without IP weight limit and bans (default true)",
    )
    parser.addini(
        "papi_sandbox_verify",
        type="bool",
        default=True,
        help="papi-sandbox: fail a test that leaves the ledger inconsistent (default true)",
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _unwind_on_sigterm() -> None:
    """A test run stopped with SIGTERM (a CI time-out, a cancelled job) unwinds as Ctrl-C does,
    so the fixtures' teardown stops the sandbox instead of leaving it running, orphaned, on its
    port. Only from the main thread, and only where SIGTERM still has its default action (a
    handler of the user's own is kept)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def pytest_configure(config: pytest.Config) -> None:
    """Register the fixtures (a module that imports pytest) and the marker; make SIGTERM
    unwind the run (:func:`_unwind_on_sigterm`)."""
    from papi_sandbox import pytest_plugin

    _unwind_on_sigterm()

    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "papi_sandbox.pytest_plugin")
    config.addinivalue_line(
        "markers", "papi_sandbox_no_verify: do not verify the sandbox's ledger after this test"
    )


__all__ = ["Sandbox", "SandboxError", "free_port", "new_token"]
