"""The dashboard in a real browser (Playwright driving Debian's Chromium, see browser.py):
log in, create an account, post a UM loss, see it highlighted, repay through the public API and
watch the page update without a reload, read the journal entry, revoke the key; a wrong token
and a missing CSRF token are refused.

``make screenshots`` runs this same scenario with ``PAPI_SANDBOX_SCREENSHOTS=docs/img``: the
pictures in the docs are taken by the code the tests run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    ADMIN_TOKEN,
    BACKENDS,
    Account,
    Server,
    Signer,
    create_test_database,
    drop_test_database,
    postgres_admin_url,
)
from tests.ui.browser import chromium, expect

SCREENSHOTS_ENV = "PAPI_SANDBOX_SCREENSHOTS"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}  # a phone
LIVE_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module", params=BACKENDS)
def ui_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of this module's own on each store (on PostgreSQL the live updates come through
    the store's commit notifications)."""
    admin = postgres_admin_url() if request.param == "postgres" else None
    db_url = create_test_database(admin) if admin else None
    srv = Server(tmp_path_factory.mktemp("ui-browser"), ["--ip-weight-limit", "0"], db_url=db_url)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if admin and db_url:
            drop_test_database(admin, db_url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


class Shots:
    """Saves named screenshots when PAPI_SANDBOX_SCREENSHOTS names a folder; else does nothing."""

    def __init__(self, server: Server) -> None:
        folder = os.environ.get(SCREENSHOTS_ENV) if server.backend == "sqlite" else None
        self.folder = Path(folder) if folder else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def take(self, page: Any, name: str, *, full_page: bool = True, mask: Any = ()) -> None:
        if self.folder is not None:
            path = str(self.folder / f"{name}.png")
            page.screenshot(path=path, full_page=full_page, mask=list(mask))


def login(page: Any, base_url: str, token: str = ADMIN_TOKEN) -> None:
    page.goto(f"{base_url}/ui/")
    assert page.url.endswith("/ui/login")
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Log in").click()


def test_dashboard_scenario(ui_server: Server, browser: Any) -> None:
    shots = Shots(ui_server)
    base = ui_server.base_url
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()

    # A wrong token is refused, and no session cookie is set.
    login(page, base, "not-the-token-" + "x" * 32)
    assert page.url.endswith("/ui/login")
    assert page.get_by_role("alert").inner_text() == "Wrong operator token."
    assert not [c for c in context.cookies() if c["name"] == "papi_ui_session"]
    shots.take(page, "login")

    # The right one opens the accounts list; the cookie is HttpOnly, Secure, Strict, on /ui.
    login(page, base)
    assert page.url == f"{base}/ui/"
    [cookie] = [c for c in context.cookies() if c["name"] == "papi_ui_session"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it

    # Create an account: its secret is shown once.
    page.get_by_label("New account's label").fill("browser-bot")
    page.get_by_role("button", name="Create account").click()
    heading = page.get_by_role("heading", level=1).inner_text()
    account_id = int(re.search(r"Account (\d+) created", heading).group(1))  # type: ignore[union-attr]
    account = Account(
        account_id,
        page.locator("#new-api-key").inner_text(),
        page.locator("#new-secret-key").inner_text(),
    )
    shots.take(page, "account-created", mask=[page.locator("#new-secret-key")])
    page.get_by_role("link", name=f"Open account {account_id}").click()

    # Fund MARGIN, then post a UM loss, through the forms.
    for wallet, amount, reason in (("MARGIN", "100", "DEPOSIT"), ("UM", "-30.5", "REALIZED_PNL")):
        page.get_by_label("Wallet").select_option(wallet)
        page.get_by_label("Asset").fill("USDT")
        page.get_by_label("Amount (negative takes away)").fill(amount)
        page.get_by_label("Reason").select_option(reason)
        page.get_by_role("button", name="Adjust").click()
        assert page.get_by_role("status").first.inner_text() == "Balance adjusted."
    um = page.locator('#balances tr[data-asset="USDT"] td[data-wallet="UM"]')
    assert um.inner_text() == "-30.50000000"
    assert "negative" in (um.get_attribute("class") or "")
    cover = page.locator('#balances tr[data-asset="USDT"] td[data-wallet="repay"]')
    assert cover.inner_text() == "30.50000000"
    assert page.locator("#account-status").inner_text() == "NORMAL"

    # The list highlights the account's negative UM balance.
    page.goto(f"{base}/ui/?q=browser-bot")
    row = page.locator("tbody tr", has=page.get_by_role("link", name=str(account_id)))
    assert row.locator(".negative").inner_text() == "UM -30.50000000 USDT"
    shots.take(page, "accounts")
    page.goto(f"{base}/ui/accounts/{account_id}")
    shots.take(page, "account-negative")

    # Live: the repay arrives through the public API, and the open page follows, no reload.
    live = page.locator("#account-live")
    expect(live).to_have_attribute("data-live", "connected", timeout=LIVE_TIMEOUT_MS)
    page.evaluate("window.__sameDocument = true")
    repaid = Signer(base, account).request(
        "POST", "/papi/v1/repay-futures-negative-balance", where="body"
    )
    assert repaid.status_code == 200, repaid.text
    # The page's CSP forbids eval, so the wait is a locator's, not a JavaScript predicate.
    expect(um).to_have_text("0.00000000", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument") is True  # the page was not reloaded
    assert "negative" not in (um.get_attribute("class") or "")
    assert page.locator('#balances tr[data-asset="USDT"] td').first.inner_text() == "69.50000000"

    # The journal's newest entry is the repay, with its postings.
    newest = live.locator("#journal li.entry").first
    assert "REPAY_FUTURES_NEGATIVE_BALANCE" in newest.locator(".entry-head").inner_text()
    postings = newest.locator("table.postings tbody tr").all_inner_texts()
    cells = [re.split(r"\s+", p.strip()) for p in postings]
    assert sorted(cells) == sorted(
        [
            [str(account_id), "MARGIN", "USDT", "-30.50000000"],
            [str(account_id), "UM", "USDT", "30.50000000"],
        ]
    )
    shots.take(page, "account-after-repay")

    # Trading: a market order through the public API appears as a position, live.
    placed = Signer(base, account).request(
        "POST",
        "/papi/v1/um/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"},
    )
    assert placed.status_code == 200, placed.text
    position = page.locator('#positions tr[data-symbol="BTCUSDT"]')
    expect(position).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument") is True
    assert position.locator("td").nth(1).inner_text() == "0.01000000"

    # Revoke the key: the page says so and the public API refuses the key at once.
    page.get_by_role("button", name=f"Revoke key {account.api_key[:8]}").click()
    assert page.get_by_role("status").first.inner_text() == "API key revoked."
    assert page.locator("#keys-h + .scroll tbody td").nth(4).inner_text() == "revoked"
    refused = Signer(base, account).request("GET", "/papi/v1/balance")
    assert refused.status_code == 401 and refused.json()["code"] == -2015

    # A form whose CSRF token was removed is refused, and changes nothing.
    before = ui_server.journal(account_id)
    page.evaluate(
        'document.querySelector(\'form[action$="/adjust"] input[name="csrf_token"]\').remove()'
    )
    page.get_by_label("Amount (negative takes away)").fill("5")
    page.get_by_label("Wallet").select_option("MARGIN")
    page.get_by_label("Reason").select_option("DEPOSIT")
    with page.expect_response(lambda r: r.url.endswith("/adjust")) as response:
        page.get_by_role("button", name="Adjust").click()
    assert response.value.status == 403
    assert "CSRF" in page.get_by_role("alert").inner_text()
    assert ui_server.journal(account_id) == before

    # Set a mark price: the markets table and the position follow.
    page.goto(f"{base}/ui/operations")
    page.get_by_label("Symbol").select_option("BTCUSDT")
    page.get_by_label("Mark price", exact=True).fill("61000")
    page.get_by_role("button", name="Set price").click()
    assert page.get_by_role("status").first.inner_text().startswith("BTCUSDT: mark price 61000")
    mark = page.locator('#markets tr[data-symbol="BTCUSDT"] td').first
    assert mark.inner_text() == "61000.00000000"
    page.get_by_label("Mark price", exact=True).fill("-1")
    page.get_by_role("button", name="Set price").click()
    assert "markPrice" in page.get_by_role("alert").inner_text()
    page.goto(f"{base}/ui/accounts/{account_id}")
    assert position.locator("td").nth(4).inner_text() == "61000.00000000"
    page.goto(f"{base}/ui/operations")

    # Jobs and verify.
    page.get_by_role("button", name="Run verify").click()
    assert page.locator("#verify-result h2").inner_text() == "Verify: OK"
    shots.take(page, "operations")

    # A narrow screen: one column, nothing wider than the screen but the scrolled tables.
    page.set_viewport_size(NARROW)
    page.goto(f"{base}/ui/accounts/{account_id}")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    shots.take(page, "account-narrow", full_page=False)
    context.close()


def test_keyboard_reaches_every_form_control(ui_server: Server, browser: Any) -> None:
    """Accessibility: every input has a label, and Tab reaches the login form's controls."""
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.goto(f"{ui_server.base_url}/ui/login")
    active = "document.activeElement.id || document.activeElement.className"
    # Focused on arrival. Chromium runs autofocus at its next rendering step, which may come
    # after the load event goto waits for: wait for it (up to 5 s), never accept another focus.
    # (wait_for_function would eval a string, which the page's CSP refuses: poll instead.)
    for _ in range(100):
        if page.evaluate(active) == "token":
            break
        page.wait_for_timeout(50)
    assert page.evaluate(active) == "token"
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Log in"
    page.keyboard.press("Enter")
    page.wait_for_url(f"{ui_server.base_url}/ui/")
    page.keyboard.press("Tab")  # the skip link comes first, and leads to the content
    assert page.evaluate(active) == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate(active) == "main"
    account = ui_server.create_account("a11y")
    for path in ("/ui/", f"/ui/accounts/{account.account_id}", "/ui/operations"):
        page.goto(f"{ui_server.base_url}{path}")
        unlabelled = page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select')]
                 .filter(e => !(e.labels && e.labels.length)).map(e => e.name)"""
        )
        assert unlabelled == [], (path, unlabelled)
    context.close()
