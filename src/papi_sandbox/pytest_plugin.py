"""The pytest fixtures of :mod:`papi_sandbox.testing` (registered by its ``pytest_configure``).

- ``papi_sandbox`` (session): one :class:`~papi_sandbox.testing.Sandbox` for the whole run,
  started on first use in a folder under pytest's ``tmp_path_factory``, stopped at the end.
  Options: ini ``papi_sandbox_args`` and ``papi_sandbox_relaxed_limits``, or override the
  ``papi_sandbox_options`` fixture (a dict of ``Sandbox`` keyword arguments).
- ``papi_admin``: its :class:`~papi_sandbox.client.AdminClient`.
- ``papi_account``: a new account (an HMAC key; ``account_id``, ``api_key``, ``secret``) per test.
- ``papi_client``: a :class:`~papi_sandbox.client.PapiClient` signing as ``papi_account``.

After each test that used a sandbox fixture (directly or through another fixture), the
sandbox's ledger is verified (``GET /admin/v1/verify``); a test that leaves it inconsistent
fails with the problems found (later tests fail only for problems new after them). Off for one
test with ``@pytest.mark.papi_sandbox_no_verify``, for all with the ini option
``papi_sandbox_verify = false``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from papi_sandbox.client import Account, AdminClient, PapiClient
from papi_sandbox.sandbox import Sandbox


@pytest.fixture(scope="session")
def papi_sandbox_options(pytestconfig: pytest.Config) -> dict[str, Any]:
    """Keyword arguments for the session's :class:`Sandbox`, from the ini options; override
    this fixture in a conftest.py for anything else (``db_url``, ``scheduler``, ``env``...)."""
    return {
        "args": list(pytestconfig.getini("papi_sandbox_args")),
        "relaxed_limits": bool(pytestconfig.getini("papi_sandbox_relaxed_limits")),
    }


@pytest.fixture(scope="session")
def papi_sandbox(
    papi_sandbox_options: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    """A running sandbox for the session; ``.base_url`` is where clients point."""
    options = dict(papi_sandbox_options)
    options.setdefault("data_dir", tmp_path_factory.mktemp("papi-sandbox"))
    with Sandbox(**options) as sandbox:
        yield sandbox


@pytest.fixture
def papi_admin(papi_sandbox: Sandbox) -> AdminClient:
    """The session sandbox's operator client (:class:`~papi_sandbox.client.AdminClient`)."""
    return papi_sandbox.admin


@pytest.fixture
def papi_account(papi_sandbox: Sandbox) -> Account:
    """A new, empty account with one HMAC key, for this test alone."""
    return papi_sandbox.admin.create_account("pytest")


@pytest.fixture
def papi_client(papi_sandbox: Sandbox, papi_account: Account) -> Iterator[PapiClient]:
    """A signing client for ``papi_account``."""
    with papi_sandbox.papi(papi_account) as client:
        yield client


#: Problems already reported per sandbox: a later test fails only for problems of its own.
_reported: weakref.WeakKeyDictionary[Sandbox, set[str]] = weakref.WeakKeyDictionary()


def _sandboxes_of(item: pytest.Item) -> list[Sandbox]:
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    return [value for value in funcargs.values() if isinstance(value, Sandbox) and value.running]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After a passing test body, verify the ledger of every running sandbox it used."""
    result = yield
    if not item.config.getini("papi_sandbox_verify"):
        return result
    if item.get_closest_marker("papi_sandbox_no_verify") is not None:
        return result
    for sandbox in _sandboxes_of(item):
        report = sandbox.verify()
        known = _reported.setdefault(sandbox, set())
        new = [p for p in report.problems if p not in known]
        if not report.ok and (new or not known):
            known.update(report.problems)
            problems = "\n".join(f"  {p}" for p in new or report.problems)
            pytest.fail(
                f"papi-sandbox: the ledger at {sandbox.base_url} is inconsistent after this test"
                f" ({len(new or report.problems)} new problem(s) shown):\n{problems}",
                pytrace=False,
            )
    return result
