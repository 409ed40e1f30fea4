"""The seed's endpoint and the balance endpoint, over HTTP against a real server process."""

from __future__ import annotations

import concurrent.futures
from decimal import Decimal

import httpx
import pytest

from tests.support import Account, Server, Signer

REPAY = "/papi/v1/repay-futures-negative-balance"
BALANCE = "/papi/v1/balance"


def balance(signer: Signer, asset: str) -> dict[str, object]:
    r = signer.request("GET", BALANCE, {"asset": asset})
    assert r.status_code == 200, r.text
    data = r.json()
    assert isinstance(data, dict)
    return data


def test_ping(server: Server) -> None:
    r = httpx.get(f"{server.base_url}/papi/v1/ping")
    assert r.status_code == 200
    assert r.json() == {}
    assert r.headers["content-type"] == "application/json"


def test_repay_moves_margin_into_negative_um_and_cm(
    server: Server, account: Account, signer: Signer
) -> None:
    server.adjust(account.account_id, "MARGIN", "USDT", "1000", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-250.5", "REALIZED_PNL")
    server.adjust(account.account_id, "CM", "USDT", "-49.5", "FUNDING_FEE")
    before = balance(signer, "USDT")
    assert before["negativeBalance"] == "300.00000000"
    assert before["totalWalletBalance"] == "700.00000000"

    r = signer.request("POST", REPAY)
    assert r.status_code == 200, r.text
    assert r.json() == {"msg": "success"}

    after = balance(signer, "USDT")
    assert after["crossMarginFree"] == "700.00000000"
    assert after["umWalletBalance"] == "0.00000000"
    assert after["cmWalletBalance"] == "0.00000000"
    assert after["negativeBalance"] == "0.00000000"
    assert after["totalWalletBalance"] == "700.00000000"  # repay moves money, creates none

    entry = server.journal(account.account_id)[0]
    assert entry["type"] == "REPAY_FUTURES_NEGATIVE_BALANCE"
    assert entry["postings"] == [
        {
            "accountId": account.account_id,
            "wallet": "MARGIN",
            "asset": "USDT",
            "amount": "-250.50000000",
        },
        {
            "accountId": account.account_id,
            "wallet": "UM",
            "asset": "USDT",
            "amount": "250.50000000",
        },
        {
            "accountId": account.account_id,
            "wallet": "MARGIN",
            "asset": "USDT",
            "amount": "-49.50000000",
        },
        {"accountId": account.account_id, "wallet": "CM", "asset": "USDT", "amount": "49.50000000"},
    ]


def test_repay_with_nothing_negative_is_a_success_that_writes_nothing(
    server: Server, account: Account, signer: Signer
) -> None:
    server.adjust(account.account_id, "MARGIN", "USDT", "10", "DEPOSIT")
    entries_before = len(server.journal(account.account_id))
    for _ in range(2):  # a retry of a success is harmless
        r = signer.request("POST", REPAY)
        assert (r.status_code, r.json()) == (200, {"msg": "success"})
    assert len(server.journal(account.account_id)) == entries_before


def test_repay_without_margin_is_insufficient_and_writes_nothing(
    server: Server, account: Account, signer: Signer
) -> None:
    server.adjust(account.account_id, "UM", "BTC", "-0.1", "REALIZED_PNL")
    server.adjust(account.account_id, "MARGIN", "USDT", "100000", "DEPOSIT")  # another asset
    entries_before = server.journal(account.account_id)
    r = signer.request("POST", REPAY)
    assert r.status_code == 400
    assert r.json() == {"code": -2018, "msg": "Balance is insufficient."}
    assert server.journal(account.account_id) == entries_before
    assert balance(signer, "BTC")["umWalletBalance"] == "-0.10000000"
    assert balance(signer, "USDT")["crossMarginFree"] == "100000.00000000"  # never converted


def test_partial_repay_is_a_success(server: Server, account: Account, signer: Signer) -> None:
    server.adjust(account.account_id, "MARGIN", "ETH", "0.3", "DEPOSIT")
    server.adjust(account.account_id, "UM", "ETH", "-0.2", "REALIZED_PNL")
    server.adjust(account.account_id, "CM", "ETH", "-0.25", "FUNDING_FEE")
    r = signer.request("POST", REPAY)
    assert r.json() == {"msg": "success"}
    eth = balance(signer, "ETH")
    assert (eth["crossMarginFree"], eth["umWalletBalance"], eth["cmWalletBalance"]) == (
        "0.00000000",
        "0.00000000",
        "-0.15000000",
    )
    assert eth["negativeBalance"] == "0.15000000"
    # Now nothing can move: a second call is refused and changes nothing.
    r = signer.request("POST", REPAY)
    assert r.json()["code"] == -2018


@pytest.mark.parametrize("where", ["query", "body", "split"])
def test_parameters_in_query_body_or_split(server: Server, where: str) -> None:
    account = server.create_account()
    signer = Signer(server.base_url, account)
    server.adjust(account.account_id, "MARGIN", "USDT", "5", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-2", "COMMISSION")
    # a GET reads the query only (its body is ignored: tests/wire/test_param_sources.py)
    r = signer.request("GET", BALANCE, {"asset": "USDT"}, recv_window=10000)
    assert r.status_code == 200, r.text
    assert r.json()["umWalletBalance"] == "-2.00000000"
    r = signer.request("POST", REPAY, where=where, recv_window=10000)
    assert (r.status_code, r.json()) == (200, {"msg": "success"})
    assert balance(signer, "USDT")["crossMarginFree"] == "3.00000000"


def test_balance_list_object_and_every_field(
    server: Server, account: Account, signer: Signer
) -> None:
    server.adjust(account.account_id, "MARGIN", "USDT", "1.5", "DEPOSIT")
    server.adjust(account.account_id, "UM", "BTC", "0.25", "DEPOSIT")
    r = signer.request("GET", BALANCE)
    rows = r.json()
    assert isinstance(rows, list)
    assert [row["asset"] for row in rows] == ["BTC", "USDT"]
    fields = {
        "asset",
        "totalWalletBalance",
        "crossMarginAsset",
        "crossMarginBorrowed",
        "crossMarginFree",
        "crossMarginInterest",
        "crossMarginLocked",
        "umWalletBalance",
        "umUnrealizedPNL",
        "cmWalletBalance",
        "cmUnrealizedPNL",
        "updateTime",
        "negativeBalance",
    }
    for row in rows:
        assert set(row) == fields
        assert isinstance(row["updateTime"], int) and row["updateTime"] > 0
        for name in fields - {"asset", "updateTime"}:
            text = row[name]
            assert isinstance(text, str) and len(text.split(".")[1]) == 8
    unheld = balance(signer, "DOGE")
    assert unheld["totalWalletBalance"] == "0.00000000" and unheld["updateTime"] == 0


def test_amounts_up_to_ten_to_the_fifteen_are_exact(
    server: Server, account: Account, signer: Signer
) -> None:
    big = "999999999999999.99999999"
    server.adjust(account.account_id, "MARGIN", "XBIG", "1000000000000000", "DEPOSIT")
    server.adjust(account.account_id, "UM", "XBIG", "-" + big, "REALIZED_PNL")
    assert balance(signer, "XBIG")["negativeBalance"] == big
    assert signer.request("POST", REPAY).json() == {"msg": "success"}
    row = balance(signer, "XBIG")
    assert row["crossMarginFree"] == "0.00000001"
    assert row["umWalletBalance"] == "0.00000000"
    assert Decimal(str(row["totalWalletBalance"])) == Decimal("0.00000001")


def test_concurrent_repays_give_the_serial_result(server: Server) -> None:
    account = server.create_account()
    server.adjust(account.account_id, "MARGIN", "USDT", "60", "DEPOSIT")
    server.adjust(account.account_id, "UM", "USDT", "-100", "REALIZED_PNL")
    server.adjust(account.account_id, "MARGIN", "BNB", "1", "DEPOSIT")
    server.adjust(account.account_id, "CM", "BNB", "-0.4", "FUNDING_FEE")
    signer = Signer(server.base_url, account)
    entries_before = len(server.journal(account.account_id))

    with httpx.Client() as client, concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: signer.request("POST", REPAY, client=client), range(32)))
    outcomes = sorted((r.status_code, r.json().get("code", 0)) for r in results)
    # Serially: the first call repays what it can (USDT 60 of 100, BNB 0.4 of 0.4); USDT is then
    # still negative with no margin USDT and BNB is whole, so every later call is -2018.
    assert outcomes == [(200, 0)] + [(400, -2018)] * 31
    entries = server.journal(account.account_id)
    assert len(entries) == entries_before + 1
    signer_usdt = balance(signer, "USDT")
    assert (signer_usdt["crossMarginFree"], signer_usdt["umWalletBalance"]) == (
        "0.00000000",
        "-40.00000000",
    )
    bnb = balance(signer, "BNB")
    assert (bnb["crossMarginFree"], bnb["cmWalletBalance"]) == ("0.60000000", "0.00000000")


def test_acknowledged_changes_survive_kill_9(tmp_path: object) -> None:
    from pathlib import Path

    srv = Server(Path(str(tmp_path)) / "crash", ["--ip-weight-limit", "0"])
    srv.start()
    try:
        account = srv.create_account()
        signer = Signer(srv.base_url, account)
        srv.adjust(account.account_id, "MARGIN", "USDT", "1000", "DEPOSIT")
        acknowledged = []
        for i in range(10):
            acknowledged.append(
                srv.adjust(account.account_id, "UM", "USDT", f"-{i + 1}", "REALIZED_PNL")["tranId"]
            )
            assert signer.request("POST", REPAY).status_code == 200
        srv.kill9()  # no shutdown, no checkpoint: only what was durable remains
        srv.start()
        tran_ids = {e["tranId"] for e in srv.journal(account.account_id)}
        assert set(acknowledged) <= tran_ids
        assert len(tran_ids) == 1 + 10 + 10
        assert balance(signer, "USDT")["crossMarginFree"] == "945.00000000"
    finally:
        srv.stop()
    result = srv.verify_cli()
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_is_clean_after_the_suite_and_catches_tampering(tmp_path: object) -> None:
    import sqlite3
    from pathlib import Path

    srv = Server(Path(str(tmp_path)) / "verify", ["--ip-weight-limit", "0"])
    srv.start()
    try:
        account = srv.create_account()
        srv.adjust(account.account_id, "MARGIN", "USDT", "10", "DEPOSIT")
        srv.adjust(account.account_id, "UM", "USDT", "-3", "COMMISSION")
        Signer(srv.base_url, account).request("POST", REPAY)
    finally:
        srv.stop()
    ok = srv.verify_cli()
    assert ok.returncode == 0, ok.stdout
    assert "OK" in ok.stdout and "3 entries" in ok.stdout

    with sqlite3.connect(srv.db_path) as conn:
        conn.execute(
            "UPDATE balances SET amount = '7.00000001' WHERE account_id = ? AND wallet = 'MARGIN'",
            (account.account_id,),
        )
    bad = srv.verify_cli()
    assert bad.returncode == 1
    assert "MISMATCH" in bad.stdout and "7.00000001" in bad.stdout
