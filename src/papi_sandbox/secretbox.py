"""HMAC secrets encrypted at rest: AES-256-GCM with a key the operator supplies or the service
generates in the data folder.

A stored secret reads ``enc1:<key id>:<base64 of nonce + ciphertext + tag>``. The key id (8 hex
digits of the key's SHA-256) tells which key sealed it, so a wrong key is an explicit error, never
garbage. The API key itself is the associated data: a sealed secret moved to another key's row
does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from papi_sandbox import grammar
from papi_sandbox.files import make_private_dir

#: Environment variable holding the encryption key (64 hex digits = 32 bytes); wins over the file.
SECRET_KEY_ENV = "PAPI_SANDBOX_SECRET_KEY"
#: File in the data folder holding the generated key (mode 0600).
SECRET_KEY_FILE_NAME = "secret-key"
PREFIX = "enc1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretBoxError(Exception):
    """A sealed secret cannot be opened (wrong key, tampered text) or a key is malformed.

    Messages never carry the secret or the key."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def parse_key(text: str) -> bytes:
    """The key from exactly 64 ASCII hex digits (one final line feed, as a key file ends, is
    allowed); anything else raises SecretBoxError."""
    try:
        return grammar.parse_hex(text.removesuffix("\n"), digits=2 * KEY_BYTES)
    except grammar.GrammarError:
        raise SecretBoxError("the encryption key must be 64 hex digits") from None


def new_key_text() -> str:
    return secrets.token_bytes(KEY_BYTES).hex()


def write_key_file(path: Path, key_text: str) -> None:
    """Write a key file with mode 0600 atomically (the old file, if any, is replaced whole)."""
    make_private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(key_text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_key(data_dir: Path) -> bytes:
    """The operator's key from ``PAPI_SANDBOX_SECRET_KEY``, else the data folder's key file,
    generated (mode 0600) at first start."""
    text = os.environ.get(SECRET_KEY_ENV)
    if text:
        return parse_key(text)
    path = data_dir / SECRET_KEY_FILE_NAME
    if not path.exists():
        write_key_file(path, new_key_text())
    return parse_key(path.read_text())


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretBoxError("the encryption key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    def seal(self, secret: str, api_key: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), api_key.encode())
        return f"{PREFIX}:{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, stored: str, api_key: str) -> str:
        prefix, _, rest = stored.partition(":")
        stored_key_id, _, payload = rest.partition(":")
        if prefix != PREFIX:
            raise SecretBoxError("the stored secret is not sealed")
        if stored_key_id != self.key_id:
            raise SecretBoxError(
                f"the stored secret was sealed with key {stored_key_id}, not {self.key_id}"
            )
        try:
            raw = base64.b64decode(payload, validate=True)
            return self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], api_key.encode()
            ).decode()
        except (binascii.Error, InvalidTag, ValueError):
            raise SecretBoxError("the stored secret does not open with this key") from None

    def reseal(self, stored: str, api_key: str, old: SecretBox | None) -> str:
        """``stored`` sealed with this box's key: plain text (databases from before encryption)
        is sealed, text sealed by ``old`` is re-sealed, text already sealed here is kept."""
        if not is_sealed(stored):
            return self.seal(stored, api_key)
        if stored.split(":", 2)[1] == self.key_id:
            return stored
        if old is None:
            raise SecretBoxError("a secret is sealed with another key and no old key was given")
        return self.seal(old.open(stored, api_key), api_key)


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX + ":")
