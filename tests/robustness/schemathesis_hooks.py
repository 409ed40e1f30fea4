"""Schemathesis hooks for the fuzz test: every error must be in Binance's shape."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def binance_shaped_errors(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 400:
        return
    data = response.json()
    assert isinstance(data, dict) and set(data) == {"code", "msg"}, f"not Binance-shaped: {data}"
    assert isinstance(data["code"], int) and data["code"] < 0, f"bad code: {data}"
    assert isinstance(data["msg"], str) and data["msg"], f"bad msg: {data}"
