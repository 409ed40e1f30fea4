"""The official SDK's methods for the toolkit's endpoints, unmodified, against the server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from binance_sdk_derivatives_trading_portfolio_margin.rest_api.models import (
    BnbTransferTransferSideEnum,
    ChangeAutoRepayFuturesStatusAutoRepayEnum,
    FundCollectionByAssetFutureTypeEnum,
)

from tests.support import Server, sdk_client


def test_sdk_toolkit_methods(server: Server) -> None:
    account = server.create_account("sdk")
    client = sdk_client(server, account)
    a = account.account_id

    client.change_auto_repay_futures_status(ChangeAutoRepayFuturesStatusAutoRepayEnum.FALSE)
    assert client.get_auto_repay_futures_status().data().auto_repay is False
    client.change_auto_repay_futures_status(ChangeAutoRepayFuturesStatusAutoRepayEnum.TRUE)
    assert client.get_auto_repay_futures_status().data().auto_repay is True

    server.adjust(a, "UM", "USDT", "100", "REALIZED_PNL")
    server.adjust(a, "CM", "ETH", "2", "REALIZED_PNL")
    assert client.fund_auto_collection().data().msg == "success"
    assert server.journal(a)[0]["type"] == "AUTO_COLLECTION"
    server.adjust(a, "CM", "ETH", "1", "REALIZED_PNL")
    assert client.fund_collection_by_asset(asset="ETH").data().msg == "success"
    assert server.journal(a)[0]["type"] == "ASSET_COLLECTION"
    server.adjust(a, "UM", "ETH", "2", "REALIZED_PNL")
    response = client.fund_collection_by_asset(
        asset="ETH", amount=Decimal("0.5"), future_type=FundCollectionByAssetFutureTypeEnum.UM
    )
    assert response.data().msg == "success"
    assert server.journal(a)[0]["postings"][0]["amount"] == "-0.50000000"

    server.adjust(a, "MARGIN", "BNB", "3", "DEPOSIT")
    response = client.bnb_transfer(Decimal("1.25"), BnbTransferTransferSideEnum.TO_UM)
    assert response.data().tran_id == server.journal(a)[0]["tranId"]

    server.adjust(a, "UM", "USDT", "-1100", "REALIZED_PNL")  # total -1000 after the 100 collected
    r = server.admin.request("POST", "/jobs/interest", json={})
    assert r.status_code == 200, r.text
    rows = client.query_portfolio_margin_negative_balance_interest_history(asset="USDT").data()
    assert len(rows) == 1
    row = rows[0]
    assert (row.asset, row.interest, row.principal) == ("USDT", "0.50000000", "1000.00000000")
    assert row.interest_rate == "0.00050000"
    assert row.interest_accured_time == r.json()["slotMs"]


def test_sdk_sees_binance_errors(server: Server) -> None:
    from binance_sdk_derivatives_trading_portfolio_margin import BadRequestError

    account = server.create_account("sdk-errors")
    client = sdk_client(server, account)
    with pytest.raises(BadRequestError, match=r"-2018|insufficient"):
        client.bnb_transfer(Decimal("1"), BnbTransferTransferSideEnum.FROM_UM)
