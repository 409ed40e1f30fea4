"""Every refusal of the wire layer: Binance's code, HTTP status and shape, and nothing changes."""

from __future__ import annotations

import httpx
import pytest

from tests.support import Account, Server, Signer, now_ms, raw_request, sign

REPAY = "/papi/v1/repay-futures-negative-balance"


@pytest.fixture
def indebted(server: Server) -> tuple[Account, Signer]:
    """An account that a successful repay would change."""
    account = server.create_account()
    server.adjust(account.account_id, "MARGIN", "USDT", "100", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-10", "REALIZED_PNL")
    return account, Signer(server.base_url, account)


def assert_error(r: httpx.Response, status: int, code: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "msg"}
    assert body["code"] == code
    assert isinstance(body["msg"], str) and body["msg"]
    assert r.headers["content-type"] == "application/json"


def assert_unchanged(server: Server, account: Account) -> None:
    entries = server.journal(account.account_id)
    assert [e["type"] for e in entries] == ["REALIZED_PNL", "DEPOSIT"]


def send(
    server: Server,
    account: Account,
    query: str,
    body: str = "",
    *,
    method: str = "POST",
    path: str = REPAY,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A request with exactly this query and body, carrying the account's API key."""
    return raw_request(
        server.base_url,
        method,
        path,
        query,
        body,
        {"X-MBX-APIKEY": account.api_key, **(headers or {})},
    )


def signed_query(account: Account, query: str) -> str:
    return f"{query}&signature={sign(account.secret, query)}"


def test_missing_api_key_is_401_2014(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    r = raw_request(server.base_url, "POST", REPAY, signed_query(account, f"timestamp={now_ms()}"))
    assert_error(r, 401, -2014)
    assert_unchanged(server, account)


def test_malformed_api_key_is_401_2014(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    query = signed_query(account, f"timestamp={now_ms()}")
    r = raw_request(server.base_url, "POST", REPAY, query, headers={"X-MBX-APIKEY": "bad key!"})
    assert_error(r, 401, -2014)


def test_unknown_api_key_is_401_2015(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    query = signed_query(account, f"timestamp={now_ms()}")
    r = raw_request(server.base_url, "POST", REPAY, query, headers={"X-MBX-APIKEY": "A" * 64})
    assert_error(r, 401, -2015)
    assert r.json()["msg"] == (
        "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1"
    )
    assert_unchanged(server, account)


def test_api_keys_are_case_sensitive(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    query = signed_query(account, f"timestamp={now_ms()}")
    r = raw_request(
        server.base_url, "POST", REPAY, query, headers={"X-MBX-APIKEY": account.api_key.swapcase()}
    )
    assert_error(r, 401, -2015)


def test_bad_signature_is_400_1022(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    query = f"timestamp={now_ms()}"
    wrong = sign("not-the-secret", query)
    r = send(server, account, f"{query}&signature={wrong}")
    assert_error(r, 400, -1022)
    assert_unchanged(server, account)


def test_signature_hex_is_case_insensitive(
    server: Server, indebted: tuple[Account, Signer]
) -> None:
    account, _ = indebted
    query = f"timestamp={now_ms()}"
    upper = sign(account.secret, query).upper()
    r = send(server, account, f"{query}&signature={upper}")
    assert (r.status_code, r.json()) == (200, {"msg": "success"})


def test_signature_covers_the_raw_text_including_percent_encoding(
    server: Server, indebted: tuple[Account, Signer]
) -> None:
    account, _ = indebted
    # The same value, encoded two ways: the signature must be over the bytes as sent.
    ts = now_ms()
    query = f"asset=US%44T&timestamp={ts}"
    good = send(
        server, account, signed_query(account, query), path="/papi/v1/balance", method="GET"
    )
    assert good.status_code == 200 and good.json()["asset"] == "USDT"
    decoded_sig = sign(account.secret, f"asset=USDT&timestamp={ts}")
    bad = send(
        server, account, f"{query}&signature={decoded_sig}", path="/papi/v1/balance", method="GET"
    )
    assert_error(bad, 400, -1022)


def test_split_signature_is_query_then_body_without_separator(
    server: Server, indebted: tuple[Account, Signer]
) -> None:
    account, _ = indebted
    query, body = "recvWindow=6000", f"timestamp={now_ms()}"
    signature = sign(account.secret, query + body)  # no "&" between them, as Binance defines
    r = send(server, account, query, f"{body}&signature={signature}")
    assert (r.status_code, r.json()) == (200, {"msg": "success"})


def test_missing_signature_is_400_1102(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    r = send(server, account, f"timestamp={now_ms()}")
    assert_error(r, 400, -1102)
    assert "signature" in r.json()["msg"]


@pytest.mark.parametrize(
    "query", ["", "timestamp=", "timestamp=abc", "timestamp=-5", "timestamp=1.5e12"]
)
def test_missing_or_malformed_timestamp_is_400_1102(
    server: Server, indebted: tuple[Account, Signer], query: str
) -> None:
    account, _ = indebted
    r = send(server, account, signed_query(account, query).lstrip("&"))
    assert_error(r, 400, -1102)
    assert "timestamp" in r.json()["msg"]
    assert_unchanged(server, account)


def test_stale_timestamp_is_400_1021(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, signer = indebted
    r = signer.request("POST", REPAY, timestamp=now_ms() - 6000)  # default window 5000
    assert_error(r, 400, -1021)
    assert_unchanged(server, account)
    r = signer.request("POST", REPAY, timestamp=now_ms() - 6000, recv_window=8000)
    assert r.status_code == 200


def test_future_timestamp_is_400_1021(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, signer = indebted
    r = signer.request("POST", REPAY, timestamp=now_ms() + 5000)
    assert_error(r, 400, -1021)
    assert "ahead" in r.json()["msg"]
    assert_unchanged(server, account)
    r = signer.request("POST", REPAY, timestamp=now_ms() + 500)  # within the 1000 ms allowed
    assert r.status_code == 200


def test_recv_window_over_60000_is_400_1131(
    server: Server, indebted: tuple[Account, Signer]
) -> None:
    account, signer = indebted
    assert_error(signer.request("POST", REPAY, recv_window=60001), 400, -1131)
    assert_unchanged(server, account)
    assert signer.request("POST", REPAY, recv_window=60000).status_code == 200


def test_duplicate_parameter_is_400_1101(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    ts = now_ms()
    for query, body in [
        (f"timestamp={ts}&timestamp={ts}", ""),
        ("recvWindow=5000", f"timestamp={ts}&timestamp={ts}"),
    ]:
        signature = sign(account.secret, query + body)
        r = send(server, account, f"{query}&signature={signature}", body)
        assert_error(r, 400, -1101)
    assert_unchanged(server, account)


def test_unknown_parameter_is_400_1104(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, signer = indebted
    r = signer.request("POST", REPAY, {"asset": "USDT"})
    assert_error(r, 400, -1104)
    assert r.json()["msg"] == (
        "Not all sent parameters were read; read '2' parameter(s) but was sent '3'."
    )
    assert_unchanged(server, account)


def test_bad_asset_is_400_1100(server: Server, indebted: tuple[Account, Signer]) -> None:
    _, signer = indebted
    assert_error(signer.request("GET", "/papi/v1/balance", {"asset": "usdt"}), 400, -1100)


def test_json_body_is_ignored_not_read(server: Server, indebted: tuple[Account, Signer]) -> None:
    account, _ = indebted
    r = send(server, account, "", '{"timestamp": 1}', headers={"Content-Type": "application/json"})
    assert_error(r, 400, -1102)  # the JSON body is not read: no timestamp was sent
    assert_unchanged(server, account)


def test_oversized_body_is_refused(server: Server) -> None:
    r = raw_request(server.base_url, "POST", REPAY, "", "a=" + "x" * 20_000)
    assert_error(r, 413, -1101)


def test_unknown_path_and_wrong_method_are_json(server: Server) -> None:
    assert_error(httpx.get(f"{server.base_url}/papi/v1/nope"), 404, -1000)
    assert_error(httpx.get(f"{server.base_url}/somewhere/else"), 404, -1000)
    assert_error(httpx.delete(f"{server.base_url}/papi/v1/balance"), 405, -1000)
    assert_error(httpx.get(f"{server.base_url}{REPAY}"), 405, -1000)


def test_admin_api_needs_the_token(server: Server) -> None:
    r = httpx.post(f"{server.base_url}/admin/v1/accounts", json={})
    assert_error(r, 401, -1002)
    r = httpx.post(
        f"{server.base_url}/admin/v1/accounts", json={}, headers={"Authorization": "Bearer wrong"}
    )
    assert_error(r, 401, -1002)


def test_admin_adjustment_validation(server: Server, account: Account) -> None:
    path = f"/accounts/{account.account_id}/adjustments"
    base = {"wallet": "UM", "asset": "USDT", "amount": "-1", "reason": "REALIZED_PNL"}
    for patch in [
        {"wallet": "SPOT"},
        {"asset": "usdt"},
        {"amount": -1.5},
        {"amount": "1e3"},
        {"amount": "0.000000001"},
        {"amount": "1000000000000001"},
        {"reason": "GIFT"},
        {"amount": "0"},
        {"extra": 1},
    ]:
        r = server.admin.request("POST", path, json={**base, **patch})
        assert_error(r, 400, -1102)
    r = server.admin.request("POST", path, json={**base, "wallet": "MARGIN", "reason": "WITHDRAW"})
    assert_error(r, 400, -2018)  # MARGIN free may not go below zero
    assert_error(
        server.admin.request("POST", "/accounts/999999/adjustments", json=base), 404, -1000
    )
    assert_error(server.admin.request("POST", path, content=b"{not json"), 400, -1102)
    assert server.journal(account.account_id) == []


@pytest.mark.parametrize(
    ("method", "path", "body", "shown"),
    [
        ("GET", "/accounts/999999/balances", None, "999999"),
        ("GET", "/accounts/0/balances", None, "0"),
        ("GET", "/accounts/abc/balances", None, "abc"),
        ("GET", "/accounts/-1/balances", None, "-1"),
        (
            "POST",
            "/accounts/999999/adjustments",
            {"wallet": "MARGIN", "asset": "USDT", "amount": "1", "reason": "DEPOSIT"},
            "999999",
        ),
    ],
)
def test_an_unknown_account_has_one_wording_on_every_operator_path(
    server: Server, method: str, path: str, body: dict[str, str] | None, shown: str
) -> None:
    """An id that is no account and a path's text that is no id read alike (they said
    "account 999 does not exist" and "Account '0' does not exist.")."""
    r = server.admin.request(method, path, json=body)
    assert (r.status_code, r.json()) == (
        404,
        {"code": -1000, "msg": f"account {shown} does not exist"},
    )
