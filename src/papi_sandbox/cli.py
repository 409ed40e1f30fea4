"""The ``papi-sandbox`` command: serve, verify, and the operator's account commands.

The account commands talk to a running server's operator API (``--url``), so they work the same
against a local SQLite service or a remote one.
"""

from __future__ import annotations

import gc
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from papi_sandbox import settings as settings_mod
from papi_sandbox.settings import Settings

app = typer.Typer(help="A self-hosted Binance Portfolio Margin API sandbox.", no_args_is_help=True)
account_app = typer.Typer(help="Operator commands on accounts (through the operator API).")
app.add_typer(account_app, name="account")
# Piped output keeps full rows instead of folding tables to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)
err_console = Console(stderr=True)


#: gc.set_threshold for the server process (Python's default is 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)


class Durability(StrEnum):
    """``serve --durability``; see ``store.sqlite.DURABILITY_MODES``."""

    full = "full"
    normal = "normal"
    off = "off"


DataDir = Annotated[
    Path,
    typer.Option(
        envvar=settings_mod.DATA_DIR_ENV,
        help="Folder for the default SQLite file and the operator token.",
    ),
]
Db = Annotated[
    str | None,
    typer.Option(
        envvar="PAPI_SANDBOX_DB", help="sqlite:///path/to/file.db (default: in --data-dir)"
    ),
]


def open_store(db_url: str, durability: str = "full") -> Any:
    from papi_sandbox.store.sqlite import SQLiteStore, path_from_url

    if db_url.startswith(("postgres://", "postgresql://")):
        err_console.print("[red]PostgreSQL is not supported yet; use a sqlite:/// URL.[/red]")
        raise typer.Exit(2)
    return SQLiteStore(path_from_url(db_url), durability=durability)


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="PAPI_SANDBOX_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PAPI_SANDBOX_PORT")] = 8765,
    db: Db = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
    ip_weight_limit: Annotated[
        int,
        typer.Option(
            envvar="PAPI_SANDBOX_IP_WEIGHT_LIMIT", help="Weight per IP per minute; 0 = off."
        ),
    ] = 6000,
    demo: Annotated[
        bool,
        typer.Option(
            envvar="PAPI_SANDBOX_DEMO",
            help="Create a demo account with negative futures wallets and print how to call it.",
        ),
    ] = False,
    access_log: Annotated[bool, typer.Option(envvar="PAPI_SANDBOX_ACCESS_LOG")] = True,
    durability: Annotated[
        Durability,
        typer.Option(
            envvar="PAPI_SANDBOX_DURABILITY",
            help="full: fsync every commit before answering (group commit); normal: no fsync"
            " per commit (a power loss may lose the last changes); off: never fsync.",
        ),
    ] = Durability.full,
) -> None:
    """Run the service."""
    import uvicorn

    from papi_sandbox.api.app import create_app
    from papi_sandbox.demo import announce_demo

    settings = Settings(
        host=host,
        port=port,
        data_dir=data_dir,
        db=db,
        ip_weight_limit=ip_weight_limit,
        durability=durability.value,
    )
    token, generated = settings_mod.ensure_admin_token(data_dir)
    if generated:
        token_file = data_dir / settings_mod.ADMIN_TOKEN_FILE_NAME
        console.print(f"Operator token (printed once, kept in {token_file}): [bold]{token}[/bold]")
    store = open_store(settings.db_url, settings.durability)

    async def on_ready(state: Any) -> None:
        if demo:
            await announce_demo(state, console)

    application = create_app(settings, store, token, on_ready=on_ready)
    # Fewer cyclic-GC passes: refcounting frees almost everything a request allocates, while
    # each full pass walks every cached key and balance snapshot (up to ~10^5 objects) and
    # showed as the p99 tail of the write path (docs/performance.md).
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(
        application,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        timeout_keep_alive=30,
        # Bounds a slow or half-sent request: headers and body must arrive in time.
        timeout_graceful_shutdown=5,
    )


@app.command()
def verify(db: Db = None, data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR) -> None:
    """Replay the journal; check balances equal it and every asset sums to zero."""
    settings = Settings(data_dir=data_dir, db=db)
    store = open_store(settings.db_url)
    try:
        report = store.verify_sync()
    except FileNotFoundError as exc:
        err_console.print(f"[red]No database at {exc}[/red]")
        raise typer.Exit(2) from None
    console.print(
        f"checked {report.entries} entries, {report.postings} postings, {report.balances} stored"
        f" balances, {report.accounts} accounts, {report.assets} assets"
    )
    for problem in report.problems:
        console.print(f"[red]MISMATCH[/red] {problem}")
    if report.ok:
        console.print(
            "[green]OK[/green]: every balance equals the journal replay; "
            "every entry and every asset sums to zero"
        )
    else:
        console.print(f"[red]FAILED[/red]: {len(report.problems)} problem(s)")
        raise typer.Exit(1)


# -- operator commands -------------------------------------------------------------------------

Url = Annotated[str, typer.Option(envvar="PAPI_SANDBOX_URL", help="The service's base URL.")]
Token = Annotated[
    str | None,
    typer.Option(
        envvar=settings_mod.ADMIN_TOKEN_ENV, help="Operator token (default: data folder)."
    ),
]
DEFAULT_URL = "http://127.0.0.1:8765"


def _admin(url: str, token: str | None, data_dir: Path) -> httpx.Client:
    token = token or settings_mod.read_admin_token(data_dir)
    if not token:
        err_console.print("[red]No operator token: set PAPI_SANDBOX_ADMIN_TOKEN or --token.[/red]")
        raise typer.Exit(2)
    return httpx.Client(
        base_url=url.rstrip("/") + "/admin/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]Cannot reach the service: {exc}[/red]")
        raise typer.Exit(2) from None
    data = response.json()
    if response.status_code >= 400:
        err_console.print(
            f"[red]{response.status_code} {data.get('code')}: {data.get('msg')}[/red]"
        )
        raise typer.Exit(1)
    return data


@account_app.command("create")
def account_create(
    label: Annotated[str | None, typer.Option()] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Create an account with an HMAC key; the secret is shown this once."""
    with _admin(url, token, data_dir) as client:
        data = _call(client, "POST", "/accounts", json={"label": label} if label else {})
    console.print(f"accountId: {data['accountId']}")
    console.print(f"apiKey:    {data['apiKey']}")
    console.print(f"secretKey: {data['secretKey']}  (shown once)")


@account_app.command("adjust")
def account_adjust(
    account_id: int,
    wallet: Annotated[str, typer.Option(help="MARGIN, UM or CM")],
    asset: Annotated[str, typer.Option()],
    amount: Annotated[str, typer.Option(help="signed decimal, e.g. -250.5")],
    reason: Annotated[
        str, typer.Option(help="DEPOSIT, WITHDRAW, REALIZED_PNL, FUNDING_FEE or COMMISSION")
    ],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """Change one balance the way trading would (one journal entry)."""
    body = {"wallet": wallet, "asset": asset, "amount": amount, "reason": reason}
    with _admin(url, token, data_dir) as client:
        data = _call(client, "POST", f"/accounts/{account_id}/adjustments", json=body)
    console.print(f"tranId: {data['tranId']}")
    _print_balances([data["balance"]])


@account_app.command("show")
def account_show(
    account_id: int,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """The account's balances as a table."""
    with _admin(url, token, data_dir) as client:
        rows = _call(client, "GET", f"/accounts/{account_id}/balances")
    _print_balances(rows)


@account_app.command("journal")
def account_journal(
    account_id: int,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = settings_mod.DEFAULT_DATA_DIR,
) -> None:
    """The account's journal entries, newest first."""
    with _admin(url, token, data_dir) as client:
        entries = _call(client, "GET", f"/accounts/{account_id}/journal", params={"limit": limit})
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


def main() -> None:
    app()
