"""The command line as a user meets it: `serve --demo` and its printed snippet, the operator
commands, and `verify`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ADMIN_TOKEN, Server, Signer, now_ms


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "papi_sandbox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl"
)
def test_demo_prints_a_snippet_that_works(tmp_path: Path) -> None:
    srv = Server(tmp_path / "demo", ["--demo"])
    srv.start()
    try:
        assert srv.log_path is not None
        printed = srv.log_path.read_text()
        assert re.search(r"API_KEY=[A-Za-z0-9]{64}", printed)
        assert re.search(r"SECRET=[A-Za-z0-9]{64}", printed)
        start = printed.index("  export BASE_URL=")
        end = printed.index("Operator:")
        snippet = printed[start:end]
        result = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, timeout=60)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert lines[0] == '{"msg":"success"}', result.stdout + result.stderr
        usdt = json.loads(lines[1])
        assert usdt["asset"] == "USDT"
        assert usdt["umWalletBalance"] == "0.00000000"
        assert usdt["crossMarginFree"] == "9748.25000000"
        # the operator's command as printed runs from a shell whose PATH need not hold the CLI
        # (make run: .venv/bin/papi-sandbox; it printed a bare `papi-sandbox`), and names this
        # server's port and data folder (it left them out: a refused connection, then a 401)
        operator = re.search(r"Operator: (.+) account show (\d+) (.*), or", printed)
        assert operator, printed
        assert operator.group(3) == f"--url {srv.base_url} --data-dir {srv.data_dir}"
        env = {"PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}  # the server's token, from its variable
        command = f"{operator.group(1)} account show {operator.group(2)} {operator.group(3)}"
        shown = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert shown.returncode == 0 and "9748.25" in shown.stdout, shown.stderr
    finally:
        srv.stop()


def test_operator_commands(server: Server) -> None:
    env = {"PAPI_SANDBOX_URL": server.base_url, "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    created = cli("account", "create", "--label", "cli", env=env)
    assert created.returncode == 0, created.stderr
    account_id = re.search(r"accountId: (\d+)", created.stdout)
    assert account_id and re.search(r"secretKey: [A-Za-z0-9]{64}", created.stdout)
    aid = account_id.group(1)

    adjusted = cli(
        "account",
        "adjust",
        aid,
        "--wallet",
        "UM",
        "--asset",
        "USDT",
        "--amount",
        "-250.5",
        "--reason",
        "REALIZED_PNL",
        env=env,
    )
    assert adjusted.returncode == 0, adjusted.stderr
    assert "tranId:" in adjusted.stdout and "-250.50000000" in adjusted.stdout

    refused = cli(
        "account",
        "adjust",
        aid,
        "--wallet",
        "MARGIN",
        "--asset",
        "USDT",
        "--amount",
        "-1",
        "--reason",
        "WITHDRAW",
        env=env,
    )
    assert refused.returncode == 1 and "-2018" in refused.stderr

    shown = cli("account", "show", aid, env=env)
    assert shown.returncode == 0 and "USDT" in shown.stdout and "250.50000000" in shown.stdout

    journal = cli("account", "journal", aid, env=env)
    assert journal.returncode == 0 and "REALIZED_PNL" in journal.stdout
    assert "EXTERNAL" in journal.stdout  # the system account's counter-posting

    wrong_token = cli("account", "show", aid, env={**env, "PAPI_SANDBOX_ADMIN_TOKEN": "nope"})
    assert wrong_token.returncode == 1 and "-1002" in wrong_token.stderr


def test_verify_on_a_missing_database_fails_clearly(tmp_path: Path) -> None:
    result = cli("verify", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.returncode == 2
    assert "No ledger at" in result.stderr


def test_market_and_position_commands(server: Server) -> None:
    env = {
        "PAPI_SANDBOX_URL": server.base_url,
        "PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN,
        "COLUMNS": "200",
    }
    account = server.create_account("cli-trader")
    server.adjust(account.account_id, "MARGIN", "USDT", "10000")
    aid = str(account.account_id)
    priced = cli("market", "set-price", "BTCUSDT", "60000", env=env)
    assert priced.returncode == 0, priced.stderr
    assert "60000.00000000" in priced.stdout and "nextFundingTime" in priced.stdout
    listed = cli("market", "list", env=env)
    assert listed.returncode == 0 and "ETHUSDT" in listed.stdout
    rate = cli("market", "funding-rate", "BTCUSDT", "--rate", "-0.0001", env=env)
    assert rate.returncode == 0 and "-0.00010000" in rate.stdout
    cli("market", "funding-rate", "BTCUSDT", "--rate", "0.0001", env=env)
    fee = cli("account", "commission", aid, "--maker", "0.0001", "--taker", "0.0004", env=env)
    assert fee.returncode == 0 and "0.0004" in fee.stdout, fee.stderr
    r = Signer(server.base_url, account).request(
        "POST",
        "/papi/v1/um/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"},
    )
    assert r.status_code == 200, r.text
    shown = cli("account", "positions", aid, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "BTCUSDT" in shown.stdout and "uniMMR" in shown.stdout and "0.01000000" in shown.stdout
    unknown = cli("market", "set-price", "NOPE", "1", env=env)
    assert unknown.returncode == 1 and "-1121" in unknown.stderr
    good_till = now_ms() + 3_600_000
    resting = Signer(server.base_url, account).request(
        "POST",
        "/papi/v1/um/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTD",
         "quantity": "0.010", "price": "58000", "goodTillDate": str(good_till)},
    )  # fmt: skip
    assert resting.status_code == 200, resting.text
    expired = cli("market", "expire-orders", "--as-of", str(good_till), env=env)
    assert expired.returncode == 0, expired.stderr
    # at least this account's order (the shared server may hold other tests' GTD orders)
    assert re.search(rf"\b{good_till}\b.*\b[1-9][0-9]*\b", expired.stdout), expired.stdout
    listed_open = Signer(server.base_url, account).request("GET", "/papi/v1/um/openOrders")
    assert listed_open.json() == []
    bad = cli("market", "expire-orders", "--as-of", "tomorrow", env=env)
    assert bad.returncode == 1 and "-1102" in bad.stderr, bad.stderr


def _one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """A refusal: exit 2, one line (never folded to the terminal's width), no traceback, and
    the user's own text shown as typed."""
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.mark.parametrize("text", ["[/]", "[bold]x", "[/red]"])
def test_refusals_show_the_user_s_text_literally_never_a_markup_error(
    tmp_path: Path, text: str
) -> None:
    """A value echoed in a refusal (a path, a configuration value, a time) is text, not console
    markup: ``[/]`` in it used to end ``verify`` with a MarkupError traceback, and ``jobs run``
    ate ``[schedule]`` out of its own message."""
    folder = tmp_path / text.replace("/", "_")
    folder.mkdir()
    missing = f"sqlite:///{folder}/none.db"
    where = str(folder / "none.db")
    _one_clear_line(cli("verify", "--db", missing), "No ledger at", where)
    _one_clear_line(cli("jobs", "run", "interest", "--db", missing), "No ledger at", where)

    config = tmp_path / "jobs.toml"
    config.write_text(f'[schedule]\ninterest = ["{text}"]\n')
    bad_config = cli("jobs", "run", "interest", "--db", missing, "--config", str(config))
    _one_clear_line(bad_config, "Bad configuration", "[schedule] interest", repr(text))

    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert cli("db", "upgrade", "--db", ledger).returncode == 0
    _one_clear_line(cli("jobs", "run", "interest", "--db", ledger, "--as-of", text), text)


def test_serve_help_shows_every_option_and_its_text_as_written() -> None:
    """``serve --help`` (generated from the settings spec) names every flag and variable, and
    shows the help as written: ``[market]`` is not eaten as console markup."""
    from papi_sandbox import settings

    shown = cli("serve", "--help", env={"COLUMNS": "400", "TERM": "dumb"})
    assert shown.returncode == 0, shown.stderr
    for name in settings.serve_fields():
        assert settings.flag_name(name) in shown.stdout, name
        assert settings.env_name(name) in shown.stdout, name
    assert "([market], docs/semantics.md)" in shown.stdout, shown.stdout


@pytest.mark.parametrize(
    "command",
    [
        ("account", "show"),
        ("account", "journal"),
        ("account", "positions"),
        ("account", "commission", "--maker", "0.0002", "--taker", "0.0005"),
    ],
)
def test_every_account_id_argument_is_ascii_digits(command: tuple[str, ...]) -> None:
    # int() reads "١٢٣" as 123: every command's account id goes through the one grammar, so it
    # is refused before any request (no service listens on the URL given).
    name, sub, *options = command
    done = cli(name, sub, "١٢٣", *options, "--url", "http://127.0.0.1:9", "--token", "x" * 40)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "account id" in done.stderr and "Cannot reach" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["market", "set-price", "BTCUSDT", "1e3"],
        ["market", "set-price", "BTCUSDT", "60000", "--index-price", "\u0661"],
        ["market", "funding-rate", "BTCUSDT", "--rate", "1e-4"],
    ],
)
def test_market_commands_refuse_a_bad_decimal_before_asking_the_server(args: list[str]) -> None:
    """As ``account adjust --amount 1e3``: a usage error (exit 2), the server never asked (the
    URL names no server)."""
    done = cli(*args, "--url", "http://127.0.0.1:9")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not a decimal" in done.stderr and "Traceback" not in done.stderr
