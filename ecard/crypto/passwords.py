"""Operator passwords: argon2id (RFC 9106) with a per-password salt; passwords are chosen by
people, so hashing them is deliberately slow and memory-hard.

Hashes are PHC strings (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``) that carry their own
parameters, so raising :data:`MEMORY_COST_KIB` or :data:`TIME_COST` needs no migration: old
hashes still verify, :func:`needs_rehash` says so, and the login re-hashes the password it just
verified.  Hashes of the earlier scheme (``scrypt$N$r$p$salt$digest``, N = 2^14) verify the same
way and are always re-hashed.

Parameters: 19 MiB, 2 passes, 1 lane — the OWASP Password Storage Cheat Sheet's argon2id
baseline, which it rates equal to scrypt N = 2^17 (eight times the work of the old N = 2^14).
About 25-50 ms per hash on one core, and 19 MiB of memory per login in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1

_HASHER = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST_KIB,
    parallelism=PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)

#: The legacy scheme's limits: a stored hash asking for more work than this is refused, not run.
_SCRYPT_MAX_N, _SCRYPT_MAX_R, _SCRYPT_MAX_P = 2**17, 16, 4


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against an argon2id or a legacy scrypt hash; False
    (never an exception) for a wrong password and for a malformed or unknown stored value."""
    if stored.startswith("$argon2id$"):
        try:
            return _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):  # VerifyMismatchError is a VerificationError
            return False
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    return False


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` is not an argon2id hash with today's parameters (call it after a
    successful :func:`verify_password`, then store :func:`hash_password` of the same password)."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _scheme, n_text, r_text, p_text, salt, digest = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        if not (1 < n <= _SCRYPT_MAX_N and 0 < r <= _SCRYPT_MAX_R and 0 < p <= _SCRYPT_MAX_P):
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=n,
            r=r,
            p=p,
            dklen=len(expected) or 32,
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        return False
    return hmac.compare_digest(actual, expected)


def legacy_scrypt_hash(password: str, salt: bytes, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """A hash in the pre-argon2 format, for tests of the upgrade path only."""
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return (
        f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )
