"""The public PAPI endpoints, declared once as data, with their thin handlers.

A handler receives typed arguments and the calling account, calls one operation of the service,
and returns a JSON-able value. Signing, limits and parameter checks happen in one place for all of
them (:mod:`papi_sandbox.api.app`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from papi_sandbox.api.serialize import BalanceObjects
from papi_sandbox.ledger.model import InsufficientBalance
from papi_sandbox.service import Service
from papi_sandbox.wire import errors
from papi_sandbox.wire.params import Kind, Param


class Security(StrEnum):
    NONE = "NONE"
    USER_STREAM = "USER_STREAM"
    USER_DATA = "USER_DATA"
    TRADE = "TRADE"

    @property
    def signed(self) -> bool:
        return self in (Security.USER_DATA, Security.TRADE)

    @property
    def needs_key(self) -> bool:
        return self is not Security.NONE


@dataclass(frozen=True, slots=True)
class Call:
    service: Service
    account_id: int  # 0 for NONE endpoints
    args: dict[str, Any]


Handler = Callable[[Call], Awaitable[Any]]

#: Parameters every SIGNED endpoint reads besides its own.
SIGNED_PARAMS = (
    Param(
        "recvWindow", Kind.LONG, description="ms the request stays valid; default 5000, max 60000"
    ),
    Param("timestamp", Kind.LONG, mandatory=True, description="ms since the epoch"),
    Param("signature", Kind.STRING, mandatory=True, description="see the signing docs"),
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    weight: int
    security: Security
    params: tuple[Param, ...]
    handler: Handler
    summary: str

    @property
    def all_params(self) -> tuple[Param, ...]:
        return self.params + SIGNED_PARAMS if self.security.signed else self.params


SUCCESS = {"msg": "success"}


async def _ping(call: Call) -> Any:
    return {}


async def _repay_futures_negative_balance(call: Call) -> Any:
    try:
        await call.service.repay_futures_negative_balance(call.account_id)
    except InsufficientBalance:
        raise errors.balance_insufficient() from None
    return SUCCESS


#: Serialised balances per account snapshot (api/serialize.py), shared by every app in the process.
_BALANCE_OBJECTS = BalanceObjects()


async def _balance(call: Call) -> Any:
    asset = call.args.get("asset")
    snapshot = await call.service.balances(call.account_id)
    if asset is not None:
        return _BALANCE_OBJECTS.one(call.account_id, snapshot, asset)
    return _BALANCE_OBJECTS.all(call.account_id, snapshot)


ENDPOINTS: tuple[Endpoint, ...] = (
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
)


def table(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> dict[str, dict[str, Endpoint]]:
    """path -> method -> endpoint."""
    result: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        methods = result.setdefault(endpoint.path, {})
        assert endpoint.method not in methods, f"{endpoint.method} {endpoint.path} twice"
        methods[endpoint.method] = endpoint
    return result
