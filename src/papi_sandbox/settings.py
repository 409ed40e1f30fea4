"""One settings object for the service, filled from CLI flags and ``PAPI_SANDBOX_*`` variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from papi_sandbox.wire.limits import DEFAULT_WEIGHT_LIMIT_PER_MINUTE

DATA_DIR_ENV = "PAPI_SANDBOX_DATA_DIR"
ADMIN_TOKEN_ENV = "PAPI_SANDBOX_ADMIN_TOKEN"
DEFAULT_DATA_DIR = Path(".papi-sandbox")
DB_FILE_NAME = "papi-sandbox.db"
ADMIN_TOKEN_FILE_NAME = "admin-token"


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
    durability: str = "full"  # full | normal | off (store.sqlite.DURABILITY_MODES)

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
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path = data_dir / ADMIN_TOKEN_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True
