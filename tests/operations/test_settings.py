"""The one settings spec (papi_sandbox.settings): ``serve``'s flags, the environment loader of
``uvicorn --factory papi_sandbox.api.app:app_from_env`` and the ``--workers`` processes read the
same options through the same grammar."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from papi_sandbox import settings
from papi_sandbox.cli import app as cli_app
from papi_sandbox.testing import free_port
from tests.support import ADMIN_TOKEN, Server

#: Every numeric option of the spec (integers and durations): the family the grammar guards.
NUMERIC = [
    name for name, info in settings.Settings.model_fields.items() if info.annotation in (int, float)
]
#: Text each of them must refuse: a Unicode digit, a trailing line feed, and pydantic's own
#: leniencies (underscores, surrounding spaces, an exponent, a sign).
REFUSED = ["\u0661", "\u0661\u0662", "5\n", " 5", "5 ", "1_0", "1e1", "+5", "\uff15"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(settings.ENV_PREFIX)}
    return {**env, **extra}


def test_the_spec_covers_every_numeric_option() -> None:
    assert len(NUMERIC) >= 10, NUMERIC
    for name in ("port", "workers", "store_timeout", "request_read_timeout"):
        assert name in NUMERIC


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_options_refuse_what_the_grammar_refuses(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """From the environment (the factory's loader) and from the flag (``serve``), each
    refusal is one ``Cannot start:`` line naming the variable and the flag, exit status 2."""
    runner = CliRunner()
    env_var, flag = settings.env_name(name), settings.flag_name(name)
    for value in REFUSED:
        monkeypatch.setenv(env_var, value)
        with pytest.raises(settings.SettingError) as info:
            settings.settings_from_env()
        assert env_var in str(info.value) and "\n" not in str(info.value)
        monkeypatch.delenv(env_var)
        env = _clean_env(PAPI_SANDBOX_DATA_DIR=str(tmp_path), COLUMNS="60")
        by_env = runner.invoke(cli_app, ["serve"], env={**env, env_var: value})
        by_flag = runner.invoke(cli_app, ["serve", flag, value], env=env)
        for result in (by_env, by_flag):
            assert result.exit_code == 2, (value, result.output)
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Cannot start: "), result.output
            assert env_var in lines[0] and flag in lines[0], lines[0]


def test_flags_win_over_variables_and_both_read_the_same_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAPI_SANDBOX_PORT", "9001")
    monkeypatch.setenv("PAPI_SANDBOX_SCHEDULER", "off")
    assert settings.load().port == 9001
    assert settings.load(port="9002").port == 9002
    assert settings.load().scheduler is False
    assert settings.load(scheduler=True).scheduler is True
    monkeypatch.setenv("papi_sandbox_port", "9003")  # the names are exact, upper case
    monkeypatch.delenv("PAPI_SANDBOX_PORT")
    assert settings.load().port == settings.Settings.model_fields["port"].default


def test_workers_get_back_every_setting_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve --workers N`` hands its settings to each process as variables: every option,
    set away from its default, comes back equal from the factory's loader."""
    given = {
        "host": "0.0.0.0",
        "port": "9100",
        "db": "postgresql://u@h/db",
        "data_dir": "/tmp/papi-x",
        "ip_weight_limit": "0",
        "ban_after_429s": "3",
        "max_api_keys_per_account": "7",
        "request_read_timeout": "2.5",
        "keep_alive_timeout": "9",
        "max_connections": "77",
        "store_timeout": "0.25",
        "admin_auth_failures_per_minute": "4",
        "workers": "3",
        "access_log": False,
        "scheduler": False,
        "demo": True,
        "config": "/tmp/jobs.toml",
        "limits": "redis://127.0.0.1:6379/0",
        "limits_prefix": "other:",
        "durability": "normal",
        "forwarded_allow_ips": "10.0.0.0/8",
    }
    assert set(given) == set(settings.serve_fields()), "a new option needs a value here"
    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(name)
    sent = settings.load(**given)
    for name, value in settings.settings_to_env(sent).items():
        monkeypatch.setenv(name, value)
    assert settings.settings_from_env() == sent


def test_settings_built_from_python_take_python_values(tmp_path: Path) -> None:
    """``papi_sandbox.Settings`` is a public name: paths, numbers and booleans given from Python
    (as bench/inprocess.py and an embedding application do) pass the same rules."""
    built = settings.Settings(
        data_dir=tmp_path, config=tmp_path / "jobs.toml", port=9000, store_timeout=0.5,
        scheduler=False, access_log=False,
    )  # fmt: skip
    assert built.data_dir == tmp_path and built.config == tmp_path / "jobs.toml"
    assert (built.port, built.store_timeout, built.scheduler) == (9000, 0.5, False)
    for bad in ({"port": 0}, {"port": True}, {"store_timeout": 1e9}, {"data_dir": Path("a\nb")}):
        with pytest.raises(settings.SettingError):
            settings.load(**bad)


@pytest.mark.parametrize("token", [" " * 40, "x" * 40 + "\n", "x" * 20 + " " + "x" * 20, "x" * 31])
def test_the_operator_token_rule(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At least 32 visible ASCII characters: blanks and padding are refused, not trimmed."""
    monkeypatch.setenv(settings.ADMIN_TOKEN_ENV, token)
    with pytest.raises(settings.SettingError) as info:
        settings.settings_from_env()
    assert settings.ADMIN_TOKEN_ENV in str(info.value) or "at least 32" in str(info.value)


def test_a_blank_token_file_is_refused_by_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / settings.ADMIN_TOKEN_FILE_NAME).write_text(" " * 40 + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "papi_sandbox", "serve", "--port", str(free_port())],
        env=_clean_env(PAPI_SANDBOX_DATA_DIR=str(data)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Cannot start: ") and "Traceback" not in done.stderr


# -- the factory path, as a real server process ----------------------------------------------


def _factory(data_dir: Path, port: int, *args: str, **env: str) -> subprocess.Popen[bytes]:
    log = open(data_dir / "factory.log", "wb")  # noqa: SIM115 - closed with the process
    command = [sys.executable, "-m", "uvicorn", "--factory", "papi_sandbox.api.app:app_from_env"]
    return subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), *args],
        env=_clean_env(
            PAPI_SANDBOX_DATA_DIR=str(data_dir), PAPI_SANDBOX_ADMIN_TOKEN=ADMIN_TOKEN, **env
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the factory process exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the factory process did not answer /healthz")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)


def _run_factory(data_dir: Path, *args: str, **env: str) -> None:
    """Start the factory path, wait until it answers /healthz, stop it (its log is
    ``data_dir / "factory.log"``)."""
    port = free_port()
    proc = _factory(data_dir, port, *args, **env)
    try:
        _wait_healthy(proc, port)
    finally:
        _stop(proc)


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _scheduler_lines(lines: list[dict[str, Any]]) -> list[str]:
    return [e["msg"] for e in lines if e.get("logger") == "papi_sandbox.jobs"]


@pytest.mark.parametrize("value", ["off", "false", "0", "no"])
def test_the_factory_path_turns_the_scheduler_off(tmp_path: Path, value: str) -> None:
    """``PAPI_SANDBOX_SCHEDULER=off`` under ``uvicorn --factory ...:app_from_env`` (what each
    ``--workers`` process and a granian/uvicorn deployment run) leaves the scheduler off, as
    under ``serve``."""
    _run_factory(tmp_path, PAPI_SANDBOX_SCHEDULER=value)
    assert _scheduler_lines(_log_lines(tmp_path / "factory.log")) == ["scheduler off"]


def test_serve_turns_the_scheduler_off_with_the_same_variable(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", [], env={"PAPI_SANDBOX_SCHEDULER": "off"})
    server.start()
    server.stop()
    assert _scheduler_lines(_log_lines(server.log_path)) == ["scheduler off"]


def test_serve_starts_when_its_flags_override_bad_variables(tmp_path: Path) -> None:
    """A flag wins over its variable, in every module ``serve``'s process loads: a variable
    the flag overrides is not read, so its bad value does not stop the start (transport.py
    read the whole environment on import: a SettingError traceback, exit status 1)."""
    env = {"PAPI_SANDBOX_REQUEST_READ_TIMEOUT": "abc", "PAPI_SANDBOX_PORT": "\uff15"}
    server = Server(tmp_path / "srv", ["--request-read-timeout", "5"], env=env)
    server.start()  # --port is the sandbox's own flag
    server.stop()
    assert "Traceback" not in server.log_text()


def test_the_factory_path_runs_the_scheduler_by_default(tmp_path: Path) -> None:
    _run_factory(tmp_path)
    assert _scheduler_lines(_log_lines(tmp_path / "factory.log")) == ["scheduler on"]


def test_the_factory_path_refuses_a_bad_number_in_one_line(tmp_path: Path) -> None:
    proc = _factory(tmp_path, free_port(), PAPI_SANDBOX_STORE_TIMEOUT="5\n")
    assert proc.wait(30) == 2
    text = (tmp_path / "factory.log").read_text()
    assert "Traceback" not in text
    refusal = [line for line in text.splitlines() if line.startswith("Cannot start: ")]
    assert len(refusal) == 1 and "PAPI_SANDBOX_STORE_TIMEOUT" in refusal[0], text


def test_the_factory_path_refuses_the_demo_in_one_line(tmp_path: Path) -> None:
    """``PAPI_SANDBOX_DEMO=true`` is ``serve --demo``'s (it prints the address it binds and the
    demo's keys); under ``--factory`` it was read, then ignored: no account, nothing said."""
    proc = _factory(tmp_path, free_port(), PAPI_SANDBOX_DEMO="true")
    try:
        assert proc.wait(30) == 2
    finally:
        if proc.poll() is None:  # it served: stop it
            _stop(proc)
    text = (tmp_path / "factory.log").read_text()
    assert "Traceback" not in text
    refusal = [line for line in text.splitlines() if line.startswith("Cannot start: ")]
    assert len(refusal) == 1 and "PAPI_SANDBOX_DEMO" in refusal[0], text


# -- the database URL: a store this service runs on, reachable before anything starts -------

#: URLs that name no store: used to be read as a file name (``./mysql:/x``) and served.
NOT_A_STORE = ["mysql://x/ledger", "postgresql+psycopg://127.0.0.1/x", "sqlite3:///x.db"]


def _serve(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "papi_sandbox", "serve", "--port", str(free_port())]
    return subprocess.run(
        [*command, *args],
        env=_clean_env(PAPI_SANDBOX_DATA_DIR=str(data_dir), **env),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=data_dir.parent,
    )


def _command(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """One ``papi-sandbox`` command in a process of its own, without inherited settings."""
    return subprocess.run(
        [sys.executable, "-m", "papi_sandbox", *args],
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def _refused_in_one_line(text: str, *words: str) -> None:
    refusal = [line for line in text.splitlines() if line.startswith("Cannot start: ")]
    assert len(refusal) == 1 and "Traceback" not in text, text
    assert all(word in refusal[0] for word in words), (words, refusal)


@pytest.mark.parametrize("url", NOT_A_STORE)
def test_a_database_url_of_no_store_is_refused_not_taken_as_a_file(
    tmp_path: Path, url: str
) -> None:
    data = tmp_path / "data"
    done = _serve(data, "--db", url)
    assert done.returncode == 2, done.stderr
    _refused_in_one_line(done.stderr, "PAPI_SANDBOX_DB (--db)", url.partition("://")[0])
    proc = _factory(tmp_path, free_port(), PAPI_SANDBOX_DB=url)
    assert proc.wait(30) == 2
    _refused_in_one_line((tmp_path / "factory.log").read_text(), "PAPI_SANDBOX_DB")
    # the other commands take --db by the same rule, refused in the same one line
    for command in (["db", "upgrade"], ["verify"], ["jobs", "run", "interest"]):
        done = _command(*command, "--db", url, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("PAPI_SANDBOX_DB (--db): "), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["factory.log"]  # no file, no folder


def test_an_unreachable_postgresql_database_stops_the_start_in_one_line(
    tmp_path: Path,
) -> None:
    """A PostgreSQL URL naming a database that does not exist: ``Cannot start:`` with the
    server's reason, exit 2, before anything listens (it used to log a traceback, exit 3)."""
    base = os.environ.get("PAPI_SANDBOX_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PAPI_SANDBOX_TEST_POSTGRES_URL is unset")
    url = base.rsplit("/", 1)[0] + "/papi_no_such_database"
    done = _serve(tmp_path / "data", "--db", url, PAPI_SANDBOX_ADMIN_TOKEN=ADMIN_TOKEN)
    assert done.returncode == 2, done.stderr
    _refused_in_one_line(done.stderr, "PostgreSQL", "papi_no_such_database")
    proc = _factory(tmp_path, free_port(), PAPI_SANDBOX_DB=url)
    assert proc.wait(30) == 2
    _refused_in_one_line((tmp_path / "factory.log").read_text(), "papi_no_such_database")


# -- variables nothing reads: warned, never ignored in silence ---------------------------------


def test_a_misspelt_variable_is_named_with_the_closest_setting() -> None:
    lines = settings.unknown_variables(
        {"PAPI_SANDBOX_PROT": "9000", "PAPI_SANDBOX_PORT": "1", "PATH": "/bin", "PAPI_SANDBOXX": ""}
    )
    assert lines == [
        "PAPI_SANDBOX_PROT is set but is no setting of this service; it is ignored"
        " (did you mean PAPI_SANDBOX_PORT?)"
    ]
    (far,) = settings.unknown_variables({"PAPI_SANDBOX_WHATEVER": "1"})
    assert far.startswith("PAPI_SANDBOX_WHATEVER is set") and "did you mean" not in far
    # compared without the prefix all share (which made PAPI_SANDBOX_FOO "close" to ..._PORT),
    # and with the CLI's and the encryption key's variables among the candidates
    for typed, meant in (
        ("FOO", None),
        ("X", None),
        ("SECRET", "PAPI_SANDBOX_SECRET_KEY"),
        ("URLS", "PAPI_SANDBOX_URL"),
        ("NEW_KEY", "PAPI_SANDBOX_NEW_SECRET_KEY"),
        ("DATADIR", "PAPI_SANDBOX_DATA_DIR"),
    ):
        (line,) = settings.unknown_variables({f"PAPI_SANDBOX_{typed}": "1"})
        assert line.endswith(f"(did you mean {meant}?)" if meant else "it is ignored"), line


def test_every_variable_the_project_reads_is_known() -> None:
    """The family: each ``PAPI_SANDBOX_*`` name written anywhere in the sources and the test
    suite (the settings', the encryption keys', the CLI's, the tests') is known, so none of
    them is ever warned about."""
    root = Path(__file__).resolve().parents[2]
    names: set[str] = set()
    for folder in ("src", "tests"):
        for path in (root / folder).rglob("*.py"):
            if path != Path(__file__).resolve():  # this file's own misspellings
                names |= set(re.findall(r"PAPI_SANDBOX_[A-Z0-9_]+", path.read_text()))
    names = {n for n in names if not n.endswith("_")}  # prefixes (PAPI_SANDBOX_TEST_)
    names -= {"PAPI_SANDBOX_X", "PAPI_SANDBOX_PROT"}  # settings.py's examples
    others = {"PAPI_SANDBOX_SECRET_KEY", "PAPI_SANDBOX_NEW_SECRET_KEY", "PAPI_SANDBOX_URL"}
    assert others | {"PAPI_SANDBOX_TEST_REDIS_URL", "PAPI_SANDBOX_REQUIRE_BROWSER"} <= names
    assert settings.unknown_variables(dict.fromkeys(names, "1")) == []


def test_serve_and_the_factory_path_warn_about_a_misspelt_variable(tmp_path: Path) -> None:
    warning = (
        "Warning: PAPI_SANDBOX_SCHEDULR is set but is no setting of this service; it is"
        " ignored (did you mean PAPI_SANDBOX_SCHEDULER?)"
    )
    server = Server(tmp_path / "srv", [], env={"PAPI_SANDBOX_SCHEDULR": "off"})
    server.start()
    server.stop()
    assert warning in server.log_text().splitlines()
    _run_factory(tmp_path, PAPI_SANDBOX_SCHEDULR="off")
    assert warning in (tmp_path / "factory.log").read_text().splitlines()


# -- the limiter's URL, empty values, options of the server ----------------------------------

#: URLs redis-py cannot use: refused at the start in one line, not by a traceback later.
NOT_A_REDIS = [
    "http://x",
    "redis://127.0.0.1:notaport/0",
    "redis://[bad",
    "redis://u:pw@h:x/0",
    "redis://u:pw@127.0.0.1:6379/0?max_connections=-5",  # the pool's own checks
    "redis://127.0.0.1:6379/0?ssl_cert_reqs=bogus",  # the connection's
    "redis://127.0.0.1:6379/0?protocol=9",
    "unix://",
    "redis://127.0.0.1:6379/-1",
]


@pytest.mark.parametrize("url", NOT_A_REDIS)
def test_a_limits_url_redis_cannot_use_stops_the_start_in_one_line(
    tmp_path: Path, url: str
) -> None:
    done = _serve(tmp_path / "data", "--limits", url)
    assert done.returncode == 2, done.stderr
    _refused_in_one_line(done.stderr, "PAPI_SANDBOX_LIMITS (--limits)")
    assert "pw" not in done.stderr
    proc = _factory(tmp_path, free_port(), PAPI_SANDBOX_LIMITS=url)
    assert proc.wait(30) == 2
    _refused_in_one_line((tmp_path / "factory.log").read_text(), "PAPI_SANDBOX_LIMITS")


def test_an_empty_flag_is_as_if_not_given_as_an_empty_variable_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--host ""`` was every interface, ``--data-dir ""`` the current folder (made 0700),
    ``--config ""`` a folder to read, ``--port ""`` refused: each is now as if not given (the
    variable, else the default), in ``serve`` and in the other commands alike."""
    for name in settings.Settings.model_fields:
        monkeypatch.delenv(settings.env_name(name), raising=False)
    given = settings.load(
        host="", port="", data_dir="", config="", limits="", limits_prefix="", durability=""
    )
    assert given == settings.Settings()
    assert (given.host, given.port, given.data_dir) == ("127.0.0.1", 8765, Path(".papi-sandbox"))
    assert settings.parse_option("data_dir", "") == Path(".papi-sandbox")
    assert settings.parse_option("db", "") is None
    with pytest.raises(settings.SettingError, match=r"^PAPI_SANDBOX_DB \(--db\): 'mysql'"):
        settings.parse_option("db", "mysql://x")
    monkeypatch.setenv("PAPI_SANDBOX_HOST", "127.0.0.2")
    monkeypatch.setenv("PAPI_SANDBOX_DATA_DIR", "/srv/papi")
    assert settings.load(host="", data_dir="").host == "127.0.0.2"
    assert settings.load(host="", data_dir="").data_dir == Path("/srv/papi")
    assert settings.parse_option("data_dir", "") == Path("/srv/papi")


def test_other_commands_take_the_spec_options_by_the_spec_rule(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["verify", "--data-dir", ""], env=_clean_env())
    assert result.exit_code == 2
    ledger = Path.cwd() / ".papi-sandbox" / "papi-sandbox.db"
    assert f"No ledger at {ledger} (" in result.output
    refused = CliRunner().invoke(cli_app, ["verify", "--db", "mysql://u:pw@x/db"])
    assert refused.exit_code == 2 and "(--db): 'mysql' is not a database" in refused.output
    assert "pw" not in refused.output


def test_the_durability_is_refused_in_the_grammar_s_words() -> None:
    with pytest.raises(settings.SettingError) as caught:
        settings.load(durability="fast")
    assert str(caught.value) == (
        "PAPI_SANDBOX_DURABILITY (--durability) must be one of full, normal, off, not 'fast'"
    )


def test_the_factory_path_names_the_options_its_server_decides(tmp_path: Path) -> None:
    """``uvicorn --factory``: host, port, workers, keep-alive, connections and the read deadline
    are the ASGI server's; each one set as a variable is named with uvicorn's own flag, except
    the read deadline when the server runs GuardedFromEnv, which reads it."""
    env = {"PAPI_SANDBOX_KEEP_ALIVE_TIMEOUT": "5", "PAPI_SANDBOX_REQUEST_READ_TIMEOUT": "1"}
    for args, expected in (
        ((), ["--timeout-keep-alive", "--http papi_sandbox.transport:GuardedFromEnv"]),
        (("--http", "papi_sandbox.transport:GuardedFromEnv"), ["--timeout-keep-alive"]),
    ):
        _run_factory(tmp_path, *args, **env)
        text = (tmp_path / "factory.log").read_text()
        warned = [line for line in text.splitlines() if "is not applied under" in line]
        assert [line.rsplit("uvicorn: ", 1)[1][:-1] for line in warned] == expected, text


def test_serve_workers_children_warn_nothing_the_parent_said(tmp_path: Path) -> None:
    """``serve --workers`` sets every option as a variable for its children and applies the
    server's options itself: no child warns about them (nor repeats the parent's warnings)."""
    base = os.environ.get("PAPI_SANDBOX_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PAPI_SANDBOX_TEST_POSTGRES_URL is unset")
    from tests.support import create_test_database, drop_test_database, postgres_admin_url

    admin = postgres_admin_url()
    db_url = create_test_database(admin)
    server = Server(
        tmp_path / "srv", ["--workers", "2"], db_url=db_url, env={"PAPI_SANDBOX_SCHEDULR": "off"}
    )
    try:
        server.start()
        server.stop()
    finally:
        drop_test_database(admin, db_url)
    lines = [line for line in server.log_text().splitlines() if line.startswith("Warning: ")]
    assert lines == [
        "Warning: PAPI_SANDBOX_SCHEDULR is set but is no setting of this service; it is"
        " ignored (did you mean PAPI_SANDBOX_SCHEDULER?)"
    ]


@pytest.mark.parametrize(
    "command", [["verify"], ["jobs", "run", "interest"], ["keys", "rotate-encryption-key"]]
)
def test_commands_on_a_ledger_never_make_one_nor_show_a_password(
    tmp_path: Path, command: list[str]
) -> None:
    """``verify``, ``jobs run`` and the key rotation work on a ledger already there: a missing
    SQLite file, an empty PostgreSQL database and an unreachable server each end the command
    in one line, exit 2, the server's reason given and never the URL's password (``jobs run``
    said "No database at postgresql://user:password@..." for a refused connection, and made
    the ledger's tables in an empty database)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret-key").write_text("0" * 64 + "\n")

    def run(db: str) -> subprocess.CompletedProcess[str]:
        args = ["--db", db, "--data-dir", str(tmp_path / "data")]
        return _command(*command, *args, cwd=tmp_path)

    missing = run(f"sqlite:///{tmp_path / 'typo.db'}")
    assert (missing.returncode, missing.stderr) == (
        2,
        f"No ledger at {tmp_path / 'typo.db'} (`papi-sandbox db upgrade` makes one)\n",
    )
    assert not (tmp_path / "typo.db").exists()
    refused = run(f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/x")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith("Cannot open the database: cannot connect to the PostgreSQL")
    assert "s3cret" not in refused.stderr and "Connection refused" in refused.stderr
    if not os.environ.get("PAPI_SANDBOX_TEST_POSTGRES_URL"):
        return
    from tests.support import create_test_database, drop_test_database, postgres_admin_url

    admin = postgres_admin_url()
    empty = create_test_database(admin)
    try:
        done = run(empty)
        assert (done.returncode, done.stderr) == (
            2,
            "No ledger in that PostgreSQL database (`papi-sandbox db upgrade` makes one)\n",
        )
        import psycopg

        with psycopg.connect(empty) as conn:
            tables = conn.execute(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        drop_test_database(admin, empty)


def test_every_command_names_a_variable_nothing_reads(tmp_path: Path) -> None:
    done = _command("verify", "--db", str(tmp_path / "none.db"), PAPI_SANDBOX_DATADIR="/srv")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "Warning: PAPI_SANDBOX_DATADIR is set but is no setting of this service; it is ignored"
        " (did you mean PAPI_SANDBOX_DATA_DIR?)"
    )


#: PostgreSQL URLs libpq cannot use whose error would show the password: quoted whole in a URI
#: parse error, or cut by an unescaped '@' into the host name it tries to resolve.
LEAKY_URLS = [
    "postgresql://postgres:s3cretpw@[::1/review",
    "postgresql://postgres:s3c@retpw@127.0.0.1:5432/x",
]


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_no_command_shows_a_postgresql_password(tmp_path: Path, url: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret-key").write_text("0" * 64 + "\n")
    commands = [["verify"], ["db", "upgrade"], ["jobs", "run", "interest"]]
    commands += [["keys", "rotate-encryption-key", "--data-dir", str(tmp_path / "data")]]
    for command in commands:
        done = _command(*command, "--db", url, cwd=tmp_path)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        for secret in ("s3cretpw", "s3c", "retpw"):
            assert secret not in done.stderr, (command, done.stderr)
    started = _serve(tmp_path / "data", "--db", url)
    assert started.returncode == 2 and "retpw" not in started.stderr, started.stderr
    assert "s3c" not in started.stderr
    _refused_in_one_line(started.stderr, "cannot connect to the PostgreSQL database")


def test_an_empty_or_foreign_sqlite_file_is_no_ledger(tmp_path: Path) -> None:
    """A 0-byte file was made a ledger by ``jobs run`` and the key rotation, which then wrote a
    new key over the data folder's (its own ledger would no longer start); a file that is no
    SQLite database gave a traceback."""
    data = tmp_path / "data"
    data.mkdir()
    key = "1" * 64 + "\n"
    (data / "secret-key").write_text(key)
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "garbage.db").write_bytes(b"not a database at all\n" * 10)
    commands = [["verify"], ["jobs", "run", "interest"]]
    commands += [["keys", "rotate-encryption-key", "--data-dir", str(data)]]
    for command in commands:
        for name, said in (("empty.db", "No ledger at"), ("garbage.db", "file is not a database")):
            done = _command(*command, "--db", str(tmp_path / name))
            assert done.returncode == 2, (command, name, done.stderr)
            assert len(done.stderr.splitlines()) == 1 and said in done.stderr, done.stderr
    assert (tmp_path / "empty.db").stat().st_size == 0
    assert (data / "secret-key").read_text() == key
    assert not (data / "secret-key.old").exists()


def test_the_factory_path_leaves_workers_to_its_server(tmp_path: Path) -> None:
    """``PAPI_SANDBOX_WORKERS=2`` on SQLite under ``uvicorn --factory``: the variable is not
    applied (uvicorn's own --workers is), so it is named, not refused as ``serve`` refuses it."""
    _run_factory(tmp_path, PAPI_SANDBOX_WORKERS="2")
    text = (tmp_path / "factory.log").read_text()
    assert "Cannot start" not in text
    assert "PAPI_SANDBOX_WORKERS is not applied under an ASGI server's --factory" in text
