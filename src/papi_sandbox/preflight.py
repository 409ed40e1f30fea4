"""What every server process checks before it serves, whichever way it was started
(``papi-sandbox serve``, ``serve --workers N``, ``uvicorn --factory
papi_sandbox.api.app:app_from_env``): the settings read through the one spec
(:mod:`papi_sandbox.settings`), the jobs' TOML file, the trusted proxies, the operator token, the
data folder, the encryption key and the SQLite file. A refusal is :class:`CannotStart`, one line
naming what is wrong, shown without a traceback."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from papi_sandbox.files import make_private_dir
from papi_sandbox.jobs.config import ConfigError, JobsConfig, load_config
from papi_sandbox.secretbox import SecretBoxError, load_or_create_key
from papi_sandbox.settings import (
    ADMIN_TOKEN_FILE_NAME,
    SettingError,
    Settings,
    check_admin_token,
    ensure_admin_token,
    load,
    unknown_variables,
)
from papi_sandbox.store import is_postgres_url
from papi_sandbox.store.base import StoreDamaged, StoreUnavailable
from papi_sandbox.wire.client_ip import ClientIdentity, ForwardedAllowIpsError


class CannotStart(Exception):
    """The process must not serve; the message is one line saying why."""


@dataclass(frozen=True, slots=True)
class Startup:
    """What the checks produced: the settings, the jobs' configuration, the operator token
    and whether it was generated just now (then printed once by ``serve``), and the warnings
    to print before serving (``PAPI_SANDBOX_*`` variables nothing reads)."""

    settings: Settings
    jobs: JobsConfig
    token: str
    token_generated: bool
    warnings: tuple[str, ...] = ()


def os_error_text(exc: OSError) -> str:
    """An OSError as one line naming the path it is about."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def read_settings(**flags: object) -> Settings:
    """Settings from ``flags`` (None: not given) over ``PAPI_SANDBOX_*``; raises CannotStart."""
    try:
        return load(**flags)
    except SettingError as exc:
        raise CannotStart(str(exc)) from None


def check_options(settings: Settings) -> JobsConfig:
    """The jobs' configuration, after the options that only make sense together; raises
    CannotStart for a bad TOML file, bad trusted proxies, several SQLite workers or a demo
    with several workers."""
    try:
        jobs = load_config(settings.config)
    except ConfigError as exc:
        raise CannotStart(f"Bad configuration: {exc}") from None
    try:
        ClientIdentity(settings.forwarded_allow_ips)
    except ForwardedAllowIpsError as exc:
        raise CannotStart(f"bad --forwarded-allow-ips: {exc}") from None
    if settings.workers > 1 and not is_postgres_url(settings.db_url):
        raise CannotStart(
            "--workers > 1 needs --db postgresql://...: the SQLite store has one writer thread"
            " in one process."
        )
    if settings.workers > 1 and settings.demo:
        raise CannotStart("--demo runs with one worker only.")
    return jobs


def operator_token(settings: Settings) -> tuple[str, bool]:
    """The operator token (generated into the data folder at first start) and whether it was
    generated; raises CannotStart when the folder cannot be written or the token is unusable."""
    try:
        make_private_dir(settings.data_dir, narrow=True)
        token, generated = settings.admin_token or None, False
        if token is None:
            token, generated = ensure_admin_token(settings.data_dir)
        where = (
            f"the {ADMIN_TOKEN_FILE_NAME} file of {settings.data_dir}"
            if settings.admin_token is None
            else "PAPI_SANDBOX_ADMIN_TOKEN"
        )
        return check_admin_token(token, what=where), generated
    except OSError as exc:  # e.g. a read-only file system: said with the path
        raise CannotStart(os_error_text(exc)) from None
    except SettingError as exc:
        raise CannotStart(f"{exc}.") from None


def check_storage(settings: Settings) -> None:
    """Refuse what would make the service fail later: a damaged SQLite file, a database or data
    folder that cannot be written (a read-only file system), an encryption key file that cannot
    be created. Raises CannotStart."""
    from papi_sandbox.store.sqlite import check_before_start, path_from_url

    try:
        load_or_create_key(settings.data_dir)
        if is_postgres_url(settings.db_url):
            _check_postgres(settings.db_url, settings.store_timeout)
        else:
            path = path_from_url(settings.db_url)
            try:
                check_before_start(path, durability=settings.durability)
            except sqlite3.Error as exc:
                raise StoreDamaged(f"{path}: {exc}") from None
    except StoreDamaged as exc:
        raise CannotStart(str(exc)) from None
    except OSError as exc:
        raise CannotStart(os_error_text(exc)) from None
    except SecretBoxError as exc:
        raise CannotStart(str(exc)) from None


def _check_postgres(url: str, timeout_s: float) -> None:
    """One connection to the PostgreSQL database, so that a wrong host, database or role stops
    the start with the server's reason (never the URL: it may hold a password). Raises
    CannotStart."""
    from papi_sandbox.store.postgres import connect_checked

    try:
        connect_checked(url, timeout_s).close()
    except StoreUnavailable as exc:
        raise CannotStart(str(exc)) from None


def prepare(settings: Settings) -> Startup:
    """Every check above, in order; raises CannotStart."""
    jobs = check_options(settings)
    token, generated = operator_token(settings)
    check_storage(settings)
    return Startup(settings, jobs, token, generated, tuple(unknown_variables(os.environ)))
