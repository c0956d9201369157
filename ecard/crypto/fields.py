"""Field encryption at rest (AES-256-GCM), keyed blind indexes and pseudonyms (HMAC-SHA256).

Pure functions over keys the caller passes in; nothing here reads files or the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE = 12


class FieldDecryptionError(ValueError):
    """A stored ciphertext is corrupt, was moved to another row, or was made with another key."""


class FieldCipher:
    """Encrypts one column; the associated data binds a ciphertext to its table, column and row."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("field encryption needs a 32-byte key (AES-256)")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str) -> str:
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
            raise FieldDecryptionError("unknown ciphertext format")
        try:
            return self._aead.decrypt(
                blob[1 : 1 + _NONCE], blob[1 + _NONCE :], context.encode()
            ).decode()
        except InvalidTag:
            raise FieldDecryptionError("ciphertext failed authentication") from None


def keyed_digest(key: bytes, purpose: str, value: str) -> bytes:
    """HMAC-SHA256 with domain separation, so one key's indexes and pseudonyms never coincide."""
    return hmac.new(key, purpose.encode() + b"\x00" + value.encode(), hashlib.sha256).digest()


def blind_index(key: bytes, identity_number: str) -> str:
    """Deterministic, keyed lookup token for an identity number (cannot be reversed without the
    key)."""
    return keyed_digest(key, "identity-index", identity_number).hex()


def secret_digest(secret: str) -> str:
    """Digest of a high-entropy random secret or token, for storage and constant-time comparison."""
    return hashlib.sha256(secret.encode()).hexdigest()


_DIGEST = re.compile(r"[0-9a-f]{64}")
#: compared against when there is no usable stored digest, so that case takes the same time
_NO_DIGEST = hashlib.sha256(b"ecard: no stored secret").hexdigest()


def secrets_match(secret: str, stored_digest: str | None) -> bool:
    """Constant-time check of ``secret`` against a :func:`secret_digest`.  Fails closed: a missing,
    empty or malformed stored digest matches no secret at all (a client without a secret must not
    be entered with whatever password happens to digest to the placeholder)."""
    usable = (
        stored_digest
        if isinstance(stored_digest, str) and _DIGEST.fullmatch(stored_digest)
        else None
    )
    same = hmac.compare_digest(secret_digest(secret), usable or _NO_DIGEST)
    return usable is not None and same
