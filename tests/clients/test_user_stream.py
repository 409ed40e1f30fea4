"""The user data stream through the real client libraries, unmodified, pointed at the sandbox by
configuration only (README, "The user data stream"): each receives the repay's events."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.support import Account, Server, Signer


def _prepare(server: Server, label: str) -> Account:
    """An account owing 12.5 USDT on UM with 100 USDT in cross margin."""
    account = server.create_account(label)
    server.adjust(account.account_id, "MARGIN", "USDT", "100")
    server.adjust(account.account_id, "UM", "USDT", "-12.5", "REALIZED_PNL")
    return account


def _check_repay_events(events: list[dict[str, Any]]) -> None:
    assert [e["e"] for e in events] == [
        "balanceUpdate",
        "outboundAccountPosition",
        "ACCOUNT_UPDATE",
    ]
    assert events[0]["d"] == "-12.50000000"
    assert events[1]["B"] == [{"a": "USDT", "f": "87.50000000", "l": "0.00000000"}]
    assert events[2]["a"]["m"] == "MARGIN_TRANSFER"
    assert events[2]["a"]["B"] == [
        {"a": "USDT", "wb": "0.00000000", "cw": "0.00000000", "bc": "12.50000000"}
    ]


def test_python_binance_portfolio_margin_socket(server: Server) -> None:
    from binance import AsyncClient, BinanceSocketManager

    account = _prepare(server, "python-binance")

    async def main() -> list[dict[str, Any]]:
        client = AsyncClient(account.api_key, account.secret)
        client.PAPI_URL = f"{server.base_url}/papi"  # production: https://papi.binance.com/papi
        try:
            manager = BinanceSocketManager(client)
            manager.FSTREAM_URL = f"ws://127.0.0.1:{server.port}/"  # wss://fstream.binance.com/
            events: list[dict[str, Any]] = []
            async with manager.portfolio_margin_socket() as socket:
                await client.papi_repay_futures_negative_balance()
                while len(events) < 3:
                    events.append(await asyncio.wait_for(socket.recv(), 10))
                # python-binance's keepalive (PUT with listenKey) is accepted too: {}.
                assert await client.papi_stream_keepalive(socket._listen_key) == {}
            return events
        finally:
            await client.close_connection()

    _check_repay_events(asyncio.run(main()))


def _point(urls: dict[str, Any], base_url: str) -> None:
    """Every REST URL of ccxt's table, to the sandbox (README, the ccxt worked example)."""
    for key, value in urls.items():
        if isinstance(value, str):
            urls[key] = re.sub(r"^https://[a-z0-9.-]+", base_url, value)
        elif isinstance(value, dict):
            _point(value, base_url)


def test_ccxt_pro_watch_balance_in_portfolio_margin_mode(server: Server) -> None:
    import ccxt.pro

    account = _prepare(server, "ccxt")

    async def main() -> tuple[dict[str, Any], Any]:
        exchange = ccxt.pro.binance(
            {
                "apiKey": account.api_key,
                "secret": account.secret,
                "options": {"defaultType": "future", "portfolioMargin": True},
            }
        )
        _point(exchange.urls["api"], server.base_url)  # the README's ccxt recipe
        exchange.urls["api"]["ws"]["papi"] = f"ws://127.0.0.1:{server.port}/pm/ws"
        try:
            watcher = asyncio.ensure_future(exchange.watch_balance({"portfolioMargin": True}))
            # Wait until ccxt has its listen key and its socket, then repay.
            for _ in range(200):
                key = exchange.options.get("linear", {}).get("listenKey")
                if key is not None and exchange.clients:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            await exchange.papi_post_repay_futures_negative_balance()
            first = await asyncio.wait_for(watcher, 10)
            assert first["info"]["e"] in (
                "balanceUpdate",
                "outboundAccountPosition",
                "ACCOUNT_UPDATE",
            )
            # The watch resolves on the first of the repay's events; ccxt's balance cache
            # takes in the rest as they arrive: wait for the last one, ACCOUNT_UPDATE.
            for _ in range(100):
                balance = exchange.balance["linear"]
                if balance["info"]["e"] == "ACCOUNT_UPDATE":
                    break
                await asyncio.sleep(0.05)
            return balance, key
        finally:
            await exchange.close()

    balance, key = asyncio.run(main())
    assert key is not None and len(key) == 64
    # The UM wallet after the repay, as ccxt reads ACCOUNT_UPDATE (total = wb).
    assert balance["info"]["a"]["B"][0]["wb"] == "0.00000000"
    assert balance["USDT"]["total"] == 0.0


def test_official_sdk_user_data_stream(server: Server) -> None:
    from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams
    from binance_sdk_derivatives_trading_portfolio_margin import (
        DerivativesTradingPortfolioMargin,
    )

    account = _prepare(server, "sdk-stream")
    client = DerivativesTradingPortfolioMargin(
        config_rest_api=ConfigurationRestAPI(
            api_key=account.api_key,
            api_secret=account.secret,
            base_path=server.base_url,  # production: https://papi.binance.com
            timeout=10_000,
            retries=0,
        ),
        config_ws_streams=ConfigurationWebSocketStreams(
            stream_url=f"ws://127.0.0.1:{server.port}/pm",  # production: wss://fstream.binance.com/pm
        ),
    )
    listen_key = client.rest_api.start_user_data_stream().data().listen_key

    async def main() -> list[Any]:
        received: list[Any] = []
        connection = await client.websocket_streams.create_connection()
        try:
            stream = await connection.user_data(listen_key)
            stream.on("message", received.append)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(client.rest_api.repay_futures_negative_balance)
            for _ in range(200):
                if len(received) >= 3:
                    break
                await asyncio.sleep(0.05)
            return received
        finally:
            await connection.close_connection(close_session=True)

    received = asyncio.run(main())
    assert len(received) == 3, received
    # The SDK parses each frame into its model (the event name picks the class, then is dropped).
    models = [m.actual_instance for m in received]
    assert [type(m).__name__ for m in models] == [
        "BalanceUpdate",
        "OutboundAccountPosition",
        "AccountUpdate",
    ]
    balance_update, position, account_update = (m.to_dict() for m in models)
    assert (balance_update["a"], balance_update["d"]) == ("USDT", "-12.50000000")
    assert position["B"] == [{"a": "USDT", "f": "87.50000000", "l": "0.00000000"}]
    assert account_update["fs"] == "UM" and account_update["a"]["m"] == "MARGIN_TRANSFER"
    assert account_update["a"]["B"] == [
        {"a": "USDT", "wb": "0.00000000", "cw": "0.00000000", "bc": "12.50000000"}
    ]


def _trader(server: Server, label: str) -> Account:
    """An account with 10,000 USDT in cross margin and BTCUSDT marked at 60,000."""
    r = server.admin.request("PUT", "/markets/BTCUSDT/price", json={"markPrice": "60000"})
    assert r.status_code == 200, r.text
    account = server.create_account(label)
    server.adjust(account.account_id, "MARGIN", "USDT", "10000")
    return account


def test_ccxt_pro_watch_orders_in_portfolio_margin_mode(server: Server) -> None:
    """ccxt.pro parses the sandbox's ORDER_TRADE_UPDATE into its orders and trades: a resting
    order (open), then a market order (closed, with its fill and fee), then the cancel."""
    import ccxt.pro

    account = _trader(server, "ccxt-orders")
    symbol = "BTC/USDT:USDT"

    async def main() -> tuple[dict[str, dict[str, Any]], list[Any]]:
        exchange = ccxt.pro.binance(
            {
                "apiKey": account.api_key,
                "secret": account.secret,
                "options": {"defaultType": "future", "portfolioMargin": True},
            }
        )
        _point(exchange.urls["api"], server.base_url)
        exchange.urls["api"]["ws"]["papi"] = f"ws://127.0.0.1:{server.port}/pm/ws"
        try:
            await exchange.load_markets()
            seen: dict[str, dict[str, Any]] = {}

            async def watch_until(done: Any) -> None:
                while not done():
                    for order in await asyncio.wait_for(
                        exchange.watch_orders(symbol, params={"portfolioMargin": True}), 10
                    ):
                        seen[order["id"]] = order

            watcher = asyncio.ensure_future(watch_until(lambda: False))
            for _ in range(200):  # ccxt has its listen key and its socket
                if exchange.options.get("linear", {}).get("listenKey") and exchange.clients:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            resting = await exchange.create_order(symbol, "limit", "buy", 0.010, 58000)
            market = await exchange.create_order(symbol, "market", "buy", 0.010)
            await exchange.cancel_order(resting["id"], symbol)
            for _ in range(200):
                if (
                    seen.get(resting["id"], {}).get("status") == "canceled"
                    and seen.get(market["id"], {}).get("status") == "closed"
                ):
                    break
                await asyncio.sleep(0.05)
            watcher.cancel()
            trades = list(exchange.myTrades or [])
            return {k: seen[k] for k in (resting["id"], market["id"]) if k in seen} | {
                "ids": {"resting": resting["id"], "market": market["id"]}
            }, trades
        finally:
            await exchange.close()

    seen, trades = asyncio.run(main())
    ids = seen.pop("ids")
    resting, market = seen[ids["resting"]], seen[ids["market"]]
    assert (resting["status"], resting["price"], resting["amount"], resting["filled"]) == (
        "canceled",
        58000.0,
        0.01,
        0.0,
    )
    assert resting["info"]["x"] == "CANCELED" and resting["symbol"] == symbol
    assert (market["status"], market["filled"], market["average"], market["side"]) == (
        "closed",
        0.01,
        60000.0,
        "buy",
    )
    assert market["fee"] == {"cost": 0.3, "currency": "USDT"}
    assert market["info"]["n"] == "0.30000000" and market["info"]["L"] == "60000.00"
    (fill,) = [t for t in trades if t["order"] == ids["market"]]
    assert (fill["price"], fill["amount"], fill["side"]) == (60000.0, 0.01, "buy")


def test_official_sdk_parses_order_trade_update(server: Server) -> None:
    """The official SDK's strict models (pydantic StrictStr/StrictInt/StrictBool per field)
    accept the sandbox's ORDER_TRADE_UPDATE for a market order's NEW and TRADE."""
    from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams
    from binance_sdk_derivatives_trading_portfolio_margin import (
        DerivativesTradingPortfolioMargin,
    )

    account = _trader(server, "sdk-orders")
    client = DerivativesTradingPortfolioMargin(
        config_rest_api=ConfigurationRestAPI(
            api_key=account.api_key,
            api_secret=account.secret,
            base_path=server.base_url,
            timeout=10_000,
            retries=0,
        ),
        config_ws_streams=ConfigurationWebSocketStreams(
            stream_url=f"ws://127.0.0.1:{server.port}/pm",
        ),
    )
    listen_key = client.rest_api.start_user_data_stream().data().listen_key

    async def main() -> list[Any]:
        received: list[Any] = []
        connection = await client.websocket_streams.create_connection()
        try:
            stream = await connection.user_data(listen_key)
            stream.on("message", received.append)
            await asyncio.sleep(0.3)
            r = await asyncio.to_thread(
                Signer(server.base_url, account).request,
                "POST",
                "/papi/v1/um/order",
                {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.002"},
            )
            assert r.status_code == 200, r.text
            for _ in range(200):
                if len(received) >= 3:
                    break
                await asyncio.sleep(0.05)
            return received
        finally:
            await connection.close_connection(close_session=True)

    received = asyncio.run(main())
    models = [m.actual_instance for m in received]
    assert [type(m).__name__ for m in models] == [
        "OrderTradeUpdate",
        "OrderTradeUpdate",
        "AccountUpdate",
    ]
    new, trade = (m.to_dict() for m in models[:2])
    assert (new["o"]["x"], new["o"]["X"], new["o"]["q"]) == ("NEW", "NEW", "0.002")
    assert (trade["o"]["x"], trade["o"]["X"], trade["o"]["l"]) == ("TRADE", "FILLED", "0.002")
    assert (trade["o"]["L"], trade["o"]["n"], trade["o"]["m"]) == ("60000.00", "0.06000000", False)
    assert isinstance(trade["o"]["t"], int) and trade["fs"] == "UM"
