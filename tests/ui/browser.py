"""A real browser for the dashboard's tests and its screenshots: Playwright for Python driving
Debian's Chromium (/usr/bin/chromium). Playwright's own browser download does not work on these
machines, so the system Chromium is used, installed with apt-get when missing and root.

Where the browser cannot run, the tests skip with the reason, unless
``PAPI_SANDBOX_REQUIRE_BROWSER`` is set (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
REQUIRE_ENV = "PAPI_SANDBOX_REQUIRE_BROWSER"
#: Chromium's flags on these machines: headless as root, and no background connections (the
#: machine's network is closed; see the machine notes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APT_TIMEOUT_S = 900


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"the browser tests must run here ({REQUIRE_ENV} is set): {reason}")
    pytest.skip(reason)


def ensure_chromium() -> str:
    """The path of Debian's Chromium, installing it (apt-get, as root) when missing."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _unavailable(f"{CHROMIUM} is missing and apt-get cannot run here: apt-get install chromium")
    for command in (
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"],
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", "chromium"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if done.returncode != 0:
            _unavailable(f"{' '.join(command)} failed: {done.stderr.strip()[-400:]}")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"apt-get installed chromium, but {CHROMIUM} is still missing")
    return CHROMIUM


def expect(actual: Any) -> Any:
    """Playwright's ``expect`` (retrying assertions), imported only where the browser runs."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(actual)


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright ``Browser``), closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a dev dependency
        _unavailable(f"playwright is not installed: {exc}")
    path = ensure_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
