"""Binance's error codes and the one exception that carries them to the wire: the one place
where a Binance code is written.

Every refusal is an :class:`ApiError` with an HTTP status, a stable negative code and a message as
Binance words it. The HTTP layer turns it into ``{"code": .., "msg": ..}``. Protocol refusals
(parameters, signatures, limits) are built by the functions below; domain refusals (the
:class:`~papi_sandbox.ledger.model.LedgerError` family, raised by the rules and the service) map
through :data:`DOMAIN_REFUSALS`, the one table used by the public API, the operator API, the
dashboard and the CLI (:func:`refusal`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from papi_sandbox.ledger.collection import AssetNotCollectable
from papi_sandbox.ledger.model import (
    AutoRepayOff,
    BadKeyRequest,
    InsufficientBalance,
    KeyLimitReached,
    LedgerError,
    UnknownAccount,
)
from papi_sandbox.trading.model import TradingRefused


@dataclass(slots=True)
class ApiError(Exception):
    status: int
    code: int
    msg: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code} {self.msg}"


def unknown(msg: str = "An unknown error occurred while processing the request.") -> ApiError:
    return ApiError(500, -1000, msg)


def disconnected() -> ApiError:
    """Binance's -1001 DISCONNECTED: the back-end could not be reached, nothing was done; the
    client may retry (HTTP 503). Answered when the store or the shared limiter is unavailable."""
    return ApiError(503, -1001, "Internal error; unable to process your request. Please try again.")


def not_found(path: str) -> ApiError:
    return ApiError(404, -1000, f"Unknown path '{path}'.")


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(405, -1000, f"Method {method} is not allowed for '{path}'.")


def unauthorized() -> ApiError:
    return ApiError(401, -1002, "You are not authorized to execute this request.")


def too_many_requests(limit: int, retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        -1003,
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        {"Retry-After": str(retry_after_s)},
    )


def too_many_auth_failures(limit: int, retry_after_s: int) -> ApiError:
    """429 for an IP past its failed operator authentications of this minute."""
    return ApiError(
        429,
        -1003,
        f"Too many failed operator authentications from this IP; the limit is {limit} per"
        " minute. Retry after the minute ends.",
        {"Retry-After": str(retry_after_s)},
    )


def ip_banned(banned_until_ms: int, retry_after_s: int) -> ApiError:
    return ApiError(
        418,
        -1003,
        f"Way too much request weight used; IP banned until {banned_until_ms}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
        {"Retry-After": str(retry_after_s)},
    )


def request_timeout() -> ApiError:
    return ApiError(408, -1007, "Timeout waiting for the request to arrive; send it faster.")


def timestamp_outside_window() -> ApiError:
    return ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


def timestamp_ahead() -> ApiError:
    return ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")


def invalid_signature() -> ApiError:
    return ApiError(400, -1022, "Signature for this request is not valid.")


def illegal_chars(name: str, legal: str) -> ApiError:
    return ApiError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def duplicate_parameter() -> ApiError:
    return ApiError(400, -1101, "Duplicate values for a parameter detected.")


def too_many_parameters() -> ApiError:
    return ApiError(400, -1101, "Too many parameters sent for this endpoint.")


def mandatory_missing(name: str) -> ApiError:
    return ApiError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def unread_parameters(read: int, sent: int) -> ApiError:
    return ApiError(
        400,
        -1104,
        f"Not all sent parameters were read; read '{read}' parameter(s) but was sent '{sent}'.",
    )


def empty_parameter(name: str) -> ApiError:
    return ApiError(400, -1105, f"Parameter '{name}' was empty.")


def bad_recv_window() -> ApiError:
    return ApiError(400, -1131, "recvWindow must be less than 60000")


def bad_api_key_format() -> ApiError:
    return ApiError(401, -2014, "API-key format invalid.")


def rejected_api_key(ip: str) -> ApiError:
    """-2015, ending with the caller's address as Binance's message does."""
    return ApiError(401, -2015, f"Invalid API-key, IP, or permissions for action, request ip: {ip}")


#: The sandbox's own code for the manual repay while ``autoRepay`` is off: Binance documents
#: none, and no other refusal uses it (docs/semantics.md, "The sandbox's choices").
AUTO_REPAY_OFF_CODE = -21090


def request_too_large(what: str, limit: int) -> ApiError:
    # Binance answers an oversized request before parsing it; the code here is the closest one.
    return ApiError(413, -1101, f"Request too large: {what} over the limit of {limit}.")


def invalid_parameter(name: str, why: str = "") -> ApiError:
    detail = f" {why}" if why else ""
    return ApiError(400, -1130, f"Data sent for parameter '{name}' is not valid.{detail}")


def interval_too_big(why: str) -> ApiError:
    return ApiError(400, -1127, f"Lookup interval is too big. {why}")


def invalid_listen_key() -> ApiError:
    """Binance's -1125 INVALID_LISTEN_KEY: no active listen key for the caller's API key, or
    a ``listenKey`` parameter that is not it."""
    return ApiError(400, -1125, "This listenKey does not exist.")


def invalid_symbol() -> ApiError:
    return ApiError(400, -1121, "Invalid symbol.")


#: Every trading refusal's Binance code and message (USDⓈ-M futures error codes), in one
#: table; ``{}`` takes the refusal's detail.
TRADING_REFUSALS: dict[str, tuple[int, str]] = {
    "INVALID_SYMBOL": (-1121, "Invalid symbol."),
    "INVALID_ORDER_TYPE": (-1116, "Invalid orderType."),
    "INVALID_TIME_IN_FORCE": (-1115, "Invalid timeInForce."),
    "INVALID_SIDE": (-1117, "Invalid side."),
    "MANDATORY_MISSING": (
        -1102,
        "Mandatory parameter '{}' was not sent, was empty/null, or malformed.",
    ),
    "NOT_REQUIRED": (-1106, "Parameter '{}' sent when not required."),
    "INVALID_PARAMETER": (-1130, "Data sent for parameter '{}' is not valid."),
    "BAD_PRECISION": (-1111, "Precision is over the maximum defined for this asset."),
    "QTY_NOT_POSITIVE": (-4003, "Quantity less than or equal to zero."),
    "QTY_BELOW_MIN": (-4004, "Quantity less than min quantity."),
    "QTY_ABOVE_MAX": (-4005, "Quantity greater than max quantity."),
    "PRICE_BELOW_MIN": (-4013, "Price less than min price."),
    "PRICE_NOT_TICK": (-4014, "Price not increased by tick size."),
    "PRICE_ABOVE_MAX": (-4016, "Limit price can't be higher than {}."),
    "PRICE_ABOVE_MULTIPLIER": (-4016, "Limit price can't be higher than {}."),
    "PRICE_BELOW_MULTIPLIER": (-4024, "Limit price can't be lower than {}."),
    "QTY_NOT_STEP": (-4023, "Quantity not increased by step size."),
    "MIN_NOTIONAL": (
        -4164,
        "Order's notional must be no smaller than {} (unless you choose reduce only).",
    ),
    "INVALID_CLIENT_ORDER_ID": (-4015, "Client order id is not valid."),
    "DUPLICATE_CLIENT_ORDER_ID": (-4116, "ClientOrderId is duplicated."),
    "POSITION_SIDE_MISMATCH": (-4061, "Order's position side does not match user's setting."),
    "REDUCE_ONLY_REJECTED": (-2022, "ReduceOnly Order is rejected."),
    "MARGIN_INSUFFICIENT": (-2019, "Margin is insufficient."),
    "MAX_POSITION_EXCEEDED": (
        -2027,
        "Exceeded the maximum allowable position at current leverage.",
    ),
    "LEVERAGE_TOO_HIGH_FOR_POSITION": (
        -2027,
        "Exceeded the maximum allowable position at current leverage.",
    ),
    "TOO_MANY_OPEN_ORDERS": (-2025, "Reach max open order limit."),
    "FOK_REJECTED": (
        -5021,
        "Due to the order could not be filled immediately, the FOK order has been rejected."
        " The order will not be recorded in the order history",
    ),
    "GTX_REJECTED": (
        -5022,
        "Due to the order could not be executed as maker, the Post Only order will be"
        " rejected. The order will not be recorded in the order history",
    ),
    "UNKNOWN_ORDER_CANCEL": (-2011, "Unknown order sent."),
    "NO_SUCH_ORDER": (-2013, "Order does not exist."),
    "NO_NEED_TO_MODIFY": (-5027, "No need to modify the order."),
    "INVALID_PRICE_MATCH": (-5037, "Invalid price match"),
    "INVALID_SELF_TRADE_PREVENTION_MODE": (-5039, "Invalid self trade prevention mode"),
    "INVALID_GOOD_TILL_DATE": (
        -5040,
        "The goodTillDate timestamp must be greater than the current time plus 600 seconds and"
        " smaller than 253402300799000 (UTC 9999-12-31 23:59:59)",
    ),
    "INVALID_LEVERAGE": (-4028, "Leverage {} is not valid"),
    "NO_NEED_TO_CHANGE_POSITION_SIDE": (-4059, "No need to change position side."),
    "POSITION_SIDE_CHANGE_OPEN_ORDERS": (
        -4067,
        "Position side cannot be changed if there exists open orders.",
    ),
    "POSITION_SIDE_CHANGE_POSITION": (
        -4068,
        "Position side cannot be changed if there exists position.",
    ),
}


def trading_refusal(reason: str, detail: str) -> ApiError:
    """The Binance error for a trading refusal (papi_sandbox.trading.model.Refusal)."""
    code, msg = TRADING_REFUSALS[reason]
    return ApiError(400, code, msg.format(detail) if "{}" in msg else msg)


def bad_operator_request(msg: str) -> ApiError:
    """An operator request (JSON body, path, query) that is malformed."""
    return ApiError(400, -1102, msg)


def unknown_account(text: str) -> ApiError:
    """A path's account that is none (not an id): 404 -1000, as an unknown id."""
    return ApiError(404, -1000, str(UnknownAccount.of(text)))


def duplicate_query_parameter(name: str) -> ApiError:
    return ApiError(400, -1101, f"Duplicate values for the parameter '{name}'.")


def unknown_job(msg: str) -> ApiError:
    return ApiError(404, -1000, msg)


def no_such_live_key() -> ApiError:
    return ApiError(404, -2015, "No such live API key for this account.")


def http_error(status: int, detail: str) -> ApiError:
    """Any other refusal of the HTTP layer (Starlette's HTTPException), in Binance's shape."""
    return ApiError(status, -1000, detail)


def internal_retry() -> ApiError:
    """503 -1001: storage or a shared service is unavailable right now; nothing was changed."""
    return ApiError(503, -1001, "Internal error; unable to process your request. Please try again.")


def server_busy() -> ApiError:
    """Past the connection cap: Binance's -1008 (TOO_MANY_REQUESTS_QUEUED in wording)."""
    return ApiError(
        503,
        -1008,
        "Server is currently overloaded with other requests. Please try again in a few minutes.",
    )


def header_timeout() -> ApiError:
    return ApiError(408, -1007, "Timeout waiting for the request headers.")


def headers_too_large(limit: int) -> ApiError:
    return ApiError(
        431, -1101, f"Request too large: request line and headers over the limit of {limit} bytes."
    )


def malformed_http(msg: str) -> ApiError:
    return ApiError(400, -1000, f"Malformed HTTP request: {msg[:200]}")


def account_rate_limited(msg: str, retry_after_s: int) -> ApiError:
    return ApiError(429, -1003, msg, {"Retry-After": str(retry_after_s)})


#: Every domain refusal's HTTP status, Binance code and message (``{}``: the exception's text),
#: looked up by the exception's class, most specific first. ``LedgerError`` catches the rest: a
#: rule that refused its input (docs/semantics.md, "Errors").
DOMAIN_REFUSALS: dict[type[LedgerError], tuple[int, int, str]] = {
    InsufficientBalance: (400, -2018, "Balance is insufficient."),
    AutoRepayOff: (400, AUTO_REPAY_OFF_CODE, "{}"),
    AssetNotCollectable: (400, -1130, "Data sent for parameter 'asset' is not valid. {}."),
    UnknownAccount: (404, -1000, "{}"),
    KeyLimitReached: (400, -1101, "Too many API keys: {}."),
    BadKeyRequest: (400, -1102, "{}."),
    LedgerError: (400, -1102, "{}"),
}


def refusal(exc: LedgerError, *, explain: bool = False) -> ApiError:
    """The Binance error a domain refusal is answered with (:data:`DOMAIN_REFUSALS`). Binance's
    fixed messages stay exact on the public API; ``explain`` (the operator's surfaces) adds the
    rule's reason to them: ``Balance is insufficient: MARGIN holds 1 USDT.``"""
    if isinstance(exc, TradingRefused):  # Binance's futures codes (TRADING_REFUSALS)
        return trading_refusal(exc.reason.value, exc.detail)
    for cls in type(exc).__mro__:
        found = DOMAIN_REFUSALS.get(cls)
        if found is not None:
            status, code, msg = found
            if "{}" in msg:
                return ApiError(status, code, msg.format(exc))
            return ApiError(status, code, f"{msg[:-1]}: {exc}." if explain else msg)
    raise AssertionError("LedgerError is in the table")  # pragma: no cover


def unknown_market(symbol: str) -> ApiError:
    """An operator path naming a symbol the market does not have."""
    return ApiError(404, -1121, f"Unknown symbol '{symbol[:32]}'.")


def order_reference_missing() -> ApiError:
    return ApiError(
        400, -1102, "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!"
    )


def bad_parameter_combination() -> ApiError:
    return ApiError(400, -1128, "Combination of optional parameters invalid.")
