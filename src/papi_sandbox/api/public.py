"""The public API (every endpoint of the table, ``papi_sandbox.api.endpoints``) as one raw ASGI
app: one code path limits, parses, authenticates, validates and dispatches each request. It
reads the shared state (:mod:`papi_sandbox.api.state`) and knows nothing of the composition
root that mounts it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from papi_sandbox.api.endpoints import ENDPOINTS, Call, Endpoint, table
from papi_sandbox.api.http import (
    EncodedJson,
    RawHeaders,
    encode_headers,
    error_body,
    json_headers,
    read_body_raw,
)
from papi_sandbox.api.state import AppState
from papi_sandbox.ledger.model import LedgerError
from papi_sandbox.observability import Receive, RequestObserver, Scope, Send
from papi_sandbox.store.base import StoreUnavailable
from papi_sandbox.wire import auth, errors, params
from papi_sandbox.wire.account_limits import AccountCall, account_limit_exceeded
from papi_sandbox.wire.errors import ApiError
from papi_sandbox.wire.limits import WeightDecision

log = logging.getLogger("papi_sandbox")

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
WEIGHT_HEADER_RAW = WEIGHT_HEADER.lower().encode()
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FORM_CONTENT_TYPE_RAW = FORM_CONTENT_TYPE.encode()


def now_ms() -> int:
    """Milliseconds since the epoch (the clock ``timestamp`` and ``recvWindow`` are read
    against)."""
    return time.time_ns() // 1_000_000


#: What one public request is answered with: status, body, headers, Binance code (None on
#: success) and the IP weight used (for the log line).
Answer = tuple[int, bytes, RawHeaders, int | None, str]


def _refusal(error: ApiError, weight: bytes | None) -> Answer:
    body = error_body(error)
    extra = [(WEIGHT_HEADER_RAW, weight)] if weight is not None else []
    if error.headers:
        extra += encode_headers(error.headers)
    return error.status, body, json_headers(body, extra), error.code, (weight or b"").decode()


class PublicApi:
    """Serves every endpoint of the table through the same steps, as a raw ASGI app: no
    Starlette Request or Response objects, one pass over the headers, and the request's id,
    metrics and log line handled here (``RequestObserver``) rather than by a middleware."""

    def __init__(
        self,
        state: AppState,
        observer: RequestObserver,
        endpoints: tuple[Endpoint, ...] = ENDPOINTS,
    ) -> None:
        self.state = state
        self.observer = observer
        self.routes = table(endpoints)
        self._spend_now: Callable[..., WeightDecision] | None = getattr(
            state.limiter, "spend_now", None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = self.observer.next_id()
        status, code, weight = 500, None, ""
        try:
            try:
                status, body, headers, code, weight = await self._answer(scope, receive)
            except StoreUnavailable as exc:  # nothing applied; the client may retry
                self.state.store_failures.note(exc, scope["method"], scope["path"])
                status, body, headers, code, weight = _refusal(errors.disconnected(), None)
            except Exception:
                # A bug: logged with its traceback, answered in Binance's shape, never as HTML.
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                status, body, headers, code, weight = _refusal(errors.unknown(), None)
            headers.append((b"x-request-id", request_id.encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            elapsed_s = time.perf_counter() - started
            self.observer.finish(scope, request_id, status, code, weight, elapsed_s)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        state = self.state
        path: str = scope["path"]
        method: str = scope["method"]
        methods = self.routes.get(path)
        endpoint = methods.get(method) if methods else None
        client = scope.get("client")
        ip: str = client[0] if client else "unknown"
        if endpoint is not None and endpoint.account_limit is not None and endpoint.needs_key:
            return await self._answer_account_limited(endpoint, scope, receive, ip)
        # Unknown paths cost weight 1, so probing for endpoints is not free.
        try:
            weight_of_request = endpoint.weight if endpoint else 1
            decision = (
                self._spend_now(ip, weight_of_request)  # in-process: no coroutine to await
                if self._spend_now is not None
                else await state.limiter.spend(ip, weight_of_request)
            )
        except ApiError as error:  # a shared limiter is unreachable: fail closed, change nothing
            return _refusal(error, None)
        weight = b"%d" % decision.used
        ip_refusal = self._ip_refusal(decision)
        if ip_refusal is not None:
            return _refusal(ip_refusal, weight)
        try:
            if methods is None:
                raise errors.not_found(path)
            if endpoint is None:
                raise errors.method_not_allowed(method, path)
            used = [decision.used]  # raised by _serve when the request turns out heavier
            try:
                result = await self._serve(endpoint, scope, receive, ip, used)
            finally:
                weight = b"%d" % used[0]
        except ApiError as error:
            return _refusal(error, weight)
        body = result if type(result) is EncodedJson else orjson.dumps(result)
        return 200, body, json_headers(body, ((WEIGHT_HEADER_RAW, weight),)), None, weight.decode()

    async def _answer_account_limited(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, ip: str
    ) -> Answer:
        """An endpoint with a per-account rolling limit: the key and the signature are checked
        first, then ONE limiter step decides the IP's ban and weight and the account's call
        together (one Redis round trip with ``--limits``: wire/limits_redis.py). A request
        refused before its account is known spends its IP weight alone; a ban or the IP weight
        is answered before any other refusal."""
        limit = endpoint.account_limit
        assert limit is not None
        refusal: ApiError | None = None
        try:
            account_id, caller_key, args = await self._authenticated(
                endpoint, scope, receive, ip, [0]
            )
        except ApiError as error:
            refusal, account_id, caller_key, args = error, 0, "", {}
        call = AccountCall(limit, account_id) if refusal is None else None
        try:
            decision = await self._spend(ip, endpoint.weight, call)
        except ApiError as error:  # a shared limiter is unreachable: fail closed
            return _refusal(error, None)
        weight = b"%d" % decision.used
        ip_refusal = self._ip_refusal(decision)
        if ip_refusal is not None:
            if decision.banned_until_ms is not None:
                return _refusal(ip_refusal, weight)
            refusal = ip_refusal
        elif decision.account_retry_after_s is not None:
            self.observer.metrics.stats.account_limited(limit.name)
            refusal = account_limit_exceeded(limit, decision.account_retry_after_s)
        if refusal is not None:
            return _refusal(refusal, weight)
        try:
            result = await self._handle(endpoint, account_id, args, caller_key)
        except ApiError as error:
            return _refusal(error, weight)
        body = result if type(result) is EncodedJson else orjson.dumps(result)
        return 200, body, json_headers(body, ((WEIGHT_HEADER_RAW, weight),)), None, weight.decode()

    def _ip_refusal(self, decision: WeightDecision) -> ApiError | None:
        """The IP's refusal in a limiter decision, counted in the metrics: 418 -1003 for a banned
        IP (answered before the body, the parameters or the key are looked at), 429 -1003 past
        the weight limit, ``None`` when the IP may go on (docs/semantics.md, rate limits)."""
        if decision.banned_until_ms is not None:
            self.observer.metrics.stats.ip_refused(418)
            return errors.ip_banned(decision.banned_until_ms, decision.retry_after_s)
        if not decision.allowed:
            self.observer.metrics.stats.ip_refused(429)
            return errors.too_many_requests(
                self.state.limiter.limit_per_minute, decision.retry_after_s
            )
        return None

    async def _spend(self, ip: str, weight: int, account: AccountCall | None) -> WeightDecision:
        if self._spend_now is not None:  # in-process: no coroutine to await
            return self._spend_now(ip, weight, account)
        return await self.state.limiter.spend(ip, weight, account)

    async def _serve(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, ip: str, used: list[int]
    ) -> Any:
        account_id, caller_key, args = await self._authenticated(endpoint, scope, receive, ip, used)
        return await self._handle(endpoint, account_id, args, caller_key)

    async def _handle(
        self, endpoint: Endpoint, account_id: int, args: dict[str, Any], caller_key: str
    ) -> Any:
        try:
            return await endpoint.handler(Call(self.state.service, account_id, args, caller_key))
        except LedgerError as exc:
            raise errors.refusal(exc) from None

    async def _authenticated(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, ip: str, used: list[int]
    ) -> tuple[int, str, dict[str, Any]]:
        """The body read, the parameters parsed, the key and signature checked: the request's
        account (0 when the endpoint needs no key), its API key ("" then) and its bound
        parameters."""
        # One pass over the headers (ASGI servers lowercase their names); the first of each wins.
        api_key: str | None = None
        content_length: bytes | None = None
        content_type: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"x-mbx-apikey":
                if api_key is None:
                    api_key = value.decode("latin-1")
            elif name == b"content-length":
                if content_length is None:
                    content_length = value
            elif name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"transfer-encoding":
                chunked = True
        body = (
            await read_body_raw(receive, content_length, chunked, params.MAX_BODY_BYTES)
            if content_length is not None or chunked
            else b""  # HTTP/1.1: no Content-Length and no chunking means no body
        )
        if body and not _body_has_parameters(scope["method"], content_type):
            body = b""  # read (bounded) so the connection stays usable, then ignored
        raw = params.parse_raw(scope["query_string"], body)
        if endpoint.weight_without_symbol is not None and "symbol" not in raw.values:
            used[0] = await self._spend_more(ip, endpoint.weight_without_symbol - endpoint.weight)
        account_id = 0
        caller_key = ""
        if endpoint.needs_key:
            key = await auth.authenticate(api_key, ip, self.state.keys)
            if endpoint.signed:
                auth.check_timing(raw.values, now_ms())
                signature = raw.values.get(params.SIGNATURE)
                if not signature:
                    raise errors.mandatory_missing(params.SIGNATURE)
                if not auth.verify_signature(key, raw.signed_text, signature):
                    raise errors.invalid_signature()
                if not endpoint.security.permits(key.can_read, key.can_trade):
                    raise errors.rejected_api_key(ip)
            account_id = key.account_id
            caller_key = key.api_key
        values = raw.values
        if not endpoint.refuses_unknown:
            by_name = endpoint.params_by_name
            values = {name: text for name, text in values.items() if name in by_name}
        args = params.bind(endpoint.all_params, values, endpoint.params_by_name)
        return account_id, caller_key, args

    async def _spend_more(self, ip: str, weight: int) -> int:
        """Charge ``weight`` more to ``ip`` once the parameters show the request costs more
        (an endpoint weighed higher without ``symbol``); over the limit it is refused."""
        decision = (
            self._spend_now(ip, weight)
            if self._spend_now is not None
            else await self.state.limiter.spend(ip, weight)
        )
        refusal = self._ip_refusal(decision)
        if refusal is not None:
            raise refusal
        return decision.used


#: Methods whose parameters Binance reads from the query string only: a body is ignored.
QUERY_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _body_has_parameters(method: str, content_type: bytes | None) -> bool:
    """Whether a request body is read for parameters (docs/semantics.md, "Where parameters come
    from"): never for GET/HEAD/OPTIONS; otherwise when it is a form, that is when its
    Content-Type is ``application/x-www-form-urlencoded`` (any parameters such as a charset
    allowed) or absent. JSON, text/plain and every other type are ignored, not refused."""
    if method in QUERY_ONLY_METHODS:
        return False
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == FORM_CONTENT_TYPE_RAW
