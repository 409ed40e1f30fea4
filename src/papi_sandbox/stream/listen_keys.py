"""Listen keys of the user data stream (``POST/PUT/DELETE /papi/v1/listenKey``).

Binance's rules (Portfolio Margin, "Start/Keepalive/Close User Data Stream"): one listen key per
API key at a time; ``POST`` returns the active key (extending it 60 minutes) or issues a new one;
``PUT`` extends the active key 60 minutes; ``DELETE`` closes it. Binance documents no parameter
for ``PUT``/``DELETE`` (the key follows from the API key); python-binance and ccxt send
``listenKey`` anyway: it is accepted when it is the caller's active key and refused (-1125)
otherwise. Keys are stored (they outlive a restart until they expire) and die with their API key.
Listeners (the WebSocket server) hear of every extension and closure made in this process.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from papi_sandbox.store import listen_keys as table
from papi_sandbox.store.contract import Store
from papi_sandbox.store.listen_keys import ListenKeyRecord

#: How long a listen key stays valid after POST or PUT (Binance: 60 minutes), in ms.
LISTEN_KEY_VALIDITY_MS = 60 * 60 * 1000
#: Length of a listen key: Binance's are 60 to 64 characters of [A-Za-z0-9].
LISTEN_KEY_LENGTH = 64
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class NoActiveListenKey(Exception):
    """The API key has no active listen key, or the one named is not it (Binance's -1125)."""


def new_listen_key() -> str:
    """A fresh random listen key: LISTEN_KEY_LENGTH characters of [A-Za-z0-9]."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(LISTEN_KEY_LENGTH))


def is_listen_key_text(text: str) -> bool:
    """True when ``text`` has a listen key's shape (ASCII letters and digits, 1 to 64 of them):
    anything else is refused before a store is asked."""
    return 0 < len(text) <= LISTEN_KEY_LENGTH and text.isascii() and text.isalnum()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ListenKeys:
    """The listen-key operations over the store. ``on_change(callback)``: called with the new
    record after every extension and closure made through this object (the WebSocket server
    moves its expiry timers and closes connections with it)."""

    def __init__(self, store: Store, clock_ms: Callable[[], int] = _now_ms) -> None:
        self.store = store
        self.clock_ms = clock_ms
        self._listeners: list[Callable[[ListenKeyRecord], None]] = []

    def on_change(self, callback: Callable[[ListenKeyRecord], None]) -> None:
        self._listeners.append(callback)

    def _changed(self, record: ListenKeyRecord) -> ListenKeyRecord:
        for callback in self._listeners:
            callback(record)
        return record

    async def open(self, api_key: str, account_id: int) -> ListenKeyRecord:
        """POST: the API key's active listen key, extended, or a new one."""
        now = self.clock_ms()
        record = await self.store.write(
            table.open_key, api_key, account_id, new_listen_key(), now, now + LISTEN_KEY_VALIDITY_MS
        )
        return self._changed(record)

    async def keepalive(self, api_key: str, listen_key: str | None) -> ListenKeyRecord:
        """PUT: extend the active key; NoActiveListenKey when there is none (or not that one)."""
        if listen_key is not None and not is_listen_key_text(listen_key):
            raise NoActiveListenKey(listen_key)
        now = self.clock_ms()
        record = await self.store.write(
            table.keepalive_key, api_key, listen_key, now, now + LISTEN_KEY_VALIDITY_MS
        )
        if record is None:
            raise NoActiveListenKey(listen_key or "")
        return self._changed(record)

    async def close(self, api_key: str, listen_key: str | None) -> None:
        """DELETE: close the active key. Without ``listenKey`` and no active key: nothing to
        do. A ``listenKey`` that is not the caller's active key: NoActiveListenKey."""
        if listen_key is not None and not is_listen_key_text(listen_key):
            raise NoActiveListenKey(listen_key)
        record = await self.store.write(table.close_key, api_key, listen_key, self.clock_ms())
        if record is None:
            if listen_key is not None:
                raise NoActiveListenKey(listen_key)
            return
        self._changed(record)

    async def find(self, listen_key: str) -> ListenKeyRecord | None:
        """The key's record (active or not), or None when no such key was ever issued."""
        if not is_listen_key_text(listen_key):
            return None
        return (await self.find_many([listen_key])).get(listen_key)

    async def find_many(self, listen_keys: list[str]) -> dict[str, ListenKeyRecord]:
        """The records of these keys that exist (at most MAX_LISTEN_KEYS_PER_READ a call)."""
        return await self.store.read(table.find_keys, listen_keys)
