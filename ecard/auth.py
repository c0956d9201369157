"""Who is calling: operators, machine clients (channels, departments, verifiers, relying parties,
terminals) and holders.  Framework-free; ``ecard.dependencies`` wires these to request headers.

Secrets and tokens are random, stored only as SHA-256 digests, and compared in constant time.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ecard.crypto import dpop as dpop_rules
from ecard.crypto.fields import secret_digest
from ecard.errors import AppError
from ecard.partners import credentials
from ecard.partners.capabilities import KIND_CAPABILITY
from ecard.partners.workflow import works
from ecard.platform import Platform
from ecard.registry.tables import HolderSession, OperatorToken
from ecard.store.ephemeral import Revocation, StoreUnavailable

OPERATOR_TOKEN_PREFIX = "ecop_"  # noqa: S105 - a token's public prefix, not a secret
HOLDER_ACCESS_PREFIX = "echa_"
HOLDER_REFRESH_PREFIX = "echr_"
CLIENT_SECRET_PREFIX = credentials.SECRET_PREFIX

#: Operator roles and what each may do; least privilege per caller.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "registry:read",
            "registry:write",
            "audit:read",
            "clients:manage",
            "operators:manage",
            "pii:full",
            "statistics:read",
        }
    ),
    "registry_admin": frozenset({"registry:read", "registry:write", "pii:full"}),
    "auditor": frozenset({"registry:read", "audit:read", "statistics:read"}),
    "readonly": frozenset({"registry:read", "statistics:read"}),
}


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class OperatorPrincipal:
    id: str
    username: str
    role: str
    #: SHA-256 of the bearer token this request came with (what logout revokes); "" when made up
    token_digest: str = field(default="", repr=False, compare=False)

    def can(self, permission: str) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    @property
    def actor(self) -> str:
        return f"operator:{self.id}"


@dataclass(frozen=True)
class ClientPrincipal:
    id: str
    kind: str
    name: str
    regions: tuple[str, ...]
    entitlements: tuple[str, ...]
    #: what its filing is filed for (``ecard.partners.capabilities.CAPABILITIES``)
    capabilities: tuple[str, ...] = ()

    def serves(self, region: str) -> bool:
        return "*" in self.regions or region in self.regions

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class HolderPrincipal:
    session_id: str
    ecard_id: str
    card_id: str
    channel_id: str
    #: RFC 7638 thumbprint of the device key the session is bound to (DPoP), None when unbound
    jkt: str | None = None

    @property
    def actor(self) -> str:
        return f"holder:{self.ecard_id}"


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def authenticate_operator(platform: Platform, authorization: str | None) -> OperatorPrincipal:
    """One database read per request and deliberately no cache: a logout, a revocation of the
    operator's tokens or a disabled operator ends the token on every worker at the next request."""
    token = bearer(authorization)
    if not token or not token.startswith(OPERATOR_TOKEN_PREFIX):
        raise AppError("unauthenticated", headers={"WWW-Authenticate": 'Bearer realm="operator"'})
    digest = secret_digest(token)
    rows = await OperatorToken.raw(
        "SELECT t.expires_at, t.revoked, o.id, o.username, o.role, o.status"
        " FROM operator_token t JOIN operator o ON o.id = t.operator WHERE t.digest = {}",
        digest,
    )
    row = rows[0] if rows else None
    if (
        row is None
        or row["revoked"]
        or row["expires_at"] < time.time()
        or row["status"] != "active"
    ):
        raise AppError(
            "token_invalid", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    return OperatorPrincipal(row["id"], row["username"], row["role"], token_digest=digest)


def require_permission(operator: OperatorPrincipal, permission: str) -> None:
    if not operator.can(permission):
        raise AppError("forbidden", f"role {operator.role} lacks {permission}")


#: A client's filing (status, capabilities, entitlements, credentials) is read at most this often
#: per worker (``ecard.partners.credentials.FILING_CACHE_SECONDS``).
CLIENT_CACHE_SECONDS = credentials.FILING_CACHE_SECONDS
_client_cache = credentials._cache  # the cache itself, for tests that age it


def _principal(record: credentials.FilingRecord, kinds: set[str] | None = None) -> ClientPrincipal:
    """The caller as ``kinds`` see it: its kind is the first of ``kinds`` it is filed for."""
    kind = next(
        (k for k in sorted(kinds or ()) if KIND_CAPABILITY.get(k, k) in record.capabilities),
        record.kind,
    )
    return ClientPrincipal(
        id=record.id,
        kind=kind,
        name=record.name,
        regions=record.regions,
        entitlements=record.entitlements,
        capabilities=tuple(record.capabilities),
    )


def _filed_for(record: credentials.FilingRecord, kinds: set[str]) -> bool:
    return any(KIND_CAPABILITY.get(kind, kind) in record.capabilities for kind in kinds)


async def active_client(client_id: str, kind: str) -> ClientPrincipal | None:
    """The client as its filing says now (seen within :data:`CLIENT_CACHE_SECONDS`, like every
    client credential), or None when it is unknown, not live or not filed as ``kind``: for
    credentials that stand for a client after it authenticated (a verifier page session)."""
    record = await credentials.filing(client_id)
    if record is None or not works(record.status) or not _filed_for(record, {kind}):
        return None
    return _principal(record, {kind})


def forget_client(client_id: str) -> None:
    """Drop a cached filing after its status, secret or key changed."""
    credentials.forget(client_id)


async def authenticate_client(
    platform: Platform, authorization: str | None, kinds: set[str]
) -> ClientPrincipal:
    """HTTP Basic with a client secret, or a private_key_jwt assertion as a Bearer token
    (``ecard.partners.credentials``); then the filing must be live and filed as one of ``kinds``."""
    challenge = {"WWW-Authenticate": 'Basic realm="ecard"'}
    try:
        basic = credentials.parse_basic(authorization)
    except credentials.CredentialRefused:  # not a credential at all, as before
        raise AppError("unauthenticated", headers=challenge) from None
    try:
        if basic:
            client_id, secret = basic
            record = await credentials.filing(client_id)
            if not credentials.secret_matches(record, secret) or record is None:
                raise credentials.CredentialRefused("unknown client or wrong secret")
        else:
            assertion = bearer(authorization)
            if not assertion:
                raise AppError("unauthenticated", headers=challenge)
            record = await credentials.verify_assertion(
                platform.store, assertion, audiences=_audiences(platform)
            )
    except credentials.CredentialRefused as refused:
        raise AppError("invalid_credentials", str(refused), headers=challenge) from None
    if not works(record.status):
        raise AppError("forbidden", "this client's filing is not live")
    if not _filed_for(record, kinds):
        raise AppError("forbidden", "this kind of client may not call this endpoint")
    return _principal(record, kinds)


def _audiences(platform: Platform) -> list[str]:
    """What a client assertion's ``aud`` may name: the platform's public URL or its token
    endpoint, for every caller alike."""
    issuer = platform.settings.public_url.rstrip("/")
    return [issuer, issuer + "/", issuer + "/oidc/token"]


class HolderAccess(msgspec.Struct, array_like=True, frozen=True):
    """What a holder access token says, MAC'd by the platform: checking it needs no database."""

    session_id: str
    ecard_id: str
    card_id: str
    channel_id: str
    issued_at: float  # epoch seconds, compared with revocation times
    expires_at: int
    #: the device key's RFC 7638 thumbprint when the session is DPoP-bound.  Last, with a default:
    #: the claims are a msgpack array, so tokens minted before this field still decode (unbound)
    jkt: str | None = None


#: A revocation covers tokens issued up to this long after it, so a worker whose clock runs
#: ahead of the revoking worker's cannot mint a token that outlives the revocation.
REVOCATION_CLOCK_MARGIN = 1.0
_ACCESS_TAG_BYTES = 16
_HOLDER_ACCESS_DECODER = msgspec.msgpack.Decoder(HolderAccess)


class _UnboundAccess(msgspec.Struct, array_like=True, frozen=True):
    """An unbound token's claims as they were before ``jkt``: six members, so that workers of the
    previous release (during a rolling deployment) still read the tokens this one mints."""

    session_id: str
    ecard_id: str
    card_id: str
    channel_id: str
    issued_at: float
    expires_at: int


def holder_access_token(platform: Platform, access: HolderAccess) -> str:
    """``echa_`` + base64url(msgpack claims) + ``.`` + base64url(HMAC-SHA256 tag, 128 bits)."""
    body = msgspec.msgpack.encode(
        access
        if access.jkt is not None
        else _UnboundAccess(
            access.session_id,
            access.ecard_id,
            access.card_id,
            access.channel_id,
            access.issued_at,
            access.expires_at,
        )
    )
    return HOLDER_ACCESS_PREFIX + _b64url(body) + "." + _b64url(_access_tag(platform, body))


def _access_tag(platform: Platform, body: bytes) -> bytes:
    return hmac.digest(platform.holder_token_key, body, "sha256")[
        :_ACCESS_TAG_BYTES
    ]  # one-shot: no HMAC object


def _holder_access(platform: Platform, token: str) -> HolderAccess | None:
    body_text, _, tag_text = token[len(HOLDER_ACCESS_PREFIX) :].partition(".")
    try:
        body, tag = _unb64url(body_text), _unb64url(tag_text)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(_access_tag(platform, body), tag):
        return None
    try:
        return _HOLDER_ACCESS_DECODER.decode(body)
    except msgspec.DecodeError:  # pragma: no cover - only the platform can MAC a body
        return None


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    """Strict: one spelling per value (the decoder alone ignores a last character's spare bits).
    With ``binascii`` directly: the ``base64`` module's wrappers cost more than the decoding, on
    every request of every holder."""
    if len(text) > 1024:
        raise ValueError("too long")
    raw = text.encode("ascii")  # UnicodeEncodeError is a ValueError
    data = binascii.a2b_base64(
        raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4), strict_mode=True
    )
    if binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=") != raw:
        raise ValueError("not canonical base64url")
    return data


def _revocation_keys(access: HolderAccess) -> list[str]:
    return [
        f"holder-off:s:{access.session_id}",
        f"holder-off:e:{access.ecard_id}",
        f"holder-off:c:{access.card_id}",
    ]


async def revoke_holder_access(
    platform: Platform,
    *,
    session_id: str | None = None,
    ecard_id: str | None = None,
    card_id: str | None = None,
) -> None:
    """End, at once and on every worker, the access tokens issued so far for a session, an e-card
    or a card.  Call it *before* the database change it reflects: if the change then fails, holders
    only have to refresh (the refresh reads the database); the other order would leave a window in
    which a revoked token still works.  Markers live as long as an access token can."""
    for kind, value in (("s", session_id), ("e", ecard_id), ("c", card_id)):
        if value is not None:
            await put_revocation(
                platform, f"holder-off:{kind}:{value}", platform.settings.holder_access_ttl
            )


async def reinstate_card_access(platform: Platform, card_id: str) -> None:
    """A card active again (a loss undone or lapsed, 解挂, 解冻): the card-wide marker moves to
    this moment without its clock margin, so every token issued before stays refused while the
    tokens its sessions get from now on work at once (with the margin they would be refused for a
    second).  A worker whose clock runs behind by δ has its new tokens refused for δ."""
    key = f"holder-off:c:{card_id}"
    if await platform.store.get(key) is not None:
        await platform.store.put(
            key, repr(time.time()).encode(), platform.settings.holder_access_ttl
        )


async def put_revocation(platform: Platform, key: str, lifetime: float) -> None:
    """Mark everything issued under ``key`` until now (plus the clock margin) revoked, for
    ``EphemeralStore.check_revocation``; the marker outlives anything of ``lifetime`` seconds."""
    revoked_at = repr(time.time() + REVOCATION_CLOCK_MARGIN).encode()
    await platform.store.put(key, revoked_at, lifetime + 2 * REVOCATION_CLOCK_MARGIN)


@dataclass(frozen=True, slots=True)
class DpopContext:
    """What a DPoP check needs of a request: its method, its path (the public URL is the
    configured ``public_url`` + this path: behind proxies that is the URL the app signed) and the
    value of every ``DPoP`` header it came with (RFC 9449 §4.3: exactly one is allowed)."""

    method: str
    path: str
    proofs: tuple[str, ...] = ()


def dpop_context(request: Any) -> DpopContext:
    """The :class:`DpopContext` of a Litestar request (any object with ``method``, ``url.path``
    and multi-valued ``headers``)."""
    return DpopContext(request.method, request.url.path, tuple(request.headers.getall("dpop", ())))


def dpop_url(platform: Platform, path: str) -> str:
    """The URL a proof's ``htu`` must name for a request to ``path``."""
    return platform.settings.public_url.rstrip("/") + path


#: The ``WWW-Authenticate`` challenge's algorithm list (RFC 9449 §7.1).
_DPOP_ALGS = " ".join(dpop_rules.ALLOWED_ALGORITHMS)


def _dpop_refusal(message: str) -> AppError:
    return AppError(
        "invalid_dpop_proof",
        message,
        headers={"WWW-Authenticate": f'DPoP error="invalid_dpop_proof", algs="{_DPOP_ALGS}"'},
    )


def _nonce_key(platform: Platform) -> bytes:
    return hmac.digest(platform.holder_token_key, b"ecard dpop nonce key", "sha256")


def dpop_nonce(platform: Platform, now: float | None = None) -> str:
    """A fresh server nonce for ``DPoP-Nonce`` (stateless: any worker checks it)."""
    return dpop_rules.make_nonce(_nonce_key(platform), time.time() if now is None else now)


def check_holder_proof(
    platform: Platform, dpop: DpopContext | None, *, jkt: str, access_token: str | None = None
) -> dpop_rules.DpopProof:
    """The request's one DPoP proof passes every rule of :mod:`ecard.crypto.dpop` for ``jkt``
    (and, with an access token, its ``ath``); the replay rule is :func:`consume_proof`'s.
    Raises ``invalid_dpop_proof`` (or ``use_dpop_nonce`` with a fresh ``DPoP-Nonce``)."""
    if dpop is None or not dpop.proofs:
        raise _dpop_refusal("a DPoP proof is required: this session is bound to a device key")
    if len(dpop.proofs) != 1:
        raise _dpop_refusal("exactly one DPoP header is allowed")
    settings = platform.settings
    now = time.time()
    try:
        return dpop_rules.check_proof(
            dpop.proofs[0],
            method=dpop.method,
            url=dpop_url(platform, dpop.path),
            now=now,
            window=settings.holder_dpop_iat_window,
            access_token=access_token,
            expected_jkt=jkt,
            nonce_key=_nonce_key(platform) if settings.holder_dpop_nonce else None,
        )
    except dpop_rules.DpopNonceRequired:
        raise AppError(
            "use_dpop_nonce",
            headers={
                "WWW-Authenticate": 'DPoP error="use_dpop_nonce"',
                "DPoP-Nonce": dpop_nonce(platform, now),
            },
        ) from None
    except dpop_rules.DpopError as error:
        raise _dpop_refusal(error.message) from None


async def consume_proof(platform: Platform, proof: dpop_rules.DpopProof) -> None:
    """Rule: a proof's ``jti`` is used once per key.  Marked in the shared store for as long as its
    ``iat`` is acceptable.  While the store cannot be reached the rule is skipped (like revocation
    the database cannot decide it): the ``iat`` window, ``htm``/``htu`` and ``ath`` still bound a
    replay to one request of one token within that window."""
    window = platform.settings.holder_dpop_iat_window
    key = f"dpop-jti:{proof.jkt}:{hashlib.sha256(proof.jti.encode()).hexdigest()[:32]}"
    try:
        fresh = await platform.store.put_if_absent(key, b"1", ttl=2 * window + 5)
    except StoreUnavailable:
        return
    if not fresh:
        raise _dpop_refusal("this DPoP proof was already used")


async def verify_holder_proof(
    platform: Platform, dpop: DpopContext | None, *, jkt: str, access_token: str | None = None
) -> dpop_rules.DpopProof:
    """:func:`check_holder_proof`, then :func:`consume_proof`."""
    proof = check_holder_proof(platform, dpop, jkt=jkt, access_token=access_token)
    await consume_proof(platform, proof)
    return proof


def holder_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(``bearer`` or ``dpop``, token) from an ``Authorization`` header, None for anything else."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    return (scheme, value) if scheme in ("bearer", "dpop") and value else None


async def authenticate_holder(
    platform: Platform, authorization: str | None, dpop: DpopContext | None = None
) -> HolderPrincipal:
    """A holder access token is valid while its MAC holds, it has not expired, and neither its
    session, its e-card nor its card was revoked since it was issued: one read of the shared
    store, no database read (the app asks for a code every minute).  Every change that ends a
    token (logout, refresh, unbinding, a card reported lost) revokes first, then writes the
    database.  A token older than the store's contents (a flush or, in process, a restart may
    have lost a revocation) is checked against the database instead, and so is every token
    while the store cannot be reached.

    A token bound to a device key (``jkt``) is accepted only as ``Authorization: DPoP <token>``
    with one valid DPoP proof of that key for this request (``dpop``), used once: one signature
    verification and one more store write per request.  An unbound token is a Bearer token."""
    credentials = holder_credentials(authorization)
    if credentials is None or not credentials[1].startswith(HOLDER_ACCESS_PREFIX):
        raise AppError("unauthenticated", headers={"WWW-Authenticate": 'Bearer realm="holder"'})
    scheme, token = credentials
    access = _holder_access(platform, token)
    if access is None or access.expires_at < time.time():
        raise _invalid_token(scheme)
    proof = None
    if access.jkt is not None:
        if scheme != "dpop":  # RFC 9449 §7.2: a bound token is never a bearer token
            raise _invalid_token(
                "dpop", "this token is bound to a device key: present it with the DPoP scheme"
            )
        proof = check_holder_proof(platform, dpop, jkt=access.jkt, access_token=token)
    elif scheme == "dpop":
        raise _invalid_token(
            "bearer", "this token is not bound to a device key: present it as a Bearer token"
        )
    try:
        revocation = await platform.store.check_revocation(
            _revocation_keys(access), access.issued_at
        )
    except StoreUnavailable:
        # the database decides: a revocation is written to the store before the database, so
        # while the store is away nothing can be revoked, and the app keeps its codes coming
        revocation = Revocation.PREDATES_STORE
    if revocation is Revocation.REVOKED:
        raise _invalid_token(scheme)
    if revocation is Revocation.PREDATES_STORE and not await _session_is_live(access):
        raise _invalid_token(scheme)
    if proof is not None:
        await consume_proof(platform, proof)
    return HolderPrincipal(
        session_id=access.session_id,
        ecard_id=access.ecard_id,
        card_id=access.card_id,
        channel_id=access.channel_id,
        jkt=access.jkt,
    )


def _invalid_token(scheme: str = "bearer", detail: str | None = None) -> AppError:
    challenge = (
        f'DPoP error="invalid_token", algs="{_DPOP_ALGS}"'
        if scheme == "dpop"
        else 'Bearer error="invalid_token"'
    )
    return AppError("token_invalid", detail, headers={"WWW-Authenticate": challenge})


async def _session_is_live(access: HolderAccess) -> bool:
    """The durable answer: the session not revoked, its e-card and card active."""
    rows = await HolderSession.raw(
        "SELECT s.revoked, e.status AS ecard_status, c.status AS card_status"
        " FROM holder_session s JOIN ecard e ON e.id = s.ecard JOIN card c ON c.id = e.card"
        " WHERE s.id = {}",
        access.session_id,
    )
    return (
        bool(rows)
        and not rows[0]["revoked"]
        and rows[0]["ecard_status"] == rows[0]["card_status"] == "active"
    )
