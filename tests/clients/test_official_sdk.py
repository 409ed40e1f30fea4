"""Binance's official Portfolio Margin SDK, unmodified, pointed at the sandbox by base_path."""

from __future__ import annotations

import pytest
from binance_sdk_derivatives_trading_portfolio_margin import (
    BadRequestError,
)

from tests.support import Server, sdk_client


def test_official_sdk_repays_and_reads_balances(server: Server) -> None:
    account = server.create_account("sdk")
    server.adjust(account.account_id, "MARGIN", "USDT", "500", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-123.45678901", "REALIZED_PNL")
    server.adjust(account.account_id, "MARGIN", "BTC", "0.01", "DEPOSIT")
    server.adjust(account.account_id, "CM", "BTC", "-0.025", "FUNDING_FEE")
    api = sdk_client(server, account)

    usdt = api.account_balance(asset="USDT").data().actual_instance
    assert (usdt.asset, usdt.um_wallet_balance, usdt.negative_balance) == (
        "USDT",
        "-123.45678901",
        "123.45678901",
    )

    response = api.repay_futures_negative_balance()
    assert response.status == 200
    assert response.data().msg == "success"

    rows = {row.asset: row for row in api.account_balance().data().actual_instance}
    assert set(rows) == {"BTC", "USDT"}
    assert (rows["USDT"].cross_margin_free, rows["USDT"].um_wallet_balance) == (
        "376.54321099",
        "0.00000000",
    )
    # Partial: only 0.01 BTC of margin for a 0.025 BTC debt.
    assert (rows["BTC"].cross_margin_free, rows["BTC"].cm_wallet_balance) == (
        "0.00000000",
        "-0.01500000",
    )
    assert rows["BTC"].negative_balance == "0.01500000"

    # Nothing more can move: the SDK surfaces Binance's -2018 as its BadRequestError.
    with pytest.raises(BadRequestError) as info:
        api.repay_futures_negative_balance()
    assert (info.value.status_code, info.value.error_message) == (-2018, "Balance is insufficient.")
    assert rows["USDT"].update_time > 0
