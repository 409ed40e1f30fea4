"""The testing kit as its users meet it: the pytest plugin in a suite of its own (pytester, in a
new process so the plugin loads from its entry point), and ``with Sandbox()`` without pytest."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from papi_sandbox.client import AdminError, ApiError
from papi_sandbox.testing import Sandbox, SandboxError

pytest_plugins = ["pytester"]

REPAY = "/papi/v1/repay-futures-negative-balance"

#: A test that breaks the ledger behind the service's back: one balance no longer equals the sum
#: of its postings (what a bug in a write path would leave).
CORRUPTING_TEST = """
import sqlite3

def test_corrupts(papi_sandbox, papi_admin, papi_account):
    papi_admin.adjust(papi_account.account_id, "MARGIN", "USDT", "10")
    with sqlite3.connect(papi_sandbox.db_path) as conn:
        conn.execute(
            "UPDATE balances SET amount = '11' WHERE account_id = ? AND asset = 'USDT'",
            (papi_account.account_id,),
        )
"""


def test_the_fixtures_give_a_working_sandbox(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from papi_sandbox.client import AdminClient, PapiClient
        from papi_sandbox.testing import Sandbox

        def test_one(papi_sandbox, papi_admin, papi_account, papi_client):
            assert isinstance(papi_sandbox, Sandbox) and isinstance(papi_admin, AdminClient)
            assert papi_sandbox.base_url.startswith("http://127.0.0.1:")
            assert len(papi_sandbox.token) >= 32
            papi_admin.adjust(papi_account.account_id, "MARGIN", "USDT", "100")
            papi_admin.adjust(papi_account.account_id, "UM", "USDT", "-25", "REALIZED_PNL")
            assert papi_client.call("POST", "/papi/v1/repay-futures-negative-balance") == {
                "msg": "success"
            }
            usdt = papi_admin.balance(papi_account.account_id, "USDT")
            assert usdt["crossMarginFree"] == "75.00000000"

        def test_two_shares_the_session_sandbox(papi_sandbox, papi_account):
            assert papi_account.account_id > 1  # the first test's account is still there
        """
    )
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=2)


def test_a_test_that_leaves_the_ledger_inconsistent_fails(pytester: pytest.Pytester) -> None:
    """Only that test: the next one is blamed for new problems only."""
    pytester.makepyfile(
        CORRUPTING_TEST
        + "\n\ndef test_after(papi_admin, papi_account):\n"
        + '    papi_admin.adjust(papi_account.account_id, "MARGIN", "USDT", "1")\n'
    )
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*stored 11.00000000, journal replay 10.00000000*"])
    result.stdout.fnmatch_lines(
        ["*the ledger at http://127.0.0.1:* is inconsistent after this test*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_check_can_be_turned_off_per_test_and_by_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        CORRUPTING_TEST.replace(
            "def test_corrupts",
            "import pytest\n\n@pytest.mark.papi_sandbox_no_verify\ndef test_corrupts",
        )
    )
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)
    pytester.makepyfile(CORRUPTING_TEST)
    pytester.makeini("[pytest]\npapi_sandbox_verify = false\n")
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)


def test_ini_args_reach_the_server_and_limits_can_be_kept(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\npapi_sandbox_relaxed_limits = false\npapi_sandbox_args = --ip-weight-limit 3\n"
    )
    pytester.makepyfile(
        """
        def test_limited(papi_client):
            codes = [papi_client.request("GET", "/papi/v1/balance").status_code for _ in range(5)]
            assert 429 in codes, codes
        """
    )
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)


def test_the_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(papi_sandbox):\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:papi_sandbox")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'papi_sandbox' not found*"])


def test_sandbox_context_manager_starts_serves_and_cleans_up() -> None:
    with Sandbox() as sb:
        folder, proc = sb.data_dir, sb.proc
        assert proc is not None and sb.running
        account = sb.admin.create_account("script")
        sb.admin.adjust(account.account_id, "MARGIN", "USDT", "5")
        with sb.papi(account) as papi:
            assert papi.call("GET", "/papi/v1/balance", {"asset": "USDT"})["crossMarginFree"] == (
                "5.00000000"
            )
            with pytest.raises(ApiError) as refused:
                papi.call("GET", "/papi/v1/balance", {"asset": "usdt!"})
            assert refused.value.status == 400 and refused.value.code < 0
        with pytest.raises(AdminError) as unknown:
            sb.admin.adjust(999_999, "MARGIN", "USDT", "1")
        assert (unknown.value.status, unknown.value.code) == (404, -1000)
        with pytest.raises(TypeError):
            sb.admin.adjust(account.account_id, "MARGIN", "USDT", 1.5)  # type: ignore[arg-type]
        assert sb.verify().ok
    assert proc.poll() is not None and not folder.exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{sb.base_url}/healthz", timeout=1)


def test_sandbox_keeps_a_given_folder_and_survives_a_restart(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path / "ledger")
    try:
        sb.start()
        account = sb.admin.create_account()
        sb.admin.adjust(account.account_id, "MARGIN", "BTC", "0.5")
        sb.kill9()
        sb.start()
        assert sb.admin.balance(account.account_id, "BTC")["crossMarginFree"] == "0.50000000"
    finally:
        sb.close()
    assert (tmp_path / "ledger" / "papi-sandbox.db").exists()
    with sqlite3.connect(tmp_path / "ledger" / "papi-sandbox.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] >= 2


def test_a_sandbox_that_cannot_start_says_why(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path / "bad", args=["--max-api-keys-per-account", "0"])
    with pytest.raises(SandboxError) as info:
        sb.start()
    assert "max-api-keys-per-account" in str(info.value)
    assert not sb.running


def test_the_sandbox_ignores_the_developers_own_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPI_SANDBOX_DB", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("PAPI_SANDBOX_IP_WEIGHT_LIMIT", "1")
    with Sandbox(tmp_path / "mine") as sb:
        assert sb.backend == "sqlite"
        account = sb.admin.create_account()
        with sb.papi(account) as papi:
            for _ in range(3):
                assert papi.request("GET", "/papi/v1/balance").status_code == 200


def test_a_run_stopped_with_sigterm_stops_its_sandbox(pytester: pytest.Pytester) -> None:
    """A CI time-out sends SIGTERM to pytest: the session's sandbox must not outlive it."""
    pid_file = pytester.path / "server.pid"
    pytester.makepyfile(
        f"""
        import time
        from pathlib import Path

        def test_waits(papi_sandbox):
            Path({str(pid_file)!r}).write_text(str(papi_sandbox.proc.pid))
            time.sleep(60)
        """
    )
    runner = subprocess.Popen(
        # The documented explicit form, so the run does not depend on entry-point autoloading.
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "papi_sandbox.testing",
        ],
        cwd=pytester.path,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        stdout=(pytester.path / "run.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            assert runner.poll() is None, (pytester.path / "run.log").read_text()
            time.sleep(0.1)
        server_pid = int(pid_file.read_text())
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    status = Path(f"/proc/{server_pid}/status")
    deadline = time.monotonic() + 10
    while status.exists() and "\tZ" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = status.exists() and "\tZ" not in status.read_text()
    if alive:
        os.kill(server_pid, signal.SIGKILL)
    assert not alive, "the sandbox outlived the test run that SIGTERM stopped"
