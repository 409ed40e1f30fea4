"""The dashboard over plain HTTP (the browser scenario is in test_browser.py): login, the
cookie's attributes, CSRF on every action, the operator API's validation, search and pages on
both stores. The server process is real; cookies are sent by hand (httpx keeps Secure cookies
for https only)."""

from __future__ import annotations

import html
import re
import secrets

import httpx
import pytest

from tests.support import ADMIN_TOKEN, Server

CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


class UiClient:
    """A browser-like client of /ui: keeps the dashboard's cookies and the page's CSRF token."""

    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=30)
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def _keep(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            name, _, value = header.split(";")[0].partition("=")
            if value and "max-age=0" not in header.lower():
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        found = CSRF_RE.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def get(self, path: str) -> httpx.Response:
        return self._keep(self.http.get(path, headers=self._headers()))

    def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, **headers: str
    ) -> httpx.Response:
        form = {"csrf_token": self.csrf, **data} if csrf else data
        return self._keep(self.http.post(path, data=form, headers={**self._headers(), **headers}))

    def login(self, token: str = ADMIN_TOKEN) -> httpx.Response:
        self.get("/ui/login")
        return self.post("/ui/login", {"token": token})


@pytest.fixture
def ui(server: Server) -> UiClient:
    client = UiClient(server)
    r = client.login()
    assert r.status_code == 303, r.text
    client.get("/ui/")  # the session's CSRF token, from its first page
    return client


def test_pages_need_a_session(server: Server) -> None:
    r = httpx.get(f"{server.base_url}/ui/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    r = httpx.get(f"{server.base_url}/ui", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/ui/"
    # A forged session cookie is no session.
    r = httpx.get(
        f"{server.base_url}/ui/",
        headers={"Cookie": "papi_ui_session=guess"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_login_cookie_is_http_only_secure_strict_and_scoped(server: Server) -> None:
    client = UiClient(server)
    client.get("/ui/login")
    r = client.post("/ui/login", {"token": ADMIN_TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    session = next(h for h in r.headers.get_list("set-cookie") if h.startswith("papi_ui_session="))
    attributes = {a.strip().lower() for a in session.split(";")[1:]}
    assert {"httponly", "secure", "path=/ui", "samesite=strict"} <= attributes
    assert ADMIN_TOKEN not in r.headers["location"]
    page = client.get("/ui/")
    assert page.status_code == 200 and "Accounts" in page.text
    assert ADMIN_TOKEN not in page.text  # never in a page either


def test_wrong_token_is_refused_and_never_logged(server: Server) -> None:
    client = UiClient(server)
    client.get("/ui/login")
    wrong = "wrong-" + secrets.token_hex(16)
    r = client.post("/ui/login", {"token": wrong})
    assert r.status_code == 401 and "Wrong operator token" in r.text
    assert "papi_ui_session" not in client.cookies
    r = client.http.get("/ui/", headers=client._headers(), follow_redirects=False)
    assert r.status_code == 303
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert wrong not in log and ADMIN_TOKEN not in log


def test_login_page_warns_when_the_secure_cookie_cannot_stick(server: Server) -> None:
    """Over plain HTTP to a host other than loopback, browsers drop Secure cookies: the login
    page says so instead of failing silently."""
    direct = httpx.get(f"{server.base_url}/ui/login")
    assert "will not stick" not in direct.text
    remote = httpx.get(f"{server.base_url}/ui/login", headers={"Host": "sandbox.lan:8765"})
    assert "will not stick" in remote.text


def test_login_without_csrf_token_is_refused(server: Server) -> None:
    client = UiClient(server)
    client.get("/ui/login")
    r = client.post("/ui/login", {"token": ADMIN_TOKEN}, csrf=False)
    assert r.status_code == 403
    assert "papi_ui_session" not in client.cookies


def test_actions_without_or_with_a_wrong_csrf_token_change_nothing(
    server: Server, ui: UiClient
) -> None:
    account = server.create_account("csrf")
    adjust = {"wallet": "MARGIN", "asset": "USDT", "amount": "5", "reason": "DEPOSIT"}
    path = f"/ui/accounts/{account.account_id}/adjust"
    assert ui.post(path, adjust, csrf=False).status_code == 403
    assert ui.post(path, {**adjust, "csrf_token": "0" * 64}, csrf=False).status_code == 403
    # The right token from another origin (e.g. a page on another port of this host).
    assert ui.post(path, adjust, Origin="http://127.0.0.1:1").status_code == 403
    assert ui.post(path, adjust, **{"Sec-Fetch-Site": "same-site"}).status_code == 403
    # A CSRF token computed for another nonce (a planted nonce cookie) does not pass either.
    ui.cookies["papi_ui_nonce"] = "planted"
    assert ui.post(path, adjust).status_code == 403
    assert server.journal(account.account_id) == []
    for action in ("/ui/accounts", "/ui/operations/verify", "/ui/logout"):
        assert ui.post(action, {}, csrf=False).status_code == 403, action


def test_adjustments_use_the_operator_apis_validation(server: Server, ui: UiClient) -> None:
    account = server.create_account("validation")
    path = f"/ui/accounts/{account.account_id}/adjust"
    bad = [
        ({"wallet": "SPOT", "asset": "USDT", "amount": "1", "reason": "DEPOSIT"}, "'wallet'"),
        ({"wallet": "UM", "asset": "usdt", "amount": "1", "reason": "DEPOSIT"}, "'asset'"),
        ({"wallet": "UM", "asset": "USDT", "amount": "1e3", "reason": "DEPOSIT"}, "'amount'"),
        # Unicode digits are not digits (the one ASCII grammar, through the same parser).
        ({"wallet": "UM", "asset": "USDT", "amount": "-١٢", "reason": "REALIZED_PNL"}, "amount"),
        ({"wallet": "UM", "asset": "USDT", "amount": "1", "reason": "GIFT"}, "'reason'"),
        ({"wallet": "MARGIN", "asset": "USDT", "amount": "-1", "reason": "COMMISSION"}, "below"),
    ]
    for form, message in bad:
        r = ui.post(path, form)
        assert r.status_code == 400, (form, r.status_code)
        shown = html.unescape(r.text)
        assert message in shown, form
        # The operator API answers the same body with the same message.
        api_path = f"/accounts/{account.account_id}/adjustments"
        admin = server.admin.request("POST", api_path, json=form)
        assert admin.status_code == 400 and admin.json()["msg"] in shown
    assert server.journal(account.account_id) == []
    ok = {"wallet": "UM", "asset": "USDT", "amount": "-12.5", "reason": "REALIZED_PNL"}
    r = ui.post(path, ok)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=adjusted")
    [entry] = server.journal(account.account_id)
    assert entry["type"] == "REALIZED_PNL"
    assert entry["postings"][0]["amount"] == "-12.50000000"
    page = ui.get(f"/ui/accounts/{account.account_id}")
    assert 'class="num negative" data-wallet="UM">-12.50000000' in page.text
    assert ui.get("/ui/accounts/999999999").status_code == 404
    missing = ui.get("/ui/no-such-page")
    assert missing.status_code == 404 and "no such page" in missing.text


def test_settings_create_revoke_jobs_verify(server: Server, ui: UiClient) -> None:
    r = ui.post("/ui/accounts", {"label": "made in the dashboard"})
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    account_id = int(re.search(r"Account (\d+) created", r.text).group(1))  # type: ignore[union-attr]
    api_key = re.search(r'id="new-api-key">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    secret = re.search(r'id="new-secret-key">([A-Za-z0-9]{64})<', r.text).group(1)  # type: ignore[union-attr]
    page = ui.get(f"/ui/accounts/{account_id}")
    assert api_key in page.text and secret not in page.text  # shown once only

    r = ui.post(f"/ui/accounts/{account_id}/settings", {"autoRepay": "false", "vipLevel": "2"})
    assert r.status_code == 303
    settings = server.admin.request("GET", f"/accounts/{account_id}/settings").json()
    assert settings == {"autoRepay": False, "vipLevel": 2}
    r = ui.post(f"/ui/accounts/{account_id}/settings", {"autoRepay": "maybe"})
    assert r.status_code == 400 and "autoRepay" in r.text
    r = ui.post(f"/ui/accounts/{account_id}/settings", {"vipLevel": "٣"})
    assert r.status_code == 400 and "vipLevel" in r.text
    r = ui.post(f"/ui/accounts/{account_id}/settings", {"vipLevel": "99"})
    assert r.status_code == 400 and "vipLevel" in r.text

    r = ui.post(f"/ui/accounts/{account_id}/revoke", {"apiKey": api_key})
    assert r.status_code == 303
    keys = server.admin.request("GET", f"/accounts/{account_id}/api-keys").json()
    assert keys[0]["revoked"] is True
    r = ui.post(f"/ui/accounts/{account_id}/revoke", {"apiKey": api_key})
    assert r.status_code == 404 and "No such live API key" in r.text

    r = ui.post("/ui/operations/job", {"job": "interest", "asOf": ""})
    assert r.status_code == 200 and 'id="job-report"' in r.text
    r = ui.post("/ui/operations/job", {"job": "interest", "asOf": "yesterday"})
    assert r.status_code == 400 and "asOf" in r.text
    r = ui.post("/ui/operations/job", {"job": "nope"})
    assert r.status_code == 404
    r = ui.post("/ui/operations/verify", {})
    assert r.status_code == 200 and 'id="verify-result"' in r.text and ">OK<" in r.text


def test_accounts_search_and_pages(server: Server, ui: UiClient) -> None:
    tag = f"page{secrets.token_hex(4)}"
    ids = [server.create_account(f"{tag}-{i}").account_id for i in range(27)]
    server.adjust(ids[3], "UM", "BTC", "-0.5", "REALIZED_PNL")
    first = ui.get(f"/ui/?q={tag.upper()}")  # case-insensitive
    shown = [int(x) for x in re.findall(r'<a href="/ui/accounts/(\d+)">', first.text)]
    assert shown == ids[:25]
    assert 'class="negative">UM -0.50000000 BTC</span>' in first.text
    after = re.search(r"after=(\d+)\" rel=\"next\"", first.text).group(1)  # type: ignore[union-attr]
    second = ui.get(f"/ui/?q={tag}&after={after}")
    assert [int(x) for x in re.findall(r'<a href="/ui/accounts/(\d+)">', second.text)] == ids[25:]
    assert 'rel="next"' not in second.text
    by_id = ui.get(f"/ui/?q={ids[5]}")
    assert f'<a href="/ui/accounts/{ids[5]}">' in by_id.text
    # LIKE's wildcards are searched for literally.
    assert "No accounts" in ui.get("/ui/?q=%25_%25").text
    # The label is escaped in the page.
    evil = server.create_account("<script>alert(1)</script>")
    page = ui.get(f"/ui/accounts/{evil.account_id}")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text


def test_pages_forbid_framing_and_foreign_scripts(ui: UiClient) -> None:
    r = ui.get("/ui/")
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert r.headers["cache-control"] == "no-store"
    js = ui.get("/ui/static/ui.js")
    assert js.status_code == 200 and "EventSource" in js.text


def test_logout_ends_the_session(ui: UiClient) -> None:
    r = ui.post("/ui/logout", {})
    assert r.status_code == 303
    assert "papi_ui_session" not in ui.cookies
    assert ui.http.get("/ui/", headers=ui._headers()).status_code == 303


def test_live_feed_sends_each_committed_entry_of_the_account(server: Server, ui: UiClient) -> None:
    r = httpx.get(f"{server.base_url}/ui/events", follow_redirects=False)
    assert r.status_code == 303  # no session, no feed
    assert ui.get("/ui/events?account=x1").status_code == 404
    mine, other = server.create_account("live"), server.create_account("live-other")
    path = f"/ui/events?account={mine.account_id}"
    with ui.http.stream("GET", path, headers=ui._headers()) as feed:
        assert feed.status_code == 200
        assert feed.headers["content-type"].startswith("text/event-stream")
        lines = feed.iter_lines()
        assert next(lines).startswith("retry: ")
        assert next(lines) == ": connected"  # subscribed from here on
        server.adjust(other.account_id, "UM", "USDT", "-1", "REALIZED_PNL")  # not this feed's
        tran_id = server.adjust(mine.account_id, "UM", "USDT", "-2", "REALIZED_PNL")["tranId"]
        events: list[str] = []
        for line in lines:  # the feed stays open: read the first event only
            if line.startswith(("event:", "data:")):
                events.append(line)
            if len(events) == 2:
                break
        assert events == [
            "event: entry",
            f'data: {{"accountId":{mine.account_id},"tranId":{tran_id},"type":"REALIZED_PNL"}}',
        ]
