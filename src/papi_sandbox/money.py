"""Exact money: parsing, limits and the 8-digit wire format. The only place that knows them.

Amounts are :class:`decimal.Decimal` with at most 8 fractional digits. Floats never touch money:
:func:`parse_amount` refuses them, and every formatter goes through :data:`CONTEXT`.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from papi_sandbox import grammar

#: Fractional digits Binance uses for asset amounts.
SCALE_DIGITS = grammar.SCALE_DIGITS
QUANTUM = Decimal(1).scaleb(-SCALE_DIGITS)  # 0.00000001
ZERO = Decimal(0)

#: Largest magnitude one amount or one balance may reach. 10^15 with 8 fractional digits is
#: 24 significant digits; :data:`CONTEXT` holds 60, so sums over a whole ledger stay exact too.
MAX_AMOUNT = grammar.MAX_MAGNITUDE

#: Arithmetic context for money: wide enough to be exact for every sum we make, and it traps
#: Inexact and Rounded, so a silently rounded result raises instead of losing a satoshi.
CONTEXT = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Rounded, decimal.Overflow],
)

#: Text that is not an acceptable amount (the grammar's error).
AmountError = grammar.GrammarError


def parse_amount(text: object, *, signed: bool = True, what: str = "amount") -> Decimal:
    """An amount from text in the grammar (:func:`papi_sandbox.grammar.parse_decimal`): ASCII
    digits, one optional leading ``-`` when ``signed`` (operator amounts), at most 8 fractional
    digits, magnitude <= 10^15. Raises :data:`AmountError`."""
    return grammar.parse_decimal(text, signed=signed, what=what)


def add(a: Decimal, b: Decimal) -> Decimal:
    """Exact sum; raises decimal.Inexact rather than round."""
    return CONTEXT.add(a, b)


def within_limit(value: Decimal) -> bool:
    return abs(value) <= MAX_AMOUNT


def from_storage(text: str) -> Decimal:
    return Decimal(text)


def format_fixed(value: Decimal, digits: int) -> str:
    """``value`` with exactly ``digits`` fractional digits (Binance prints UM quantities and
    prices at the symbol's precision: ``quantityPrecision``, ``pricePrecision``)."""
    return f"{value.quantize(Decimal(1).scaleb(-digits)):f}" if digits else f"{value:.0f}"


#: Most formatted amounts :func:`format_amount` remembers (about 200 bytes each); emptied
#: whole when full. Prices, quantities and fees repeat from fill to fill, and formatting is a
#: quantize and a format (~0.4 µs) where a hit is a dict lookup (~0.05 µs).
MAX_FORMATTED = 8192
_formatted: dict[Decimal, str] = {}


def format_amount(value: Decimal) -> str:
    """The wire format: ``"100.00000000"``. Refuses values with more than 8 fractional digits."""
    if type(value) is Decimal:  # an int or float equal to a cached Decimal must not hit
        try:
            return _formatted[value]
        except (KeyError, TypeError):  # TypeError: a signaling NaN has no hash
            pass
    text = f"{CONTEXT.quantize(value if value else ZERO, QUANTUM):f}"  # never "-0.00000000"
    if type(value) is Decimal:
        if len(_formatted) >= MAX_FORMATTED:
            _formatted.clear()
        _formatted[value] = text
    return text


#: Canonical text for storage: exactly 8 fractional digits, no exponent (the wire format).
to_storage = format_amount


_ROUNDING = decimal.Context(prec=60)


def round_up(value: Decimal) -> Decimal:
    """Round away from zero to 8 fractional digits (used where a charge must not be understated)."""
    return value.quantize(QUANTUM, rounding=decimal.ROUND_UP, context=_ROUNDING)
