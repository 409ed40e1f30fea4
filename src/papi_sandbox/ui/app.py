"""The operator's dashboard at ``/ui/``: server-rendered pages over the same service code and the
same validation as the operator API (:mod:`papi_sandbox.admin.api`), plus a live feed of the
accounts' changes (Server-Sent Events from the event hub) that a small script turns into
in-place updates.

Every action is a plain HTML form (works without JavaScript): the handler turns the form into the
operator API's JSON shape, runs the operator API's own parser and service call, and answers with
the page again (303 to it on success; the page with the error on failure). The session and CSRF
rules are in :mod:`papi_sandbox.ui.session`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from papi_sandbox import grammar, money
from papi_sandbox.admin.api import (
    domain_error,
    parse_adjustment,
    parse_new_account,
    parse_settings,
    path_account_id,
    revoke_key,
    run_job_as_of,
    token_matches,
    verify_object,
)
from papi_sandbox.admin.markets import (
    market_object,
    market_symbol,
    parse_price_change,
    positions_object,
)
from papi_sandbox.api.http import client_ip, read_body
from papi_sandbox.jobs.runner import Job
from papi_sandbox.ledger import rules
from papi_sandbox.ledger.account import UNI_MMR_WITHOUT_MARGIN, AccountSummary
from papi_sandbox.ledger.model import (
    ADJUSTABLE_WALLETS,
    ADJUSTMENT_REASONS,
    FUTURES_WALLETS,
    AccountBalances,
    BalanceRow,
    Entry,
    InsufficientBalance,
    LedgerError,
)
from papi_sandbox.store.base import MAX_ACCOUNT_SEARCH_CHARS, AccountSearch
from papi_sandbox.stream.hub import EventHub, SubscriberDropped, TooManySubscribers
from papi_sandbox.trading.model import OrderUpdate, TradingRefused
from papi_sandbox.ui import session
from papi_sandbox.wire.errors import ApiError

if TYPE_CHECKING:
    from papi_sandbox.api.state import AppState

log = logging.getLogger("papi_sandbox.ui")

#: Accounts on one page of the list.
ACCOUNTS_PAGE = 25
#: Journal entries on one page of an account.
JOURNAL_PAGE = 20
#: Interest-history rows shown on an account's page (newest first).
INTEREST_ROWS = 50
#: What a successful action's redirect may say (``?done=<key>``): fixed texts, never user input.
DONE_MESSAGES = {
    "adjusted": "Balance adjusted.",
    "settings": "Settings saved.",
    "revoked": "API key revoked.",
}

#: Live feeds (Server-Sent Events connections) one process serves at once; past it a feed is
#: answered 503 and the page simply stays as it is (EventSource retries).
MAX_LIVE_FEEDS = 64
#: Seconds one live feed stays open; the browser's EventSource then reconnects by itself.
LIVE_FEED_MAX_S = 600
#: Seconds between keep-alive comments on an idle feed (also how soon a gone client is noticed).
LIVE_FEED_PING_S = 15
#: Milliseconds the browser waits before reconnecting a dropped feed (SSE ``retry``).
LIVE_FEED_RETRY_MS = 2000
#: Entries one feed may have waiting; a feed that falls further behind is closed (the page
#: reconnects and fetches the current state anyway).
LIVE_FEED_QUEUE = 256

Handler = Callable[[Request], Awaitable[Response]]

#: Headers of every dashboard page: nothing cached, nothing framed, only the package's own
#: script and style run.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("papi_sandbox.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["amount"] = _amount
    env.filters["when"] = _when
    return env


def _amount(value: Decimal) -> str:
    return money.format_amount(value)


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _uni_mmr(summary: AccountSummary) -> str:
    if summary.uni_mmr == UNI_MMR_WITHOUT_MARGIN:
        return "no margin used"
    return money.format_amount(summary.uni_mmr)


def _negatives(rows: list[BalanceRow]) -> list[tuple[str, str, Decimal]]:
    """(wallet, asset, amount) of every negative futures balance."""
    found: list[tuple[str, str, Decimal]] = []
    for row in rows:
        for wallet, amount in zip(FUTURES_WALLETS, (row.um_wallet, row.cm_wallet), strict=True):
            if amount < 0:
                found.append((wallet.value, row.asset, amount))
    return found


def _repay_cover(account_id: int, balances: AccountBalances) -> dict[str, Decimal]:
    """Per asset, what ``repay-futures-negative-balance`` would move now: the repay rule itself
    (ledger/rules.py) run on the snapshot, nothing written."""
    try:
        postings = rules.plan_repay(account_id, balances.amounts)
    except InsufficientBalance:
        return {}
    cover: dict[str, Decimal] = {}
    for p in postings:
        if p.wallet in FUTURES_WALLETS:
            cover[p.asset] = money.add(cover.get(p.asset, money.ZERO), p.amount)
    return cover


def _entry_view(entry: Entry) -> dict[str, Any]:
    return {
        "tran_id": entry.tran_id,
        "type": entry.type,
        "time_ms": entry.time_ms,
        "postings": [
            {
                "account_id": p.account_id,
                "wallet": p.wallet.value,
                "asset": p.asset,
                "amount": p.amount,
            }
            for p in entry.postings
        ],
    }


def _positive_int(text: str | None, limit: int = 10**18) -> int | None:
    """A page cursor from the query: ASCII digits only, else None."""
    if text is not None and grammar.is_integer(text) and int(text) < limit:  # the one grammar
        return int(text)
    return None


async def _feed(hub: EventHub, account_id: int | None, feeds: list[int]) -> AsyncIterator[bytes]:
    """The live feed's body: one ``entry`` event per committed entry of ``account_id`` (None:
    every account) and one ``order`` event per order execution (several queued ones coalesce
    into the last), keep-alive comments, closed
    after LIVE_FEED_MAX_S. Subscribes only once the response is under way, so a feed that never
    starts holds nothing."""
    feeds[0] += 1
    try:
        try:
            subscription = hub.subscribe(account_id, limit=LIVE_FEED_QUEUE)
        except TooManySubscribers:
            return
        async with subscription:
            yield b"retry: %d\n: connected\n\n" % LIVE_FEED_RETRY_MS
            deadline = time.monotonic() + LIVE_FEED_MAX_S
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    item = await asyncio.wait_for(
                        anext(subscription), timeout=min(LIVE_FEED_PING_S, remaining)
                    )
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                except (StopAsyncIteration, SubscriberDropped):
                    return
                while (newer := subscription.get_nowait()) is not None:
                    item = newer
                if isinstance(item, OrderUpdate):  # an order changed: open orders, positions
                    order = item.order
                    data = orjson.dumps({"accountId": order.account_id, "orderId": order.order_id})
                    yield b"event: order\ndata: " + data + b"\n\n"
                    continue
                entry = item.entry
                data = orjson.dumps(
                    {"accountId": entry.account_id, "tranId": entry.tran_id, "type": entry.type}
                )
                yield b"event: entry\ndata: " + data + b"\n\n"
    finally:
        feeds[0] -= 1


class _Dashboard:
    """The dashboard's handlers over one service: pages (:meth:`page`), form actions
    (:meth:`action`), the login and the live feed."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.service = state.service
        self.env = _environment()
        self.feeds = [0]  # open live feeds of this process

    def render(
        self,
        request: Request,
        template: str,
        status: int = 200,
        *,
        purpose: str = session.SESSION,
        **context: Any,
    ) -> Response:
        # Every page carries the CSRF token its forms post back; the nonce cookie is created
        # (or kept) here.
        nonce = session.request_nonce(request) or session.new_nonce()
        body = self.env.get_template(template).render(
            csrf=session.csrf_token(self.state.admin_token, purpose, nonce),
            csrf_field=session.CSRF_FIELD,
            logged_in=purpose == session.SESSION,
            insecure=session.cookie_dropped(request),
            **context,
        )
        response = HTMLResponse(body, status, headers=PAGE_HEADERS)
        if session.request_nonce(request) != nonce:
            session.set_cookie(response, session.NONCE_COOKIE, nonce, None)
        return response

    def refused(self, request: Request, status: int, message: str) -> Response:
        return self.render(
            request,
            "error.html",
            status,
            purpose=session.SESSION if session.logged_in(request, self.state.admin_token) else "",
            message=message,
        )

    def throttled(self, request: Request) -> Response | None:
        """The answer for an IP past its failed operator authentications of this minute (the
        throttle the operator API shares, docs/security.md), else None."""
        retry_after_s = self.state.admin_auth.refuse(client_ip(request))
        if retry_after_s is None:
            return None
        answer = self.render(
            request,
            "login.html",
            429,
            purpose=session.LOGIN,
            error="Too many failed operator authentications from this address; try again in"
            f" {retry_after_s} s.",
        )
        answer.headers["Retry-After"] = str(retry_after_s)
        return answer

    def signed_in(self, request: Request) -> bool:
        """The session cookie holds the token; a wrong one counts as a failed authentication."""
        if session.logged_in(request, self.state.admin_token):
            return True
        if request.cookies.get(session.SESSION_COOKIE):
            self.state.admin_auth.fail(client_ip(request))
        return False

    def page(self, handler: Handler) -> Handler:
        """A page or fragment read: logged-in sessions only (others go to the login form)."""

        async def endpoint(request: Request) -> Response:
            refusal = self.throttled(request)
            if refusal is not None:
                return refusal
            if not self.signed_in(request):
                if request.headers.get("x-papi-ui-fragment"):
                    return Response(status_code=401, headers=PAGE_HEADERS)
                return RedirectResponse("/ui/login", 303, headers=PAGE_HEADERS)
            return await handler(request)

        return endpoint

    def action(self, handler: Callable[[Request, dict[str, str]], Awaitable[Response]]) -> Handler:
        """A state-changing form post: a session, a valid CSRF token, a well-formed form."""

        async def endpoint(request: Request) -> Response:
            refusal = self.throttled(request)
            if refusal is not None:
                return refusal
            if not self.signed_in(request):
                return self.refused(request, 401, "Log in first.")
            try:
                form = session.parse_form(await read_body(request, session.MAX_FORM_BYTES))
            except session.FormError as exc:
                return self.refused(request, 400, f"Refused: {exc}.")
            except ApiError as error:
                return self.refused(request, error.status, error.msg)
            if not session.csrf_ok(request, form, self.state.admin_token, session.SESSION):
                return self.refused(
                    request,
                    403,
                    "Refused: the form's CSRF token is missing or wrong. Reload"
                    " the page and try again.",
                )
            return await handler(request, form)

        return endpoint

    # -- login --------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if session.logged_in(request, self.state.admin_token):
            return RedirectResponse("/ui/", 303, headers=PAGE_HEADERS)
        return self.render(request, "login.html", purpose=session.LOGIN, error=None)

    async def login(self, request: Request) -> Response:
        try:
            form = session.parse_form(await read_body(request, session.MAX_FORM_BYTES))
        except (session.FormError, ApiError):
            form = {}
        if not session.csrf_ok(request, form, self.state.admin_token, session.LOGIN):
            return self.render(
                request,
                "login.html",
                403,
                purpose=session.LOGIN,
                error="The login form expired or came from another page; try again.",
            )
        refusal = self.throttled(request)
        if refusal is not None:
            return refusal
        if not token_matches(self.state, form.get("token", "")):
            # Counted like every failed operator authentication; the token is never logged.
            self.state.admin_auth.fail(client_ip(request))
            log.warning("dashboard login refused (wrong operator token)")
            return self.render(
                request, "login.html", 401, purpose=session.LOGIN, error="Wrong operator token."
            )
        response = RedirectResponse("/ui/", 303, headers=PAGE_HEADERS)
        session.set_cookie(
            response, session.SESSION_COOKIE, self.state.admin_token, session.SESSION_MAX_AGE_S
        )
        # A fresh nonce for the session: a nonce planted before login is not carried over.
        session.set_cookie(response, session.NONCE_COOKIE, session.new_nonce(), None)
        return response

    async def logout(self, request: Request, form: dict[str, str]) -> Response:
        response = RedirectResponse("/ui/login", 303, headers=PAGE_HEADERS)
        session.clear_cookie(response, session.SESSION_COOKIE)
        session.clear_cookie(response, session.NONCE_COOKIE)
        return response

    # -- accounts -----------------------------------------------------------------------------

    async def accounts_context(self, request: Request) -> dict[str, Any]:
        text = request.query_params.get("q", "").strip()[:MAX_ACCOUNT_SEARCH_CHARS]
        after = _positive_int(request.query_params.get("after")) or 0
        found = await self.state.store.list_accounts(AccountSearch(text), after, ACCOUNTS_PAGE + 1)
        more = len(found) > ACCOUNTS_PAGE
        rows = []
        for info in found[:ACCOUNTS_PAGE]:
            balances = await self.service.balance_rows(info.account_id)
            summary = await self.service.account_summary(info.account_id)
            rows.append(
                {
                    "info": info,
                    "equity": summary.account_equity,
                    "uni_mmr": _uni_mmr(summary),
                    "status": summary.status,
                    "negatives": _negatives(balances),
                }
            )
        return {
            "q": text,
            "after": after,
            "rows": rows,
            "next_after": found[ACCOUNTS_PAGE - 1].account_id if more else None,
        }

    async def accounts(self, request: Request) -> Response:
        return self.render(request, "accounts.html", **(await self.accounts_context(request)))

    async def accounts_fragment(self, request: Request) -> Response:
        return self.render(
            request, "_accounts_table.html", **(await self.accounts_context(request))
        )

    async def create_account(self, request: Request, form: dict[str, str]) -> Response:
        label = form.get("label", "").strip()
        try:
            issued = await self.service.create_account(parse_new_account({"label": label or None}))
        except ApiError as error:
            return self.refused(request, error.status, error.msg)
        return self.render(request, "created.html", 201, issued=issued)

    # -- one account --------------------------------------------------------------------------

    async def account_context(self, request: Request, account_id: int) -> dict[str, Any]:
        info = await self.service.require_account(account_id)
        snapshot = await self.service.balances(account_id)
        rows = snapshot.rows()
        summary = await self.service.account_summary(account_id)
        before = _positive_int(request.query_params.get("before"))
        entries = await self.service.journal(account_id, JOURNAL_PAGE + 1, before)
        more = len(entries) > JOURNAL_PAGE
        entries = entries[:JOURNAL_PAGE]
        now_ms = time.time_ns() // 1_000_000
        interest = await self.service.interest_history(account_id, None, 0, now_ms, INTEREST_ROWS)
        keys = await self.state.store.api_keys(account_id)
        trading = self.service.trading
        um = positions_object(await trading.account(account_id), trading.market)
        return {
            "info": info,
            "summary": summary,
            "uni_mmr": _uni_mmr(summary),
            "rows": rows,
            "negatives": _negatives(rows),
            "cover": _repay_cover(account_id, snapshot),
            "entries": [_entry_view(e) for e in entries],
            "before": before,
            "older": entries[-1].tran_id if more and entries else None,
            "interest": interest,
            "interest_rows": INTEREST_ROWS,
            "keys": keys,
            "um": um,
            "wallets": [w.value for w in ADJUSTABLE_WALLETS],
            "reasons": [r.value for r in ADJUSTMENT_REASONS],
            "done": DONE_MESSAGES.get(request.query_params.get("done", "")),
            "error": None,
            "form": {},
        }

    async def account_page(self, request: Request) -> Response:
        try:
            account_id = path_account_id(request)
            context = await self.account_context(request, account_id)
        except (ApiError, LedgerError) as exc:
            error = domain_error(exc)
            assert error is not None
            return self.refused(request, error.status, error.msg)
        return self.render(request, "account.html", **context)

    async def account_fragment(self, request: Request) -> Response:
        try:
            context = await self.account_context(request, path_account_id(request))
        except (ApiError, LedgerError) as exc:
            error = domain_error(exc)
            assert error is not None
            return Response(error.msg, error.status, headers=PAGE_HEADERS)
        return self.render(request, "_account_live.html", **context)

    async def account_action(
        self,
        request: Request,
        form: dict[str, str],
        run: Callable[[int], Awaitable[None]],
        done: str,
    ) -> Response:
        """Runs one action on the account; answers 303 to its page, or the page with the
        operator API's error (and the form as it was sent)."""
        try:
            account_id = path_account_id(request)
        except ApiError as bad_path:
            return self.refused(request, bad_path.status, bad_path.msg)
        try:
            await run(account_id)
        except (ApiError, LedgerError) as exc:
            error = domain_error(exc)
            assert error is not None
            try:
                context = await self.account_context(request, account_id)
            except (ApiError, LedgerError):
                return self.refused(request, error.status, error.msg)
            context.update(error=error.msg, form=form)
            return self.render(request, "account.html", error.status, **context)
        return RedirectResponse(f"/ui/accounts/{account_id}?done={done}", 303, headers=PAGE_HEADERS)

    async def adjust(self, request: Request, form: dict[str, str]) -> Response:
        async def run(account_id: int) -> None:
            fields = {k: form.get(k, "").strip() for k in ("wallet", "asset", "amount", "reason")}
            a = parse_adjustment(fields)
            await self.service.adjust(account_id, a.wallet, a.asset, a.amount, a.reason)

        return await self.account_action(request, form, run, "adjusted")

    async def settings(self, request: Request, form: dict[str, str]) -> Response:
        async def run(account_id: int) -> None:
            # The form's text, in the operator API's JSON types; the rules are parse_settings's.
            data: dict[str, Any] = {}
            flag = form.get("autoRepay")
            if flag is not None:
                data["autoRepay"] = {"true": True, "false": False}.get(flag, flag)
            vip = form.get("vipLevel", "").strip()
            if vip:
                digits = grammar.is_integer(vip, 9)
                data["vipLevel"] = int(vip) if digits else vip
            auto_repay, vip_level = parse_settings(data)
            await self.service.set_settings(account_id, auto_repay=auto_repay, vip_level=vip_level)

        return await self.account_action(request, form, run, "settings")

    async def revoke(self, request: Request, form: dict[str, str]) -> Response:
        async def run(account_id: int) -> None:
            await revoke_key(self.state, account_id, form.get("apiKey", ""))

        return await self.account_action(request, form, run, "revoked")

    # -- operations: jobs and verify ------------------------------------------------------------

    async def operations_page(
        self, request: Request, status: int = 200, form: dict[str, str] | None = None, **result: Any
    ) -> Response:
        """The markets, jobs and verify page, with what an action just did (``result``)."""
        market = await self.service.trading.prices()
        context: dict[str, Any] = {"report": None, "error": None, "done": None, **result}
        return self.render(
            request,
            "operations.html",
            status,
            jobs=[j.value for j in Job],
            markets=[market_object(p) for p in market.prices.values()],
            form=form or {},
            **context,
        )

    async def operations(self, request: Request) -> Response:
        return await self.operations_page(request)

    async def run_job(self, request: Request, form: dict[str, str]) -> Response:
        as_of = form.get("asOf", "").strip()
        try:
            report = await run_job_as_of(self.state, form.get("job", ""), {"asOf": as_of or None})
        except ApiError as error:
            return await self.operations_page(request, error.status, form, error=error.msg)
        return await self.operations_page(request, form=form, report=report.to_json())

    async def set_price(self, request: Request, form: dict[str, str]) -> Response:
        # The form's text in the operator API's JSON shape; the rules are parse_price_change's
        # and the trading service's (an unknown symbol is refused there).
        data = {"markPrice": form.get("markPrice", "").strip()}
        if form.get("indexPrice", "").strip():
            data["indexPrice"] = form["indexPrice"].strip()
        try:
            symbol = market_symbol(self.service.trading, form.get("symbol", ""))
            mark, index = parse_price_change(data)
            change = await self.service.trading.set_price(symbol, mark, index)
        except (ApiError, LedgerError, TradingRefused) as exc:
            error = domain_error(exc)
            assert error is not None
            return await self.operations_page(request, error.status, form, error=error.msg)
        done = (
            f"{symbol}: mark price {money.format_amount(change.price.mark_price)};"
            f" {change.fills} fill(s) on {change.accounts} account(s)."
        )
        return await self.operations_page(request, done=done)

    async def verify(self, request: Request, form: dict[str, str]) -> Response:
        result = verify_object(await self.state.store.verify())
        return await self.operations_page(request, 200 if result["ok"] else 409, verify=result)

    async def not_found(self, request: Request) -> Response:
        return self.refused(request, 404, "There is no such page of the dashboard.")

    # -- live feed ------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """``text/event-stream`` of the committed journal entries of one account
        (``?account=<id>``) or of every account, from the event hub the user data stream uses.
        Each event says only which entry committed; the page fetches its fragment again."""
        text = request.query_params.get("account")
        account_id = _positive_int(text) if text is not None else None
        if text is not None and account_id is None:
            return Response("unknown account", 404, headers=PAGE_HEADERS)
        if self.feeds[0] >= MAX_LIVE_FEEDS:
            return Response("too many live self.feeds", 503, headers=PAGE_HEADERS)
        return StreamingResponse(
            _feed(self.state.hub, account_id, self.feeds),
            media_type="text/event-stream",
            headers={**PAGE_HEADERS, "X-Accel-Buffering": "no"},
        )


def ui_routes(state: AppState) -> list[BaseRoute]:
    """The dashboard's routes, mounted at ``/ui`` by the composition root (api/app.py)."""
    ui = _Dashboard(state)
    return [
        Route("/", ui.page(ui.accounts), methods=["GET"]),
        Route("/events", ui.page(ui.events), methods=["GET"]),
        Route("/accounts/fragment", ui.page(ui.accounts_fragment), methods=["GET"]),
        Route("/login", ui.login_form, methods=["GET"]),
        Route("/login", ui.login, methods=["POST"]),
        Route("/logout", ui.action(ui.logout), methods=["POST"]),
        Route("/accounts", ui.action(ui.create_account), methods=["POST"]),
        Route("/accounts/{account_id}", ui.page(ui.account_page), methods=["GET"]),
        Route("/accounts/{account_id}/fragment", ui.page(ui.account_fragment), methods=["GET"]),
        Route("/accounts/{account_id}/adjust", ui.action(ui.adjust), methods=["POST"]),
        Route("/accounts/{account_id}/settings", ui.action(ui.settings), methods=["POST"]),
        Route("/accounts/{account_id}/revoke", ui.action(ui.revoke), methods=["POST"]),
        Route("/operations", ui.page(ui.operations), methods=["GET"]),
        Route("/operations/job", ui.action(ui.run_job), methods=["POST"]),
        Route("/operations/verify", ui.action(ui.verify), methods=["POST"]),
        Route("/operations/price", ui.action(ui.set_price), methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("papi_sandbox.ui", "static")]), name="static"),
        Route("/{rest:path}", ui.page(ui.not_found), methods=["GET"]),
    ]
