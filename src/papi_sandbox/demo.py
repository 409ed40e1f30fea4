"""The demo account of ``make run``: negative futures wallets and a margin wallet that can repay
them, plus copy-paste instructions for calling the service."""

from __future__ import annotations

import shutil
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from papi_sandbox.ledger.model import EntryType, Wallet

if TYPE_CHECKING:
    from papi_sandbox.api.state import AppState

#: (wallet, asset, amount, reason) applied to every new demo account, in order.
DEMO_ADJUSTMENTS = (
    (Wallet.MARGIN, "USDT", Decimal("10000"), EntryType.DEPOSIT),
    (Wallet.MARGIN, "BTC", Decimal("0.5"), EntryType.DEPOSIT),
    (Wallet.UM, "USDT", Decimal("-250.5"), EntryType.REALIZED_PNL),
    (Wallet.UM, "USDT", Decimal("-1.25"), EntryType.COMMISSION),
    (Wallet.CM, "BTC", Decimal("-0.0125"), EntryType.FUNDING_FEE),
)


async def create_demo_account(state: AppState) -> tuple[int, str, str]:
    issued = await state.service.create_account("demo")
    for wallet, asset, amount, reason in DEMO_ADJUSTMENTS:
        await state.service.adjust(issued.account_id, wallet, asset, amount, reason)
    return issued.account_id, issued.api_key, issued.secret_key


def cli_command() -> str:
    """How a shell in this folder runs the CLI: ``papi-sandbox`` when the PATH finds it, else
    the program this process was started as (``make run``: ``.venv/bin/papi-sandbox``, which
    the PATH does not hold), else ``python -m papi_sandbox``."""
    if shutil.which("papi-sandbox"):
        return "papi-sandbox"
    started = Path(sys.argv[0])
    if started.name == "papi-sandbox" and started.exists():
        return str(started)
    return f"{sys.executable} -m papi_sandbox"


def operator_options(state: AppState, base: str) -> str:
    """The options an operator command needs to reach this server and read its token, where
    they are not the defaults: `` --url ...``, `` --data-dir ...`` (or nothing)."""
    from papi_sandbox.settings import DEFAULT_DATA_DIR, DEFAULT_URL

    options = "" if base == DEFAULT_URL else f" --url {base}"
    if state.settings.data_dir != DEFAULT_DATA_DIR:
        options += f" --data-dir {state.settings.data_dir}"
    return options


async def announce_demo(state: AppState, console: Console) -> None:
    account_id, api_key, secret = await create_demo_account(state)
    host = state.settings.host
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{state.settings.port}"
    operator = f"{cli_command()} account show {account_id}{operator_options(state, base)}"
    console.print(
        f"""
[bold green]papi-sandbox is starting on {base}[/bold green]
Demo account {account_id}: UM USDT -251.75, CM BTC -0.0125; margin USDT 10000, BTC 0.5.

  BASE_URL={base}
  API_KEY={api_key}
  SECRET={secret}

Copy-paste to repay its negative futures balances and look at the result:

  export BASE_URL={base} API_KEY={api_key} SECRET={secret}
  papi() {{  # usage: papi METHOD PATH [QUERY]
    q="${{3:+$3&}}timestamp=$(date +%s%3N)"
    sig=$(printf '%s' "$q" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
    curl -s -X "$1" -H "X-MBX-APIKEY: $API_KEY" "$BASE_URL$2?$q&signature=$sig"; echo
  }}
  papi POST /papi/v1/repay-futures-negative-balance
  papi GET /papi/v1/balance asset=USDT

Operator: {operator}, or the dashboard at {base}/ui/
(log in with the operator token; Ctrl-C stops the service)
""",
        highlight=False,
        soft_wrap=True,
    )
