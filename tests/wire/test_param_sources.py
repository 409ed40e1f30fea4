"""Where parameters come from, as Binance documents it, over HTTP on both stores: the query
string wins over the form body for the same name; a name repeated within one source is -1101;
the signature covers the raw query string + the raw form body; a GET's body and any body that is
not a form are ignored (neither read nor signed), never refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import Account, Server, now_ms, raw_request, sign

ASSET_COLLECTION = "/papi/v1/asset-collection"
AUTO_COLLECTION = "/papi/v1/auto-collection"
BALANCE = "/papi/v1/balance"


@pytest.fixture
def collectable(server: Server) -> Account:
    account = server.create_account("sources")
    server.adjust(account.account_id, "UM", "USDT", "100")
    server.adjust(account.account_id, "UM", "BTC", "2")
    return account


def _balances(server: Server, account: Account) -> dict[str, dict[str, Any]]:
    rows = server.admin.request("GET", f"/accounts/{account.account_id}/balances").json()
    return {row["asset"]: row for row in rows}


def _send(
    server: Server,
    account: Account,
    method: str,
    path: str,
    query: str,
    body: str,
    *,
    signed_text: str,
    content_type: str | None = "application/x-www-form-urlencoded",
    signature_in: str = "query",
) -> httpx.Response:
    signature = f"signature={sign(account.secret, signed_text)}"
    if signature_in == "query":
        query = f"{query}&{signature}" if query else signature
    else:
        body = f"{body}&{signature}" if body else signature
    headers = {"X-MBX-APIKEY": account.api_key}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return raw_request(server.base_url, method, path, query, body, headers)


def test_query_wins_over_the_body(server: Server, collectable: Account) -> None:
    ts = now_ms()
    query, body = "asset=USDT", f"asset=BTC&timestamp={ts}"
    r = _send(server, collectable, "POST", ASSET_COLLECTION, query, body, signed_text=query + body)
    assert (r.status_code, r.json()) == (200, {"msg": "success"}), r.text
    rows = _balances(server, collectable)
    assert rows["USDT"]["umWalletBalance"] == "0.00000000"  # the query's asset was collected
    assert rows["BTC"]["umWalletBalance"] == "2.00000000"  # the body's was not


def test_signature_in_the_body_and_the_query_split(server: Server, collectable: Account) -> None:
    ts = now_ms()
    query, body = "asset=BTC", f"timestamp={ts}"
    r = _send(
        server,
        collectable,
        "POST",
        ASSET_COLLECTION,
        query,
        body,
        signed_text=query + body,
        signature_in="body",
    )
    assert r.status_code == 200, r.text
    assert _balances(server, collectable)["BTC"]["umWalletBalance"] == "0.00000000"


def test_repeated_within_one_source_is_1101(server: Server, collectable: Account) -> None:
    before = _balances(server, collectable)
    ts = now_ms()
    for query, body in [
        (f"asset=USDT&asset=USDT&timestamp={ts}", ""),
        ("recvWindow=5000", f"asset=USDT&asset=BTC&timestamp={ts}"),
    ]:
        r = _send(
            server, collectable, "POST", ASSET_COLLECTION, query, body, signed_text=query + body
        )
        assert (r.status_code, r.json()["code"]) == (400, -1101), r.text
    assert _balances(server, collectable) == before


def test_the_signature_covers_both_raw_sources(server: Server, collectable: Account) -> None:
    before = _balances(server, collectable)
    ts = now_ms()
    query, body = "asset=USDT", f"asset=BTC&timestamp={ts}"
    for signed_text in (query, body, body + query, f"asset=USDT&asset=BTC&timestamp={ts}"):
        r = _send(
            server, collectable, "POST", ASSET_COLLECTION, query, body, signed_text=signed_text
        )
        assert (r.status_code, r.json()["code"]) == (400, -1022), (signed_text, r.text)
    assert _balances(server, collectable) == before


def test_a_get_body_is_ignored(server: Server, collectable: Account) -> None:
    ts = now_ms()
    body = f"timestamp={ts}"
    # timestamp (and the signature) only in the body of a GET: not sent, as Binance answers
    r = _send(server, collectable, "GET", BALANCE, "", body, signed_text=body, signature_in="body")
    assert (r.status_code, r.json()["code"]) == (400, -1102), r.text
    # all in the query, a form body beside it: the body is neither read nor signed
    query = f"timestamp={ts}"
    r = _send(server, collectable, "GET", BALANCE, query, "asset=NOPE&x=1", signed_text=query)
    assert r.status_code == 200, r.text
    assert {row["asset"] for row in r.json()} == {"USDT", "BTC"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", "{}"),
        ("application/json", '{"asset": "BTC", "timestamp": 1}'),
        ("text/plain", "asset=BTC&timestamp=1"),
        ("application/json", ""),
        ("text/plain; charset=utf-8", ""),
        ("multipart/form-data; boundary=x", "--x--"),
    ],
)
def test_a_body_that_is_not_a_form_is_ignored(
    server: Server, collectable: Account, content_type: str, body: str
) -> None:
    query = f"timestamp={now_ms()}"
    r = _send(
        server,
        collectable,
        "POST",
        AUTO_COLLECTION,
        query,
        body,
        signed_text=query,
        content_type=content_type,
    )
    assert (r.status_code, r.json()) == (200, {"msg": "success"}), r.text
    rows = _balances(server, collectable)
    assert rows["USDT"]["crossMarginFree"] == "100.00000000"
    assert rows["BTC"]["crossMarginFree"] == "2.00000000"


def test_an_ignored_body_is_not_signed(server: Server, collectable: Account) -> None:
    before = _balances(server, collectable)
    query, body = f"timestamp={now_ms()}", "{}"
    r = _send(
        server,
        collectable,
        "POST",
        AUTO_COLLECTION,
        query,
        body,
        signed_text=query + body,  # a client that signed its JSON body too
        content_type="application/json",
    )
    assert (r.status_code, r.json()["code"]) == (400, -1022), r.text
    assert _balances(server, collectable) == before


def test_form_type_with_charset_is_a_form(server: Server, collectable: Account) -> None:
    body = f"asset=BTC&timestamp={now_ms()}"
    r = _send(
        server,
        collectable,
        "POST",
        ASSET_COLLECTION,
        "",
        body,
        signed_text=body,
        content_type="Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        signature_in="body",
    )
    assert r.status_code == 200, r.text
