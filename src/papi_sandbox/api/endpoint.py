"""How an endpoint is declared: its security type, the call a handler receives, and the
:class:`Endpoint` record. Every table of endpoints (api/endpoints.py and the modules it gathers)
is made of these records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from papi_sandbox.service import Service
from papi_sandbox.wire.account_limits import RollingLimit
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

    def permits(self, can_read: bool, can_trade: bool) -> bool:
        """Binance's key permissions: TRADE needs enablePortfolioMarginTrading, USER_DATA needs
        enableReading; NONE and USER_STREAM need neither."""
        if self is Security.TRADE:
            return can_trade
        if self is Security.USER_DATA:
            return can_read
        return True


@dataclass(slots=True)  # not frozen: built on every request, and a frozen __init__ costs more
class Call:
    service: Service
    account_id: int  # 0 for NONE endpoints
    args: dict[str, Any]
    api_key: str = ""  # the caller's API key ("" for NONE endpoints)


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
    #: A per-account rolling limit on top of the IP weight (wire/account_limits.py).
    account_limit: RollingLimit | None = None
    #: Binance weighs some endpoints more when ``symbol`` is not sent (all symbols at once):
    #: the weight then, charged as ``weight`` up front and the difference once parsed.
    weight_without_symbol: int | None = None
    #: False: parameters it does not declare are ignored instead of refused (-1104). Only the
    #: listen-key endpoints, as Binance (ccxt sends them ``subType=None``; docs/semantics.md).
    refuses_unknown: bool = True
    #: Every parameter it reads (its own, then the signed ones), and the same by name: derived
    #: once here, not per request.
    all_params: tuple[Param, ...] = field(init=False)
    params_by_name: dict[str, Param] = field(init=False, compare=False, hash=False)
    #: ``security.signed`` and ``security.needs_key``, likewise derived once.
    signed: bool = field(init=False)
    needs_key: bool = field(init=False)

    def __post_init__(self) -> None:
        all_params = self.params + SIGNED_PARAMS if self.security.signed else self.params
        object.__setattr__(self, "all_params", all_params)
        object.__setattr__(self, "params_by_name", {p.name: p for p in all_params})
        object.__setattr__(self, "signed", self.security.signed)
        object.__setattr__(self, "needs_key", self.security.needs_key)


SUCCESS = {"msg": "success"}


def route_table(endpoints: tuple[Endpoint, ...]) -> dict[str, dict[str, Endpoint]]:
    """path -> method -> endpoint."""
    result: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        methods = result.setdefault(endpoint.path, {})
        assert endpoint.method not in methods, f"{endpoint.method} {endpoint.path} twice"
        methods[endpoint.method] = endpoint
    return result
