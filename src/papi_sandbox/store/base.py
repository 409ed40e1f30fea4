"""The records the store returns and takes, and its named limits; nothing here knows SQL.

The contract itself is :class:`papi_sandbox.store.contract.Store`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from papi_sandbox import grammar
from papi_sandbox.ledger.interest import InterestCharge
from papi_sandbox.ledger.model import Balances, Entry, Posting

#: A pure rule bound to its arguments: the account's balances in, postings out (or a LedgerError).
Planner = Callable[[Balances], list[Posting]]

#: Most journal entries one read returns.
MAX_JOURNAL_PAGE = 1000
#: Most entries ``recent_entries`` returns (500 auto-collections per account per hour bound
#: what matters; past this many the oldest are left out).
MAX_RECENT_ENTRIES = 1_000_000
#: Longest a request waits for the store (a lock held by another process, a pooled connection,
#: the writer's queue) before it is refused with StoreUnavailable (``serve --store-timeout``).
DEFAULT_STORE_TIMEOUT_S = 5.0


def now_ms() -> int:
    """The store's clock: Unix time in ms."""
    return time.time_ns() // 1_000_000


def redact(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) without the URL or its password, whole or
    in the pieces a parser may have cut it into (libpq quotes a URI it cannot parse; a password
    holding ``@`` leaks into the host name it resolves). What the start and the commands show."""
    import urllib.parse

    userinfo = url.partition("://")[2].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    secrets = {url, password, urllib.parse.unquote(password), *password.split("@")}
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class StoreUnavailable(Exception):
    """The store cannot do this now, and nothing of it was applied: the disk is full or
    read-only, another process holds the write lock past the store timeout, the database
    connection was lost before the transaction could commit, or the store is damaged. Callers
    answer it as Binance answers a back-end it cannot reach (HTTP 503, -1001) and the client may
    retry. The original error is the ``__cause__``."""


class StoreOutcomeUnknown(StoreUnavailable):
    """The connection was lost while the transaction was committing: it may or may not have
    been applied (still answered 503, the meaning Binance gives a 5xx)."""


class StoreDamaged(Exception):
    """The database file fails its integrity check: the service refuses to start on it. The
    message names the file and the first problems found."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    api_key: str
    account_id: int
    key_type: str  # "HMAC", "RSA" or "ED25519"
    secret: str | None  # HMAC only; sealed (secretbox) in the store, opened in the key cache
    public_key: str | None
    can_read: bool
    can_trade: bool
    ip_whitelist: tuple[str, ...]
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_id: int
    label: str | None
    created_ms: int
    auto_repay: bool
    vip_level: int


#: Most accounts one list read returns.
MAX_ACCOUNT_PAGE = 200
#: Longest account search text (the longest label).
MAX_ACCOUNT_SEARCH_CHARS = 100


@dataclass(frozen=True, slots=True)
class AccountSearch:
    """What an accounts list matches: every account (``text`` empty), or those whose label
    contains ``text`` (case-insensitive), or whose id is ``text`` when it is all ASCII digits."""

    text: str = ""

    @property
    def account_id(self) -> int | None:
        t = self.text
        return int(t) if grammar.is_integer(t) else None

    @property
    def like_pattern(self) -> str:
        """``text`` as a LIKE pattern with ``\\`` escaping (for ``lower(label) LIKE ? ESCAPE``)."""
        escaped = self.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    postings: int = 0
    balances: int = 0
    accounts: int = 0
    assets: int = 0
    problems: list[str] = field(default_factory=list)  # ledger mismatches
    #: Physical damage: SQLite's integrity_check and foreign_key_check, PostgreSQL's constraint
    #: checks (and amcheck's index checks where installed). Reported apart from the ledger.
    damage: list[str] = field(default_factory=list)
    #: What was or could not be checked, said plainly (e.g. a read-only copy opened immutable).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.damage


# -- the negative-balance toolkit (issue 4): settings, interest history, scheduled jobs -----------

#: Most interest-history rows one read returns (the endpoint's own maximum is 100).
MAX_INTEREST_PAGE = 1000
#: Most accounts one job batch carries: bounds the time a batch holds the write lock (about
#: 0.1 ms per account) and the memory a sweep needs, whatever the number of accounts.
MAX_JOB_BATCH_ACCOUNTS = 5000


@dataclass(frozen=True, slots=True)
class InterestRecord:
    """One row of ``GET /papi/v1/portfolio/interest-history``."""

    account_id: int
    asset: str
    interest: Decimal
    rate: Decimal
    principal: Decimal
    accrued_ms: int  # the job's scheduled slot (interestAccuredTime)
    tran_id: int


@dataclass(frozen=True, slots=True)
class JobAccount:
    """What a job's rule sees of one account, read inside the batch's write transaction."""

    account_id: int
    auto_repay: bool
    vip_level: int
    balances: Balances


@dataclass(frozen=True, slots=True)
class JobPlan:
    """A job's decision for one account: its entry's postings and the interest rows to record."""

    postings: list[Posting]
    interest: list[InterestCharge] = field(default_factory=list)


#: A job's pure rule bound to its arguments. A LedgerError means "nothing to do for this account".
JobPlanner = Callable[[JobAccount], JobPlan]


@dataclass(slots=True)
class JobBatchResult:
    accounts: int = 0  # accounts looked at in this batch
    already_done: int = 0  # accounts this (job, slot) had already handled: skipped
    refused: int = 0  # accounts the rule refused (e.g. nothing in MARGIN to repay with)
    entries: list[Entry] = field(default_factory=list)
