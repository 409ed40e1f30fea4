"""The jobs' configuration: a TOML file with documented defaults (docs/jobs.md).

```toml
[schedule]
auto_repay = ["22:00", "23:00"]   # UTC, HH:MM
interest = ["00:00"]

[interest]
default_threshold = "0"           # negative balance free of interest, per asset
default_daily_rate = "0.0005"

[interest.daily_rates]            # per asset
BTC = "0.0003"

[interest.thresholds.1]           # per VIP tier, then per asset
USDT = "1000"
```

Amounts may be written as strings or TOML numbers; a number is read by its own text through the
grammar (as a string would be: no exponent, no underscore), never as a float.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from papi_sandbox import grammar, money
from papi_sandbox.ledger.interest import DEFAULT_DAILY_RATE, DEFAULT_THRESHOLD, InterestPolicy
from papi_sandbox.market.config import MarketConfig, MarketConfigError, parse_market

#: Largest config file read (bytes).
MAX_CONFIG_BYTES = 1024 * 1024
#: Most scheduled times per job per day.
MAX_TIMES_PER_DAY = 24
#: Highest daily rate accepted (100 % a day is already absurd).
MAX_DAILY_RATE = Decimal(1)
#: Highest VIP tier (Binance's tiers are 0 to 9).
MAX_VIP_LEVEL = 9
#: Accounts per job batch (one write transaction): about 0.1 s of write lock at most.
DEFAULT_BATCH_ACCOUNTS = 1000
#: Days a (job, slot, account) marker is kept; a re-run of an older slot is refused.
DEFAULT_MARKER_RETENTION_DAYS = 7


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class JobsConfig:
    auto_repay_times: tuple[time, ...] = (time(22, 0), time(23, 0))
    interest_times: tuple[time, ...] = (time(0, 0),)
    interest: InterestPolicy = field(default_factory=InterestPolicy)
    batch_accounts: int = DEFAULT_BATCH_ACCOUNTS
    marker_retention_days: int = DEFAULT_MARKER_RETENTION_DAYS
    #: The UM market ([market]: symbols, prices, collateral, feed); the funding job needs it.
    market: MarketConfig = field(default_factory=MarketConfig)


def load_config(path: Path | None) -> JobsConfig:
    """The configuration in ``path``, or the defaults when ``path`` is None."""
    if path is None:
        return JobsConfig()
    return parse_config(read_toml(path))


def read_toml(path: Path) -> dict[str, Any]:
    """The configuration file's tables (a float as its own text), or ConfigError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        # A TOML float is kept as its own text and read by the grammar like a string, so
        # 0.0000001 is taken and 1e-3, 1_000.5, inf are refused (Decimal would have accepted
        # 1e-3 and refused 0.0000001, whose str() is 1E-7).
        return tomllib.loads(raw.decode("utf-8"), parse_float=str)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_config(data: Mapping[str, Any]) -> JobsConfig:
    # [market] belongs to the market's own parser (papi_sandbox.market.config).
    _only(data, {"schedule", "interest", "jobs", "market"}, "the top level")
    schedule = _table(data, "schedule")
    _only(schedule, {"auto_repay", "interest"}, "[schedule]")
    interest = _table(data, "interest")
    _only(
        interest,
        {"default_threshold", "default_daily_rate", "daily_rates", "thresholds"},
        "[interest]",
    )
    jobs = _table(data, "jobs")
    _only(jobs, {"batch_accounts", "marker_retention_days"}, "[jobs]")

    rates = {
        _asset(asset, "[interest.daily_rates]"): _rate(value, f"daily rate of {asset}")
        for asset, value in _table(interest, "daily_rates").items()
    }
    thresholds: dict[int, dict[str, Decimal]] = {}
    for tier, table in _table(interest, "thresholds").items():
        if not grammar.is_integer(tier, 1) or int(tier) > MAX_VIP_LEVEL:
            raise ConfigError(f"[interest.thresholds]: {tier!r} is not a VIP tier 0..9")
        if not isinstance(table, dict):
            raise ConfigError(f"[interest.thresholds.{tier}] must be a table of asset = amount")
        thresholds[int(tier)] = {
            _asset(asset, f"[interest.thresholds.{tier}]"): _threshold(value, f"{tier}.{asset}")
            for asset, value in table.items()
        }
    policy = InterestPolicy(
        default_threshold=_threshold(
            interest.get("default_threshold", DEFAULT_THRESHOLD), "default_threshold"
        ),
        default_daily_rate=_rate(
            interest.get("default_daily_rate", DEFAULT_DAILY_RATE), "default_daily_rate"
        ),
        thresholds=thresholds,
        daily_rates=rates,
    )
    try:
        market = parse_market(data.get("market"))
    except MarketConfigError as exc:
        raise ConfigError(str(exc)) from None
    return JobsConfig(
        market=market,
        auto_repay_times=_times(schedule.get("auto_repay", ["22:00", "23:00"]), "auto_repay"),
        interest_times=_times(schedule.get("interest", ["00:00"]), "interest"),
        interest=policy,
        batch_accounts=_int(jobs.get("batch_accounts", DEFAULT_BATCH_ACCOUNTS), 1, 5000),
        marker_retention_days=_int(
            jobs.get("marker_retention_days", DEFAULT_MARKER_RETENTION_DAYS), 1, 366
        ),
    )


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")


def _table(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"'{name}' must be a table")
    return value


def _asset(text: str, where: str) -> str:
    try:
        return grammar.parse_asset(text)
    except grammar.GrammarError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _decimal(value: Any, what: str) -> Decimal:
    """A TOML string in the grammar, or a TOML integer or float whose own text is in the grammar
    (no exponent, no underscore, no sign but '-')."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ConfigError(f"{what} must be a decimal number")
    text = value if isinstance(value, str) else str(value)
    try:
        return money.parse_amount(text, what=what)
    except money.AmountError as exc:
        raise ConfigError(str(exc)) from None


def _threshold(value: Any, what: str) -> Decimal:
    amount = _decimal(value, f"threshold {what}")
    if amount < 0:
        raise ConfigError(f"threshold {what} must not be negative")
    return amount


def _rate(value: Any, what: str) -> Decimal:
    rate = _decimal(value, what)
    if not 0 <= rate <= MAX_DAILY_RATE:
        raise ConfigError(f"{what} must be from 0 to {MAX_DAILY_RATE}")
    return rate


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{value!r} must be an integer from {low} to {high}")
    return value


def _times(value: Any, what: str) -> tuple[time, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TIMES_PER_DAY:
        raise ConfigError(f"[schedule] {what} must be a list of 1 to {MAX_TIMES_PER_DAY} times")
    result: set[time] = set()
    for text in value:
        try:
            hours, minutes = grammar.parse_clock_time(text)
        except grammar.GrammarError as exc:
            raise ConfigError(f"[schedule] {what}: {exc}") from None
        result.add(time(hours, minutes))
    return tuple(sorted(result))
