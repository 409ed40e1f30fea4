"""API keys of every type and every rule: RSA and Ed25519 signatures (through the official SDK
too), permissions, IP whitelists, revocation, the per-account key limit, secrets sealed at rest
and kept out of logs."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from papi_sandbox.api.endpoints import ENDPOINTS, Endpoint, Security
from tests.support import ADMIN_TOKEN, Account, Server, Signer, now_ms, raw_request

REPAY = "/papi/v1/repay-futures-negative-balance"
BALANCE = "/papi/v1/balance"

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def new_private_key(key_type: str) -> PrivateKey:
    if key_type == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def b64_sign(key: PrivateKey, text: str) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = key.sign(text.encode())
    return base64.b64encode(raw).decode()


def add_key(server: Server, account_id: int, **body: Any) -> dict[str, Any]:
    r = server.admin.request("POST", f"/accounts/{account_id}/api-keys", json=body)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def signed_with(
    server: Server,
    api_key: str,
    key: PrivateKey,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    encode_signature: bool = True,
) -> Any:
    query = urlencode([*(params or {}).items(), ("timestamp", now_ms())])
    signature = b64_sign(key, query)
    signature = quote(signature, safe="") if encode_signature else signature
    return raw_request(
        server.base_url,
        method,
        path,
        f"{query}&signature={signature}",
        headers={"X-MBX-APIKEY": api_key},
    )


def indebted_account(server: Server) -> Account:
    account = server.create_account("keys")
    server.adjust(account.account_id, "MARGIN", "USDT", "100", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-10", "REALIZED_PNL")
    return account


@pytest.mark.parametrize("key_type", ["RSA", "ED25519"])
def test_asymmetric_keys_sign_as_binance_defines(server: Server, key_type: str) -> None:
    account = indebted_account(server)
    private = new_private_key(key_type)
    issued = add_key(server, account.account_id, type=key_type, publicKey=public_pem(private))
    assert "secretKey" not in issued and issued["type"] == key_type

    r = signed_with(server, issued["apiKey"], private, "GET", BALANCE, {"asset": "USDT"})
    assert r.status_code == 200, r.text
    assert r.json()["umWalletBalance"] == "-10.00000000"
    # base64's '+' and '/' sent without percent-encoding work too (as some clients send them).
    for _ in range(3):
        r = signed_with(server, issued["apiKey"], private, "GET", BALANCE, encode_signature=False)
        assert r.status_code == 200, r.text

    # Signed by another key, or tampered: -1022 and nothing moves.
    other = new_private_key(key_type)
    before = server.journal(account.account_id)
    r = signed_with(server, issued["apiKey"], other, "POST", REPAY)
    assert (r.status_code, r.json()["code"]) == (400, -1022)
    r = raw_request(
        server.base_url,
        "POST",
        REPAY,
        f"timestamp={now_ms()}&signature=AAAA",
        headers={"X-MBX-APIKEY": issued["apiKey"]},
    )
    assert (r.status_code, r.json()["code"]) == (400, -1022)
    assert server.journal(account.account_id) == before

    r = signed_with(server, issued["apiKey"], private, "POST", REPAY)
    assert (r.status_code, r.json()) == (200, {"msg": "success"})
    assert len(server.journal(account.account_id)) == len(before) + 1


@pytest.mark.parametrize("key_type", ["RSA", "ED25519"])
def test_official_sdk_signs_with_rsa_and_ed25519_keys(server: Server, key_type: str) -> None:
    from binance_common.configuration import ConfigurationRestAPI
    from binance_sdk_derivatives_trading_portfolio_margin.derivatives_trading_portfolio_margin import (  # noqa: E501
        DerivativesTradingPortfolioMargin,
    )

    account = indebted_account(server)
    private = new_private_key(key_type)
    issued = add_key(server, account.account_id, type=key_type, publicKey=public_pem(private))
    config = ConfigurationRestAPI(
        api_key=issued["apiKey"],
        private_key=private_pem(private),
        base_path=server.base_url,
        retries=0,
        timeout=10_000,
    )
    client = DerivativesTradingPortfolioMargin(config_rest_api=config)
    client.rest_api.repay_futures_negative_balance()
    rows = client.rest_api.account_balance(asset="USDT").data()
    row = rows.actual_instance if hasattr(rows, "actual_instance") else rows
    text = str(row)
    assert "90" in text  # 100 margin - 10 repaid
    journal = server.journal(account.account_id)
    assert journal[0]["type"] == "REPAY_FUTURES_NEGATIVE_BALANCE"


def test_hmac_key_secret_is_shown_once_and_sealed_at_rest(server: Server) -> None:
    account = server.create_account("sealed")
    issued = add_key(server, account.account_id, type="HMAC")
    secret = issued["secretKey"]
    listed = server.admin.request("GET", f"/accounts/{account.account_id}/api-keys").json()
    assert {k["apiKey"] for k in listed} >= {account.api_key, issued["apiKey"]}
    assert all("secret" not in str(k).lower() for k in listed)

    signer = Signer(server.base_url, Account(account.account_id, issued["apiKey"], secret))
    assert signer.request("GET", BALANCE).status_code == 200

    if server.backend == "sqlite":
        conn = sqlite3.connect(server.db_path)
        stored = dict(conn.execute("SELECT api_key, secret FROM api_keys").fetchall())
        conn.close()
        for path in server.data_dir.glob("papi-sandbox.db*"):
            data = path.read_bytes()
            assert secret.encode() not in data and account.secret.encode() not in data
    else:
        with psycopg.connect(server.db_url) as pg:
            stored = dict(pg.execute("SELECT api_key, secret FROM api_keys").fetchall())
    assert stored[issued["apiKey"]].startswith("enc1:")
    assert stored[account.api_key].startswith("enc1:")
    assert secret not in str(stored) and account.secret not in str(stored)
    key_file = server.data_dir / "secret-key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_revoked_key_is_refused_at_once(server: Server) -> None:
    account = indebted_account(server)
    issued = add_key(server, account.account_id)
    signer = Signer(
        server.base_url, Account(account.account_id, issued["apiKey"], issued["secretKey"])
    )
    assert signer.request("GET", BALANCE).status_code == 200  # now cached
    r = server.admin.request(
        "DELETE", f"/accounts/{account.account_id}/api-keys/{issued['apiKey']}"
    )
    assert r.status_code == 200, r.text
    before = server.journal(account.account_id)
    r = signer.request("POST", REPAY)
    assert (r.status_code, r.json()["code"]) == (401, -2015)
    assert server.journal(account.account_id) == before
    # Twice, or another account's key: 404 in Binance's shape.
    r = server.admin.request(
        "DELETE", f"/accounts/{account.account_id}/api-keys/{issued['apiKey']}"
    )
    assert (r.status_code, r.json()["code"]) == (404, -2015)
    other = server.create_account("other")
    r = server.admin.request("DELETE", f"/accounts/{other.account_id}/api-keys/{account.api_key}")
    assert r.status_code == 404
    assert Signer(server.base_url, account).request("GET", BALANCE).status_code == 200


def test_permissions_refuse_with_2015_and_change_nothing(server: Server) -> None:
    account = indebted_account(server)
    no_read = add_key(server, account.account_id, enableReading=False)
    signer = Signer(
        server.base_url, Account(account.account_id, no_read["apiKey"], no_read["secretKey"])
    )
    before = server.journal(account.account_id)
    for method, path in (("POST", REPAY), ("GET", BALANCE)):
        r = signer.request(method, path)
        assert (r.status_code, r.json()["code"]) == (401, -2015), r.text
    assert server.journal(account.account_id) == before
    # Keys created without saying get both permissions (documented sandbox convenience).
    listed = server.admin.request("GET", f"/accounts/{account.account_id}/api-keys").json()
    default = next(k for k in listed if k["apiKey"] == account.api_key)
    assert default["enableReading"] and default["enablePortfolioMarginTrading"]
    refused = next(k for k in listed if k["apiKey"] == no_read["apiKey"])
    assert not refused["enableReading"] and refused["enablePortfolioMarginTrading"]


def test_permission_rule_per_security_type() -> None:
    assert Security.TRADE.permits(can_read=False, can_trade=True)
    assert not Security.TRADE.permits(can_read=True, can_trade=False)
    assert Security.USER_DATA.permits(can_read=True, can_trade=False)
    assert not Security.USER_DATA.permits(can_read=False, can_trade=True)
    assert Security.NONE.permits(False, False) and Security.USER_STREAM.permits(False, False)


def test_ip_whitelist_addresses_and_ranges(server: Server) -> None:
    account = indebted_account(server)
    cases = {
        ("10.0.0.0/8",): 401,
        ("192.168.1.7", "::1"): 401,
        ("127.0.0.1",): 200,
        ("10.1.2.3", "127.0.0.0/24"): 200,
        (): 200,
    }
    before = server.journal(account.account_id)
    for whitelist, status in cases.items():
        issued = add_key(server, account.account_id, ipWhitelist=list(whitelist))
        key = Account(account.account_id, issued["apiKey"], issued["secretKey"])
        r = Signer(server.base_url, key).request("GET", BALANCE)
        assert r.status_code == status, (whitelist, r.text)
        if status == 401:
            assert r.json()["code"] == -2015
            r = Signer(server.base_url, key).request("POST", REPAY)
            assert (r.status_code, r.json()["code"]) == (401, -2015)
    assert server.journal(account.account_id) == before


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "DSA"}, "'type'"),
        ({"type": "RSA"}, "publicKey"),
        ({"type": "ED25519", "publicKey": "not a pem"}, "PEM"),
        ({"type": "HMAC", "publicKey": "x"}, "publicKey"),
        ({"enableReading": "yes"}, "enableReading"),
        ({"ipWhitelist": ["300.1.1.1"]}, "ipWhitelist"),
        ({"ipWhitelist": "127.0.0.1"}, "ipWhitelist"),
        ({"colour": "red"}, "Unknown field"),
    ],
)
def test_key_requests_are_validated(server: Server, body: dict[str, Any], fragment: str) -> None:
    account = server.create_account()
    r = server.admin.request("POST", f"/accounts/{account.account_id}/api-keys", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] < 0 and fragment in r.json()["msg"]


def test_key_type_mismatch_and_unknown_account(server: Server) -> None:
    account = server.create_account()
    ed_pem = public_pem(new_private_key("ED25519"))
    r = server.admin.request(
        "POST",
        f"/accounts/{account.account_id}/api-keys",
        json={"type": "RSA", "publicKey": ed_pem},
    )
    assert (r.status_code, r.json()["code"]) == (400, -1102)
    r = server.admin.request("POST", "/accounts/999999/api-keys", json={})
    assert r.status_code == 404 and r.json()["code"] == -1000


def test_api_keys_per_account_are_limited(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--max-api-keys-per-account", "3"])
    server.start()
    try:
        account = server.create_account()  # its first key counts
        keys = [add_key(server, account.account_id)["apiKey"] for _ in range(2)]
        r = server.admin.request("POST", f"/accounts/{account.account_id}/api-keys", json={})
        assert (r.status_code, r.json()["code"]) == (400, -1101)
        assert "3" in r.json()["msg"]
        server.admin.request("DELETE", f"/accounts/{account.account_id}/api-keys/{keys[0]}")
        add_key(server, account.account_id)
    finally:
        server.stop()


def test_no_secret_signature_or_token_in_logs(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--access-log"])
    server.start()
    try:
        account = indebted_account(server)
        signer = Signer(server.base_url, account)
        signatures = []
        for method, path, params in (
            ("POST", REPAY, {}),
            ("GET", BALANCE, {"asset": "bad!"}),
            ("GET", BALANCE, {"nope": "1"}),
        ):
            r = signer.request(method, path, params)
            signatures.append(r.request.url.query.decode().rpartition("signature=")[2])
            assert r.headers["X-Request-Id"]
        raw_request(
            server.base_url,
            "GET",
            BALANCE,
            f"timestamp={now_ms()}&signature=deadbeef",
            headers={"X-MBX-APIKEY": account.api_key},
        )
        server.admin.request("GET", "/verify", headers={"Authorization": "Bearer wrong-token-1234"})
        issued = add_key(server, account.account_id)
    finally:
        server.stop()
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert '"request_id"' in log and '"path":"/papi/v1/balance"' in log
    for secret in (
        account.secret,
        issued["secretKey"],
        ADMIN_TOKEN,
        "wrong-token-1234",
        *signatures,
    ):
        assert secret and secret not in log
    assert "deadbeef" not in log


SIGNED_ENDPOINTS = [e for e in ENDPOINTS if e.security.signed]


@pytest.mark.parametrize(
    "endpoint", SIGNED_ENDPOINTS, ids=[f"{e.method} {e.path}" for e in SIGNED_ENDPOINTS]
)
def test_every_signed_endpoint_checks_the_keys_permission(
    server: Server, endpoint: Endpoint
) -> None:
    """Each USER_DATA endpoint refuses a key without enableReading, each TRADE endpoint a key
    without enablePortfolioMarginTrading: 401, -2015, nothing changes. The permission is checked
    before the parameters, so a bare signed request is enough."""
    account = indebted_account(server)
    refused = {
        Security.USER_DATA: {"enableReading": False},
        Security.TRADE: {"enablePortfolioMarginTrading": False},
    }[endpoint.security]
    issued = add_key(server, account.account_id, **refused)
    signer = Signer(
        server.base_url, Account(account.account_id, issued["apiKey"], issued["secretKey"])
    )
    before = server.journal(account.account_id)
    # a GET reads the query only; other methods the query or a form body
    for where in ("query",) if endpoint.method == "GET" else ("query", "body"):
        r = signer.request(endpoint.method, endpoint.path, where=where)
        assert (r.status_code, r.json()["code"]) == (401, -2015), r.text
    assert server.journal(account.account_id) == before
