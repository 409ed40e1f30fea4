"""Binance's error codes and the one exception that carries them to the wire.

Every refusal is an :class:`ApiError` with an HTTP status, a stable negative code and a message as
Binance words it. The HTTP layer turns it into ``{"code": .., "msg": ..}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


def balance_insufficient() -> ApiError:
    return ApiError(400, -2018, "Balance is insufficient.")


#: The sandbox's own code for the manual repay while ``autoRepay`` is off: Binance documents
#: none, and no other refusal uses it (docs/semantics.md, "The sandbox's choices").
AUTO_REPAY_OFF_CODE = -21090


def auto_repay_off(msg: str) -> ApiError:
    return ApiError(400, AUTO_REPAY_OFF_CODE, msg)


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
