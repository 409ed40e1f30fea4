"""Operations: metrics, request ids, JSON logs, and rotating the encryption key of the secrets."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from papi_sandbox.secretbox import SECRET_KEY_ENV, SECRET_KEY_FILE_NAME, key_id, new_key_text
from tests.support import Account, Server, Signer

BALANCE = "/papi/v1/balance"


def test_metrics_count_requests_latency_and_ledger_entries(server: Server) -> None:
    account = server.create_account("metrics")
    server.adjust(account.account_id, "MARGIN", "USDT", "5", "DEPOSIT")
    signer = Signer(server.base_url, account)
    assert signer.request("GET", BALANCE).status_code == 200
    assert signer.request("GET", BALANCE, {"asset": "bad!"}).status_code == 400
    r = httpx.get(f"{server.base_url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'papi_requests_total{endpoint="/papi/v1/balance",status="200"}' in text
    assert 'papi_requests_total{endpoint="/papi/v1/balance",status="400"}' in text
    assert 'papi_request_duration_seconds_bucket{endpoint="/papi/v1/balance",le="+Inf"}' in text
    assert 'papi_ledger_entries{type="DEPOSIT"}' in text
    assert "papi_rate_limit_refusals_total" in text or "papi_rate_limit_refusals" in text
    # Unknown paths share one label, so label values stay bounded.
    httpx.get(f"{server.base_url}/random/{account.api_key}")
    assert account.api_key not in httpx.get(f"{server.base_url}/metrics").text


def test_every_response_has_a_request_id(server: Server) -> None:
    ids = set()
    for path in ("/papi/v1/ping", "/papi/v1/nope", "/healthz", "/admin/v1/verify"):
        r = httpx.get(f"{server.base_url}{path}")
        ids.add(r.headers["X-Request-Id"])
    assert len(ids) == 4


def test_request_log_is_json_lines_with_the_request_id(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", ["--access-log"])
    server.start()
    try:
        r = httpx.get(f"{server.base_url}/papi/v1/ping?x=1")
        request_id = r.headers["X-Request-Id"]
    finally:
        server.stop()
    assert server.log_path is not None
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert len(mine) == 1
    assert mine[0]["path"] == "/papi/v1/ping" and mine[0]["status"] == 400
    assert mine[0]["code"] == -1104 and "x=1" not in json.dumps(mine[0])


def _stored_secrets(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT api_key, secret FROM api_keys").fetchall())
    finally:
        conn.close()


def _rotate(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "papi_sandbox",
            "keys",
            "rotate-encryption-key",
            "--data-dir",
            str(server.data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rotate_encryption_key_and_legacy_plain_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    server = Server(tmp_path / "srv")
    server.start()
    account = server.create_account("rotate")
    server.stop()
    key_file = server.data_dir / SECRET_KEY_FILE_NAME
    first_id = key_id(bytes.fromhex(key_file.read_text().strip()))
    assert _stored_secrets(server.db_path)[account.api_key].startswith(f"enc1:{first_id}:")

    # 1. Generated new key: secrets re-sealed, key file replaced (0600), old one kept aside.
    result = _rotate(server)
    assert result.returncode == 0, result.stdout + result.stderr
    second_id = key_id(bytes.fromhex(key_file.read_text().strip()))
    assert second_id != first_id and key_file.stat().st_mode & 0o777 == 0o600
    assert (server.data_dir / "secret-key.old").exists()
    assert _stored_secrets(server.db_path)[account.api_key].startswith(f"enc1:{second_id}:")
    assert account.secret not in result.stdout + result.stderr

    # 2. Operator-supplied key in the environment.
    new_key = new_key_text()
    result = _rotate(server, "--new-key", new_key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert new_key not in result.stdout + result.stderr
    server.env[SECRET_KEY_ENV] = new_key  # the kit passes no PAPI_SANDBOX_* of ours along
    # 3. A database from before encryption: plain secrets are sealed at start.
    conn = sqlite3.connect(server.db_path)
    legacy = Account(account.account_id, "L" * 64, "plain-secret-" + "s" * 51)
    conn.execute(
        "INSERT INTO api_keys (api_key, account_id, key_type, secret, can_read, can_trade,"
        " created_ms) VALUES (?, ?, 'HMAC', ?, 1, 1, 0)",
        (legacy.api_key, legacy.account_id, legacy.secret),
    )
    conn.commit()
    conn.close()
    server.start()
    try:
        assert Signer(server.base_url, account).request("GET", BALANCE).status_code == 200
        assert Signer(server.base_url, legacy).request("GET", BALANCE).status_code == 200
    finally:
        server.stop()
    stored = _stored_secrets(server.db_path)
    new_id = key_id(bytes.fromhex(new_key))
    assert all(s.startswith(f"enc1:{new_id}:") for s in stored.values())

    # 4. The wrong key: the service refuses to start rather than answer with garbage.
    server.env[SECRET_KEY_ENV] = new_key_text()
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()


def test_request_stats_export_cumulative_le_buckets() -> None:
    from papi_sandbox.observability import LATENCY_BUCKETS_S, Metrics

    metrics = Metrics()
    metrics.observe("/papi/v1/ping", 200, LATENCY_BUCKETS_S[0])  # on a bound: counted in it (le)
    metrics.observe("/papi/v1/ping", 200, 0.003)
    metrics.observe("/papi/v1/ping", 200, 99.0)  # past every bound: only +Inf
    metrics.observe("/papi/v1/ping", 429, 0.0001)
    metrics.stats.ip_refused(429)  # counted by cause where refused (an account 429 is apart)
    text = metrics.render({})[0].decode()
    assert 'papi_requests_total{endpoint="/papi/v1/ping",status="200"} 3.0' in text
    assert 'papi_requests_total{endpoint="/papi/v1/ping",status="429"} 1.0' in text
    bucket = 'papi_request_duration_seconds_bucket{endpoint="/papi/v1/ping",le="%s"} %s'
    assert bucket % ("0.0005", "2.0") in text
    assert bucket % ("0.0025", "2.0") in text
    assert bucket % ("0.005", "3.0") in text
    assert bucket % ("2.5", "3.0") in text
    assert bucket % ("+Inf", "4.0") in text
    assert 'papi_request_duration_seconds_count{endpoint="/papi/v1/ping"} 4.0' in text
    assert 'papi_rate_limit_refusals_total{status="429"} 1.0' in text


def test_entry_counts_read_again_never_go_down() -> None:
    """/metrics' entry counts after announcements may have been lost (PostgreSQL's listener
    reconnected): each raised to the ledger's, never lowered."""
    from papi_sandbox.observability import EntryCounter

    counter = EntryCounter()
    counter.seed({"DEPOSIT": 3, "COMMISSION": 5})
    counter.resync({"DEPOSIT": 7, "COMMISSION": 4, "FUNDING_FEE": 1})
    assert counter.counts == {"DEPOSIT": 7, "COMMISSION": 5, "FUNDING_FEE": 1}
