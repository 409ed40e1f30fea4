"""Every method of the :class:`~papi_sandbox.store.base.Store` contract, once: each one runs a unit
of work (from the module that owns the state) as a read or as a write. A store supplies only
:meth:`SharedStore.read`, :meth:`SharedStore.write` and its lifecycle."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from papi_sandbox.ledger.model import AccountBalances, CommittedEntry, Entry
from papi_sandbox.store import accounts, jobs, journal
from papi_sandbox.store.base import (
    AccountInfo,
    ApiKeyRecord,
    InterestRecord,
    JobBatchResult,
    JobPlanner,
    Planner,
    VerifyReport,
)
from papi_sandbox.store.dialect import Db

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("papi_sandbox.store")

#: What :meth:`SharedStore.on_commit` callbacks receive: committed entries, in commit order.
CommitListener = Callable[[list[CommittedEntry]], None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SharedStore:
    """The contract's methods over :meth:`read` and :meth:`write` (see ``Store`` for each
    method's arguments, result and errors)."""

    retries_total = 0

    def __init__(self, clock_ms: Callable[[], int] = now_ms) -> None:
        self._clock_ms = clock_ms
        self._commit_listeners: list[CommitListener] = []

    def on_commit(self, callback: CommitListener) -> None:
        self._commit_listeners.append(callback)

    def _publish(self, committed: list[CommittedEntry]) -> None:
        for listener in self._commit_listeners:
            try:
                listener(committed)
            except Exception:  # a listener's bug must not stop the writer or the listener
                log.exception("commit listener failed")

    async def read(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    async def write(
        self, unit: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    def verify_sync(self) -> VerifyReport:
        raise NotImplementedError

    async def verify(self) -> VerifyReport:
        return await asyncio.to_thread(self.verify_sync)

    # -- accounts and keys ---------------------------------------------------------------------

    async def create_account(self, label: str | None, key: ApiKeyRecord | None) -> int:
        return await self.write(accounts.create_account, label, key, self._clock_ms())

    async def find_api_key(self, api_key: str) -> ApiKeyRecord | None:
        return await self.read(accounts.find_api_key, api_key)

    async def account(self, account_id: int) -> AccountInfo | None:
        return await self.read(accounts.account, account_id)

    async def set_account_settings(
        self, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
    ) -> bool:
        return await self.write(accounts.set_account_settings, account_id, auto_repay, vip_level)

    async def add_api_key_limited(self, key: ApiKeyRecord, max_keys_per_account: int) -> bool:
        return await self.write(
            accounts.add_api_key_limited, key, max_keys_per_account, self._clock_ms()
        )

    async def revoke_api_key(self, account_id: int, api_key: str) -> bool:
        return await self.write(accounts.revoke_api_key, account_id, api_key, self._clock_ms())

    async def api_keys(self, account_id: int) -> list[ApiKeyRecord]:
        return await self.read(accounts.api_keys, account_id)

    async def rewrite_api_key_secrets(self, transform: Callable[[str, str], str]) -> int:
        return await self.write(accounts.rewrite_api_key_secrets, transform)

    async def claim_setting(self, name: str, value: str, *, replace: bool = False) -> str:
        return await self.write(accounts.claim_setting, name, value, replace)

    # -- balances and the journal --------------------------------------------------------------

    async def balances(self, account_id: int) -> AccountBalances:
        return await self.read(journal.load_balances, account_id)

    async def transact(self, account_id: int, entry_type: str, plan: Planner) -> Entry | None:
        return await self.write(journal.transact, account_id, entry_type, plan, self._clock_ms())

    async def journal(
        self, account_id: int, limit: int, before_tran_id: int | None = None
    ) -> list[Entry]:
        return await self.read(journal.journal, account_id, limit, before_tran_id)

    async def entry_counts(self) -> dict[str, int]:
        return await self.read(journal.entry_counts)

    # -- scheduled jobs ------------------------------------------------------------------------

    async def interest_history(
        self, account_id: int, asset: str | None, start_ms: int, end_ms: int, limit: int
    ) -> list[InterestRecord]:
        return await self.read(jobs.interest_history, account_id, asset, start_ms, end_ms, limit)

    async def job_candidates(self, after_account_id: int, limit: int) -> list[int]:
        return await self.read(jobs.job_candidates, after_account_id, limit)

    async def run_job_batch(
        self, job: str, slot_ms: int, entry_type: str, account_ids: list[int], plan: JobPlanner
    ) -> JobBatchResult:
        return await self.write(
            jobs.run_job_batch, job, slot_ms, entry_type, account_ids, plan, self._clock_ms
        )

    async def prune_job_marks(self, before_slot_ms: int) -> int:
        return await self.write(jobs.prune_job_marks, before_slot_ms)
