"""Migration 9 on a ledger of the previous version (8), both stores: every UM position gains its
accumulated realized PnL (ACCOUNT_UPDATE's ``cr``), the exact sum of its trades' realized PnL,
in place; trading then goes on accumulating from there."""

from __future__ import annotations

from decimal import Decimal

from papi_sandbox.store import trading as trading_store
from papi_sandbox.store import upgrade
from papi_sandbox.store.contract import Store
from papi_sandbox.store.schema import MIGRATIONS
from papi_sandbox.trading.model import PositionSide
from tests.store.migrations_back import back_to, run
from tests.support import with_store

D = Decimal

# A version-8 ledger's trading rows: an account with three BTCUSDT fills (0, -110.5, 20.25
# realized), one ETHUSDT LONG fill (3.00000001), and an XRPUSDT row without trades.
ROWS = [
    "INSERT INTO accounts (id, label, created_ms) VALUES (1, 'old', 5)",
    "INSERT INTO um_orders VALUES (7, 1, 'BTCUSDT', 'c7', 'BUY', 'BOTH', 'MARKET', 'GTC',"
    " '0.01000000', '0.00000000', FALSE, 'FILLED', '0.01000000', '600.00000000',"
    " '60000.00000000', 1, 1)",
    *(
        f"INSERT INTO um_trades VALUES ({n}, 1, 7, '{symbol}', 'SELL', '{side}', '1.00000000',"
        f" '1.00000000', '1.00000000', '{pnl}', '0.10000000', 'USDT', FALSE, {n})"
        for n, symbol, side, pnl in (
            (1, "BTCUSDT", "BOTH", "0.00000000"),
            (2, "BTCUSDT", "BOTH", "-110.50000000"),
            (3, "BTCUSDT", "BOTH", "20.25000000"),
            (4, "ETHUSDT", "LONG", "3.00000001"),
        )
    ),
    *(
        f"INSERT INTO um_positions VALUES (1, '{symbol}', '{side}', '{amount}', '{entry}',"
        " '0.00000000', 9)"
        for symbol, side, amount, entry in (
            ("BTCUSDT", "BOTH", "0.00000000", "0.00000000"),
            ("ETHUSDT", "LONG", "0.50000000", "3000.00000000"),
            ("XRPUSDT", "BOTH", "10.00000000", "0.50000000"),
        )
    ),
]


def test_a_version_8_ledger_gains_each_positions_accumulated_realized(store_url: str) -> None:
    latest = len(MIGRATIONS)
    assert [m.version for m in MIGRATIONS][8] == 9
    upgrade(store_url)  # a ledger of today, taken back to version 8 with its trading rows
    run(store_url, back_to(8) + ROWS)
    assert upgrade(store_url) == (8, latest)
    assert upgrade(store_url) == (latest, latest)

    async def body(store: Store) -> None:
        positions = await store.read(trading_store.load_positions, 1)
        assert [(p.symbol, p.position_side, p.accumulated_realized) for p in positions] == [
            ("BTCUSDT", PositionSide.BOTH, D("-90.25")),
            ("ETHUSDT", PositionSide.LONG, D("3.00000001")),
            ("XRPUSDT", PositionSide.BOTH, D(0)),
        ]
        assert positions[1].amount == D("0.5")  # the rest of the row as it was

    with_store(store_url, body)
