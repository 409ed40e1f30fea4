"""Request parameters: raw query and body bytes in, named values and the signed text out.

Binance reads parameters from the query string, from an ``application/x-www-form-urlencoded``
body, or from both. The signature covers ``totalParams``: the raw query string followed by the raw
body, exactly as received (percent-encoding included), without the ``signature`` parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from papi_sandbox import grammar
from papi_sandbox.wire import errors

#: Longest raw query string accepted (bytes). A PAPI request needs a few hundred.
MAX_QUERY_BYTES = 8 * 1024
#: Largest request body accepted (bytes); bodies are small forms.
MAX_BODY_BYTES = 16 * 1024
#: Most parameters in one request, query and body together. The widest endpoint declares 8.
MAX_PARAMS = 32
#: Longest decoded parameter value (characters). A base64 RSA-4096 signature is 684.
MAX_VALUE_CHARS = 1024

SIGNATURE = "signature"
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}", re.ASCII)  # fullmatch: no "$" before "\n"


@dataclass(slots=True)
class RawParams:
    values: dict[str, str]  # decoded names and values, in arrival order
    signed_text: str  # totalParams without the signature parameter


#: Parameter names already checked against _NAME_RE (skips the regex for the usual names).
_CHECKED_NAMES: set[str] = set()
#: Most names remembered in _CHECKED_NAMES; past it the set starts over.
MAX_CHECKED_NAMES = 4096


def _decode(part: str, name_for_error: str) -> str:
    try:
        return unquote_plus(part, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise errors.illegal_chars(name_for_error, "UTF-8 percent-encoded text") from None


def _check_name(name: str) -> None:
    if name in _CHECKED_NAMES:
        return
    if _NAME_RE.fullmatch(name) is None:
        raise errors.illegal_chars(name[:64], "^[A-Za-z][A-Za-z0-9_]{0,63}$")
    if len(_CHECKED_NAMES) >= MAX_CHECKED_NAMES:
        _CHECKED_NAMES.clear()
    _CHECKED_NAMES.add(name)


def _parse_source(raw_bytes: bytes, values: dict[str, str]) -> str:
    """One source's parameters (the query string, or a form body) into ``values``, which holds
    this source's names only: a name repeated within it is -1101. Returns its part of
    totalParams: the raw text without the ``signature`` parameter."""
    # latin-1 maps bytes 1:1, so the signed text is exactly the bytes the client sent.
    raw = raw_bytes.decode("latin-1")
    ascii_only = raw_bytes.isascii()
    segments = raw.split("&")
    if len(segments) > MAX_PARAMS:
        raise errors.too_many_parameters()
    signature_at = -1
    for index, segment in enumerate(segments):
        if not segment:
            continue
        raw_name, _, raw_value = segment.partition("=")
        if not ascii_only and not segment.isascii():
            raise errors.illegal_chars(raw_name[:64], "ASCII, non-ASCII percent-encoded")
        # Nothing to decode is the common case, at a fraction of unquote_plus's cost.
        name = _decode(raw_name, raw_name[:64]) if "%" in raw_name or "+" in raw_name else raw_name
        _check_name(name)
        value = _decode(raw_value, name) if "%" in raw_value or "+" in raw_value else raw_value
        if len(value) > MAX_VALUE_CHARS:
            raise errors.request_too_large(f"parameter '{name}' characters", MAX_VALUE_CHARS)
        if name in values:
            raise errors.duplicate_parameter()
        values[name] = value
        if name == SIGNATURE:
            signature_at = index
    if signature_at < 0:
        return raw
    # totalParams is the text without the signature parameter
    return "&".join(segments[:signature_at] + segments[signature_at + 1 :])


def parse_raw(query: bytes, body: bytes) -> RawParams:
    """Parameters from the query string and a form body, as Binance takes them: a name sent in
    both takes the query string's value; a name repeated within one of them is -1101; the
    signed text is the raw query string followed by the raw body, each without its
    ``signature`` parameter. A body the caller ignores (a GET's, or one that is not a form) is
    passed as ``b""``: it is then neither read for parameters nor part of the signed text.
    Refuses oversize, too many parameters and illegal names."""
    if len(query) > MAX_QUERY_BYTES:
        raise errors.request_too_large("query string bytes", MAX_QUERY_BYTES)
    if len(body) > MAX_BODY_BYTES:
        raise errors.request_too_large("body bytes", MAX_BODY_BYTES)
    values: dict[str, str] = {}
    signed_query = _parse_source(query, values) if query else ""
    if not body:
        return RawParams(values, signed_query)
    from_body: dict[str, str] = {}
    signed_body = _parse_source(body, from_body)
    for name, value in from_body.items():
        values.setdefault(name, value)  # the query string's value wins
    if len(values) > MAX_PARAMS:
        raise errors.too_many_parameters()
    return RawParams(values, signed_query + signed_body)


class Kind(StrEnum):
    LONG = "LONG"
    DECIMAL = "DECIMAL"
    STRING = "STRING"
    ASSET = "ASSET"
    BOOLEAN = "BOOLEAN"
    ENUM = "ENUM"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: Kind
    mandatory: bool = False
    choices: tuple[str, ...] = ()  # for ENUM
    description: str = ""


# The converters apply the one grammar (papi_sandbox.grammar) and answer Binance's code for
# each kind: a malformed LONG, BOOLEAN or ENUM is -1102, a decimal or an asset outside its legal
# range is -1100.


def _long(param: Param, text: str) -> int:
    if not grammar.is_integer(text):
        raise errors.mandatory_missing(param.name)
    return int(text)


#: The sandbox's own range for decimals within Binance's: 8 fractional digits, 10^15.
HELD_DECIMAL_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,8})?$"


def _decimal(param: Param, text: str) -> Decimal:
    if not grammar.is_decimal(text):
        raise errors.illegal_chars(param.name, grammar.DECIMAL_PATTERN)
    try:
        return grammar.parse_decimal(text, what=param.name)
    except grammar.GrammarError:  # in Binance's range, past the 8 digits or 10^15 held here
        raise errors.illegal_chars(param.name, HELD_DECIMAL_PATTERN) from None


def _asset(param: Param, text: str) -> str:
    if not grammar.is_asset(text):
        raise errors.illegal_chars(param.name, grammar.ASSET_PATTERN)
    return text


def _boolean(param: Param, text: str) -> bool:
    if text not in grammar.BOOLEANS:
        raise errors.mandatory_missing(param.name)
    return grammar.BOOLEANS[text]


def _enum(param: Param, text: str) -> str:
    if text not in param.choices:
        raise errors.mandatory_missing(param.name)
    return text


def _string(param: Param, text: str) -> str:
    return text


#: Each kind's converter (a table, not a match on the enum: this runs for every parameter).
_CONVERTERS: dict[Kind, Callable[[Param, str], Any]] = {
    Kind.LONG: _long,
    Kind.DECIMAL: _decimal,
    Kind.ASSET: _asset,
    Kind.BOOLEAN: _boolean,
    Kind.ENUM: _enum,
    Kind.STRING: _string,
}


def convert(param: Param, text: str) -> Any:
    """One parameter's text to its typed value, or the Binance error for it."""
    if text == "":
        raise (
            errors.mandatory_missing(param.name)
            if param.mandatory
            else errors.empty_parameter(param.name)
        )
    return _CONVERTERS[param.kind](param, text)


def bind(
    declared: tuple[Param, ...],
    values: Mapping[str, str],
    by_name: Mapping[str, Param] | None = None,
) -> dict[str, Any]:
    """Typed arguments for an endpoint: every sent parameter must be declared (-1104), every
    mandatory one present (-1102). ``by_name`` is ``declared`` by name, when built already."""
    if by_name is None:
        by_name = {p.name: p for p in declared}
    unread = values.keys() - by_name.keys()
    if unread:
        raise errors.unread_parameters(len(values) - len(unread), len(values))
    args: dict[str, Any] = {}
    for param in declared:
        text = values.get(param.name)
        if text is None:
            if param.mandatory:
                raise errors.mandatory_missing(param.name)
            continue
        args[param.name] = convert(param, text)
    return args
