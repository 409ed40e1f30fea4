"""The public PAPI endpoints, declared once as data, with their thin handlers.

A handler receives typed arguments and the calling account, calls one operation of the service,
and returns a JSON-able value. Signing, limits and parameter checks happen in one place for all of
them (:mod:`papi_sandbox.api.app`).
"""

from __future__ import annotations

import time
from typing import Any

from papi_sandbox.api.endpoint import SUCCESS, Call, Endpoint, Security, route_table
from papi_sandbox.api.market_endpoints import MARKET_ENDPOINTS
from papi_sandbox.api.serialize import (
    BalanceObjects,
    account_object,
    balance_object,
    interest_object,
)
from papi_sandbox.api.um_endpoints import UM_ENDPOINTS
from papi_sandbox.ledger.collection import TransferSide
from papi_sandbox.ledger.model import Wallet
from papi_sandbox.stream.listen_keys import NoActiveListenKey
from papi_sandbox.wire import errors
from papi_sandbox.wire.account_limits import (
    AUTO_COLLECTION_LIMIT,
    BNB_TRANSFER_LIMIT,
)
from papi_sandbox.wire.params import Kind, Param


async def _ping(call: Call) -> Any:
    return {}


async def _repay_futures_negative_balance(call: Call) -> Any:
    # Refusals (-2018 insufficient, the switch's own code) map through the one table.
    await call.service.repay_futures_negative_balance(call.account_id)
    return SUCCESS


#: Serialised balances per account snapshot (api/serialize.py), shared by every app in the process.
_BALANCE_OBJECTS = BalanceObjects()


async def _balance(call: Call) -> Any:
    asset = call.args.get("asset")
    snapshot = await call.service.balances(call.account_id)
    unrealized = await call.service.trading.unrealized(call.account_id)
    if unrealized:  # open positions: built per request, the mark moves without a ledger change
        if asset is not None:
            return balance_object(snapshot.row(asset), unrealized.get(asset))
        return [balance_object(row, unrealized.get(row.asset)) for row in snapshot.rows()]
    if asset is not None:
        return _BALANCE_OBJECTS.one(call.account_id, snapshot, asset)
    return _BALANCE_OBJECTS.all(call.account_id, snapshot)


# -- the negative-balance toolkit (issue 4) --------------------------------------------------------

#: Interest-history window rules (Binance's): 7 days when no time is sent, 30 days at most.
INTEREST_DEFAULT_WINDOW_MS = 7 * 86_400_000
INTEREST_MAX_WINDOW_MS = 30 * 86_400_000
#: Interest-history page size: default and maximum (Binance's).
INTEREST_DEFAULT_SIZE = 10
INTEREST_MAX_SIZE = 100


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _get_repay_futures_switch(call: Call) -> Any:
    return {"autoRepay": await call.service.auto_repay(call.account_id)}


async def _set_repay_futures_switch(call: Call) -> Any:
    await call.service.set_settings(call.account_id, auto_repay=call.args["autoRepay"])
    return SUCCESS


async def _auto_collection(call: Call) -> Any:
    await call.service.collect(call.account_id)
    return SUCCESS


async def _asset_collection(call: Call) -> Any:
    amount, future_type = call.args.get("amount"), call.args.get("futureType")
    # Binance: amount and futureType travel together; without both, every wallet is collected.
    if (amount is None) != (future_type is None):
        raise errors.mandatory_missing("futureType" if future_type is None else "amount")
    if amount is not None and amount <= 0:
        raise errors.invalid_parameter("amount", "It must be greater than 0.")
    await call.service.collect(  # a refusal is answered by PublicApi (errors.refusal)
        call.account_id,
        call.args["asset"],
        amount,
        Wallet(future_type) if future_type is not None else None,
    )
    return SUCCESS


async def _bnb_transfer(call: Call) -> Any:
    amount = call.args["amount"]
    if amount <= 0:
        raise errors.invalid_parameter("amount", "It must be greater than 0.")
    entry = await call.service.bnb_transfer(
        call.account_id, amount, TransferSide(call.args["transferSide"])
    )
    return {"tranId": entry.tran_id}


def interest_window(start_ms: int | None, end_ms: int | None, now_ms: int) -> tuple[int, int]:
    """Binance's window for the interest history (both ends inclusive)."""
    if start_ms is None and end_ms is None:
        return now_ms - INTEREST_DEFAULT_WINDOW_MS, now_ms
    if end_ms is None:
        assert start_ms is not None
        return max(start_ms, now_ms - INTEREST_MAX_WINDOW_MS), now_ms
    if start_ms is None:
        return end_ms - INTEREST_DEFAULT_WINDOW_MS, end_ms
    if start_ms > end_ms:
        raise errors.invalid_parameter("startTime", "startTime must not be after endTime.")
    if end_ms - start_ms > INTEREST_MAX_WINDOW_MS:
        raise errors.interval_too_big("startTime and endTime must be at most 30 days apart.")
    return start_ms, end_ms


async def _interest_history(call: Call) -> Any:
    size = call.args.get("size", INTEREST_DEFAULT_SIZE)
    if not 1 <= size <= INTEREST_MAX_SIZE:
        raise errors.invalid_parameter("size", f"It must be from 1 to {INTEREST_MAX_SIZE}.")
    start_ms, end_ms = interest_window(
        call.args.get("startTime"), call.args.get("endTime"), _now_ms()
    )
    records = await call.service.interest_history(
        call.account_id, call.args.get("asset"), start_ms, end_ms, size
    )
    return [interest_object(r) for r in records]


async def _account(call: Call) -> Any:
    return account_object(await call.service.account_summary(call.account_id))


# -- the user data stream's listen keys (stream/listen_keys.py) -----------------------------------


async def _open_listen_key(call: Call) -> Any:
    record = await call.service.listen_keys.open(call.api_key, call.account_id)
    return {"listenKey": record.listen_key}


async def _keepalive_listen_key(call: Call) -> Any:
    """``{}``, as Binance's "Keepalive User Data Stream" (PAPI) answers (USDⓈ-M's echoes the
    key; PAPI's does not: the official SDK declares no body)."""
    try:
        await call.service.listen_keys.keepalive(call.api_key, call.args.get("listenKey"))
    except NoActiveListenKey:
        raise errors.invalid_listen_key() from None
    return {}


async def _close_listen_key(call: Call) -> Any:
    try:
        await call.service.listen_keys.close(call.api_key, call.args.get("listenKey"))
    except NoActiveListenKey:
        raise errors.invalid_listen_key() from None
    return {}


#: PUT and DELETE read it although Binance documents none (python-binance and ccxt send it).
_LISTEN_KEY_PARAM = Param(
    "listenKey", Kind.STRING, description="optional; must be the caller's active listen key"
)


CORE_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/papi/v1/ping", 1, Security.NONE, (), _ping, "Test connectivity"),
    Endpoint(
        "POST",
        "/papi/v1/repay-futures-negative-balance",
        750,
        Security.USER_DATA,
        (),
        _repay_futures_negative_balance,
        "Repay futures negative balances from the cross-margin wallet, same asset only",
    ),
    Endpoint(
        "GET",
        "/papi/v1/balance",
        20,
        Security.USER_DATA,
        (Param("asset", Kind.ASSET, description="one asset; the answer is then one object"),),
        _balance,
        "Balances per asset across the margin, UM and CM wallets",
    ),
    Endpoint(
        "GET",
        "/papi/v1/account",
        20,
        Security.USER_DATA,
        (),
        _account,
        "Account information from balances, UM positions and prices (docs/semantics.md)",
    ),
    Endpoint(
        "GET",
        "/papi/v1/repay-futures-switch",
        30,
        Security.USER_DATA,
        (),
        _get_repay_futures_switch,
        "Get the auto-repay-futures status",
    ),
    Endpoint(
        "POST",
        "/papi/v1/repay-futures-switch",
        750,
        Security.TRADE,
        (
            Param(
                "autoRepay",
                Kind.BOOLEAN,
                mandatory=True,
                description="true or false: auto-repay futures negative balances",
            ),
        ),
        _set_repay_futures_switch,
        "Change the auto-repay-futures status",
    ),
    Endpoint(
        "POST",
        "/papi/v1/auto-collection",
        750,
        Security.TRADE,
        (),
        _auto_collection,
        "Collect every positive UM and CM balance into the margin wallet (BNB in UM stays)",
        AUTO_COLLECTION_LIMIT,
    ),
    Endpoint(
        "POST",
        "/papi/v1/asset-collection",
        30,
        Security.TRADE,
        (
            Param("asset", Kind.ASSET, mandatory=True, description="the asset; BNB is refused"),
            Param("amount", Kind.DECIMAL, description="collect exactly this; needs futureType"),
            Param(
                "futureType",
                Kind.ENUM,
                choices=("UM", "CM"),
                description="the wallet to collect from; needs amount",
            ),
        ),
        _asset_collection,
        "Collect one asset's positive UM and CM balances into the margin wallet",
    ),
    Endpoint(
        "POST",
        "/papi/v1/bnb-transfer",
        750,
        Security.TRADE,
        (
            Param("amount", Kind.DECIMAL, mandatory=True, description="BNB to move, > 0"),
            Param(
                "transferSide",
                Kind.ENUM,
                mandatory=True,
                choices=tuple(side.value for side in TransferSide),
                description="TO_UM: margin -> UM; FROM_UM: UM -> margin",
            ),
        ),
        _bnb_transfer,
        "Transfer BNB in and out of UM",
        BNB_TRANSFER_LIMIT,
    ),
    Endpoint(
        "GET",
        "/papi/v1/portfolio/interest-history",
        50,
        Security.USER_DATA,
        (
            Param("asset", Kind.ASSET, description="one asset"),
            Param("startTime", Kind.LONG, description="ms, inclusive"),
            Param("endTime", Kind.LONG, description="ms, inclusive; at most 30 days after start"),
            Param("size", Kind.LONG, description="rows, default 10, max 100"),
        ),
        _interest_history,
        "Negative-balance interest history, newest first",
    ),
    Endpoint(
        "POST",
        "/papi/v1/listenKey",
        1,
        Security.USER_STREAM,
        (),
        _open_listen_key,
        "Start a user data stream: the API key's active listen key (extended 60 min) or a new one",
        refuses_unknown=False,
    ),
    Endpoint(
        "PUT",
        "/papi/v1/listenKey",
        1,
        Security.USER_STREAM,
        (_LISTEN_KEY_PARAM,),
        _keepalive_listen_key,
        "Keep the user data stream alive: extend the active listen key 60 minutes",
        refuses_unknown=False,
    ),
    Endpoint(
        "DELETE",
        "/papi/v1/listenKey",
        1,
        Security.USER_STREAM,
        (_LISTEN_KEY_PARAM,),
        _close_listen_key,
        "Close the user data stream",
        refuses_unknown=False,
    ),
)

#: Every public endpoint: the account toolkit, the public market data clients boot with, and
#: UM trading. One table; app.py serves it and openapi.py describes it.
ENDPOINTS: tuple[Endpoint, ...] = CORE_ENDPOINTS + MARKET_ENDPOINTS + UM_ENDPOINTS


def table(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> dict[str, dict[str, Endpoint]]:
    """path -> method -> endpoint (the whole public table by default)."""
    return route_table(endpoints)


__all__ = ["ENDPOINTS", "SUCCESS", "Call", "Endpoint", "Security", "table"]
