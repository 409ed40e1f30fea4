"""API keys, signatures and request timing for SIGNED and USER_STREAM endpoints."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from papi_sandbox import grammar
from papi_sandbox.secretbox import SecretBox, SecretBoxError
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

#: Key types, as Binance names them.
KEY_TYPES = ("HMAC", "RSA", "ED25519")
#: RSA key sizes accepted at registration (bits); Binance issues 2048 and 4096.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
#: Longest PEM text accepted for a public key (characters); an RSA-4096 key is about 800.
MAX_PUBLIC_KEY_PEM_CHARS = 4096
#: Parsed public keys kept in memory (parsing an RSA PEM costs far more than verifying).
MAX_CACHED_PUBLIC_KEYS = 4096
#: Longest base64 signature accepted (an RSA-4096 signature is 684 characters).
MAX_B64_SIGNATURE_CHARS = 1024


def _is_long(text: str) -> bool:
    """``^[0-9]{1,18}$`` in the one grammar (:func:`papi_sandbox.grammar.is_integer`)."""
    return grammar.is_integer(text)


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
    if not timestamp_text or not _is_long(timestamp_text):
        raise errors.mandatory_missing("timestamp")
    recv_window_ms = DEFAULT_RECV_WINDOW_MS
    recv_text = values.get("recvWindow")
    if recv_text is not None:
        if not _is_long(recv_text):
            raise errors.mandatory_missing("recvWindow")
        recv_window_ms = int(recv_text)
        if recv_window_ms > MAX_RECV_WINDOW_MS:
            raise errors.bad_recv_window()
    timestamp_ms = int(timestamp_text)
    if timestamp_ms >= now_ms + MAX_AHEAD_MS:
        raise errors.timestamp_ahead()
    if now_ms - timestamp_ms > recv_window_ms:
        raise errors.timestamp_outside_window()


class PublicKeyError(ValueError):
    """A public key the operator sent cannot serve as this type of API key."""


PublicKey = RSAPublicKey | Ed25519PublicKey


@functools.lru_cache(maxsize=MAX_CACHED_PUBLIC_KEYS)
def load_public_key(key_type: str, pem: str) -> PublicKey:
    """The PEM public key of an RSA or ED25519 API key, checked for its type and size."""
    if len(pem) > MAX_PUBLIC_KEY_PEM_CHARS:
        raise PublicKeyError(f"publicKey is longer than {MAX_PUBLIC_KEY_PEM_CHARS} characters")
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PublicKeyError("publicKey is not a PEM public key") from None
    if key_type == "RSA":
        if not isinstance(key, RSAPublicKey):
            raise PublicKeyError("publicKey is not an RSA public key")
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise PublicKeyError(f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
        return key
    if key_type == "ED25519":
        if not isinstance(key, Ed25519PublicKey):
            raise PublicKeyError("publicKey is not an Ed25519 public key")
        return key
    raise PublicKeyError(f"key type {key_type} has no public key")


def _b64_signature(signature: str) -> bytes | None:
    # A client that did not percent-encode its base64 sends '+', which form decoding turns
    # into ' '; base64 has no spaces, so mapping them back is unambiguous.
    if len(signature) > MAX_B64_SIGNATURE_CHARS:
        return None
    try:
        return base64.b64decode(signature.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_signature(key: ApiKeyRecord, signed_text: str, signature: str) -> bool:
    """HMAC: hex of HMAC-SHA256 (case-insensitive, compared in constant time). RSA: base64 of
    PKCS#1 v1.5 with SHA-256. ED25519: base64 of the Ed25519 signature. All over totalParams."""
    data = signed_text.encode("latin-1")  # the bytes exactly as received
    if key.key_type == "HMAC" and key.secret is not None:
        # 64 ASCII characters (compare_digest takes ASCII only); anything not hex then simply
        # differs from the expected hex digest.
        if len(signature) != 64 or not signature.isascii():
            return False
        expected = hmac.new(key.secret.encode(), data, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.lower())  # hex is case-insensitive
    if key.key_type in ("RSA", "ED25519") and key.public_key is not None:
        raw = _b64_signature(signature)
        if raw is None:
            return False
        try:
            public = load_public_key(key.key_type, key.public_key)
            if isinstance(public, RSAPublicKey):
                public.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                public.verify(raw, data)
        except (InvalidSignature, PublicKeyError):
            return False
        return True
    return False


def allowed_ip_entry(text: str) -> bool:
    """An ``ipWhitelist`` entry: one IPv4/IPv6 address or a CIDR range."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


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


class KeyFinder(Protocol):
    """The store's key lookup (``Store.find_api_key``): the record, its secret still sealed."""

    async def find_api_key(self, api_key: str) -> ApiKeyRecord | None: ...


class SealedKeyLoader:
    """What :class:`KeyCache` loads a missing key with: the store's record with its HMAC
    secret opened by the process's encryption key (``papi_sandbox.secretbox``). A secret
    that will not open (the key was rotated under a running process) is logged and refused
    with -1001 "internal error; retry" (``errors.internal_retry``)."""

    def __init__(self, store: KeyFinder, box: SecretBox) -> None:
        self._store = store
        self._box = box

    async def __call__(self, api_key: str) -> ApiKeyRecord | None:
        record = await self._store.find_api_key(api_key)
        if record is None or record.secret is None:
            return record
        try:
            secret = self._box.open(record.secret, record.api_key)
        except SecretBoxError as exc:
            logging.getLogger("papi_sandbox").error("cannot open the secret of an API key: %s", exc)
            raise errors.internal_retry() from None
        # Built field by field: dataclasses.replace costs several µs, on every key miss.
        return ApiKeyRecord(
            record.api_key,
            record.account_id,
            record.key_type,
            secret,
            record.public_key,
            record.can_read,
            record.can_trade,
            record.ip_whitelist,
            record.revoked,
        )


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
        # Bumped by forget(): a load that began before a revocation must not be cached after it.
        self._generation = 0

    async def get(self, api_key: str) -> ApiKeyRecord | None:
        now = self._clock_s()
        hit = self._cache.get(api_key)
        if hit is not None and now - hit[0] < KEY_CACHE_TTL_S:
            return hit[1]
        generation = self._generation
        record = await self._load(api_key)
        if record is None:
            self._cache.pop(api_key, None)
            return None
        if generation != self._generation:
            return await self._load(api_key)  # reread after the revocation, uncached
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[api_key] = (now, record)
        return record

    def forget(self, api_key: str) -> None:
        self._generation += 1
        self._cache.pop(api_key, None)


async def authenticate(
    api_key: str | None,
    client_ip: str,
    keys: KeyCache,
) -> ApiKeyRecord:
    """The key named by ``X-MBX-APIKEY`` (``api_key``), if it exists, is live and allows this
    IP."""
    # ^[A-Za-z0-9]{1,128}$, without a regex: this runs on every signed request.
    if not api_key or len(api_key) > 128 or not (api_key.isascii() and api_key.isalnum()):
        raise errors.bad_api_key_format()
    record = await keys.get(api_key)
    if record is None or record.revoked or not ip_allowed(record, client_ip):
        raise errors.rejected_api_key(client_ip)
    return record
