"""The one grammar for every value that comes from outside: request parameters, operator JSON
fields, path segments and query parameters, CLI arguments, environment values and TOML config.

Every rule is ASCII-only and matched whole (``re.fullmatch`` on explicit ``[0-9]`` classes):
Python's ``\\d``, ``$`` (which matches before a final line feed), ``str.isdigit()`` and ``int()``
accept Unicode digits, signs, whitespace and underscores, and none of them may decide what a
number is here. The rules follow Binance's published legal ranges (docs/semantics.md, "The
grammar"):

- decimal: ``^([0-9]{1,20})(\\.[0-9]{1,20})?$``; the sandbox then holds at most 8 fractional
  digits and 10^15 in magnitude (:mod:`papi_sandbox.money`);
- signed decimal (operator amounts only): one optional leading ``-``, then a decimal;
- integer: ASCII digits only, at most ``max_digits`` of them, within a stated range;
- asset: ``^[A-Z0-9]{1,20}$``;
- enum and boolean: the exact text of one of the values (``true``/``false`` for booleans).

Each parser raises :class:`GrammarError` (a ``ValueError``) with a message that says what was
expected; callers turn it into their own refusal (a Binance error, a CLI exit, a config error).
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

#: Binance's legal range for decimal parameters, as its -1100 messages print it.
DECIMAL_PATTERN = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
#: An asset code: upper-case ASCII letters and digits.
ASSET_PATTERN = r"^[A-Z0-9]{1,20}$"

_DECIMAL = re.compile(r"([0-9]{1,20})(?:\.([0-9]{1,20}))?", re.ASCII)
_SIGNED_DECIMAL = re.compile(r"-?([0-9]{1,20})(?:\.([0-9]{1,20}))?", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)
_ASSET = re.compile(r"[A-Z0-9]{1,20}", re.ASCII)
#: ISO-8601 date-times as the operator's ``asOf`` takes them (ASCII digits only).
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?",
    re.ASCII,
)
#: Wide enough for every text the decimal rule admits (20 + 20 digits).
_EXACT = decimal.Context(prec=60)
_CLOCK_TIME = re.compile(r"([0-9]{2}):([0-9]{2})", re.ASCII)

#: Most fractional digits an amount may carry (Binance's asset precision).
SCALE_DIGITS = 8
#: Largest magnitude of one amount or balance (docs/semantics.md).
MAX_MAGNITUDE = Decimal(10) ** 15
#: Most digits of an integer unless a parser says otherwise (fits a signed 64-bit integer).
MAX_INTEGER_DIGITS = 18
#: Times the operator may name (``asOf``): a job's slot one day before must still be a date.
MIN_TIME = datetime(1970, 1, 2, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC)


class GrammarError(ValueError):
    """Text outside the grammar; the message says what was expected."""


def _show(text: object) -> str:
    """The refused value as a message may quote it: escaped, and at most 32 characters."""
    shown = repr(text)
    return shown if len(shown) <= 34 else shown[:31] + "..."


def _power_of_ten(value: Decimal) -> str:
    exponent = value.adjusted()
    return f"10^{exponent}" if value == Decimal(10) ** exponent else str(value)


def is_decimal(text: object) -> bool:
    """True for text in Binance's decimal legal range (no sign, no exponent, ASCII only)."""
    return isinstance(text, str) and _DECIMAL.fullmatch(text) is not None


def parse_decimal(
    text: object,
    *,
    signed: bool = False,
    scale: int = SCALE_DIGITS,
    max_magnitude: Decimal = MAX_MAGNITUDE,
    what: str = "value",
) -> Decimal:
    """A decimal from text in the grammar: ``-`` first only when ``signed``; at most ``scale``
    fractional digits that are not zero; at most ``max_magnitude``. Raises GrammarError."""
    if not isinstance(text, str):
        raise GrammarError(f'{what} must be a decimal string such as "12.5", not {_show(text)}')
    match = (_SIGNED_DECIMAL if signed else _DECIMAL).fullmatch(text)
    if match is None:
        sign = "an optional leading '-', then " if signed else ""
        raise GrammarError(
            f"{what} {_show(text)} is not a decimal: expected {sign}ASCII digits with an"
            f" optional '.' fraction ({DECIMAL_PATTERN})"
        )
    fraction = match.group(2) or ""
    if len(fraction.rstrip("0")) > scale:
        raise GrammarError(f"{what} {_show(text)} has more than {scale} fractional digits")
    value = Decimal(text)
    if abs(value) > max_magnitude:
        raise GrammarError(
            f"{what} {_show(text)} exceeds {_power_of_ten(max_magnitude)} in magnitude"
        )
    if not value:
        return Decimal(0)  # "-0" and "0.000" are zero
    if len(fraction) > scale:  # zeros past the scale: dropped, which is exact
        return value.quantize(Decimal(1).scaleb(-scale), context=_EXACT)
    return value


def is_integer(text: object, max_digits: int = MAX_INTEGER_DIGITS) -> bool:
    """True for 1 to ``max_digits`` ASCII digits."""
    return isinstance(text, str) and len(text) <= max_digits and _DIGITS.fullmatch(text) is not None


def parse_integer(
    text: object,
    *,
    low: int = 0,
    high: int = 10**MAX_INTEGER_DIGITS - 1,
    what: str = "value",
) -> int:
    """A non-negative integer from ASCII digits, within ``low..high``. Raises GrammarError."""
    max_digits = max(len(str(high)), 1)
    if not is_integer(text, max_digits):
        raise GrammarError(
            f"{what} {_show(text)} is not an integer: expected 1 to {max_digits} ASCII digits"
        )
    assert isinstance(text, str)
    value = int(text)
    if not low <= value <= high:
        raise GrammarError(f"{what} must be an integer from {low} to {high}, not {value}")
    return value


def parse_json_integer(value: object, *, low: int, high: int, what: str) -> int:
    """An integer from a JSON document: a JSON integer (never a boolean or a float) in range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GrammarError(f"{what} must be an integer from {low} to {high}")
    return value


def is_asset(text: object) -> bool:
    """True for an asset code: 1 to 20 upper-case ASCII letters or digits."""
    return isinstance(text, str) and _ASSET.fullmatch(text) is not None


def parse_asset(text: object, *, what: str = "asset") -> str:
    """An asset code (``ASSET_PATTERN``). Raises GrammarError."""
    if not is_asset(text):
        raise GrammarError(f"{what} {_show(text)} is not an asset: 1 to 20 of A-Z and 0-9")
    assert isinstance(text, str)
    return text


def parse_enum(text: object, choices: Iterable[str], *, what: str = "value") -> str:
    """One of ``choices``, by exact value (no case folding, no trimming). Raises GrammarError."""
    options = tuple(choices)
    if not isinstance(text, str) or text not in options:
        raise GrammarError(f"{what} must be one of {', '.join(options)}, not {_show(text)}")
    return text


#: Boolean texts, exactly as Binance's ``autoRepay`` takes them.
BOOLEANS = {"true": True, "false": False}


#: On/off texts of a setting (``PAPI_SANDBOX_SCHEDULER=off``), exact and lower-case.
FLAGS = {"true": True, "1": True, "yes": True, "on": True}
FLAGS |= {"false": False, "0": False, "no": False, "off": False}


def parse_flag(text: object, *, what: str = "value") -> bool:
    """An on/off setting: ``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off``,
    exactly (lower-case ASCII, nothing around it). Raises GrammarError."""
    return FLAGS[parse_enum(text, FLAGS, what=what)]


def parse_seconds(text: object, *, low: Decimal, high: Decimal, what: str = "value") -> float:
    """A duration in seconds (a decimal, ``low..high``) for timeouts; not money."""
    value = parse_decimal(text, scale=3, max_magnitude=high, what=what)
    if value < low:
        raise GrammarError(f"{what} must be from {low} to {high} seconds")
    return float(value)


_HEX = re.compile(r"[0-9a-fA-F]+", re.ASCII)


def parse_hex(text: object, *, digits: int, what: str = "value") -> bytes:
    """Exactly ``digits`` ASCII hex digits, as bytes. Raises GrammarError."""
    if not isinstance(text, str) or len(text) != digits or _HEX.fullmatch(text) is None:
        raise GrammarError(f"{what} must be {digits} hex digits")
    return bytes.fromhex(text)


def parse_clock_time(text: object, *, what: str = "time") -> tuple[int, int]:
    """``HH:MM`` (UTC, ASCII digits) as ``(hours, minutes)``. Raises GrammarError."""
    match = _CLOCK_TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise GrammarError(f"{what} {_show(text)} is not a UTC time HH:MM")
    return int(match.group(1)), int(match.group(2))


def parse_time(text: object, *, what: str = "time") -> datetime:
    """An ISO-8601 date-time in ASCII (``2026-01-02T00:00:00Z``, UTC when no offset is given),
    between :data:`MIN_TIME` and :data:`MAX_TIME`. Raises GrammarError."""
    if not isinstance(text, str) or _ISO_TIME.fullmatch(text) is None:
        raise GrammarError(
            f"{what} must be an ISO-8601 time such as 2026-01-02T00:00:00Z, not {_show(text)}"
        )
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        in_utc = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise GrammarError(f"{what} {_show(text)} is not a valid date and time") from None
    return check_time_range(in_utc, what=what)


def check_time_range(moment: datetime, *, what: str = "time") -> datetime:
    """``moment`` when it lies between :data:`MIN_TIME` and :data:`MAX_TIME`."""
    if not MIN_TIME <= moment <= MAX_TIME:
        raise GrammarError(
            f"{what} must lie between {MIN_TIME:%Y-%m-%d} and {MAX_TIME:%Y-%m-%d} (UTC)"
        )
    return moment
