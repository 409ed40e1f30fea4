"""Journal replay for ``verify``, fed row by row so a store can stream its journal through it.

Both stores' ``verify`` feed it. The checks: every entry sums to zero per asset, every stored
balance equals the replay, every asset sums to zero over the ledger, and no user's MARGIN free is
negative, and no user's wallet balance is past 10^15 in magnitude. Memory grows with the number
of balance rows, not with the length of the journal. Progress (the ``progress`` hook) counts
entries replayed out of ``report.entries`` and stored balances compared.
"""

from __future__ import annotations

from decimal import Decimal

from papi_sandbox import money
from papi_sandbox.ledger.model import SYSTEM_ACCOUNT_ID, Wallet
from papi_sandbox.progress import NO_PROGRESS, Batched, Progress
from papi_sandbox.store.base import VerifyReport

BalanceKey = tuple[int, str, str]  # (account_id, wallet, asset)


class LedgerReplay:
    def __init__(self, progress: Progress = NO_PROGRESS) -> None:
        self.report = VerifyReport()
        self._progress = progress
        self._entries_done: Batched | None = None  # stages start on the first row they count
        self._balances_done: Batched | None = None
        self._replay: dict[BalanceKey, Decimal] = {}
        self._stored: dict[BalanceKey, Decimal] = {}
        self._entry_totals: dict[str, Decimal] = {}
        self._current_tran: int | None = None

    def posting(
        self, tran_id: int, account_id: int, wallet: str, asset: str, amount: Decimal
    ) -> None:
        """Postings must arrive ordered by tran_id."""
        if tran_id != self._current_tran:
            self._close_entry()
            self._current_tran = tran_id
            if self._entries_done is None:
                total = self.report.entries or None
                self._entries_done = Batched(self._progress.stage("verify: journal entries", total))
        self.report.postings += 1
        key = (account_id, wallet, asset)
        self._replay[key] = money.add(self._replay.get(key, money.ZERO), amount)
        self._entry_totals[asset] = money.add(self._entry_totals.get(asset, money.ZERO), amount)

    def stored_balance(self, account_id: int, wallet: str, asset: str, amount: Decimal) -> None:
        self._stored[(account_id, wallet, asset)] = amount
        self.report.balances += 1
        if self._balances_done is None:
            self._balances_done = Batched(self._progress.stage("verify: stored balances"))
        self._balances_done(1)

    def _close_entry(self) -> None:
        if self._current_tran is not None and any(v != 0 for v in self._entry_totals.values()):
            self.report.problems.append(
                f"entry {self._current_tran} does not sum to zero per asset"
            )
        self._entry_totals.clear()
        if self._current_tran is not None and self._entries_done is not None:
            self._entries_done(1)

    def finish(self) -> VerifyReport:
        self._close_entry()
        self._current_tran = None
        for done in (self._entries_done, self._balances_done):
            if done is not None:
                done.flush()
        report = self.report
        for key in sorted(set(self._replay) | set(self._stored)):
            want = self._replay.get(key, money.ZERO)
            have = self._stored.get(key, money.ZERO)
            if want != have:
                report.problems.append(
                    f"balance account={key[0]} wallet={key[1]} asset={key[2]}: stored "
                    f"{money.format_amount(have)}, journal replay {money.format_amount(want)}"
                )
            if key[1] == Wallet.MARGIN.value and key[0] != SYSTEM_ACCOUNT_ID and have < 0:
                report.problems.append(f"negative MARGIN free: account={key[0]} asset={key[2]}")
            if key[0] != SYSTEM_ACCOUNT_ID and not money.within_limit(have):
                report.problems.append(
                    f"balance past 10^15: account={key[0]} wallet={key[1]} asset={key[2]}"
                    f" holds {money.format_amount(have)}"
                )
        asset_totals: dict[str, Decimal] = {}
        for (_, _, asset), value in self._replay.items():
            asset_totals[asset] = money.add(asset_totals.get(asset, money.ZERO), value)
        report.assets = len(asset_totals)
        for asset, total in sorted(asset_totals.items()):
            if total != 0:
                report.problems.append(f"asset {asset} sums to {total} over the ledger, not zero")
        return report
