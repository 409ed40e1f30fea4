"""The operator API under ``/admin/v1``: accounts, adjustments, balances and the journal.

Guarded by ``Authorization: Bearer <token>``; never counted toward any IP weight. Errors have
Binance's shape (``{"code", "msg"}``) like the public API.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from papi_sandbox import grammar, money
from papi_sandbox.admin.markets import market_routes
from papi_sandbox.api.http import (
    AdminHandler,
    client_ip,
    error_response,
    json_response,
    read_body,
)
from papi_sandbox.api.serialize import balance_object, entry_object
from papi_sandbox.jobs.config import MAX_VIP_LEVEL
from papi_sandbox.jobs.runner import JobReport, UnknownJob, run_on_demand
from papi_sandbox.ledger.model import (
    ADJUSTABLE_WALLETS,
    ADJUSTMENT_REASONS,
    EntryType,
    LedgerError,
    Wallet,
)
from papi_sandbox.store.base import MAX_JOURNAL_PAGE, StoreUnavailable, VerifyReport
from papi_sandbox.wire import auth, errors
from papi_sandbox.wire.errors import ApiError

if TYPE_CHECKING:
    from papi_sandbox.api.state import AppState

#: Largest operator request body (bytes).
MAX_ADMIN_BODY_BYTES = 64 * 1024
#: Longest account label (characters).
MAX_LABEL_CHARS = 100
DEFAULT_JOURNAL_PAGE = 100
#: Most entries in one key's ipWhitelist (Binance allows 30 per key).
MAX_IP_WHITELIST_ENTRIES = 30
KEY_FIELDS = frozenset(
    {"type", "publicKey", "enableReading", "enablePortfolioMarginTrading", "ipWhitelist"}
)


def _bad(msg: str) -> ApiError:
    return errors.bad_operator_request(msg)


class _DuplicateName(ValueError):
    """A JSON object names one member twice (RFC 8259 leaves the meaning open)."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        names = [name for name, _ in pairs]
        raise _DuplicateName(next(n for n in names if names.count(n) > 1))
    return data


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _json_body(request: Request) -> dict[str, Any]:
    """The operator request's JSON object. A member named twice is refused with -1101 (as a
    repeated public parameter is), never resolved to one of its values; NaN and Infinity are not
    JSON. Raises ApiError 400."""
    body = await read_body(request, MAX_ADMIN_BODY_BYTES)
    if not body.strip():
        return {}
    try:
        data = json.loads(body, object_pairs_hook=_json_object, parse_constant=_json_constant)
    except _DuplicateName as exc:
        raise errors.duplicate_query_parameter(str(exc)) from None
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's
        raise _bad("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _bad("The request body must be a JSON object.")
    return data


#: Highest account id a path may name (a signed 64-bit integer has 18 full digits).
MAX_ACCOUNT_ID = 10**18 - 1


def path_account_id(request: Request) -> int:
    """The ``{account_id}`` of an operator path, ASCII digits in the one grammar
    (:mod:`papi_sandbox.grammar`); raises ApiError 404 -1000 otherwise (no such account)."""
    text = request.path_params["account_id"]
    try:
        return grammar.parse_integer(text, low=1, high=MAX_ACCOUNT_ID, what="account id")
    except grammar.GrammarError:
        raise errors.unknown_account(text) from None


def query_integer(
    request: Request, name: str, default: int | None, low: int, high: int
) -> int | None:
    """An integer query parameter in the one grammar; ``default`` when absent; a repeated
    name is refused (as the public API's -1101 would). Raises ApiError."""
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise errors.duplicate_query_parameter(name)
    try:
        return grammar.parse_integer(values[0], low=low, high=high, what=f"'{name}'")
    except grammar.GrammarError as exc:
        raise _bad(f"{exc}.") from None


def domain_error(exc: Exception) -> ApiError | None:
    """The Binance-shaped error an operator action's domain error is answered with (None: not a
    domain error, i.e. a bug). Shared by the operator API and the dashboard."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, LedgerError):
        return errors.refusal(exc, explain=True)  # the one table (wire/errors.py)
    return None


def token_matches(state: AppState, given: str) -> bool:
    """True when ``given`` is the operator token (constant-time comparison)."""
    return hmac.compare_digest(
        given.encode("utf-8", "replace"), state.admin_token.encode("utf-8", "replace")
    )


def _guarded(state: AppState, handler: AdminHandler) -> AdminHandler:
    """Checks the bearer token (constant time) and turns domain errors into Binance errors.
    An IP with too many failed tokens this minute is refused before its token is looked at
    (``state.admin_auth``, --admin-auth-failures-per-minute)."""
    expected = f"Bearer {state.admin_token}".encode()
    throttle = state.admin_auth

    async def endpoint(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        ip = client_ip(request)
        try:
            retry_after_s = throttle.refuse(ip)
            if retry_after_s is not None:
                raise errors.too_many_auth_failures(throttle.limit, retry_after_s)
            if not hmac.compare_digest(given, expected):
                throttle.fail(ip)
                raise errors.unauthorized()
            return await handler(request)
        except StoreUnavailable as exc:  # nothing applied; one log line (health.py)
            state.store_failures.note(exc, request.method, request.url.path)
            return error_response(errors.disconnected())
        except (ApiError, LedgerError) as exc:
            error = domain_error(exc)
            assert error is not None
            return error_response(error)

    return endpoint


# -- one parser per operator action, shared by the operator API and the dashboard -------------


def _no_unknown(data: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise _bad(f"Unknown field(s): {', '.join(sorted(unknown))[:200]}.")


def parse_new_account(data: dict[str, Any]) -> str | None:
    """The label of ``POST /admin/v1/accounts`` (``{"label"?: str}``); raises ApiError -1102."""
    label = data.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_CHARS):
        raise _bad(f"'label' must be a string of at most {MAX_LABEL_CHARS} characters.")
    _no_unknown(data, {"label"})
    return label


@dataclass(frozen=True, slots=True)
class Adjustment:
    """An operator adjustment: ``amount`` (signed) of ``asset`` into ``wallet``, as ``reason``."""

    wallet: Wallet
    asset: str
    amount: Decimal
    reason: EntryType


def parse_adjustment(data: dict[str, Any]) -> Adjustment:
    """The body of ``POST /admin/v1/accounts/{id}/adjustments``
    (``{"wallet", "asset", "amount": decimal string, "reason"}``); raises ApiError -1102."""
    _no_unknown(data, {"wallet", "asset", "amount", "reason"})
    try:
        wallet = grammar.parse_enum(
            data.get("wallet"), (w.value for w in ADJUSTABLE_WALLETS), what="'wallet'"
        )
        asset = grammar.parse_asset(data.get("asset"), what="'asset'")
        amount_text = data.get("amount")
        if not isinstance(amount_text, str):
            raise _bad(
                "'amount' must be a decimal string such as \"-250.5\" (never a JSON number)."
            )
        amount = money.parse_amount(amount_text, signed=True, what="'amount'")
        reason = grammar.parse_enum(
            data.get("reason"), (r.value for r in ADJUSTMENT_REASONS), what="'reason'"
        )
    except grammar.GrammarError as exc:
        raise _bad(f"{exc}.") from None
    return Adjustment(Wallet(wallet), asset, amount, EntryType(reason))


def parse_settings(data: dict[str, Any]) -> tuple[bool | None, int | None]:
    """``(autoRepay, vipLevel)`` of ``PUT /admin/v1/accounts/{id}/settings``, None where not
    given; raises ApiError -1102. The VIP level's range is checked by the service."""
    _no_unknown(data, {"autoRepay", "vipLevel"})
    auto_repay = data.get("autoRepay")
    if auto_repay is not None and not isinstance(auto_repay, bool):
        raise _bad("'autoRepay' must be true or false.")
    vip_level = data.get("vipLevel")
    if vip_level is not None:
        try:
            vip_level = grammar.parse_json_integer(
                vip_level, low=0, high=MAX_VIP_LEVEL, what="'vipLevel'"
            )
        except grammar.GrammarError as exc:
            raise _bad(f"{exc}.") from None
    return auto_repay, vip_level


async def run_job_as_of(state: AppState, name: str, data: dict[str, Any]) -> JobReport:
    """``POST /admin/v1/jobs/{job}`` (``{"asOf"?: ISO-8601 text or ms}``): runs the job's latest
    slot at or before ``asOf``. Raises ApiError (404 unknown job, -1102 bad ``asOf`` or a slot
    older than the run markers are kept)."""
    try:
        _no_unknown(data, {"asOf"})
        return await run_on_demand(state.store, name, data.get("asOf"), state.jobs)
    except UnknownJob as exc:
        raise errors.unknown_job(str(exc)) from None
    except grammar.GrammarError as exc:  # a bad asOf
        raise _bad(f"{exc}.") from None
    except ValueError as exc:  # a slot older than the run markers are kept
        raise _bad(str(exc)) from None


def verify_object(report: VerifyReport) -> dict[str, Any]:
    """``GET /admin/v1/verify``'s body (answered 200 when ``ok``, else 409)."""
    return {
        "ok": report.ok,
        "entries": report.entries,
        "postings": report.postings,
        "balances": report.balances,
        "accounts": report.accounts,
        "assets": report.assets,
        "problems": report.problems[:100],
        "damage": report.damage[:100],
        "notes": report.notes[:100],
    }


async def revoke_key(state: AppState, account_id: int, api_key: str) -> None:
    """Revoke one of the account's live keys, refused at once (not after the key cache's TTL);
    raises ApiError 404 -2015 when the account has no such live key."""
    if not await state.service.revoke_api_key(account_id, api_key):
        raise errors.no_such_live_key()
    state.keys.forget(api_key)
    if state.streams is not None:  # its listen keys die with it, and their connections
        state.streams.api_key_revoked(api_key)


async def _create_account(state: AppState, request: Request) -> Response:
    issued = await state.service.create_account(parse_new_account(await _json_body(request)))
    return json_response(
        201,
        {
            "accountId": issued.account_id,
            "apiKey": issued.api_key,
            "secretKey": issued.secret_key,
        },
    )


async def _adjust(state: AppState, request: Request) -> Response:
    account_id = path_account_id(request)
    a = parse_adjustment(await _json_body(request))
    entry = await state.service.adjust(account_id, a.wallet, a.asset, a.amount, a.reason)
    row = await state.service.balance_row(account_id, a.asset)
    unrealized = await state.service.trading.unrealized(account_id)
    balance = balance_object(row, unrealized.get(a.asset))
    return json_response(200, {"tranId": entry.tran_id, "balance": balance})


async def _balances(state: AppState, request: Request) -> Response:
    account_id = path_account_id(request)
    await state.service.require_account(account_id)
    rows = await state.service.balance_rows(account_id)
    # umUnrealizedPNL at the mark, as GET /papi/v1/balance shows it
    unrealized = await state.service.trading.unrealized(account_id)
    return json_response(200, [balance_object(row, unrealized.get(row.asset)) for row in rows])


async def _journal(state: AppState, request: Request) -> Response:
    account_id = path_account_id(request)
    unknown = set(request.query_params) - {"limit", "beforeTranId"}
    if unknown:
        raise _bad(f"Unknown query parameter(s): {', '.join(sorted(unknown))[:200]}.")
    limit = query_integer(request, "limit", DEFAULT_JOURNAL_PAGE, 1, MAX_JOURNAL_PAGE)
    before = query_integer(request, "beforeTranId", None, 1, MAX_ACCOUNT_ID)
    assert limit is not None
    entries = await state.service.journal(account_id, limit, before)
    return json_response(200, [entry_object(e) for e in entries])


async def _verify(state: AppState, request: Request) -> Response:
    report = await state.store.verify()
    return json_response(200 if report.ok else 409, verify_object(report))


async def _settings(state: AppState, request: Request) -> Response:
    account_id = path_account_id(request)
    if request.method == "PUT":
        auto_repay, vip_level = parse_settings(await _json_body(request))
        await state.service.set_settings(account_id, auto_repay=auto_repay, vip_level=vip_level)
    info = await state.service.require_account(account_id)
    return json_response(200, {"autoRepay": info.auto_repay, "vipLevel": info.vip_level})


async def _run_job_now(state: AppState, request: Request) -> Response:
    report = await run_job_as_of(state, request.path_params["job"], await _json_body(request))
    return json_response(200, report.to_json())


async def _create_api_key(state: AppState, request: Request) -> Response:
    account_id = path_account_id(request)
    data = await _json_body(request)
    unknown = set(data) - KEY_FIELDS
    if unknown:
        raise _bad(f"Unknown field(s): {', '.join(sorted(unknown))[:200]}.")
    key_type = data.get("type", "HMAC")
    if key_type not in auth.KEY_TYPES:
        raise _bad(f"'type' must be one of {', '.join(auth.KEY_TYPES)}.")
    public_key = data.get("publicKey")
    if public_key is not None and not isinstance(public_key, str):
        raise _bad("'publicKey' must be a PEM string.")
    flags = {}
    for name in ("enableReading", "enablePortfolioMarginTrading"):
        value = data.get(name, True)  # a sandbox convenience: unsaid means allowed
        if not isinstance(value, bool):
            raise _bad(f"'{name}' must be true or false.")
        flags[name] = value
    whitelist = data.get("ipWhitelist", [])
    if (
        not isinstance(whitelist, list)
        or len(whitelist) > MAX_IP_WHITELIST_ENTRIES
        or not all(isinstance(e, str) and auth.allowed_ip_entry(e) for e in whitelist)
    ):
        raise _bad(
            f"'ipWhitelist' must be a list of at most {MAX_IP_WHITELIST_ENTRIES} IP addresses"
            " or CIDR ranges."
        )
    api_key, secret = await state.service.issue_api_key(
        account_id,
        key_type,
        public_key,
        can_read=flags["enableReading"],
        can_trade=flags["enablePortfolioMarginTrading"],
        ip_whitelist=tuple(whitelist),
        max_keys_per_account=state.settings.max_api_keys_per_account,
    )
    body: dict[str, Any] = {"accountId": account_id, "apiKey": api_key, "type": key_type}
    if secret is not None:
        body["secretKey"] = secret  # shown this once; stored sealed
    return json_response(201, body)


async def _list_api_keys(state: AppState, request: Request) -> Response:
    account_id = path_account_id(request)
    await state.service.require_account(account_id)
    return json_response(
        200,
        [
            {
                "apiKey": k.api_key,
                "type": k.key_type,
                "enableReading": k.can_read,
                "enablePortfolioMarginTrading": k.can_trade,
                "ipWhitelist": list(k.ip_whitelist),
                "revoked": k.revoked,
            }
            for k in await state.store.api_keys(account_id)
        ],
    )


async def _revoke_api_key(state: AppState, request: Request) -> Response:
    account_id = path_account_id(request)
    await revoke_key(state, account_id, request.path_params["api_key"])
    return json_response(200, {})


#: The operator API's own routes (path, handler, method); the market routes join them
#: (:func:`papi_sandbox.admin.markets.market_routes`).
ADMIN_ROUTES: tuple[tuple[str, Callable[[AppState, Request], Awaitable[Response]], str], ...] = (
    ("/accounts", _create_account, "POST"),
    ("/accounts/{account_id}/adjustments", _adjust, "POST"),
    ("/accounts/{account_id}/balances", _balances, "GET"),
    ("/accounts/{account_id}/journal", _journal, "GET"),
    ("/verify", _verify, "GET"),
    ("/accounts/{account_id}/settings", _settings, "GET"),
    ("/accounts/{account_id}/settings", _settings, "PUT"),
    ("/jobs/{job}", _run_job_now, "POST"),
    ("/accounts/{account_id}/api-keys", _create_api_key, "POST"),
    ("/accounts/{account_id}/api-keys", _list_api_keys, "GET"),
    ("/accounts/{account_id}/api-keys/{api_key}", _revoke_api_key, "DELETE"),
)


def admin_routes(state: AppState) -> list[Route]:
    """The operator API's routes (mounted at ``/admin/v1``), each behind :func:`_guarded`."""

    def route(path: str, handler: AdminHandler, method: str) -> Route:
        return Route(path, _guarded(state, handler), methods=[method])

    return [
        *(route(path, partial(handler, state), method) for path, handler, method in ADMIN_ROUTES),
        *market_routes(state, route, _json_body, path_account_id),
    ]
