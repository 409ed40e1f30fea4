"""The ``papi-sandbox`` command: serve, verify, and the operator's account commands.

The account commands talk to a running server's operator API (``--url``), so they work the same
against a local SQLite service or a remote one.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from papi_sandbox import grammar
from papi_sandbox import settings as settings_mod
from papi_sandbox.client import AdminClient, AdminError
from papi_sandbox.ledger.model import ADJUSTABLE_WALLETS, ADJUSTMENT_REASONS
from papi_sandbox.progress import Progress, progress_for
from papi_sandbox.settings import Settings

if TYPE_CHECKING:
    from papi_sandbox.preflight import Startup
    from papi_sandbox.store.contract import Store

app = typer.Typer(help="A self-hosted Binance Portfolio Margin API sandbox.", no_args_is_help=True)
account_app = typer.Typer(help="Operator commands on accounts (through the operator API).")
app.add_typer(account_app, name="account")
db_app = typer.Typer(help="Database schema commands.")
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="Keys at rest: the encryption key of the stored HMAC secrets.")
app.add_typer(keys_app, name="keys")
# Piped output keeps full rows instead of folding tables to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)
err_console = Console(stderr=True)


@app.callback()
def _every_command(ctx: typer.Context) -> None:
    # A PAPI_SANDBOX_* variable nothing reads is named, whatever the command (serve names them
    # after its checks, as every server process does: papi_sandbox.preflight).
    if ctx.invoked_subcommand != "serve":
        for warning in settings_mod.unknown_variables(os.environ):
            err_console.print(Text(f"Warning: {warning}", style="yellow"), soft_wrap=True)


# -- every argument, option and environment value through the one grammar (papi_sandbox.grammar)


def _integer(bounds: tuple[int, int], what: str) -> Callable[[Any], int]:
    """A typer ``parser``: ASCII digits within ``bounds`` (typer's own int() conversion would take
    ' +1_0' or Arabic-Indic digits)."""

    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):  # the declared default
            return value
        try:
            return grammar.parse_integer(value, low=bounds[0], high=bounds[1], what=what)
        except grammar.GrammarError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parse


def _signed_amount(text: Any, *, what: str) -> str:
    grammar.parse_decimal(text, signed=True, what=what)
    return str(text)


_ENUMS = {
    "wallet": tuple(w.value for w in ADJUSTABLE_WALLETS),
    "reason": tuple(r.value for r in ADJUSTMENT_REASONS),
}


def _text(rule: Callable[..., Any], what: str) -> Callable[[Any], str]:
    """A typer ``parser`` that checks text against one grammar rule and keeps the text (the
    server checks it again: the CLI only refuses earlier, with the same words)."""

    def parse(value: Any) -> str:
        try:
            if what in _ENUMS:
                rule(value, _ENUMS[what], what=what)
            else:
                rule(value, what=what)
        except grammar.GrammarError as exc:
            raise typer.BadParameter(str(exc)) from None
        return str(value)

    return parse


#: The largest account id the operator API takes (papi_sandbox.admin.api.MAX_ACCOUNT_ID).
_ACCOUNT_ID = (1, 10**18 - 1)
AccountId = Annotated[int, typer.Argument(parser=_integer(_ACCOUNT_ID, "account id"))]


def _help(text: str | None) -> str | None:
    """A spec's help text for --help, shown as written (``[market]`` is not console markup)."""
    from rich.markup import escape

    return None if text is None else escape(text)


def _spec_option(name: str) -> Any:
    """A typer option of another command for one option of the settings spec: the same
    variable, help and rule as ``serve``'s flag (an empty value is as if not given)."""
    info = Settings.model_fields[name]

    def parse(text: str) -> Any:
        try:
            return settings_mod.parse_option(name, text)
        except settings_mod.SettingError as exc:  # one line, as serve's refusal of it
            _error(str(exc))
            raise typer.Exit(2) from None

    return typer.Option(
        envvar=settings_mod.env_name(name), help=_help(info.description), parser=parse
    )


DataDir = Annotated[Path, _spec_option("data_dir")]
Db = Annotated[str | None, _spec_option("db")]


ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Show progress on stderr (default: only when stderr is a terminal).",
        show_default=False,
    ),
]
ConfigOpt = Annotated[Path | None, _spec_option("config")]


def _load_jobs_config(path: Path | None) -> Any:
    from papi_sandbox.jobs.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        _error(f"Bad configuration: {exc}")
        raise typer.Exit(2) from None


def open_store(db_url: str, durability: str = "full", timeout_s: float | None = None) -> Store:
    """The store for ``db_url``; a URL of no store ends the command (one line, exit 2)."""
    from papi_sandbox.store import open_store as store_for_url

    try:
        return store_for_url(db_url, durability=durability, timeout_s=timeout_s)
    except ValueError as exc:
        _error(f"Cannot open the database: {exc}")
        raise typer.Exit(2) from None


def existing_store(db_url: str) -> Store:
    """:func:`open_store` for a command that works on a ledger already there (``verify``,
    ``jobs run``, ``keys rotate-encryption-key``): never creates an empty one. A missing or
    empty SQLite file, a PostgreSQL database without the ledger's tables or one that cannot be
    reached ends the command (one line, exit 2; never a PostgreSQL URL, which may hold a
    password)."""
    from papi_sandbox.store import is_postgres_url
    from papi_sandbox.store.base import StoreUnavailable
    from papi_sandbox.store.sqlite import path_from_url

    store = open_store(db_url)
    try:
        exists = store.exists_sync()
    except StoreUnavailable as exc:
        _error(f"Cannot open the database: {exc}")
        raise typer.Exit(2) from None
    if not exists:
        postgres = is_postgres_url(db_url)
        where = "in that PostgreSQL database" if postgres else f"at {path_from_url(db_url)}"
        _error(f"No ledger {where} (`papi-sandbox db upgrade` makes one)")
        raise typer.Exit(2)
    return store


def _database_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the database's (StoreUnavailable, sqlite3's or psycopg's errors): a
    command then ends with one line, exit 2, not a traceback."""
    import sqlite3

    from papi_sandbox.store.base import StoreUnavailable

    kinds: list[type[BaseException]] = [sqlite3.Error, StoreUnavailable]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        kinds.append(psycopg.Error)
    return isinstance(exc, tuple(kinds))


def _one_line(exc: BaseException, db_url: str) -> str:
    """An error of the database at ``db_url`` as one line: its type and message, line feeds
    folded, the URL and its password left out (papi_sandbox.store.base.redact)."""
    from papi_sandbox.store.base import redact

    return " ".join(redact(f"{type(exc).__name__}: {exc}", db_url).split())


_METAVARS = {int: "INTEGER", float: "SECONDS", Path: "PATH"}


def _serve_option(name: str, info: Any) -> inspect.Parameter:
    """One ``serve`` flag, generated from the settings spec (papi_sandbox.settings.Settings):
    its text goes to the spec unparsed, so the flag and its variable share one rule."""
    env = settings_mod.env_name(name)
    flag = settings_mod.flag_name(name)
    default = info.default if info.default not in (None, "") else "none"
    help_text = _help(f"{info.description} (env {env}; default {default})")
    if info.annotation is bool:
        option = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False)
        annotation: Any = Annotated[bool | None, option]
    else:
        metavar = _METAVARS.get(info.annotation, "TEXT")
        option = typer.Option(flag, help=help_text, show_default=False, metavar=metavar)
        annotation = Annotated[str | None, option]
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def _error(message: str) -> None:
    """A refusal on stderr: one red line, never folded to the terminal's width, and its text
    shown as it is (a path, a value or a server's message holding ``[/]`` is not markup)."""
    err_console.print(Text(message, style="red"), soft_wrap=True)


def _cannot_start(message: str) -> NoReturn:
    """One line on stderr (never folded to the terminal's width), exit 2."""
    _error(f"Cannot start: {message}")
    raise typer.Exit(2)


def serve(**flags: Any) -> None:
    """Run the service. Every option also reads its PAPI_SANDBOX_* variable (a flag wins)."""
    from papi_sandbox.observability import configure_logging
    from papi_sandbox.preflight import CannotStart, prepare, read_settings

    try:
        startup = prepare(read_settings(**flags))
    except CannotStart as exc:
        _cannot_start(str(exc))
    settings = startup.settings
    log_config = configure_logging()
    for warning in startup.warnings:
        err_console.print(Text(f"Warning: {warning}", style="yellow"), soft_wrap=True)
    if startup.token_generated:
        token_file = settings.data_dir / settings_mod.ADMIN_TOKEN_FILE_NAME
        console.print(
            f"Operator token (printed once, kept in {token_file}): [bold]{startup.token}[/bold]"
        )
    if settings.workers > 1:
        _serve_workers(settings, log_config)
    else:
        _serve_one(startup, log_config)


_serve_parameters = [_serve_option(n, i) for n, i in settings_mod.serve_fields().items()]
serve.__signature__ = inspect.Signature(_serve_parameters, return_annotation=None)  # type: ignore[attr-defined]
serve.__annotations__ = {p.name: p.annotation for p in _serve_parameters} | {"return": None}
app.command()(serve)


def _serve_one(startup: Startup, log_config: Any) -> None:
    """One server process with the app built here (the demo account announced once ready)."""
    from papi_sandbox.api.app import create_app
    from papi_sandbox.demo import announce_demo

    settings = startup.settings
    store = open_store(settings.db_url, settings.durability, settings.store_timeout)

    async def on_ready(state: Any) -> None:
        if settings.demo:
            await announce_demo(state, console)

    application = create_app(settings, store, startup.token, on_ready=on_ready, jobs=startup.jobs)
    _run_server(application, settings, log_config)


def _run_server(application: Any, settings: Settings, log_config: Any) -> None:
    """The server launch: ``application`` on ``settings.host:port`` with the server stack of
    ``transport.server_options``, until Ctrl-C or SIGTERM."""
    import uvicorn

    from papi_sandbox.transport import server_options

    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_config=log_config,
        **server_options(
            read_timeout_s=settings.request_read_timeout,
            keep_alive_timeout_s=settings.keep_alive_timeout,
            max_connections=settings.max_connections,
        ),
    )


def _serve_workers(settings: Settings, log_config: Any) -> None:
    """N processes on one port: uvicorn's supervisor re-imports the app in each from the
    environment (papi_sandbox.api.app:app_for_workers), so the settings travel as
    variables."""
    import os

    import uvicorn

    from papi_sandbox.secretbox import load_or_create_key
    from papi_sandbox.store import upgrade
    from papi_sandbox.stream.ws import websocket_server_options

    upgrade(settings.db_url)  # once, before the workers race to do it
    load_or_create_key(settings.data_dir)  # likewise the encryption key they must all share
    os.environ.update(
        settings_mod.settings_to_env(settings.model_copy(update={"db": settings.db_url}))
    )
    uvicorn.run(
        "papi_sandbox.api.app:app_for_workers",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # An import string: each worker process builds the protocol from the environment.
        http="papi_sandbox.transport:GuardedFromEnv",
        log_config=log_config,
        access_log=False,  # uvicorn's line holds the signature; ours replaces it
        proxy_headers=False,  # who the client is: wire/client_ip.py (--forwarded-allow-ips)
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=5,
        **websocket_server_options(),
    )


@db_app.command("upgrade")
def db_upgrade(
    db: Db = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
    progress: ProgressOpt = None,
) -> None:
    """Apply pending schema migrations (the service also applies them when it starts)."""
    from papi_sandbox.store import upgrade

    db_url = settings_mod.database_url(db, data_dir)
    try:
        with progress_for(progress) as shown:
            before, after = upgrade(db_url, shown)
    except Exception as exc:  # shown, not a traceback: a wrong URL is the usual cause
        _error(f"Cannot upgrade the database: {_one_line(exc, db_url)}")
        raise typer.Exit(2) from None
    if before == after:
        console.print(f"schema is at version {after}; nothing to do")
    else:
        console.print(f"schema upgraded from version {before} to {after}")


@app.command()
def verify(
    db: Db = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
    progress: ProgressOpt = None,
) -> None:
    """Replay the journal; check balances equal it and every asset sums to zero."""
    db_url = settings_mod.database_url(db, data_dir)
    store = existing_store(db_url)
    try:
        with progress_for(progress) as shown:
            report = store.verify_sync(shown)
    except Exception as exc:  # e.g. a damaged file or a lost connection: one line, exit 2
        _error(f"Cannot read the database: {_one_line(exc, db_url)}")
        raise typer.Exit(2) from None
    console.print(
        f"checked {report.entries} entries, {report.postings} postings, {report.balances} stored"
        f" balances, {report.accounts} accounts, {report.assets} assets"
    )
    for note in report.notes:
        console.print(Text.assemble(("NOTE", "yellow"), " ", note))
    for damage in report.damage:
        console.print(Text.assemble(("DAMAGE", "red"), " ", damage))
    for problem in report.problems:
        console.print(Text.assemble(("MISMATCH", "red"), " ", problem))
    if report.ok:
        console.print(
            "[green]OK[/green]: the database passes its integrity checks; every balance equals"
            " the journal replay; every entry and every asset sums to zero"
        )
    else:
        console.print(
            f"[red]FAILED[/red]: {len(report.damage)} physical problem(s) (DAMAGE),"
            f" {len(report.problems)} ledger mismatch(es) (MISMATCH)"
        )
        raise typer.Exit(1)


# -- operator commands -------------------------------------------------------------------------

Url = Annotated[str, typer.Option(envvar=settings_mod.CLI_URL_ENV, help="The service's base URL.")]
Token = Annotated[
    str | None,
    typer.Option(
        envvar=settings_mod.ADMIN_TOKEN_ENV, help="Operator token (default: data folder)."
    ),
]
DEFAULT_URL = settings_mod.DEFAULT_URL


@contextmanager
def _admin(url: str, token: str | None, data_dir: Path) -> Iterator[AdminClient]:
    """The operator client; a refusal or an unreachable service ends the command (exit 1, 2)."""
    token = token or settings_mod.read_admin_token(data_dir)
    if not token:
        _error("No operator token: set PAPI_SANDBOX_ADMIN_TOKEN or --token.")
        raise typer.Exit(2)
    try:
        with AdminClient(url, token) as client:
            yield client
    except httpx.HTTPError as exc:
        _error(f"Cannot reach the service: {exc}")
        raise typer.Exit(2) from None
    except AdminError as exc:
        _error(f"{exc.status} {exc.code}: {exc.msg}")
        raise typer.Exit(1) from None


@account_app.command("create")
def account_create(
    label: Annotated[str | None, typer.Option()] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Create an account with an HMAC key; the secret is shown this once."""
    with _admin(url, token, data_dir) as client:
        account = client.create_account(label)
    console.print(f"accountId: {account.account_id}")
    console.print(f"apiKey:    {account.api_key}")
    console.print(f"secretKey: {account.secret}  (shown once)")


@account_app.command("adjust")
def account_adjust(
    account_id: AccountId,
    wallet: Annotated[
        str, typer.Option(help="MARGIN, UM or CM", parser=_text(grammar.parse_enum, "wallet"))
    ],
    asset: Annotated[str, typer.Option(parser=_text(grammar.parse_asset, "asset"))],
    amount: Annotated[
        str,
        typer.Option(help="signed decimal, e.g. -250.5", parser=_text(_signed_amount, "amount")),
    ],
    reason: Annotated[
        str,
        typer.Option(
            help="DEPOSIT, WITHDRAW, REALIZED_PNL, FUNDING_FEE or COMMISSION",
            parser=_text(grammar.parse_enum, "reason"),
        ),
    ],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Change one balance the way trading would (one journal entry)."""
    with _admin(url, token, data_dir) as client:
        data = client.adjust(account_id, wallet, asset, amount, reason)
    console.print(f"tranId: {data['tranId']}")
    _print_balances([data["balance"]])


@account_app.command("show")
def account_show(
    account_id: AccountId,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """The account's balances as a table."""
    with _admin(url, token, data_dir) as client:
        rows = client.balances(account_id)
    _print_balances(rows)


@account_app.command("journal")
def account_journal(
    account_id: AccountId,
    limit: Annotated[int, typer.Option(parser=_integer((1, 1000), "limit"))] = 50,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """The account's journal entries, newest first."""
    with _admin(url, token, data_dir) as client:
        entries = client.journal(account_id, limit)
    table = Table("tranId", "type", "time", "account", "wallet", "asset", "amount")
    for entry in entries:
        for i, p in enumerate(entry["postings"]):
            head = (
                (str(entry["tranId"]), entry["type"], str(entry["time"])) if i == 0 else ("",) * 3
            )
            table.add_row(*head, str(p["accountId"]), p["wallet"], p["asset"], p["amount"])
    console.print(table)


def _print_balances(rows: list[dict[str, Any]]) -> None:
    columns = (
        "asset",
        "crossMarginFree",
        "crossMarginLocked",
        "umWalletBalance",
        "cmWalletBalance",
        "totalWalletBalance",
        "negativeBalance",
    )
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)


# -- the UM market and accounts' positions (through the operator API) --------------------------

market_app = typer.Typer(help="The UM market: prices and funding rates (through the operator API).")
app.add_typer(market_app, name="market")

_MARKET_COLUMNS = ("symbol", "markPrice", "indexPrice", "fundingRate", "nextFundingTime")


def _print_markets(rows: list[dict[str, Any]]) -> None:
    table = Table(*_MARKET_COLUMNS)
    for row in rows:
        table.add_row(*(str(row[c]) for c in _MARKET_COLUMNS))
    console.print(table)


@market_app.command("list")
def market_list(
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Every symbol's mark and index price and funding rate."""
    with _admin(url, token, data_dir) as client:
        _print_markets(client.markets())


@market_app.command("set-price")
def market_set_price(
    symbol: str,
    mark_price: Annotated[
        str,
        typer.Argument(
            help="decimal, e.g. 60000", parser=_text(grammar.parse_decimal, "mark price")
        ),
    ],
    index_price: Annotated[
        str | None,
        typer.Option(
            help="defaults to the mark price", parser=_text(grammar.parse_decimal, "index price")
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Set a symbol's mark (and index) price; the resting orders it crosses fill before this
    returns."""
    with _admin(url, token, data_dir) as client:
        _print_markets([client.set_price(symbol, mark_price, index_price)])


@market_app.command("funding-rate")
def market_funding_rate(
    symbol: str,
    rate: Annotated[
        str,
        typer.Option(
            help="decimal, e.g. 0.0001 (negative: shorts pay)",
            parser=_text(_signed_amount, "rate"),
        ),
    ],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Set a symbol's funding rate (charged at 00:00, 08:00 and 16:00 UTC)."""
    with _admin(url, token, data_dir) as client:
        _print_markets([client.set_funding_rate(symbol, rate)])


@market_app.command("expire-orders")
def market_expire_orders(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="ISO time or ms (default now): GTD orders due by then expire (UTC).",
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Expire every open GTD order whose goodTillDate is at or before --as-of, as the server
    does each second; a later time makes time pass for the orders."""
    with _admin(url, token, data_dir) as client:
        result = client.expire_orders(as_of)
    table = Table("asOf", "expired")
    table.add_row(str(result["asOf"]), str(result["expired"]))
    console.print(table)


@account_app.command("positions")
def account_positions(
    account_id: AccountId,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """The account's UM positions, open orders and margin figures as tables."""
    with _admin(url, token, data_dir) as client:
        data = client.positions(account_id)
    columns = (
        "symbol",
        "positionSide",
        "positionAmt",
        "entryPrice",
        "breakEvenPrice",
        "markPrice",
        "unRealizedProfit",
        "leverage",
        "initialMargin",
        "maintMargin",
    )
    table = Table(*columns, title="positions")
    for row in data["positions"]:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
    order_columns = ("orderId", "symbol", "side", "type", "price", "origQty", "status")
    orders = Table(*order_columns, title="open orders")
    for row in data["openOrders"]:
        orders.add_row(*(str(row[c]) for c in order_columns))
    console.print(orders)
    summary = ("accountEquity", "accountInitialMargin", "accountMaintMargin", "uniMMR")
    figures = Table(*summary, "accountStatus", title="margin")
    figures.add_row(*(str(data[c]) for c in summary), data["accountStatus"])
    console.print(figures)


@account_app.command("commission")
def account_commission(
    account_id: AccountId,
    maker: Annotated[str, typer.Option(help="maker rate, e.g. 0.0002")],
    taker: Annotated[str, typer.Option(help="taker rate, e.g. 0.0005")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Set the account's UM commission rates."""
    with _admin(url, token, data_dir) as client:
        data = client.set_commission(account_id, maker, taker)
    table = Table("accountId", "maker", "taker")
    table.add_row(str(data["accountId"]), data["maker"], data["taker"])
    console.print(table)


# -- scheduled jobs on demand -------------------------------------------------------------------

jobs_app = typer.Typer(help="Run the scheduled jobs on demand (directly on the database).")
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("run")
def jobs_run(
    job: Annotated[str, typer.Argument(help="auto-repay, interest or funding")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="ISO time; the job runs for its latest slot at or before it (UTC)."
        ),
    ] = None,
    db: Db = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
    config: ConfigOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Run one job for one slot, like the server would; safe to repeat (idempotent per slot).
    Prints the job's report as one JSON line on stdout (progress, if any, goes to stderr)."""
    import asyncio

    import orjson

    from papi_sandbox.jobs.runner import run_on_demand

    jobs_config = _load_jobs_config(config)
    db_url = settings_mod.database_url(db, data_dir)
    store = existing_store(db_url)  # never create an empty ledger just to sweep it

    async def go(shown: Progress) -> Any:
        await store.open()
        try:
            return await run_on_demand(store, job, as_of, jobs_config, progress=shown)
        finally:
            await store.close()

    try:
        with progress_for(progress) as shown:
            report = asyncio.run(go(shown))
    except ValueError as exc:  # an unknown job, a bad --as-of, a slot too old
        _error(str(exc))
        raise typer.Exit(2) from None
    except Exception as exc:
        if not _database_error(exc):
            raise
        _error(f"Cannot open the database: {_one_line(exc, db_url)}")
        raise typer.Exit(2) from None
    print(orjson.dumps(report.to_json()).decode())


@keys_app.command("rotate-encryption-key")
def rotate_encryption_key(
    db: Db = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
    new_key: Annotated[
        str | None,
        typer.Option(
            envvar=settings_mod.NEW_SECRET_KEY_ENV,
            help="The new key (64 hex digits); default: generate one into the data folder.",
        ),
    ] = None,
) -> None:
    """Re-seal every stored HMAC secret under a new encryption key, in one transaction.

    Run it with the service stopped. The old key comes from PAPI_SANDBOX_SECRET_KEY or the data
    folder's key file. Without --new-key a new key is generated and written to the key file (the
    old file is kept as secret-key.old until you delete it); with --new-key, set
    PAPI_SANDBOX_SECRET_KEY to the new key before the next start."""
    import asyncio
    import os

    from papi_sandbox import secretbox

    key_file = data_dir / secretbox.SECRET_KEY_FILE_NAME
    from_env = bool(os.environ.get(secretbox.SECRET_KEY_ENV))
    if not from_env and not key_file.exists():
        _error(f"No encryption key: neither {secretbox.SECRET_KEY_ENV} nor {key_file}")
        raise typer.Exit(2)
    try:
        old = secretbox.SecretBox(secretbox.load_or_create_key(data_dir))
        new_text = new_key or secretbox.new_key_text()
        new = secretbox.SecretBox(secretbox.parse_key(new_text))
    except secretbox.SecretBoxError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    db_url = settings_mod.database_url(db, data_dir)
    store = existing_store(db_url)
    try:
        changed = asyncio.run(_reseal_all(store, old, new))
    except secretbox.SecretBoxError as exc:
        _error(f"Nothing changed: {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:
        if not _database_error(exc):
            raise
        _error(f"Nothing changed: cannot open the database: {_one_line(exc, db_url)}")
        raise typer.Exit(2) from None
    if new_key is not None:
        console.print(
            f"re-sealed {changed} secret(s) under key {new.key_id}; set {secretbox.SECRET_KEY_ENV}"
            " to the new key before the next start"
        )
        return
    _replace_key_file(key_file, new_text)
    console.print(f"re-sealed {changed} secret(s) under key {new.key_id}, written to {key_file}")
    if from_env:
        console.print(
            f"unset {secretbox.SECRET_KEY_ENV} (or set it to the new key) before starting"
        )


async def _reseal_all(store: Store, old: Any, new: Any) -> int:
    """Every stored secret re-sealed from ``old`` to ``new`` (SecretBox) and the ledger's key
    id moved to ``new``'s; the number of secrets changed."""
    await store.open()
    try:
        changed: int = await store.rewrite_api_key_secrets(
            lambda secret, api_key: new.reseal(secret, api_key, old)
        )
        await store.claim_setting("secret_key_id", new.key_id, replace=True)
        return changed
    finally:
        await store.close()


def _replace_key_file(key_file: Path, new_text: str) -> None:
    """The new key into ``key_file``; the old one kept beside it as ``secret-key.old``."""
    from papi_sandbox import secretbox

    if key_file.exists():
        old_copy = key_file.with_name(key_file.name + ".old")
        secretbox.write_key_file(old_copy, key_file.read_text().strip())
    secretbox.write_key_file(key_file, new_text)


def main() -> None:
    app()
