"""Issue 11, hardening: who the client is, files and secrets on the host, the operator token and
its throttle. Each test failed on the code before the issue."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from papi_sandbox.wire.client_ip import ClientIdentity, ForwardedAllowIpsError
from tests.support import ADMIN_TOKEN, Account, Server, Signer, free_port, wait_for_fresh_minute

BALANCE = "/papi/v1/balance"
REPAY = "/papi/v1/repay-futures-negative-balance"


def whitelisted_signer(server: Server, account: Account, *whitelist: str) -> Signer:
    r = server.admin.request(
        "POST",
        f"/accounts/{account.account_id}/api-keys",
        json={"type": "HMAC", "ipWhitelist": list(whitelist)},
    )
    assert r.status_code == 201, r.text
    data = r.json()
    return Signer(server.base_url, Account(account.account_id, data["apiKey"], data["secretKey"]))


def log_lines(server: Server) -> list[dict[str, object]]:
    assert server.log_path is not None
    lines = []
    for line in server.log_path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


# -- 1. who the client is ------------------------------------------------------------------------


def scope(peer: str, *forwarded: str) -> dict[str, object]:
    return {
        "type": "http",
        "client": (peer, 5000),
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


def test_client_identity_rules() -> None:
    default = ClientIdentity("")
    assert default.resolve(scope("127.0.0.1", "10.1.2.3")) == "127.0.0.1"
    proxied = ClientIdentity("127.0.0.1, 10.0.0.0/8")
    assert proxied.resolve(scope("127.0.0.1", "203.0.113.7")) == "203.0.113.7"
    # From the right: trusted hops are skipped, the first untrusted one is the client.
    assert proxied.resolve(scope("127.0.0.1", "198.51.100.1, 203.0.113.7, 10.0.0.5")) == (
        "203.0.113.7"
    )
    assert proxied.resolve(scope("127.0.0.1", "198.51.100.1", "10.0.0.5")) == "198.51.100.1"
    # A peer that is not a trusted proxy cannot name anyone.
    assert proxied.resolve(scope("192.0.2.9", "203.0.113.7")) == "192.0.2.9"
    # A malformed or oversized hop ends the walk at the last trusted hop.
    for bad in ("x" * 30_000, "203.0.113.7 garbage", "", "٣.٣.٣.٣", "1.2.3.4:80"):
        assert proxied.resolve(scope("127.0.0.1", bad)) == "127.0.0.1"
    assert proxied.resolve(scope("127.0.0.1", "203.0.113.7, junk")) == "127.0.0.1"
    # Canonical text: one address, one key.
    assert proxied.resolve(scope("127.0.0.1", "2001:DB8:0:0::1")) == "2001:db8::1"
    # An IPv6 zone is not part of the identity: "%1", "%2", ... would each be a new client.
    for zoned in ("fe80::1%eth0", "fe80::1%1", "fe80::1%x"):
        assert proxied.resolve(scope("127.0.0.1", zoned)) == "fe80::1"
    assert ClientIdentity("*").resolve(scope("fe80::9%lo", "fe80::1%2")) == "fe80::1"
    assert ClientIdentity("*").resolve(scope("192.0.2.9", "203.0.113.7")) == "203.0.113.7"
    for bad in ("10.0.0.300", "localhost", "*, 10.0.0.1"):
        with pytest.raises(ForwardedAllowIpsError):
            ClientIdentity(bad)


def test_forwarded_for_is_ignored_without_trusted_proxies(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--access-log"])
    server.start()
    try:
        account = server.create_account()
        server.adjust(account.account_id, "MARGIN", "USDT", "100")
        only_there = whitelisted_signer(server, account, "10.1.2.3")
        wait_for_fresh_minute()
        # The whitelist is not bypassed by naming the allowed address in a header.
        r = only_there.request("GET", BALANCE, headers={"X-Forwarded-For": "10.1.2.3"})
        assert r.status_code == 401 and r.json()["code"] == -2015, r.text
        # The weight limit is not lifted by rotating the header: 20 + 7 x 750 = 5270, then 429.
        signer = Signer(server.base_url, account)
        codes = [
            signer.request("POST", REPAY, headers={"X-Forwarded-For": f"10.9.0.{i}"}).status_code
            for i in range(8)
        ]
        assert codes == [200] * 7 + [429], codes
        # A 30 KB header value is neither a limiter key nor a log field.
        r = httpx.get(f"{server.base_url}/papi/v1/ping", headers={"X-Forwarded-For": "1" * 30_000})
        assert r.status_code == 200 and r.headers["X-MBX-USED-WEIGHT-1M"] == "5271"  # same IP
    finally:
        server.stop()
    ips = {line.get("ip") for line in log_lines(server) if line.get("msg") == "request"}
    assert ips == {"127.0.0.1"}, ips


def test_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--forwarded-allow-ips", "127.0.0.1,::1"])
    server.start()
    try:
        account = server.create_account()
        only_there = whitelisted_signer(server, account, "10.1.2.3")
        assert only_there.request(
            "GET", BALANCE, headers={"X-Forwarded-For": "10.1.2.3"}
        ).is_success
        for header in ("10.1.2.4", "10.1.2.3 junk", "10.1.2.3, " + "9" * 5000):
            r = only_there.request("GET", BALANCE, headers={"X-Forwarded-For": header})
            assert r.status_code == 401, (header, r.text)
        # Weight is the resolved client's: one client's limit does not touch another's.
        wait_for_fresh_minute()
        signer = Signer(server.base_url, account)
        a = [
            signer.request("POST", REPAY, headers={"X-Forwarded-For": "203.0.113.1"})
            for _ in range(9)
        ]
        assert [r.status_code for r in a] == [200] * 8 + [429]
        b = signer.request("POST", REPAY, headers={"X-Forwarded-For": "203.0.113.2"})
        assert b.status_code == 200 and b.headers["X-MBX-USED-WEIGHT-1M"] == "750"
    finally:
        server.stop()


def test_bad_forwarded_allow_ips_refuses_to_start(tmp_path: Path) -> None:
    result = run_serve(tmp_path, "--forwarded-allow-ips", "10.0.0.0/33")
    assert result.returncode == 2
    assert "--forwarded-allow-ips" in result.stderr and "Traceback" not in result.stderr


# -- 8. files and secrets on the host -----------------------------------------------------------


def run_serve(
    tmp_path: Path, *args: str, token: str = ADMIN_TOKEN, data_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``serve`` expected to refuse to start (it is killed after 20 s if it does not)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "papi_sandbox",
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(data_dir or tmp_path / "data"),
            *args,
        ],
        env={**os.environ, "PAPI_SANDBOX_ADMIN_TOKEN": token, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=20,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_folder_and_database_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        server = Server(tmp_path / "data", [])
        server.start()
    finally:
        os.umask(old)
    try:
        account = server.create_account()
        server.adjust(account.account_id, "MARGIN", "USDT", "1")
        assert mode(server.data_dir) == 0o700
        for name in ("papi-sandbox.db", "papi-sandbox.db-wal", "papi-sandbox.db-shm", "secret-key"):
            assert mode(server.data_dir / name) == 0o600, name
    finally:
        server.stop()


def test_a_short_operator_token_refuses_to_start(tmp_path: Path) -> None:
    result = run_serve(tmp_path, token="x" * 31)
    assert result.returncode == 2, result.stderr
    assert "at least 32" in result.stderr and "Traceback" not in result.stderr


def test_failed_operator_authentications_are_throttled_per_ip(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", [])
    server.start()
    try:
        wait_for_fresh_minute(15)
        wrong = {"Authorization": "Bearer " + "w" * 40}
        codes = [
            server.admin.request("GET", "/accounts/1/balances", headers=wrong).status_code
            for _ in range(10)
        ]
        assert codes == [401] * 10
        refused = server.admin.request("GET", "/accounts/1/balances", headers=wrong)
        assert refused.status_code == 429 and refused.json()["code"] == -1003
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Until the minute ends the right token is refused too: guessing gets no answer.
        assert server.admin.request("POST", "/accounts", json={}).status_code == 429
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert "papi_admin_auth_failures_total 10.0" in metrics
        assert "papi_admin_auth_throttled_total 2.0" in metrics
        # The public API is not affected.
        assert httpx.get(f"{server.base_url}/papi/v1/ping").status_code == 200
    finally:
        server.stop()


# -- 6. several processes log like one ------------------------------------------------------------


def test_every_worker_logs_json_requests_with_redaction(tmp_path: Path, pg_url: str) -> None:
    server = Server(tmp_path / "workers", ["--workers", "2", "--access-log"], db_url=pg_url)
    server.start()
    signatures: list[str] = []
    try:
        account = server.create_account()
        signer = Signer(server.base_url, account)
        for _ in range(30):  # new connections: the kernel spreads them over the workers
            with httpx.Client() as fresh:
                r = signer.request("GET", BALANCE, client=fresh)
            assert r.status_code == 200
            signatures.append(r.request.url.query.decode().rpartition("signature=")[2])
    finally:
        server.stop()
    assert server.log_path is not None
    text = server.log_path.read_text()
    lines = text.splitlines()
    assert lines and all(line.startswith("{") for line in lines), text[:2000]
    requests = [line for line in log_lines(server) if line.get("msg") == "request"]
    assert len([r for r in requests if r["path"] == BALANCE]) == 30
    assert len({r["pid"] for r in requests}) == 2, "both workers log their requests"
    assert all(r["ip"] == "127.0.0.1" and r["request_id"] for r in requests)
    uvicorn_lines = [line for line in log_lines(server) if line.get("logger") == "uvicorn.access"]
    assert not uvicorn_lines, "uvicorn's own access line (it prints the query) is off in workers"
    for secret in (account.secret, ADMIN_TOKEN, *signatures):
        assert secret not in text


def test_dashboard_logins_share_the_operator_auth_throttle(tmp_path: Path) -> None:
    from tests.ui.test_pages import UiClient

    server = Server(tmp_path / "srv", [])
    server.start()
    try:
        wait_for_fresh_minute(15)
        client = UiClient(server)
        client.get("/ui/login")
        codes = [client.post("/ui/login", {"token": "w" * 40}).status_code for _ in range(10)]
        assert codes == [401] * 10
        refused = client.post("/ui/login", {"token": ADMIN_TOKEN})
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        assert "papi_ui_session" not in client.cookies
        assert server.admin.request("POST", "/accounts", json={}).status_code == 429  # one throttle
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert "papi_admin_auth_failures_total 10.0" in metrics
    finally:
        server.stop()
