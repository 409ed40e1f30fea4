"""The account object of ``GET /papi/v1/account``, computed from balances alone.

The sandbox has no price feed and holds no positions, open orders or loans. What that allows:

- ``accountInitialMargin``, ``accountMaintMargin``, ``totalMarginOpenLoss``: exactly 0, because
  nothing here requires margin (no positions, no open orders, no borrowing).
- Equity fields are in USD on Binance. Without prices the service values only the valuation asset
  (``USDT``, taken at 1 USD) and leaves every other asset out, so ``accountEquity`` and
  ``actualEquity`` are USDT's totalWalletBalance (no unrealized PnL, no collateral haircut).
- ``totalAvailableBalance`` = equity - initial margin; ``virtualMaxWithdrawAmount`` = what of it
  can leave: min(USDT MARGIN.free, max(0, totalAvailableBalance)).
- ``uniMMR`` = equity / maintenance margin; with no maintenance margin the ratio has no finite
  value and the service answers :data:`UNI_MMR_WITHOUT_MARGIN`.
- ``accountStatus`` is real for what the ledger knows: ``NORMAL`` while no asset's
  totalWalletBalance is negative; ``MARGIN_CALL`` when some asset's is (a debt that only a
  conversion at a market price could cover, which the sandbox cannot make).
- ``updateTime``: the last time any balance of the account changed (0 for an untouched account).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from papi_sandbox import money
from papi_sandbox.ledger.model import BalanceRow

#: The one asset valued without a price (at 1 USD).
VALUATION_ASSET = "USDT"
#: uniMMR when the maintenance margin is zero (the ratio is unbounded).
UNI_MMR_WITHOUT_MARGIN = Decimal("999999")


@dataclass(frozen=True, slots=True)
class AccountSummary:
    uni_mmr: Decimal
    account_equity: Decimal
    actual_equity: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    status: str
    virtual_max_withdraw: Decimal
    total_available: Decimal
    margin_open_loss: Decimal
    update_time_ms: int


def summarize(rows: list[BalanceRow]) -> AccountSummary:
    valued = next((r for r in rows if r.asset == VALUATION_ASSET), BalanceRow(VALUATION_ASSET))
    equity = valued.total_wallet_balance
    initial_margin = maint_margin = money.ZERO
    available = money.add(equity, -initial_margin)
    withdrawable = min(valued.margin_free, max(money.ZERO, available))
    status = "MARGIN_CALL" if any(r.total_wallet_balance < 0 for r in rows) else "NORMAL"
    uni_mmr = (
        UNI_MMR_WITHOUT_MARGIN
        if maint_margin == 0
        else money.round_up(money.CONTEXT.divide(equity, maint_margin))
    )
    return AccountSummary(
        uni_mmr=uni_mmr,
        account_equity=equity,
        actual_equity=equity,
        initial_margin=initial_margin,
        maint_margin=maint_margin,
        status=status,
        virtual_max_withdraw=withdrawable,
        total_available=available,
        margin_open_loss=money.ZERO,
        update_time_ms=max((r.update_time_ms for r in rows), default=0),
    )
