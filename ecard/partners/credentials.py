"""The one credential module for every machine caller (channels, verifiers, relying parties for
login and data, departments, terminals): how a filing's client proves who it is.

- ``client_secret_basic`` (RFC 6749 §2.3.1: the id and secret form-urlencoded inside HTTP Basic)
  and ``client_secret_post``: secrets are random, shown once, stored only as SHA-256 digests and
  compared in constant time against every usable secret of the filing (one comparison even for an
  unknown id, so timing does not tell ids apart).
- ``private_key_jwt`` (RFC 7523 §3, OIDC Core §9): an ES256 assertion with ``iss`` = ``sub`` =
  the client id, an ``aud`` naming this platform (its public URL or its token endpoint), a ``jti``
  and an ``exp``.  **The clock rule**, one for every caller: ``exp`` is required and at most
  :data:`MAX_ASSERTION_LIFETIME` seconds after ``iat`` (when present) and after now; ``iat`` and
  ``nbf`` may not be in the future; every comparison allows :data:`CLOCK_LEEWAY` seconds of skew.
  **The replay rule**: a ``jti`` is accepted once per client, remembered in the shared ephemeral
  store until the assertion could no longer pass (``exp`` + leeway).
- Signed terminal requests and signed evidence verify with the filing's public keys
  (:func:`public_keys`); their own replay and time rules stay with them.

A filing's credentials are rows of ``partner_credential``; a credential is usable while not ended
and before its ``not_after`` (the end of the overlap after a rotation, ``docs/partners.md``).
Whether the filing itself may work (only ``live``) is its caller's check, after authentication.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jwt

from ecard.crypto.fields import secret_digest, secrets_match
from ecard.crypto.jwk import thumbprint
from ecard.offline.es256 import public_key_from_jwk
from ecard.partners.tables import PartnerCredential
from ecard.registry.tables import ApiClient
from ecard.store.ttl_cache import TtlCache

#: every new client secret starts with this (older ``ecrp_`` secrets keep working)
SECRET_PREFIX = "eccs_"  # noqa: S105 - a prefix, not a secret
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: the longest an assertion may live (Authlib and most OIDC libraries sign for an hour)
MAX_ASSERTION_LIFETIME = 3600
#: clock skew allowed on every time claim
CLOCK_LEEWAY = 30
ALGORITHMS = ("ES256",)
#: a filing and its credentials are read at most this often per worker: a suspension, a rotation
#: or an ended credential takes effect within this long on the other workers, at once on the
#: worker that made it (:func:`forget`).  An overlap's end is compared with the clock at each use.
FILING_CACHE_SECONDS = 1.0


class CredentialRefused(Exception):
    """The credential does not prove the client; ``str()`` says why (no secret in it).  Callers
    answer it with their own stable error code (``invalid_credentials``, ``invalid_client``,
    ``terminal_signature_invalid``)."""


@dataclass(frozen=True)
class Credential:
    id: str
    kind: str  # secret | jwk
    secret_digest: str | None
    public_jwk: dict[str, str] | None
    kid: str | None
    not_after: int | None

    def usable(self, now: float) -> bool:
        return self.not_after is None or now < self.not_after


@dataclass(frozen=True)
class FilingRecord:
    """A filing as authentication needs it: who, in which status, for what, with which keys."""

    id: str
    kind: str
    name: str
    status: str
    regions: tuple[str, ...]
    entitlements: tuple[str, ...]
    capabilities: dict[str, dict[str, Any]]
    credentials: tuple[Credential, ...] = field(repr=False)

    def secret_digests(self, now: float) -> list[str]:
        return [
            c.secret_digest
            for c in self.credentials
            if c.kind == "secret" and c.secret_digest and c.usable(now)
        ]

    def keys(self, now: float) -> list[Credential]:
        return [c for c in self.credentials if c.kind == "jwk" and c.public_jwk and c.usable(now)]


_cache: TtlCache[str, FilingRecord] = TtlCache(FILING_CACHE_SECONDS, limit=10_000)
#: what other modules derive from a filing (the OpenID provider's relying party), dropped with it
derived: TtlCache[str, Any] = TtlCache(FILING_CACHE_SECONDS, limit=10_000)


def json_value(value: Any) -> Any:
    """A JSON column's value (SQLite and asyncpg give text, piccolo's selects may decode)."""
    for _ in range(2):
        if not isinstance(value, str):
            break
        value = json.loads(value)
    return value


async def filing(client_id: str) -> FilingRecord | None:
    """The filing with ``client_id`` and its usable credentials as seen within
    :data:`FILING_CACHE_SECONDS`; None when unknown (unknown ids are not cached)."""
    record = _cache.get(client_id)
    if record is not None:
        return record
    row = await ApiClient.select().where(ApiClient.id == client_id).first()
    if row is None:
        return None
    now = int(time.time())
    rows = await PartnerCredential.select().where(
        (PartnerCredential.application == client_id)
        & PartnerCredential.ended_at.is_null()
        & (PartnerCredential.not_after.is_null() | (PartnerCredential.not_after > now))
    )
    record = FilingRecord(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        status=row["status"],
        regions=tuple(json_value(row["regions"]) or ()),
        entitlements=tuple(json_value(row["entitlements"]) or ()),
        capabilities=dict(json_value(row["capabilities"]) or {}),
        credentials=tuple(
            Credential(
                id=c["id"],
                kind=c["kind"],
                secret_digest=c["secret_digest"],
                public_jwk=json_value(c["public_jwk"]) if c["public_jwk"] else None,
                kid=c["kid"],
                not_after=c["not_after"],
            )
            for c in rows
        ),
    )
    _cache.put(client_id, record)
    return record


def forget(client_id: str) -> None:
    """Drop a cached filing (and what was derived from it) after its status or credentials
    changed."""
    _cache.pop(client_id)
    derived.pop(client_id)


# --- secrets ----------------------------------------------------------------------------------


def new_secret() -> str:
    """A new client secret (256 random bits), to be shown once and stored as :func:`digest`."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return secret_digest(secret)


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """(client id, secret) from ``Authorization: Basic``, each form-urlencoded-decoded (RFC 6749
    §2.3.1); None for another scheme or none; :class:`CredentialRefused` when malformed."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        raise CredentialRefused("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        raise CredentialRefused("malformed Basic credentials")
    return unquote(client_id), unquote(secret)


def secret_matches(record: FilingRecord | None, secret: str) -> bool:
    """``secret`` is one of the filing's usable secrets.  Constant time per stored secret, and one
    comparison even when there is none (an unknown id, a key-only filing), which fails closed."""
    digests: list[str | None] = list(record.secret_digests(time.time())) if record else []
    matched = False
    for stored in digests or [None]:
        matched |= secrets_match(secret, stored)
    return matched


# --- public keys --------------------------------------------------------------------------------


def checked_public_jwk(jwk: dict[str, Any] | None) -> dict[str, str]:
    """The public part (kty, crv, x, y) of an EC P-256 JWK; ``ValueError`` for anything else (a
    private key included)."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("an EC P-256 public JWK is required")
    if "d" in jwk:
        raise ValueError("a public JWK may not carry the private key")
    try:
        public = {k: str(jwk[k]) for k in ("kty", "crv", "x", "y")}
        jwt.PyJWK(public, algorithm="ES256")
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        raise ValueError("the JWK is not a valid P-256 public key") from None
    return public


def key_id(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint: the ``kid`` a key is listed and matched by."""
    return thumbprint(public_key_from_jwk(jwk))


async def public_keys(client_id: str) -> list[dict[str, str]]:
    """The filing's usable public JWKs, newest first (for signed terminal requests and evidence)."""
    record = await filing(client_id)
    if record is None:
        return []
    return [c.public_jwk for c in reversed(record.keys(time.time())) if c.public_jwk]


def _candidates(record: FilingRecord, header: dict[str, Any]) -> list[Credential]:
    keys = record.keys(time.time())
    kid = header.get("kid")
    return [c for c in keys if c.kid == kid] if isinstance(kid, str) else keys


async def verify_assertion(
    store: Any,
    assertion: str,
    *,
    audiences: Iterable[str],
    client_id: str | None = None,
) -> FilingRecord:
    """The filing a ``private_key_jwt`` assertion proves, under the clock and replay rules of this
    module's docstring; ``client_id``, when the request names one, must be its ``iss``.  Raises
    :class:`CredentialRefused`."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise CredentialRefused("malformed client assertion") from None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or (client_id is not None and issuer != client_id):
        raise CredentialRefused("client assertion iss must be the client id")
    if header.get("alg") not in ALGORITHMS:
        raise CredentialRefused(f"client assertion alg must be one of {', '.join(ALGORITHMS)}")
    record = await filing(issuer)
    candidates = _candidates(record, header) if record is not None else []
    if not candidates:
        raise CredentialRefused("unknown client or no usable registered key")
    claims: dict[str, Any] | None = None
    problem = "signature does not verify"
    for credential in candidates:
        key = jwt.PyJWK(credential.public_jwk, algorithm="ES256")  # type: ignore[arg-type]
        try:
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=list(audiences),
                issuer=issuer,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
                leeway=CLOCK_LEEWAY,
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise CredentialRefused(f"client assertion rejected: {exc}") from None
    if claims is None or record is None:
        raise CredentialRefused(f"client assertion rejected: {problem}")
    now = time.time()
    if claims["sub"] != issuer:
        raise CredentialRefused("client assertion sub must be its iss")
    expires = claims["exp"]
    issued = claims.get("iat")
    if expires - now > MAX_ASSERTION_LIFETIME + CLOCK_LEEWAY or (
        isinstance(issued, int | float) and expires - issued > MAX_ASSERTION_LIFETIME
    ):
        raise CredentialRefused(
            f"client assertion may live at most {MAX_ASSERTION_LIFETIME} s (exp - iat, exp - now)"
        )
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise CredentialRefused("client assertion jti must be a non-empty string")
    marker = f"client-jti:{issuer}:{hashlib.sha256(claims['jti'].encode()).hexdigest()[:32]}"
    if not await store.put_if_absent(marker, b"1", ttl=max(1, int(expires - now) + CLOCK_LEEWAY)):
        raise CredentialRefused("client assertion replayed")
    return record
