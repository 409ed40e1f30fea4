"""Change counters that let readers cache an account's balances safely.

The writer bumps an account's counter after the COMMIT that changed it, before any caller of that
batch is answered; an operation of unknown effect bumps the counter of every account. A reader
notes the counter before it reads and keeps what it read only if the counter has not moved since,
so a cached snapshot is never older than the last acknowledged change.
"""

from __future__ import annotations

from collections.abc import Iterable

from papi_sandbox.ledger.model import AccountBalances

#: Most accounts with a counter of their own; past it every counter is reset at once (a bump of
#: all), so the table stays bounded with millions of accounts.
MAX_TRACKED_ACCOUNTS = 100_000
#: Most account snapshots cached; past it the cache is emptied.
MAX_CACHED_SNAPSHOTS = 10_000

Version = tuple[int, int]


class ChangeVersions:
    """Per-account change counters plus one for "everything". Bumped by the writer thread, read
    on the event loop; each operation is a single dict access, atomic under the GIL."""

    def __init__(self) -> None:
        self._all = 0
        self._accounts: dict[int, int] = {}

    def of(self, account_id: int) -> Version:
        return (self._all, self._accounts.get(account_id, 0))

    def bump(self, account_ids: Iterable[int]) -> None:
        accounts = self._accounts
        for account_id in account_ids:
            accounts[account_id] = accounts.get(account_id, 0) + 1
        if len(accounts) > MAX_TRACKED_ACCOUNTS:
            self.bump_all()

    def bump_all(self) -> None:
        # A new "all" counter makes every older version unequal; the per-account table can
        # restart from empty because versions are compared as (all, account) pairs.
        self._accounts = {}
        self._all += 1


class SnapshotCache:
    """account -> (version, balances snapshot). Snapshots are shared: callers must not mutate."""

    def __init__(self, versions: ChangeVersions, max_entries: int = MAX_CACHED_SNAPSHOTS) -> None:
        self.versions = versions
        self.max_entries = max_entries
        self._entries: dict[int, tuple[Version, AccountBalances]] = {}

    def get(self, account_id: int) -> AccountBalances | None:
        hit = self._entries.get(account_id)
        if hit is not None and hit[0] == self.versions.of(account_id):
            return hit[1]
        return None

    def put(self, account_id: int, version: Version, snapshot: AccountBalances) -> None:
        """Keep ``snapshot`` (read after ``version`` was noted) unless a change came since."""
        if self.versions.of(account_id) != version:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {}
        self._entries[account_id] = (version, snapshot)
