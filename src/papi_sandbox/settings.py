"""The one settings spec of the service (pydantic-settings): every option declared once, with its
name, type, default, environment variable (``PAPI_SANDBOX_<NAME>``), ``serve`` flag
(``--<name>``) and help.

Three readers share it: ``papi-sandbox serve`` (its flags are generated from :class:`Settings`,
:func:`serve_options`), the environment loader of ``uvicorn --factory
papi_sandbox.api.app:app_from_env`` (and granian's ``--factory``), and each process of
``serve --workers N``, which gets the parent's settings back through the environment
(:func:`settings_to_env`). A flag wins over its variable; an unset or empty variable means the
default.

Every number, flag and duration goes through the one grammar (:mod:`papi_sandbox.grammar`), not
pydantic's own int/float/bool parsing, which accepts Unicode digits, ``1_000``, surrounding
whitespace and exponents. A refusal is :class:`SettingError`: one line naming the variable and
the flag.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AliasGenerator,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from papi_sandbox import grammar
from papi_sandbox.files import make_private_dir
from papi_sandbox.wire.limits import DEFAULT_BAN_AFTER_429S, DEFAULT_WEIGHT_LIMIT_PER_MINUTE

ENV_PREFIX = "PAPI_SANDBOX_"
ADMIN_TOKEN_ENV = "PAPI_SANDBOX_ADMIN_TOKEN"
#: The CLI's variables that are no server setting: the service URL of its operator commands and
#: the new key of ``rotate-key`` (the current key's variable is papi_sandbox.secretbox's).
CLI_URL_ENV = "PAPI_SANDBOX_URL"
#: The service's base URL the CLI's operator commands use unless told (``serve``'s defaults).
DEFAULT_URL = "http://127.0.0.1:8765"
NEW_SECRET_KEY_ENV = "PAPI_SANDBOX_NEW_SECRET_KEY"
#: Variables the project's own test suite reads (tests/support.py, tests/ui): no warning.
TEST_VARIABLE_PREFIXES = (
    "PAPI_SANDBOX_TEST_",
    "PAPI_SANDBOX_REQUIRE_BROWSER",
    "PAPI_SANDBOX_SCREENSHOTS",
)
DEFAULT_DATA_DIR = Path(".papi-sandbox")
DB_FILE_NAME = "papi-sandbox.db"
ADMIN_TOKEN_FILE_NAME = "admin-token"
#: Shortest operator token accepted (characters); a generated one has 43.
MIN_ADMIN_TOKEN_CHARS = 32
#: Longest operator token accepted (characters).
MAX_ADMIN_TOKEN_CHARS = 512
#: An operator token: visible ASCII only (no spaces, no control characters).
_TOKEN = re.compile(r"[\x21-\x7e]+", re.ASCII)
#: Most processes ``serve --workers`` starts (each holds a pool of database connections).
MAX_WORKERS = 64
#: Live API keys one account may hold (Binance allows 30 per account).
DEFAULT_MAX_API_KEYS_PER_ACCOUNT = 30
#: Seconds a request may take to arrive whole (headers and body) from its first byte, or from
#: the connection's opening; past it the connection is closed.
DEFAULT_REQUEST_READ_TIMEOUT_S = 10.0
#: Seconds an idle keep-alive connection stays open between requests.
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 30
#: Most open connections; past it new ones are answered 503 by the server.
DEFAULT_MAX_CONNECTIONS = 2048
#: Longest a request waits for the store (a lock, a pooled connection, the writer) before it is
#: refused with 503 -1001 and nothing applied (seconds).
DEFAULT_STORE_TIMEOUT_S = 5.0
#: Failed operator authentications per client IP per calendar minute; past it every operator
#: request of that IP is refused with 429 until the minute ends.
DEFAULT_ADMIN_AUTH_FAILURES_PER_MINUTE = 10


class SettingError(ValueError):
    """A setting outside its rule; the message (one line) names the variable and the flag."""


class AdminTokenError(SettingError):
    """The operator token is unusable (too short, spaces...); the message says why."""


def env_name(field: str) -> str:
    """``port`` -> ``PAPI_SANDBOX_PORT``."""
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    """``ban_after_429s`` -> ``--ban-after-429s``."""
    return "--" + field.replace("_", "-")


#: Options read from the environment only (``serve`` has no flag for them).
ENV_ONLY = frozenset({"admin_token"})


def _what(info: ValidationInfo) -> str:
    field = info.field_name or (info.context or {}).get("field") or "value"
    return env_name(field) if field in ENV_ONLY else f"{env_name(field)} ({flag_name(field)})"


def _grammar(parse: Any) -> BeforeValidator:
    """A validator that sends text through the grammar and turns its refusal into the
    field's one-line message; a Python value of the right type (a default, a caller's
    argument) goes through the same rule as its text."""

    def check(value: Any, info: ValidationInfo) -> Any:
        try:
            return parse(value, _what(info))
        except grammar.GrammarError as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(check)


def Integer(low: int, high: int) -> BeforeValidator:
    """ASCII digits within ``low..high`` (papi_sandbox.grammar.parse_integer)."""

    def parse(value: Any, what: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return grammar.parse_integer(value, low=low, high=high, what=what)

    return _grammar(parse)


def Seconds(low: str, high: str) -> BeforeValidator:
    """A duration: a decimal in the grammar (no exponent, at most 3 fractional digits)."""

    def parse(value: Any, what: str) -> float:
        if isinstance(value, float | int) and not isinstance(value, bool):
            value = format(Decimal(str(value)), "f")
        return grammar.parse_seconds(value, low=Decimal(low), high=Decimal(high), what=what)

    return _grammar(parse)


def _flag(value: Any, what: str) -> bool:
    return value if isinstance(value, bool) else grammar.parse_flag(value, what=what)


Flag = _grammar(_flag)


def _text(value: Any, what: str) -> Any:
    """Free text (a host, a URL, a prefix, a path): printable, no control characters or line
    feeds. A ``Path`` given from Python is checked by its text and kept."""
    text = str(value) if isinstance(value, Path) else value
    if not isinstance(text, str) or not text.isprintable():
        raise grammar.GrammarError(f"{what} must be printable text, not {value!r:.40}")
    return value


Text = _grammar(_text)


def _db(value: Any, what: str) -> Any:
    """A database URL: printable text naming a store (papi_sandbox.store.check_url)."""
    from papi_sandbox.store import check_url

    try:
        return check_url(_text(value, what))
    except ValueError as exc:
        raise grammar.GrammarError(f"{what}: {exc}") from None


DbUrl = _grammar(_db)


def _redis(value: Any, what: str) -> Any:
    """A Redis URL redis-py can use (``redis://``, ``rediss://`` or ``unix://`` with a socket
    path, a numeric port, a database index of 0 or more, options it knows): refused here, in one
    line, rather than when the limiter first connects. Nothing connects; an index past the
    server's databases is the server's to refuse (then ``/readyz`` names the limiter)."""
    from redis import RedisError
    from redis.asyncio import ConnectionPool, UnixDomainSocketConnection

    try:
        pool = ConnectionPool.from_url(_text(value, what))
        pool.make_connection()  # type: ignore[no-untyped-call]  # its checks (protocol, TLS)
    except (ValueError, TypeError, RedisError) as exc:  # words that name a part, not a password
        raise grammar.GrammarError(f"{what}: {exc}") from None
    options = pool.connection_kwargs
    if pool.connection_class is UnixDomainSocketConnection and not options.get("path"):
        raise grammar.GrammarError(f"{what}: a unix:// URL needs the socket's path")
    if int(options.get("db") or 0) < 0:
        raise grammar.GrammarError(f"{what}: the database index must be 0 or more")
    return value


RedisUrl = _grammar(_redis)


def Choice(*options: str) -> BeforeValidator:
    """Exactly one of ``options`` (papi_sandbox.grammar.parse_enum)."""
    return _grammar(lambda value, what: grammar.parse_enum(value, options, what=what))


#: ``--durability``'s values (what each does: the field's description).
Durability = Literal["full", "normal", "off"]


def _token(value: Any, what: str) -> str:
    return check_admin_token(value, what=what)


class Settings(BaseSettings):
    """Every option of the service. Build it with keyword arguments (flags; they win) over
    ``PAPI_SANDBOX_*`` variables; :func:`load` turns a refusal into :class:`SettingError`."""

    model_config = SettingsConfigDict(
        # Each option's variable is exactly PAPI_SANDBOX_<NAME> (upper case), and keyword
        # arguments use the option's name.
        alias_generator=AliasGenerator(validation_alias=lambda field: env_name(field)),
        validate_by_name=True,
        validate_by_alias=True,
        case_sensitive=True,
        env_ignore_empty=True,  # PAPI_SANDBOX_X= means the default, as if unset
        extra="forbid",
        validate_default=False,
    )

    host: Annotated[str, Text] = Field("127.0.0.1", description="Address to listen on.")
    port: Annotated[int, Integer(1, 65535)] = Field(8765, description="Port to listen on.")
    db: Annotated[str | None, DbUrl] = Field(
        None,
        description="sqlite:///path/to/file.db (default: in --data-dir) or postgresql://...",
    )
    data_dir: Annotated[Path, Text] = Field(
        DEFAULT_DATA_DIR,
        description="Folder for the default SQLite file, the operator token and the key file.",
    )
    ip_weight_limit: Annotated[int, Integer(0, 10**9)] = Field(
        DEFAULT_WEIGHT_LIMIT_PER_MINUTE, description="Weight per IP per minute; 0 = off."
    )
    ban_after_429s: Annotated[int, Integer(0, 10**6)] = Field(
        DEFAULT_BAN_AFTER_429S,
        description="429s per IP per minute before the IP is banned (418); 0 = never ban.",
    )
    max_api_keys_per_account: Annotated[int, Integer(1, 10**4)] = Field(
        DEFAULT_MAX_API_KEYS_PER_ACCOUNT, description="Live API keys one account may hold."
    )
    request_read_timeout: Annotated[float, Seconds("0.001", "3600")] = Field(
        DEFAULT_REQUEST_READ_TIMEOUT_S,
        description="Seconds a request may take to arrive whole; then its connection is closed.",
    )
    keep_alive_timeout: Annotated[int, Integer(1, 3600)] = Field(
        DEFAULT_KEEP_ALIVE_TIMEOUT_S, description="Seconds an idle keep-alive connection stays."
    )
    max_connections: Annotated[int, Integer(1, 10**6)] = Field(
        DEFAULT_MAX_CONNECTIONS, description="Most open connections; past it new ones get 503."
    )
    store_timeout: Annotated[float, Seconds("0.1", "60")] = Field(
        DEFAULT_STORE_TIMEOUT_S,
        description="Seconds a request may wait for the store before it is refused (503 -1001).",
    )
    admin_auth_failures_per_minute: Annotated[int, Integer(1, 10**6)] = Field(
        DEFAULT_ADMIN_AUTH_FAILURES_PER_MINUTE,
        description="Failed operator authentications per IP per minute before that IP is"
        " refused (429) until the minute ends.",
    )
    workers: Annotated[int, Integer(1, MAX_WORKERS)] = Field(
        1, description="Server processes on this port (more than 1 needs --db postgresql://...)."
    )
    access_log: Annotated[bool, Flag] = Field(
        True, description="One JSON log line per request (never the query string or any secret)."
    )
    scheduler: Annotated[bool, Flag] = Field(
        True, description="Run auto-repay, interest and funding at their times (docs/jobs.md)."
    )
    demo: Annotated[bool, Flag] = Field(
        False,
        description="Create a demo account with negative futures wallets and print how to call"
        " it (one worker only).",
    )
    config: Annotated[Path | None, Text] = Field(
        None,
        description="TOML file: the jobs' times, thresholds and rates (docs/jobs.md); the UM"
        " market's symbols, prices and price feed ([market], docs/semantics.md).",
    )
    limits: Annotated[str | None, RedisUrl] = Field(
        None,
        description="redis://... to share IP weight and bans across processes (default:"
        " in-process).",
    )
    limits_prefix: Annotated[str, Text] = Field(
        "papi:", description="Key prefix in that Redis (several sandboxes can share one)."
    )
    durability: Annotated[Durability, Choice(*get_args(Durability))] = Field(
        "full",
        description="full: fsync every commit before answering (group commit); normal: no"
        " fsync per commit (a power loss may lose the last changes); off: never fsync.",
    )
    forwarded_allow_ips: Annotated[str, Text] = Field(
        "",
        description="Proxies (comma-separated IPs or CIDR ranges, or *) whose X-Forwarded-For"
        " names the client; default none: the client is the TCP peer.",
    )
    admin_token: Annotated[str | None, _grammar(_token)] = Field(
        None,
        description="Operator token (at least 32 visible ASCII characters); default: the data"
        " folder's admin-token file, generated at first start.",
    )

    @property
    def db_url(self) -> str:
        """The ledger's URL: ``db``, else the SQLite file in ``data_dir``."""
        return database_url(self.db, self.data_dir)


def serve_fields() -> dict[str, Any]:
    """Field name -> pydantic FieldInfo of every option ``serve`` shows as a flag."""
    return {name: info for name, info in Settings.model_fields.items() if name not in ENV_ONLY}


def _one_line(exc: ValidationError) -> str:
    """A ValidationError as one line: each refused setting with the grammar's words."""
    parts = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        field = str(error["loc"][0]) if error["loc"] else ""
        field = field.removeprefix(ENV_PREFIX).lower() if field.startswith(ENV_PREFIX) else field
        if cause is not None:
            parts.append(str(cause))
        elif field in Settings.model_fields:
            parts.append(f"{env_name(field)} ({flag_name(field)}): {error['msg']}")
        else:
            parts.append(str(error["msg"]))
    return "; ".join(parts).replace("\n", " ")


def load(**given: Any) -> Settings:
    """Settings from ``given`` (flags; None means not given) over ``PAPI_SANDBOX_*`` variables.
    An empty value is as if not given, flag or variable: ``--host ""`` is the variable's host,
    else 127.0.0.1, never every interface. Raises SettingError with one line naming what is
    wrong."""
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None and v != ""})
    except ValidationError as exc:
        raise SettingError(_one_line(exc)) from None


def parse_option(name: str, text: str) -> Any:
    """One option's value from ``text`` by the spec's rule for it, as the other commands take
    ``--db``, ``--data-dir`` and ``--config``. An empty ``text`` is as if not given, as for
    ``serve`` (:func:`load`): the option's variable, else its default. Raises SettingError (one
    line naming the variable and flag)."""
    info = Settings.model_fields[name]
    if text == "":
        variable = os.environ.get(env_name(name))
        return parse_option(name, variable) if variable else info.default
    rule: Any = Annotated[info.annotation, *info.metadata]  # the field's type and validators
    adapter: TypeAdapter[Any] = TypeAdapter(rule)
    try:
        return adapter.validate_python(text, context={"field": name})
    except ValidationError as exc:
        raise SettingError(_one_line(exc)) from None


def settings_from_env() -> Settings:
    """Settings from ``PAPI_SANDBOX_*`` variables alone: what ``uvicorn --factory
    papi_sandbox.api.app:app_from_env`` and each process of ``serve --workers N`` read.
    Raises SettingError."""
    return load()


#: The options ``serve`` gives the HTTP server it runs, not the app, each with the uvicorn flag
#: that decides it instead under an ASGI server's ``--factory`` (docs/scaling.md).
SERVER_OPTIONS = {
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "keep_alive_timeout": "--timeout-keep-alive",
    "max_connections": "--limit-concurrency",
    "request_read_timeout": "--http papi_sandbox.transport:GuardedFromEnv",
}


def server_option_warnings(environ: Mapping[str, str], *, read_deadline_applied: bool) -> list[str]:
    """Under an ASGI server's ``--factory`` (not ``serve``): one warning line for each option of
    SERVER_OPTIONS set in ``environ``, which that server's own flag decides, not the app; the
    read deadline's is left out when the server runs ``GuardedFromEnv``
    (``read_deadline_applied``), which reads it."""
    lines = []
    for name, flag in SERVER_OPTIONS.items():
        if not environ.get(env_name(name)):
            continue
        if name == "request_read_timeout" and read_deadline_applied:
            continue
        lines.append(
            f"{env_name(name)} is not applied under an ASGI server's --factory: that server's"
            f" own option decides it (uvicorn: {flag})"
        )
    return lines


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning line for each ``PAPI_SANDBOX_*`` variable set in ``environ`` that nothing
    reads (a misspelt setting, ``PAPI_SANDBOX_PROT=9000``, would otherwise be ignored in
    silence), naming the closest setting's variable when one is close; sorted, empty when every
    variable is known. Known: each setting's variable, the encryption key's, the CLI's
    (CLI_URL_ENV, NEW_SECRET_KEY_ENV) and the test suite's (TEST_VARIABLE_PREFIXES). A choice
    of the sandbox (docs/operations.md): warned, not refused, so that a variable meant for a
    newer version does not stop an older one."""
    from papi_sandbox.secretbox import SECRET_KEY_ENV

    known = [env_name(name) for name in Settings.model_fields]
    known += [SECRET_KEY_ENV, CLI_URL_ENV, NEW_SECRET_KEY_ENV]
    # Compared without the prefix every name shares, which would make any name look close.
    suffixes = {name.removeprefix(ENV_PREFIX): name for name in known}
    lines = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        if name.startswith(TEST_VARIABLE_PREFIXES):
            continue
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, 1, 0.6)
        hint = f" (did you mean {suffixes[close[0]]}?)" if close else ""
        lines.append(f"{name} is set but is no setting of this service; it is ignored{hint}")
    return lines


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The variables that give :func:`settings_from_env` back ``settings`` (for the processes
    of ``serve --workers N``); the operator token is left to the data folder or its variable."""
    env: dict[str, str] = {}
    for name in serve_fields():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = format(Decimal(str(value)), "f")
        else:
            text = str(value)
        env[env_name(name)] = text
    return env


def database_url(db: str | None, data_dir: Path) -> str:
    """``db``, else the SQLite file of ``data_dir`` as a ``sqlite:///`` URL."""
    return db or f"sqlite:///{(data_dir / DB_FILE_NAME).resolve()}"


def check_admin_token(token: object, *, what: str = ADMIN_TOKEN_ENV) -> str:
    """``token`` if it can serve as the operator token: 32 to 512 visible ASCII characters (no
    spaces: a padded or blank value is refused, not trimmed). Raises AdminTokenError."""
    if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
        raise AdminTokenError(
            f"{what}: the operator token must be visible ASCII characters only (no spaces or"
            f" control characters)"
        )
    if not MIN_ADMIN_TOKEN_CHARS <= len(token) <= MAX_ADMIN_TOKEN_CHARS:
        raise AdminTokenError(
            f"the operator token has {len(token)} characters; it needs at least"
            f" {MIN_ADMIN_TOKEN_CHARS} and at most {MAX_ADMIN_TOKEN_CHARS} (set"
            f" {ADMIN_TOKEN_ENV} to another value, or delete the {ADMIN_TOKEN_FILE_NAME} file"
            " of the data folder to have one generated)"
        )
    return token


def read_admin_token(data_dir: Path) -> str | None:
    """The operator token from the environment or the data folder, if either has one (the
    file's final line feed is not part of it)."""
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if token:
        return token
    path = data_dir / ADMIN_TOKEN_FILE_NAME
    if path.exists():
        text = path.read_text()
        return text.removesuffix("\n") or None
    return None


def ensure_admin_token(data_dir: Path) -> tuple[str, bool]:
    """The operator token, generating and storing one (mode 0600) at first start.

    Returns ``(token, generated)``; a generated token is printed once by the caller.
    """
    token = read_admin_token(data_dir)
    if token:
        return token, False
    make_private_dir(data_dir, narrow=True)
    token = secrets.token_urlsafe(32)
    path = data_dir / ADMIN_TOKEN_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True
