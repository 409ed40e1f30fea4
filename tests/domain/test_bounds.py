"""Balance bounds: every wallet balance of every user account stays within 10^15 in magnitude
after every operation (docs/semantics.md, "Balance bounds"), checked on the resulting balances
before anything is written, and by verify. Pure rules (hypothesis), then over HTTP and on both
stores."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papi_sandbox import money
from papi_sandbox.jobs.config import JobsConfig
from papi_sandbox.jobs.runner import Job, planner_for
from papi_sandbox.ledger import collection, rules
from papi_sandbox.ledger.interest import InterestPolicy
from papi_sandbox.ledger.model import (
    AmountLimitExceeded,
    EntryType,
    LedgerError,
    Posting,
    Wallet,
)
from papi_sandbox.store import open_store
from papi_sandbox.store.base import JobAccount
from tests.support import (
    BACKENDS,
    Account,
    Server,
    Signer,
    create_test_database,
    drop_test_database,
    postgres_admin_url,
)

D = Decimal
BOUND = money.MAX_AMOUNT
NEAR = D("900000000000000")  # 9 * 10^14: two of them pass the bound, one does not
USER_WALLETS = (
    Wallet.MARGIN,
    Wallet.MARGIN_LOCKED,
    Wallet.MARGIN_BORROWED,
    Wallet.MARGIN_INTEREST,
    Wallet.UM,
    Wallet.CM,
)


# -- the rule ---------------------------------------------------------------------------------


def test_collection_of_um_and_cm_together_is_counted_together() -> None:
    balances = {(Wallet.MARGIN, "USDT"): NEAR, (Wallet.UM, "USDT"): NEAR, (Wallet.CM, "USDT"): NEAR}
    plan = rules.bounded(7, lambda b: collection.plan_collection(7, b))
    with pytest.raises(AmountLimitExceeded) as info:
        plan(balances)
    assert "MARGIN" in str(info.value) and "USDT" in str(info.value)
    # each one alone would fit: the old per-posting check let both through
    one = {(Wallet.MARGIN, "USDT"): D(0), (Wallet.UM, "USDT"): NEAR, (Wallet.CM, "USDT"): NEAR}
    with pytest.raises(AmountLimitExceeded):
        plan(one)
    fits = {(Wallet.UM, "USDT"): NEAR, (Wallet.CM, "USDT"): D("100000000000000")}
    assert len(plan(fits)) == 4


def test_every_user_wallet_is_bounded_and_moving_toward_zero_is_allowed() -> None:
    for wallet in USER_WALLETS:
        over = [Posting(3, wallet, "BTC", D(1)), Posting(0, Wallet.EXTERNAL, "BTC", D(-1))]
        with pytest.raises(AmountLimitExceeded):
            rules.check_bounds(3, {(wallet, "BTC"): BOUND}, over)
        under = [Posting(3, wallet, "BTC", D(-1)), Posting(0, Wallet.EXTERNAL, "BTC", D(1))]
        with pytest.raises(AmountLimitExceeded):
            rules.check_bounds(3, {(wallet, "BTC"): -BOUND}, under)
        # past the bound already (say, from before the rule): a move toward zero is allowed
        rules.check_bounds(3, {(wallet, "BTC"): BOUND + 5}, under)
    # the system account, which holds every counterpart, is not bounded
    system = [Posting(0, Wallet.EXTERNAL, "BTC", D(-1))]
    rules.check_bounds(3, {}, system)


amounts = st.decimals(min_value=-BOUND, max_value=BOUND, places=8, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    margin=amounts.filter(lambda v: v >= 0),
    um=amounts,
    cm=amounts,
    bnb_margin=amounts.filter(lambda v: v >= 0),
    bnb_um=amounts,
    move=st.decimals(min_value=D("0.00000001"), max_value=BOUND, places=8),
)
def test_no_operation_leaves_a_balance_past_the_bound(
    margin: Decimal, um: Decimal, cm: Decimal, bnb_margin: Decimal, bnb_um: Decimal, move: Decimal
) -> None:
    """Whatever the balances (all within the bound), every operation either refuses or leaves
    every wallet within it."""
    balances = {
        (Wallet.MARGIN, "USDT"): margin,
        (Wallet.UM, "USDT"): um,
        (Wallet.CM, "USDT"): cm,
        (Wallet.MARGIN, "BNB"): bnb_margin,
        (Wallet.UM, "BNB"): bnb_um,
    }
    plans: list[Any] = [
        lambda b: collection.plan_collection(1, b),
        lambda b: collection.plan_collection(1, b, asset="USDT"),
        lambda b: collection.plan_partial_collection(1, b, "USDT", move, Wallet.CM),
        lambda b: collection.plan_bnb_transfer(1, b, move, collection.TransferSide.TO_UM),
        lambda b: collection.plan_bnb_transfer(1, b, move, collection.TransferSide.FROM_UM),
        lambda b: rules.plan_repay(1, b),
        lambda b: rules.plan_adjustment(1, b, Wallet.CM, "USDT", move, EntryType.DEPOSIT),
        lambda b: rules.plan_adjustment(1, b, Wallet.UM, "USDT", -move, EntryType.COMMISSION),
    ]
    for plan in plans:
        try:
            postings = rules.bounded(1, plan)(balances)
        except LedgerError:
            continue
        after = rules.apply(balances, [p for p in postings if p.account_id == 1])
        assert all(money.within_limit(v) for v in after.values()), (postings, after)
    # the jobs too: interest at a rate that would push UM past -10^15 is refused for the account
    policy = InterestPolicy(default_daily_rate=D("0.5"))
    interest = planner_for(Job.INTEREST, JobsConfig(interest=policy))
    account = JobAccount(1, True, 0, balances)
    try:
        plan = interest(account)
    except LedgerError:
        return
    after = rules.apply(balances, [p for p in plan.postings if p.account_id == 1])
    assert all(money.within_limit(v) for v in after.values())


# -- over HTTP, both stores ----------------------------------------------------------------------


def _state(server: Server, account: Account) -> tuple[int, Any]:
    rows = server.admin.request("GET", f"/accounts/{account.account_id}/balances").json()
    return len(server.journal(account.account_id)), rows


def test_auto_collection_past_the_bound_is_refused(server: Server) -> None:
    account = server.create_account("bounds")
    for wallet in ("MARGIN", "UM", "CM"):
        server.adjust(account.account_id, wallet, "USDT", str(NEAR))
    signer = Signer(server.base_url, account)
    before = _state(server, account)
    for path, params in [
        ("/papi/v1/auto-collection", {}),
        ("/papi/v1/asset-collection", {"asset": "USDT"}),
        ("/papi/v1/asset-collection", {"asset": "USDT", "amount": str(NEAR), "futureType": "UM"}),
    ]:
        r = signer.request("POST", path, params)
        assert r.status_code == 400, r.text
        assert "10^15" in r.json()["msg"], r.text
    assert _state(server, account) == before
    # the account is not stuck: a withdrawal, then a collection that fits, still work
    server.adjust(account.account_id, "MARGIN", "USDT", "-1", "WITHDRAW")
    r = signer.request(
        "POST", "/papi/v1/asset-collection", {"asset": "USDT", "amount": "1", "futureType": "UM"}
    )
    assert r.status_code == 200, r.text
    assert server.admin.request("GET", "/verify").json()["ok"] is True


def test_bnb_transfer_and_adjustments_past_the_bound_are_refused(server: Server) -> None:
    account = server.create_account("bounds-bnb")
    server.adjust(account.account_id, "MARGIN", "BNB", str(NEAR))
    server.adjust(account.account_id, "UM", "BNB", str(NEAR))
    signer = Signer(server.base_url, account)
    before = _state(server, account)
    r = signer.request(
        "POST", "/papi/v1/bnb-transfer", {"amount": str(NEAR), "transferSide": "FROM_UM"}
    )
    assert r.status_code == 400 and "10^15" in r.json()["msg"], r.text
    for wallet, amount, reason in [
        ("MARGIN", str(NEAR), "DEPOSIT"),
        ("UM", str(NEAR), "REALIZED_PNL"),
        ("CM", "-1000000000000000.00000001", "FUNDING_FEE"),
    ]:
        body = {"wallet": wallet, "asset": "BNB", "amount": amount, "reason": reason}
        r = server.admin.request("POST", f"/accounts/{account.account_id}/adjustments", json=body)
        assert r.status_code == 400, r.text
    assert _state(server, account) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_verify_reports_a_balance_past_the_bound(backend: str, tmp_path: Path) -> None:
    """A balance written past the bound around the rules (as an old version could): verify
    names it."""
    admin = postgres_admin_url() if backend == "postgres" else None
    url = create_test_database(admin) if admin else f"sqlite:///{tmp_path / 'v.db'}"

    async def main() -> tuple[Any, Any]:
        store = open_store(url)
        await store.open()
        try:
            a = await store.create_account("over", None)
            fine = await store.verify()
            over = BOUND + 1

            def raw(balances: Any) -> list[Posting]:  # not bounded: the store writes it
                return [
                    Posting(a, Wallet.CM, "ETH", over),
                    Posting(0, Wallet.EXTERNAL, "ETH", -over),
                ]

            await store.transact(a, "DEPOSIT", raw)
            return fine, await store.verify()
        finally:
            await store.close()

    try:
        fine, report = asyncio.run(main())
    finally:
        if admin:
            drop_test_database(admin, url)
    assert fine.ok
    assert not report.ok
    assert any("past 10^15" in p and "wallet=CM" in p for p in report.problems), report.problems
