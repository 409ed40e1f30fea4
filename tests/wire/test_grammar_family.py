"""The one ASCII grammar, walked with the whole family of bad inputs through every parser that
takes outside text: the grammar itself, public parameters, operator JSON fields, operator path
ids and query parameters, CLI arguments and options, environment values and TOML config.

Every member of the family must be refused, and a refusal must change nothing: the journal's
length and every balance are equal before and after (checked over HTTP, on both stores).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from papi_sandbox import grammar, money, settings
from papi_sandbox.cli import app as cli_app
from papi_sandbox.jobs.config import ConfigError, parse_config
from papi_sandbox.jobs.runner import parse_as_of
from tests.support import ADMIN_TOKEN, Account, Server, Signer, now_ms, raw_request, sign

#: The zero of every digit script used: Arabic-Indic, Extended Arabic-Indic, Devanagari,
#: Bengali, Thai, Myanmar, full-width, mathematical bold.
DIGIT_ZEROS = (0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040, 0xFF10, 0x1D7CE)
#: Whitespace and line breaks, ASCII and not.
SPACES = (" ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\u00a0", "\u2003", "\u2028", "\u3000")


def _digits_in(text: str, zero: int) -> str:
    return "".join(chr(zero + int(c)) if c.isascii() and c.isdigit() else c for c in text)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else c for c in text)


def family(valid: str, *, signed: bool = False) -> list[str]:
    """Bad neighbours of ``valid`` (a legal value of at least 2 characters): other digit
    scripts, full-width forms, signs, exponents, whitespace and line breaks before, inside and
    after, NUL, over-long digit strings and a few classics (superscripts, underscores, hex)."""
    assert len(valid) >= 2
    bad = [_digits_in(valid, zero) for zero in DIGIT_ZEROS if _digits_in(valid, zero) != valid]
    bad.append(_full_width(valid))
    bad += ["+" + valid, "+-" + valid, "--" + valid, valid + "-", valid + "+"]
    if not signed:
        bad.append("-" + valid)
    bad += [valid + "e0", valid + "E2", "1e3", "1E-3", "0x1F", "1_0", "1,000", "NaN", "Infinity"]
    for space in SPACES:
        bad += [space + valid, valid + space, valid[0] + space + valid[1:]]
    bad += ["\x00" + valid, valid + "\x00", valid[0] + "\x00" + valid[1:]]
    bad += ["9" * 21, "1" + "0" * 40, "1." + "0" * 21, "9" * 300]
    bad += ["\u00b2", "\u00b9\u00b2", "\u00bd", "\u2460", "\u0661\u0662\u0663", "1.", ".5", "1..2"]
    return bad


def asset_family() -> list[str]:
    bad = ["usdt", "Usdt", _full_width("USDT"), "USD\u0422", "USDT\u0301", "\u0661INCH", "A" * 21]
    for space in SPACES:
        bad += [space + "USDT", "USDT" + space, "US" + space + "DT"]
    bad += ["\x00USDT", "USDT\x00", "US\x00DT", "US-DT", "US.DT", "USDT%"]
    return bad


DECIMALS = family("123.5")
SIGNED_DECIMALS = [b for b in family("-123.5", signed=True) if not grammar.is_decimal(b)]
INTEGERS = family("10")
ASSETS = asset_family()


# -- the grammar itself ------------------------------------------------------------------------


def test_the_family_is_what_it_says() -> None:
    """The generator makes inputs Python's own parsers accept: the family is not a straw man."""
    assert int("\u0661\u0662\u0663") == 123 and "\u0661".isdigit()
    assert any(text.strip() != text for text in DECIMALS)
    assert len(DECIMALS) > 60 and len(ASSETS) > 30


@pytest.mark.parametrize("text", DECIMALS)
def test_grammar_refuses_decimals(text: str) -> None:
    assert not grammar.is_decimal(text)
    with pytest.raises(grammar.GrammarError):
        grammar.parse_decimal(text)
    with pytest.raises(money.AmountError):
        money.parse_amount(text, signed=False)


@pytest.mark.parametrize("text", SIGNED_DECIMALS)
def test_grammar_refuses_signed_decimals(text: str) -> None:
    with pytest.raises(grammar.GrammarError):
        grammar.parse_decimal(text, signed=True)


@pytest.mark.parametrize("text", INTEGERS)
def test_grammar_refuses_integers(text: str) -> None:
    assert not grammar.is_integer(text)
    with pytest.raises(grammar.GrammarError):
        grammar.parse_integer(text)


@pytest.mark.parametrize("text", ASSETS)
def test_grammar_refuses_assets(text: str) -> None:
    assert not grammar.is_asset(text)
    with pytest.raises(grammar.GrammarError):
        grammar.parse_asset(text)


def test_grammar_accepts_the_legal_ranges() -> None:
    assert grammar.parse_decimal("123.5") == money.parse_amount("123.5")
    assert grammar.parse_decimal("1." + "0" * 20) == 1  # Binance's 20 fractional digits
    assert grammar.parse_decimal("-0", signed=True) == 0
    assert grammar.parse_decimal("1000000000000000") == 10**15
    assert grammar.parse_integer("0010") == 10
    assert grammar.parse_asset("1000SATS") == "1000SATS"


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:00-14:00",
        "9999-12-31T23:59:59",
        "1969-12-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "\uff12\uff10\uff12\uff16-01-01",
        "2026-01-01T00:00:00Z\n",
        " 2026-01-01",
        "2026-01-01T00:00:00+99:00",
        -1,
        10**20,
        "9" * 40,
        True,
        1.5,
        [],
    ],
)
def test_as_of_out_of_range_is_a_clear_refusal(value: object) -> None:
    with pytest.raises(grammar.GrammarError) as info:
        parse_as_of(value)
    assert "asOf" in str(info.value)


# -- over HTTP: nothing changes ------------------------------------------------------------------


def _state(server: Server, account: Account) -> tuple[int, Any, Any]:
    """Journal length, balances and the verify report's counts: what a refusal must not move."""
    balances = server.admin.request("GET", f"/accounts/{account.account_id}/balances").json()
    report = server.admin.request("GET", "/verify").json()
    return len(server.journal(account.account_id)), balances, (report["entries"], report["assets"])


@pytest.fixture
def funded(server: Server) -> Iterator[tuple[Account, Signer]]:
    account = server.create_account("grammar")
    server.adjust(account.account_id, "MARGIN", "BNB", "1000")
    server.adjust(account.account_id, "MARGIN", "USDT", "1000")
    server.adjust(account.account_id, "UM", "USDT", "500")
    yield account, Signer(server.base_url, account)


def _codes(responses: list[tuple[str, httpx.Response]], status: int, code: int) -> None:
    wrong = [
        (value, r.status_code, r.text[:120])
        for value, r in responses
        if (r.status_code, r.json().get("code")) != (status, code)
    ]
    assert not wrong, wrong


def test_public_decimal_parameters(server: Server, funded: tuple[Account, Signer]) -> None:
    account, signer = funded
    before = _state(server, account)
    answers = []
    for value in DECIMALS:
        for where in ("query", "body"):
            params = {"amount": value, "transferSide": "TO_UM"}
            answers.append(
                (value, signer.request("POST", "/papi/v1/bnb-transfer", params, where=where))
            )
            params = {"asset": "USDT", "amount": value, "futureType": "UM"}
            answers.append((value, signer.request("POST", "/papi/v1/asset-collection", params)))
    _codes(answers, 400, -1100)
    assert _state(server, account) == before


def test_public_integer_parameters(server: Server, funded: tuple[Account, Signer]) -> None:
    account, signer = funded
    before = _state(server, account)
    answers = []
    for value in INTEGERS:
        answers.append(
            (value, signer.request("GET", "/papi/v1/portfolio/interest-history", {"size": value}))
        )
        answers.append(
            (
                value,
                signer.request(
                    "POST",
                    "/papi/v1/bnb-transfer",
                    {"amount": "1", "transferSide": "TO_UM", "recvWindow": value},
                ),
            )
        )
        # timestamp itself: the signed text carries the bad value
        query = f"timestamp={quote(value, safe='')}"
        answers.append(
            (
                value,
                raw_request(
                    server.base_url,
                    "POST",
                    "/papi/v1/bnb-transfer",
                    f"amount=1&transferSide=TO_UM&{query}&signature="
                    + sign(account.secret, f"amount=1&transferSide=TO_UM&{query}"),
                    headers={"X-MBX-APIKEY": account.api_key},
                ),
            )
        )
    _codes(answers, 400, -1102)
    assert _state(server, account) == before


def test_public_enum_and_asset_parameters(server: Server, funded: tuple[Account, Signer]) -> None:
    account, signer = funded
    before = _state(server, account)
    answers = [
        (value, signer.request("POST", "/papi/v1/asset-collection", {"asset": value}))
        for value in ASSETS
    ]
    _codes(answers, 400, -1100)
    enums = [
        (v, signer.request("POST", "/papi/v1/bnb-transfer", {"amount": "1", "transferSide": v}))
        for v in ["to_um", " TO_UM", "TO_UM\n", "TO_UM\x00", _full_width("TO_UM")]
    ]
    enums += [
        (v, signer.request("POST", "/papi/v1/repay-futures-switch", {"autoRepay": v}))
        for v in ["True", "TRUE", "1", "true\n", " false", "\uff54rue"]
    ]
    _codes(enums, 400, -1102)
    assert _state(server, account) == before


def test_operator_json_fields(server: Server, funded: tuple[Account, Signer]) -> None:
    account, _ = funded
    path = f"/accounts/{account.account_id}/adjustments"
    before = _state(server, account)
    answers = []
    for value in SIGNED_DECIMALS:
        body = {"wallet": "MARGIN", "asset": "USDT", "amount": value, "reason": "DEPOSIT"}
        answers.append((value, server.admin.request("POST", path, json=body)))
    for value in ASSETS:
        body = {"wallet": "MARGIN", "asset": value, "amount": "5", "reason": "DEPOSIT"}
        answers.append((value, server.admin.request("POST", path, json=body)))
    for wallet in ["margin", "MARGIN\n", " UM", "CM\x00", _full_width("UM")]:
        body = {"wallet": wallet, "asset": "USDT", "amount": "5", "reason": "DEPOSIT"}
        answers.append((wallet, server.admin.request("POST", path, json=body)))
    for number in [5, 5.0, True, None, ["5"], {"v": "5"}]:
        body = {"wallet": "MARGIN", "asset": "USDT", "amount": number, "reason": "DEPOSIT"}
        answers.append((repr(number), server.admin.request("POST", path, json=body)))
    settings_path = f"/accounts/{account.account_id}/settings"
    for vip in ["1", "\u0661", 1.0, True, -1, 10, 10**30]:
        answers.append(
            (repr(vip), server.admin.request("PUT", settings_path, json={"vipLevel": vip}))
        )
    _codes(answers, 400, -1102)
    assert _state(server, account) == before


def test_operator_json_names_a_member_once(server: Server, funded: tuple[Account, Signer]) -> None:
    """A JSON member named twice is refused (-1101), never resolved to its first or last value;
    NaN, Infinity and nesting past the parser's depth are not valid JSON (-1102, never 500)."""
    account, _ = funded
    path = f"/accounts/{account.account_id}/adjustments"
    before = _state(server, account)
    twice = '{"wallet":"UM","asset":"USDT","amount":"1","reason":"REALIZED_PNL","amount":"2"}'
    duplicate = server.admin.request("POST", path, content=twice)
    assert (duplicate.status_code, duplicate.json()["code"]) == (400, -1101), duplicate.text
    assert "amount" in duplicate.json()["msg"]
    nested_twice = '{"vipLevel":1,"x":{"a":1,"a":2}}'
    settings = f"/accounts/{account.account_id}/settings"
    answers = [("nested", server.admin.request("PUT", settings, content=nested_twice))]
    _codes(answers, 400, -1101)
    not_json = [
        '{"wallet":"UM","asset":"USDT","amount":NaN,"reason":"REALIZED_PNL"}',
        '{"wallet":"UM","asset":"USDT","amount":Infinity,"reason":"REALIZED_PNL"}',
        "[" * 30000 + "]" * 30000,
    ]
    _codes([(t[:40], server.admin.request("POST", path, content=t)) for t in not_json], 400, -1102)
    assert _state(server, account) == before


def test_operator_path_ids(server: Server, funded: tuple[Account, Signer]) -> None:
    account, _ = funded
    before = _state(server, account)
    ids = [quote(v, safe="") for v in INTEGERS] + ["0", "-1", "+1", "1" + "0" * 30]
    answers = []
    for text in ids:
        body = {"wallet": "MARGIN", "asset": "USDT", "amount": "5", "reason": "DEPOSIT"}
        answers.append(
            (text, server.admin.request("POST", f"/accounts/{text}/adjustments", json=body))
        )
        answers.append((text, server.admin.request("GET", f"/accounts/{text}/balances")))
    _codes(answers, 404, -1000)
    assert _state(server, account) == before


def test_operator_query_parameters(server: Server, funded: tuple[Account, Signer]) -> None:
    account, _ = funded
    path = f"/accounts/{account.account_id}/journal"
    answers = []
    for value in [*INTEGERS, "0", "1" + "0" * 30]:
        answers.append((value, server.admin.request("GET", path, params={"limit": value})))
        answers.append((value, server.admin.request("GET", path, params={"beforeTranId": value})))
    answers.append(("1001", server.admin.request("GET", path, params={"limit": "1001"})))
    answers.append(("unknown", server.admin.request("GET", path, params={"limits": "1"})))
    answers.append(("twice", server.admin.request("GET", path + "?limit=1&limit=2")))
    wrong = [(v, r.status_code, r.text) for v, r in answers if r.status_code != 400]
    assert not wrong, wrong


@pytest.mark.parametrize("job", ["interest", "auto-repay"])
def test_operator_as_of(server: Server, funded: tuple[Account, Signer], job: str) -> None:
    account, _ = funded
    before = _state(server, account)
    values: list[object] = [
        "0001-01-01T00:00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:00-14:00",
        "\uff12\uff10\uff12\uff16-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z\n",
        -1,
        10**20,
        "\u0661\u0662\u0663",
        True,
    ]
    answers = [
        (repr(v), server.admin.request("POST", f"/jobs/{job}", json={"asOf": v})) for v in values
    ]
    _codes(answers, 400, -1102)
    assert all("asOf" in r.json()["msg"] for _, r in answers)
    assert _state(server, account) == before


# -- CLI, environment, TOML ---------------------------------------------------------------------


def test_cli_arguments_and_options(server: Server, funded: tuple[Account, Signer]) -> None:
    account, _ = funded
    runner = CliRunner()
    env = {"PAPI_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    url = ["--url", server.base_url]
    before = _state(server, account)
    refused = []
    for value in INTEGERS[:40]:
        refused.append(runner.invoke(cli_app, ["account", "show", value, *url], env=env))
        refused.append(
            runner.invoke(
                cli_app,
                ["account", "journal", str(account.account_id), "--limit", value, *url],
                env=env,
            )
        )
        refused.append(runner.invoke(cli_app, ["serve", "--port", value], env=env))
    for value in SIGNED_DECIMALS[:40]:
        args = ["account", "adjust", str(account.account_id), "--wallet", "MARGIN"]
        args += ["--asset", "USDT", "--amount", value, "--reason", "DEPOSIT", *url]
        refused.append(runner.invoke(cli_app, args, env=env))
    for value in ASSETS[:20]:
        args = ["account", "adjust", str(account.account_id), "--wallet", "MARGIN"]
        args += ["--asset", value, "--amount", "5", "--reason", "DEPOSIT", *url]
        refused.append(runner.invoke(cli_app, args, env=env))
    accepted = [r for r in refused if r.exit_code != 2]
    assert not accepted, [(r.exit_code, r.output[-300:]) for r in accepted]
    assert _state(server, account) == before


ENV_VALUES = [
    ("PAPI_SANDBOX_PORT", INTEGERS),
    ("PAPI_SANDBOX_IP_WEIGHT_LIMIT", INTEGERS),
    ("PAPI_SANDBOX_BAN_AFTER_429S", INTEGERS),
    ("PAPI_SANDBOX_MAX_API_KEYS_PER_ACCOUNT", INTEGERS),
    ("PAPI_SANDBOX_REQUEST_READ_TIMEOUT", DECIMALS),
    ("PAPI_SANDBOX_SCHEDULER", ["TRUE", " true", "true\n", "ON", " off", "\u0661", "ｔｒｕｅ"]),
    ("PAPI_SANDBOX_ACCESS_LOG", ["False", "0\n", "\u0660"]),
]


@pytest.mark.parametrize(("name", "values"), ENV_VALUES, ids=[n for n, _ in ENV_VALUES])
def test_environment_values(name: str, values: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for value in values:
        if "\x00" in value:
            continue  # the environment cannot hold NUL
        monkeypatch.setenv(name, value)
        with pytest.raises(settings.SettingError) as info:
            settings.settings_from_env()
        assert name in str(info.value)


def test_environment_values_reach_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    for value in ["\u0661\u0662", " 8765", "8765\n", "+8765", "8_765"]:
        result = runner.invoke(cli_app, ["serve"], env={**os.environ, "PAPI_SANDBOX_PORT": value})
        assert result.exit_code == 2, result.output


def _config_with(section: str, key: str, value: object) -> dict[str, Any]:
    data: dict[str, Any] = {}
    table = data
    for part in section.split("."):
        table = table.setdefault(part, {})
    table[key] = value
    return data


CONFIG_CASES: list[tuple[str, str, object]] = (
    [("interest", "default_threshold", v) for v in DECIMALS]
    + [("interest", "default_daily_rate", v) for v in DECIMALS]
    + [("interest.daily_rates", v, "0.001") for v in ASSETS]
    + [("interest.daily_rates", "BTC", v) for v in DECIMALS[:30]]
    + [("interest.thresholds", v, {"USDT": "1"}) for v in INTEGERS]
    + [
        ("schedule", "auto_repay", [v])
        for v in [
            "\uff12\uff12:00",
            "22:00\n",
            " 22:00",
            "2:00",
            "22:0",
            "+2:00",
            "24:00",
            "22\u0660:00",
        ]
    ]
)


@pytest.mark.parametrize(("section", "key", "value"), CONFIG_CASES)
def test_toml_values(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError):
        parse_config(_config_with(section, key, value))


def test_now_ms_is_ascii() -> None:  # the helpers above send what the grammar takes
    assert grammar.is_integer(str(now_ms()))
