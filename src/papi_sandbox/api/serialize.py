"""JSON shapes of the wire: amounts as 8-digit strings, times as integer milliseconds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from papi_sandbox.api.http import EncodedJson
from papi_sandbox.ledger.account import AccountSummary
from papi_sandbox.ledger.model import AccountBalances, BalanceRow, Entry
from papi_sandbox.money import format_amount
from papi_sandbox.store.base import InterestRecord


def balance_object(row: BalanceRow, um_unrealized: Decimal | None = None) -> dict[str, Any]:
    """The balance object of ``GET /papi/v1/balance``. ``um_unrealized``: the asset's UM
    unrealized PnL at the mark (trading_service.Trading.unrealized); COIN-M holds no positions,
    so ``cmUnrealizedPNL`` is zero."""
    zero = "0.00000000"
    return {
        "asset": row.asset,
        "totalWalletBalance": format_amount(row.total_wallet_balance),
        "crossMarginAsset": format_amount(row.cross_margin_asset),
        "crossMarginBorrowed": format_amount(row.margin_borrowed),
        "crossMarginFree": format_amount(row.margin_free),
        "crossMarginInterest": format_amount(row.margin_interest),
        "crossMarginLocked": format_amount(row.margin_locked),
        "umWalletBalance": format_amount(row.um_wallet),
        "umUnrealizedPNL": format_amount(um_unrealized) if um_unrealized else zero,
        "cmWalletBalance": format_amount(row.cm_wallet),
        "cmUnrealizedPNL": zero,
        "updateTime": row.update_time_ms,
        "negativeBalance": format_amount(row.negative_balance),
    }


def entry_object(entry: Entry) -> dict[str, Any]:
    """A journal entry as the operator API shows it: every posting, the system account's
    counter-postings included, so that each entry visibly sums to zero per asset."""
    return {
        "tranId": entry.tran_id,
        "type": entry.type,
        "time": entry.time_ms,
        "accountId": entry.account_id,
        "postings": [
            {
                "accountId": p.account_id,
                "wallet": p.wallet.value,
                "asset": p.asset,
                "amount": format_amount(p.amount),
            }
            for p in entry.postings
        ],
    }


def account_object(summary: AccountSummary) -> dict[str, Any]:
    """The account object of ``GET /papi/v1/account`` (see ledger/account.py for each field)."""
    return {
        "uniMMR": format_amount(summary.uni_mmr),
        "accountEquity": format_amount(summary.account_equity),
        "actualEquity": format_amount(summary.actual_equity),
        "accountInitialMargin": format_amount(summary.initial_margin),
        "accountMaintMargin": format_amount(summary.maint_margin),
        "accountStatus": summary.status,
        "virtualMaxWithdrawAmount": format_amount(summary.virtual_max_withdraw),
        "totalAvailableBalance": format_amount(summary.total_available),
        "totalMarginOpenLoss": format_amount(summary.margin_open_loss),
        "updateTime": summary.update_time_ms,
    }


def interest_object(record: InterestRecord) -> dict[str, Any]:
    """One row of ``GET /papi/v1/portfolio/interest-history`` (``interestAccuredTime`` is
    Binance's spelling)."""
    return {
        "asset": record.asset,
        "interest": format_amount(record.interest),
        "interestAccuredTime": record.accrued_ms,
        "interestRate": format_amount(record.rate),
        "principal": format_amount(record.principal),
    }


#: Most accounts whose serialised balances are kept; past it the cache is emptied.
MAX_SERIALIZED_ACCOUNTS = 10_000


class BalanceObjects:
    """The balance objects of an account snapshot, built once per snapshot.

    The store hands out the same snapshot object until the writer changes the account, so
    "same object" means "nothing changed"; a new snapshot rebuilds. Objects are shared between
    responses: serialise them, never mutate them.
    """

    def __init__(self, max_accounts: int = MAX_SERIALIZED_ACCOUNTS) -> None:
        self.max_accounts = max_accounts
        self._entries: dict[int, tuple[AccountBalances, EncodedJson, dict[str, Any]]] = {}

    def _entry(
        self, account_id: int, snapshot: AccountBalances
    ) -> tuple[AccountBalances, EncodedJson, dict[str, Any]]:
        hit = self._entries.get(account_id)
        if hit is not None and hit[0] is snapshot:
            return hit
        objects = [balance_object(row) for row in snapshot.rows()]
        # The whole array is encoded once too, and sent as it is (api/http.py).
        entry = (snapshot, EncodedJson(orjson.dumps(objects)), {o["asset"]: o for o in objects})
        if len(self._entries) >= self.max_accounts:
            self._entries = {}
        self._entries[account_id] = entry
        return entry

    def all(self, account_id: int, snapshot: AccountBalances) -> EncodedJson:
        """The JSON array of every asset's balance object, already encoded."""
        return self._entry(account_id, snapshot)[1]

    def one(self, account_id: int, snapshot: AccountBalances, asset: str) -> dict[str, Any]:
        found = self._entry(account_id, snapshot)[2].get(asset)
        return found if found is not None else balance_object(snapshot.row(asset))
