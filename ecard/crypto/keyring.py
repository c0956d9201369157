"""The platform's key material: the root key, issuer signing keys per region, and symmetric secrets.

Pure: a :class:`Keyring` is data plus the lifecycle rules (rotate, retire, withdraw).  Reading and
writing it is :mod:`ecard.store.keyfiles`' job.

Lifecycle of an issuer key: ``active`` (signs) -> ``retired`` (verify only, until ``verify_until``)
or ``withdrawn`` (compromised: everything it signed fails at once).  Exactly one active key per
region; rotation makes a new active key and retires the previous one.

Where a key's private half is depends on who made it (:mod:`ecard.crypto.provider`): the ``file``
provider writes it here as PEM (development); the ``pkcs11`` provider keeps it in a hardware
security module, and the record holds only the public key and the token object's label and id.
The lifecycle rules take a :class:`KeyGenerator`, so they are the same for both.
"""

from __future__ import annotations

import os
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm

from ecard.crypto.jwk import public_jwk, thumbprint

KeyStatus = Literal["active", "retired", "withdrawn"]

#: How long a retired key stays in the trust list: longer than anything it can have signed lives.
RETIRED_VERIFY_SECONDS = 2 * 86_400


class KeyringError(ValueError):
    """A key operation is not allowed in the key's current state, or the key does not exist."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


KeyRole = Literal["root", "issuer"]


class TokenObject(msgspec.Struct, kw_only=True, frozen=True):
    """Where a key lives in a PKCS#11 token: the private key object's ``CKA_LABEL`` and ``CKA_ID``
    (hex).  Naming them is not secret; using them takes the token's PIN."""

    label: str
    id: str


class KeyRecord(msgspec.Struct, kw_only=True):
    kid: str
    role: KeyRole
    region: str | None
    status: KeyStatus
    created_at: int
    #: the private key (PKCS#8 PEM) of a ``file`` provider key; None for a key in a token
    private_pem: str | None = None
    #: the public key as RFC 7638 members (``crv``, ``kty``, ``x``, ``y``) of a key in a token
    public: dict[str, str] | None = None
    #: the key's objects in the PKCS#11 token (``pkcs11`` provider)
    token_object: TokenObject | None = None
    retired_at: int | None = None
    withdrawn_at: int | None = None

    @property
    def verify_until(self) -> int | None:
        if self.status == "retired" and self.retired_at is not None:
            return self.retired_at + RETIRED_VERIFY_SECONDS
        return None

    @property
    def needs_private_key(self) -> bool:
        """Can anything still ask this key to sign?  Only an active key signs; a retired key stays
        verify-only (and within the one-second keyring re-read a worker may still sign with it),
        so its private half is kept until its verification window ends; a withdrawn key never
        signs again."""
        if self.status == "active":
            return True
        if self.status == "retired":
            return (self.verify_until or 0) > int(time.time())
        return False

    def public_key(self) -> ec.EllipticCurvePublicKey:
        if self.public is not None:
            return _public_from_members(tuple(sorted(self.public.items())))
        if self.private_pem is None:
            raise KeyringError("key_invalid", f"key {self.kid}: neither a public nor a private key")
        return _public_from_pem(self.private_pem)

    def public_jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public_key()), "kid": self.kid, "alg": "ES256", "use": "sig"}


@lru_cache(maxsize=256)
def _public_from_members(members: tuple[tuple[str, str], ...]) -> ec.EllipticCurvePublicKey:
    jwk = dict(members)
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise KeyringError("key_invalid", "a stored public key is not a P-256 JWK")
    key = ECAlgorithm.from_jwk(jwk)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyringError("key_invalid", "a stored public key is not a P-256 JWK")
    return key


@lru_cache(maxsize=256)
def _public_from_pem(private_pem: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyringError("key_invalid", "a stored key is not an EC private key")
    return key.public_key()


class Secrets(msgspec.Struct, kw_only=True):
    """Symmetric keys, hex encoded: field encryption, blind index, pseudonyms, subject pairing."""

    field_key: str
    index_key: str
    pseudonym_key: str
    #: seed of the platform's Ed25519 ledger keys (log key, writer keys), derived per purpose
    ledger_seed: str = msgspec.field(default_factory=lambda: os.urandom(32).hex())

    @classmethod
    def generate(cls) -> Secrets:
        return cls(**{name: os.urandom(32).hex() for name in cls.__struct_fields__})

    def key(self, name: Literal["field_key", "index_key", "pseudonym_key"]) -> bytes:
        return bytes.fromhex(getattr(self, name))

    def ledger_key(self, purpose: str) -> Ed25519PrivateKey:
        """A stable Ed25519 key per purpose (``log``, ``writer:consent`` ...), derived by HKDF."""
        seed = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"ecard-ledger:{purpose}".encode()
        )
        return Ed25519PrivateKey.from_private_bytes(seed.derive(bytes.fromhex(self.ledger_seed)))

    def card_master_key(self, region: str, purpose: Literal["internal", "external"]) -> bytes:
        """A region's 16-byte card master key (``internal`` or ``external`` authentication),
        derived by HKDF: the software card-key role of development and the virtual card.  A
        deployment with a PSAM/HSM keeps the real master keys there instead
        (``docs/terminal-card-model.md``)."""
        info = f"ecard-card-master:{region}:{purpose}".encode()
        return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(
            bytes.fromhex(self.ledger_seed) + self.key("index_key")
        )


# --- ledger keys configured apart from the keyring ------------------------------------------------

#: order of the secp256k1 group: a chain account's private key is an integer in [1, n - 1]
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX32 = re.compile(r"(?:0x)?([0-9a-fA-F]{64})")


def _key_text(value: str, setting: str) -> str:
    """A key setting's value: 64 hex digits inline, or the path of a file holding the key.  The
    value itself never appears in an error (it may be the key)."""
    if _HEX32.fullmatch(value.strip()):
        return value.strip()
    try:
        return Path(value).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError):
        raise KeyringError(
            "ledger_key_invalid",
            f"{setting}: neither 32 bytes in hex nor a readable file holding a key",
        ) from None


def anchor_private_key(value: str, setting: str = "ECARD_LEDGER_ANCHOR_KEY") -> bytes:
    """The chain account's secp256k1 private key (32 bytes) from a setting's value: 64 hex digits
    (``0x`` optional) inline, or the path of a file holding them."""
    match = _HEX32.fullmatch(_key_text(value, setting))
    key = bytes.fromhex(match.group(1)) if match else b""
    if not key or not 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
        raise KeyringError(
            "ledger_key_invalid", f"{setting}: not a secp256k1 private key (64 hex digits)"
        )
    return key


def ed25519_private_key(value: str, setting: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a setting's value: a 32-byte seed in hex (inline or in a file)
    or a PKCS#8 PEM file (``openssl genpkey -algorithm ed25519``)."""
    text = _key_text(value, setting)
    if match := _HEX32.fullmatch(text):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(match.group(1)))
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(
            "ledger_key_invalid", f"{setting}: not an Ed25519 private key (hex seed or PEM)"
        )
    return key


def ledger_keys(
    secrets: Secrets,
    writer_purpose: str,
    *,
    log_key: str | None,
    writer_key: str | None,
    required: bool,
) -> tuple[Ed25519PrivateKey, Ed25519PrivateKey]:
    """The log's signing key and one writer's key: two trust domains.

    Each configured value (a setting naming a key, see :func:`ed25519_private_key`) is used as
    is; an unconfigured one is derived from the keyring's ledger seed (development).  With
    ``required`` (production) both must be configured, and they must differ: whoever holds the
    log key alone must not be able to sign entries as the writer."""
    if required and not (log_key and writer_key):
        missing = [
            name
            for name, value in (
                ("ECARD_LEDGER_LOG_KEY", log_key),
                ("ECARD_LEDGER_WRITER_KEY", writer_key),
            )
            if not value
        ]
        raise KeyringError(
            "ledger_key_missing",
            f"{' and '.join(missing)} must be configured in production: the log's signing key and "
            "the consent writer's key are separate keys held by separate parties",
        )
    log = (
        ed25519_private_key(log_key, "ECARD_LEDGER_LOG_KEY")
        if log_key
        else secrets.ledger_key("log")
    )
    writer = (
        ed25519_private_key(writer_key, "ECARD_LEDGER_WRITER_KEY")
        if writer_key
        else secrets.ledger_key(writer_purpose)
    )
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if log.public_key().public_bytes(*raw) == writer.public_key().public_bytes(*raw):
        raise KeyringError(
            "ledger_key_invalid",
            "ECARD_LEDGER_LOG_KEY and ECARD_LEDGER_WRITER_KEY are the same key; they must differ",
        )
    return log, writer


class KeyGenerator(Protocol):
    """Makes a new ES256 key and its record (the key provider: files or a PKCS#11 token)."""

    def generate(self, role: KeyRole, region: str | None, now: int) -> KeyRecord: ...


class SoftwareKeys:
    """Keys generated here and kept as PEM in the keyring (the ``file`` provider; development)."""

    def generate(self, role: KeyRole, region: str | None, now: int) -> KeyRecord:
        return _new_key(role, region, now)


SOFTWARE_KEYS = SoftwareKeys()


def _new_key(role: KeyRole, region: str | None, now: int) -> KeyRecord:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return KeyRecord(
        kid=thumbprint(private.public_key()),
        role=role,
        region=region,
        status="active",
        created_at=now,
        private_pem=pem,
    )


class Keyring(msgspec.Struct, kw_only=True):
    version: int = 1
    keys: list[KeyRecord] = msgspec.field(default_factory=list)
    secrets: Secrets = msgspec.field(default_factory=Secrets.generate)

    @classmethod
    def create(
        cls, regions: list[str], now: int | None = None, keys: KeyGenerator = SOFTWARE_KEYS
    ) -> Keyring:
        now = int(time.time()) if now is None else now
        ring = cls(keys=[keys.generate("root", None, now)])
        for region in regions:
            ring.keys.append(keys.generate("issuer", region, now))
        return ring

    # --- lookups -------------------------------------------------------------------------
    @property
    def root(self) -> KeyRecord:
        return next(k for k in self.keys if k.role == "root" and k.status == "active")

    def find(self, kid: str) -> KeyRecord:
        for key in self.keys:
            if key.kid == kid:
                return key
        raise KeyringError("key_not_found", f"no key with id {kid}")

    def issuer_keys(self) -> list[KeyRecord]:
        return [k for k in self.keys if k.role == "issuer"]

    def regions(self) -> list[str]:
        return sorted({k.region for k in self.issuer_keys() if k.region})

    def signing_key(self, region: str) -> KeyRecord:
        for key in self.issuer_keys():
            if key.region == region and key.status == "active":
                return key
        raise KeyringError("key_not_found", f"no active issuer key for region {region}")

    def verification_keys(self, now: int | None = None) -> list[KeyRecord]:
        """Keys a verifier may use now: active ones and retired ones still within their window."""
        now = int(time.time()) if now is None else now
        return [
            k
            for k in self.issuer_keys()
            if k.status == "active" or (k.status == "retired" and (k.verify_until or 0) > now)
        ]

    # --- lifecycle -----------------------------------------------------------------------
    def add_region(
        self, region: str, now: int | None = None, keys: KeyGenerator = SOFTWARE_KEYS
    ) -> KeyRecord:
        if any(k.region == region and k.status == "active" for k in self.issuer_keys()):
            raise KeyringError("key_state_conflict", f"region {region} already has an active key")
        key = keys.generate("issuer", region, int(time.time()) if now is None else now)
        self.keys.append(key)
        return key

    def rotate(
        self, region: str, now: int | None = None, keys: KeyGenerator = SOFTWARE_KEYS
    ) -> KeyRecord:
        """New active key for the region; the previous one becomes verify-only."""
        now = int(time.time()) if now is None else now
        previous = self.signing_key(region)
        key = keys.generate("issuer", region, now)  # first: a failing token changes nothing
        previous.status, previous.retired_at = "retired", now
        self.keys.append(key)
        return key

    def retire(self, kid: str, now: int | None = None) -> KeyRecord:
        key = self.find(kid)
        if key.role != "issuer" or key.status != "active":
            raise KeyringError("key_state_conflict", "only an active issuer key can be retired")
        # retiring the only signer of a region would stop all issuance there: rotate instead
        active_in_region = [
            k for k in self.issuer_keys() if k.region == key.region and k.status == "active"
        ]
        if len(active_in_region) == 1:
            raise KeyringError(
                "key_state_conflict", f"{kid} is region {key.region}'s only active key; use rotate"
            )
        key.status, key.retired_at = "retired", int(time.time()) if now is None else now
        return key

    def withdraw(
        self, kid: str, now: int | None = None, keys: KeyGenerator = SOFTWARE_KEYS
    ) -> KeyRecord:
        """Compromised key: it stops verifying at once.  A region left without a signer gets a new
        key."""
        key = self.find(kid)
        if key.role != "issuer":
            raise KeyringError("key_state_conflict", "the root key cannot be withdrawn here")
        if key.status == "withdrawn":
            raise KeyringError("key_state_conflict", f"{kid} is already withdrawn")
        now = int(time.time()) if now is None else now
        if key.status == "active" and key.region:
            # first: a failing token leaves the keyring as it was
            self.keys.append(keys.generate("issuer", key.region, now))
        key.status, key.withdrawn_at = "withdrawn", now
        return key
