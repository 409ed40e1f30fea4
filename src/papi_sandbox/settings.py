"""One settings object for the service, filled from CLI flags and ``PAPI_SANDBOX_*`` variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from papi_sandbox import grammar
from papi_sandbox.files import make_private_dir
from papi_sandbox.wire.limits import DEFAULT_BAN_AFTER_429S, DEFAULT_WEIGHT_LIMIT_PER_MINUTE

DATA_DIR_ENV = "PAPI_SANDBOX_DATA_DIR"
ADMIN_TOKEN_ENV = "PAPI_SANDBOX_ADMIN_TOKEN"
LIMITS_ENV = "PAPI_SANDBOX_LIMITS"
LIMITS_PREFIX_ENV = "PAPI_SANDBOX_LIMITS_PREFIX"
DEFAULT_DATA_DIR = Path(".papi-sandbox")
DB_FILE_NAME = "papi-sandbox.db"
#: Live API keys one account may hold (Binance allows 30 per account).
DEFAULT_MAX_API_KEYS_PER_ACCOUNT = 30
#: Seconds a request may take to arrive whole (headers and body) from its first byte, or from
#: the connection's opening; past it the connection is closed.
DEFAULT_REQUEST_READ_TIMEOUT_S = 10.0
#: Seconds an idle keep-alive connection stays open between requests.
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 30
#: Most open connections; past it new ones are answered 503 by the server.
DEFAULT_MAX_CONNECTIONS = 2048
ADMIN_TOKEN_FILE_NAME = "admin-token"
FORWARDED_ALLOW_IPS_ENV = "PAPI_SANDBOX_FORWARDED_ALLOW_IPS"
STORE_TIMEOUT_ENV = "PAPI_SANDBOX_STORE_TIMEOUT"
ADMIN_AUTH_FAILURES_ENV = "PAPI_SANDBOX_ADMIN_AUTH_FAILURES_PER_MINUTE"
#: Shortest operator token accepted (characters); a generated one has 43.
MIN_ADMIN_TOKEN_CHARS = 32
#: Longest a request waits for the store (a lock, a pooled connection, the writer) before it is
#: refused with 503 -1001 and nothing applied (seconds).
DEFAULT_STORE_TIMEOUT_S = 5.0
#: Failed operator authentications per client IP per calendar minute; past it every operator
#: request of that IP is refused with 429 until the minute ends.
DEFAULT_ADMIN_AUTH_FAILURES_PER_MINUTE = 10


class AdminTokenError(ValueError):
    """The operator token is unusable (too short); the message says why."""


def check_admin_token(token: str) -> str:
    """``token`` if it is long enough to resist guessing; raises AdminTokenError otherwise."""
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise AdminTokenError(
            f"the operator token has {len(token)} characters; it needs at least"
            f" {MIN_ADMIN_TOKEN_CHARS} (set {ADMIN_TOKEN_ENV} to a longer value, or delete"
            f" the {ADMIN_TOKEN_FILE_NAME} file of the data folder to have one generated)"
        )
    return token


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=default_data_dir)
    db: str | None = None  # None: a SQLite file in data_dir
    ip_weight_limit: int = DEFAULT_WEIGHT_LIMIT_PER_MINUTE  # 0 turns the limit off
    admin_token: str | None = None  # None: PAPI_SANDBOX_ADMIN_TOKEN, else the data_dir file
    config_path: Path | None = None  # the jobs' TOML file (PAPI_SANDBOX_CONFIG); None: defaults
    scheduler: bool = True  # run the scheduled jobs inside the server (PAPI_SANDBOX_SCHEDULER)
    limits: str | None = None  # redis://... shares IP weight and bans; None: in-process
    limits_prefix: str = "papi:"  # Redis key prefix: several sandboxes can share one Redis
    ip_ban_after_429s: int = DEFAULT_BAN_AFTER_429S  # 0 turns bans off
    max_api_keys_per_account: int = DEFAULT_MAX_API_KEYS_PER_ACCOUNT
    request_read_timeout_s: float = DEFAULT_REQUEST_READ_TIMEOUT_S
    keep_alive_timeout_s: int = DEFAULT_KEEP_ALIVE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_log: bool = True  # one JSON line per request (never secrets)
    durability: str = "full"  # full | normal | off (store.sqlite.DURABILITY_MODES)
    # Trusted proxies whose X-Forwarded-For names the client (wire/client_ip.py); "" = none.
    forwarded_allow_ips: str = ""
    store_timeout_s: float = DEFAULT_STORE_TIMEOUT_S
    admin_auth_failures_per_minute: int = DEFAULT_ADMIN_AUTH_FAILURES_PER_MINUTE

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.data_dir / DB_FILE_NAME).resolve()}"


def read_admin_token(data_dir: Path) -> str | None:
    """The operator token from the environment or the data folder, if either has one."""
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if token:
        return token
    path = data_dir / ADMIN_TOKEN_FILE_NAME
    if path.exists():
        return path.read_text().strip() or None
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


#: Ranges of the numeric settings, shared by the CLI's options and the environment.
PORT_RANGE = (1, 65535)
WEIGHT_LIMIT_RANGE = (0, 10**9)
BAN_AFTER_429S_RANGE = (0, 10**6)
MAX_API_KEYS_RANGE = (1, 10**4)
KEEP_ALIVE_RANGE = (1, 3600)
MAX_CONNECTIONS_RANGE = (1, 10**6)
READ_TIMEOUT_RANGE = (Decimal("0.001"), Decimal(3600))
STORE_TIMEOUT_RANGE = (Decimal("0.1"), Decimal(60))
ADMIN_AUTH_FAILURES_RANGE = (1, 10**6)


class SettingError(ValueError):
    """An environment value outside the grammar; the message names the variable."""


def env_integer(name: str, default: int, bounds: tuple[int, int]) -> int:
    """``PAPI_SANDBOX_*`` integer: ASCII digits in ``bounds`` (papi_sandbox.grammar)."""
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return grammar.parse_integer(text, low=bounds[0], high=bounds[1], what=name)
    except grammar.GrammarError as exc:
        raise SettingError(str(exc)) from None


def env_flag(name: str, default: bool) -> bool:
    """``PAPI_SANDBOX_*`` on/off value: true/1/yes or false/0/no, exactly."""
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return grammar.parse_flag(text, what=name)
    except grammar.GrammarError as exc:
        raise SettingError(str(exc)) from None


def env_seconds(name: str, default: float, bounds: tuple[Decimal, Decimal]) -> float:
    """``PAPI_SANDBOX_*`` duration in seconds: a decimal in the grammar within ``bounds``."""
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return grammar.parse_seconds(text, low=bounds[0], high=bounds[1], what=name)
    except grammar.GrammarError as exc:
        raise SettingError(str(exc)) from None


def settings_from_env() -> Settings:
    """Settings from ``PAPI_SANDBOX_*`` variables alone: what each worker process of
    ``serve --workers N`` (and ``uvicorn --factory papi_sandbox.api.app:app_from_env``) reads."""
    env = os.environ
    settings = Settings()
    settings.host = env.get("PAPI_SANDBOX_HOST", settings.host)
    settings.port = env_integer("PAPI_SANDBOX_PORT", settings.port, PORT_RANGE)
    settings.db = env.get("PAPI_SANDBOX_DB") or None
    settings.ip_weight_limit = env_integer(
        "PAPI_SANDBOX_IP_WEIGHT_LIMIT", settings.ip_weight_limit, WEIGHT_LIMIT_RANGE
    )
    settings.admin_token = env.get(ADMIN_TOKEN_ENV) or None
    settings.limits = env.get(LIMITS_ENV) or None
    settings.limits_prefix = env.get(LIMITS_PREFIX_ENV) or settings.limits_prefix
    settings.ip_ban_after_429s = env_integer(
        "PAPI_SANDBOX_BAN_AFTER_429S", settings.ip_ban_after_429s, BAN_AFTER_429S_RANGE
    )
    settings.max_api_keys_per_account = env_integer(
        "PAPI_SANDBOX_MAX_API_KEYS_PER_ACCOUNT",
        settings.max_api_keys_per_account,
        MAX_API_KEYS_RANGE,
    )
    settings.request_read_timeout_s = env_seconds(
        "PAPI_SANDBOX_REQUEST_READ_TIMEOUT", settings.request_read_timeout_s, READ_TIMEOUT_RANGE
    )
    settings.keep_alive_timeout_s = env_integer(
        "PAPI_SANDBOX_KEEP_ALIVE_TIMEOUT", settings.keep_alive_timeout_s, KEEP_ALIVE_RANGE
    )
    settings.max_connections = env_integer(
        "PAPI_SANDBOX_MAX_CONNECTIONS", settings.max_connections, MAX_CONNECTIONS_RANGE
    )
    settings.request_log = env_flag("PAPI_SANDBOX_ACCESS_LOG", True)
    data_dir = env.get(DATA_DIR_ENV)
    if data_dir:
        settings.data_dir = Path(data_dir)
    settings.durability = env.get("PAPI_SANDBOX_DURABILITY") or settings.durability
    settings.forwarded_allow_ips = env.get(FORWARDED_ALLOW_IPS_ENV, "")
    settings.store_timeout_s = env_seconds(
        STORE_TIMEOUT_ENV, settings.store_timeout_s, STORE_TIMEOUT_RANGE
    )
    settings.admin_auth_failures_per_minute = env_integer(
        ADMIN_AUTH_FAILURES_ENV, settings.admin_auth_failures_per_minute, ADMIN_AUTH_FAILURES_RANGE
    )
    config = env.get("PAPI_SANDBOX_CONFIG")
    settings.config_path = Path(config) if config else None
    settings.scheduler = env_flag("PAPI_SANDBOX_SCHEDULER", True)
    return settings
