"""API keys, signatures and request timing for SIGNED and USER_STREAM endpoints."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping

from papi_sandbox.store.base import ApiKeyRecord
from papi_sandbox.wire import errors

API_KEY_HEADER = "x-mbx-apikey"
#: recvWindow when the client sends none, and the largest it may send (ms).
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
#: How far a timestamp may run ahead of the server's clock (ms).
MAX_AHEAD_MS = 1000
#: Seconds a key record stays cached; revocation through this process clears it at once.
KEY_CACHE_TTL_S = 5.0
#: Most key records cached; past it the cache is cleared.
MAX_CACHED_KEYS = 100_000

_API_KEY_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")
_HEX_SIGNATURE_RE = re.compile(r"^[0-9A-Fa-f]{64}$")
_LONG_RE = re.compile(r"^[0-9]{1,18}$")


def new_api_key() -> str:
    """64 characters of [A-Za-z0-9], like Binance's keys."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(64))


def new_hmac_secret() -> str:
    return new_api_key()


def check_timing(values: Mapping[str, str], now_ms: int) -> None:
    """``timestamp`` mandatory; ``recvWindow`` optional, at most 60000; the request must arrive
    within the window and not more than 1000 ms ahead of the server."""
    timestamp_text = values.get("timestamp")
    if not timestamp_text or not _LONG_RE.match(timestamp_text):
        raise errors.mandatory_missing("timestamp")
    recv_window_ms = DEFAULT_RECV_WINDOW_MS
    recv_text = values.get("recvWindow")
    if recv_text is not None:
        if not _LONG_RE.match(recv_text):
            raise errors.mandatory_missing("recvWindow")
        recv_window_ms = int(recv_text)
        if recv_window_ms > MAX_RECV_WINDOW_MS:
            raise errors.bad_recv_window()
    timestamp_ms = int(timestamp_text)
    if timestamp_ms >= now_ms + MAX_AHEAD_MS:
        raise errors.timestamp_ahead()
    if now_ms - timestamp_ms > recv_window_ms:
        raise errors.timestamp_outside_window()


def hmac_signature(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode("latin-1"), hashlib.sha256).hexdigest()


def verify_signature(key: ApiKeyRecord, signed_text: str, signature: str) -> bool:
    if key.key_type == "HMAC" and key.secret is not None:
        if not _HEX_SIGNATURE_RE.match(signature):
            return False
        expected = hmac_signature(key.secret, signed_text)
        return hmac.compare_digest(expected, signature.lower())  # hex is case-insensitive
    return False


def ip_allowed(key: ApiKeyRecord, client_ip: str) -> bool:
    if not key.ip_whitelist:
        return True
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    for allowed in key.ip_whitelist:
        try:
            if address in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False


class KeyCache:
    """API key -> record, with a short TTL so that keys revoked elsewhere expire soon."""

    def __init__(
        self,
        load: Callable[[str], Awaitable[ApiKeyRecord | None]],
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._clock_s = clock_s
        self._cache: dict[str, tuple[float, ApiKeyRecord]] = {}

    async def get(self, api_key: str) -> ApiKeyRecord | None:
        now = self._clock_s()
        hit = self._cache.get(api_key)
        if hit is not None and now - hit[0] < KEY_CACHE_TTL_S:
            return hit[1]
        record = await self._load(api_key)
        if record is None:
            self._cache.pop(api_key, None)
            return None
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[api_key] = (now, record)
        return record

    def forget(self, api_key: str) -> None:
        self._cache.pop(api_key, None)


async def authenticate(
    headers: Mapping[str, str],
    client_ip: str,
    keys: KeyCache,
) -> ApiKeyRecord:
    """The key named by ``X-MBX-APIKEY``, if it exists, is live and allows this IP."""
    api_key = headers.get(API_KEY_HEADER)
    if not api_key or not _API_KEY_RE.match(api_key):
        raise errors.bad_api_key_format()
    record = await keys.get(api_key)
    if record is None or record.revoked or not ip_allowed(record, client_ip):
        raise errors.rejected_api_key()
    return record
