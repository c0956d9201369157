"""The OpenID provider: client filing, scan-to-login sessions, codes, tokens, logout, devices.

Each endpoint is a short pipeline of named checks, one per rule (RFC 6749, 7636, 9207, 9700,
8628, 7009, 7662, OIDC Core / Discovery / RP-Initiated Logout), so a reader can match code to text.

Where state lives: login sessions, authorization codes, device codes, access tokens and markers
in the ephemeral store (atomic ``take`` / ``compare_and_set`` / ``put_if_absent`` make every
single-use rule hold across workers); filed clients and token families in the database.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.auth import HolderPrincipal, OperatorPrincipal
from ecard.crypto.fields import keyed_digest, secret_digest, secrets_match
from ecard.crypto.identity import mask_name
from ecard.crypto.jwk import b64url
from ecard.errors import AppError, rate_limited
from ecard.oidc import schemas
from ecard.oidc.tables import OidcClient, OidcTokenFamily
from ecard.platform import Platform
from ecard.registry.holder_password import verify_holder_password
from ecard.registry.service import audit, audit_refusal, new_id
from ecard.registry.tables import ECard
from ecard.store.db import is_unique_violation

#: scan-to-login approved in the app with the 电子社保卡密码 (docs/front-door.md)
ACR_SCAN_LOGIN = "urn:ecard:acr:scan-login:pwd"
#: RFC 8176: the holder's password (every approval steps up), the app's software-held key, the
#: holder's presence
AMR_SCAN_LOGIN = ["pwd", "swk", "user"]
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_SECRET_PREFIX = "ecrp_"
ACCESS_TOKEN_PREFIX = "ecat_"
REFRESH_TOKEN_PREFIX = "ecrt_"
QR_SCHEME = "ecard://login/"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes

_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_MAX_PARAM = 512
_OPAQUE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # login session and flow ids (token_urlsafe)
MAX_ASSERTION_LIFETIME = 3600  # Authlib and others default to an hour


class OidcPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Lifetimes and rate limits.  Defaults suit production; ``ECARD_OIDC_POLICY`` (JSON) overrides
    them, e.g. for load tests from one address."""

    login_session_ttl: int = 120
    #: How long the page may wait for "是本人 / continue" once the holder approved in the app.
    confirm_ttl: int = 120
    flow_ttl: int = 900
    device_session_ttl: int = 600
    device_interval: int = 5
    code_ttl: int = 60
    spent_code_memory: int = 3600
    #: Also bounds one token request: an issuance slower than half of it is refused (see ``_tokens``).
    access_token_ttl: int = 600
    id_token_ttl: int = 600
    refresh_token_ttl: int = 30 * 86_400
    long_poll_seconds: float = 15.0
    login_sessions_per_ip_minute: int = 30
    token_requests_per_ip_minute: int = 600
    failed_client_auth_per_client_5min: int = 20
    user_code_lookups_per_holder_minute: int = 10
    #: How long a worker trusts its copy of a filed client; a status change is seen at once by the
    #: worker that made it and within this many seconds by the others.
    client_cache_seconds: float = 5.0


@cache
def _policy(raw: str) -> OidcPolicy:
    return msgspec.json.decode(raw, type=OidcPolicy) if raw else OidcPolicy()


def current_policy() -> OidcPolicy:
    return _policy(os.environ.get("ECARD_OIDC_POLICY", ""))


# --- scopes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HolderFacts:
    """What claims are made of: looked up once per userinfo call, never cached."""

    ecard_id: str
    person_id: str
    name: str
    card_status: str
    card_region: str


@dataclass(frozen=True)
class ScopeSpec:
    zh: str
    en: str
    claims: Callable[[HolderFacts, bytes, str], dict[str, Any]]  # (facts, pseudonym key, sector)
    #: Scopes beyond the basic ones are released only through a live consent grant (精准授权).
    needs_consent: bool = False


def pseudonym(key: bytes, purpose: str, sector: str, value: str) -> str:
    """A stable identifier for ``value`` that differs per sector and cannot be reversed."""
    return b64url(keyed_digest(key, purpose, f"{sector}|{value}"))


SCOPES: dict[str, ScopeSpec] = {
    "openid": ScopeSpec(
        "登录标识（每个应用不同）", "A sign-in identifier unique to this site", lambda f, k, s: {}
    ),
    "profile": ScopeSpec(
        "姓名（脱敏）", "Your masked name", lambda f, k, s: {"name": mask_name(f.name)}
    ),
    "ecard": ScopeSpec(
        "社保卡状态、发卡地区、电子社保卡标识（每个应用不同）",
        "Card status, issuing region and an e-card identifier unique to this site",
        lambda f, k, s: {
            "card_status": f.card_status,
            "issuer_region": f.card_region,
            "ecard_pseudonym": pseudonym(k, "oidc-ecard", s, f.ecard_id),
        },
    ),
}


def parse_scope(raw: str | None, allowed: frozenset[str]) -> str:
    """Normalised scope string; refuses unknown scopes, consent-only scopes and unfiled ones."""
    requested = list(dict.fromkeys((raw or "").split()))
    if "openid" not in requested:
        raise AppError("invalid_scope", "scope must include openid")
    for scope in requested:
        spec = SCOPES.get(scope)
        if spec is None:
            raise AppError("invalid_scope", f"unknown scope {scope[:40]!r}")
        if spec.needs_consent:
            raise AppError("invalid_scope", f"{scope} is released only through a consent grant")
        if scope not in allowed:
            raise AppError("invalid_scope", f"this client is not filed for scope {scope}")
    return " ".join(requested)


# --- clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    logo_uri: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    client_type: str
    auth_method: str
    secret_digest: str | None
    public_jwk: dict[str, str] | None
    sector: str
    status: str

    @classmethod
    def of(cls, row: dict) -> RelyingParty:
        jwk = _json(row["public_jwk"]) if row["public_jwk"] else None
        return cls(
            id=row["id"],
            name=row["name"],
            logo_uri=row["logo_uri"],
            redirect_uris=tuple(_json(row["redirect_uris"])),
            post_logout_redirect_uris=tuple(_json(row["post_logout_redirect_uris"])),
            scopes=frozenset(_json(row["scopes"])),
            client_type=row["client_type"],
            auth_method=row["auth_method"],
            secret_digest=row["secret_digest"],
            public_jwk=jwk,
            sector=row["sector"],
            status=row["status"],
        )

    def view(self, client_secret: str | None = None) -> schemas.ClientView:
        return schemas.ClientView(
            client_id=self.id,
            name=self.name,
            status=self.status,  # type: ignore[arg-type]
            client_type=self.client_type,  # type: ignore[arg-type]
            token_endpoint_auth_method=self.auth_method,  # type: ignore[arg-type]
            redirect_uris=list(self.redirect_uris),
            post_logout_redirect_uris=list(self.post_logout_redirect_uris),
            scopes=sorted(self.scopes),
            sector=self.sector,
            logo_uri=self.logo_uri,
            client_secret=client_secret,
        )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


#: Filing lifecycle: only ``live`` clients can log anyone in.
CLIENT_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"approved", "rejected"}),
    "approved": frozenset({"live", "rejected"}),
    "live": frozenset({"suspended"}),
    "suspended": frozenset({"live"}),
    "rejected": frozenset(),
}


def check_redirect_uri(uri: str) -> str:
    """HTTPS (or http on a loopback address, for native and development clients), no fragment;
    returns the host, which is the pairwise-subject sector."""
    parts = urlsplit(uri)
    loopback = parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}
    if parts.scheme != "https" and not loopback:
        raise AppError(
            "invalid_client_metadata", "redirect URIs must use https (or http on loopback)"
        )
    if not parts.hostname or parts.fragment or "#" in uri or parts.username or parts.password:
        raise AppError(
            "invalid_client_metadata", "redirect URIs need a host and no fragment or user info"
        )
    return parts.hostname


def check_filing(data: schemas.ClientFiling) -> str:
    """The sector of a valid filing; every rule of 应用目录备案 that can be checked on paper."""
    hosts = {check_redirect_uri(uri) for uri in data.redirect_uris}
    for uri in data.post_logout_redirect_uris:
        check_redirect_uri(uri)
    if len(hosts) != 1:
        raise AppError(
            "invalid_client_metadata", "all redirect URIs must share one host (the subject sector)"
        )
    if data.logo_uri and urlsplit(data.logo_uri).scheme != "https":
        raise AppError("invalid_client_metadata", "logo_uri must use https")
    for scope in data.scopes:
        if scope not in SCOPES:
            raise AppError("invalid_client_metadata", f"unknown scope {scope[:40]!r}")
    if "openid" not in data.scopes:
        raise AppError("invalid_client_metadata", "scopes must include openid")
    public = data.client_type == "public"
    if public != (data.token_endpoint_auth_method == "none"):
        raise AppError(
            "invalid_client_metadata",
            "public clients use auth method none; confidential ones may not",
        )
    if data.token_endpoint_auth_method == "private_key_jwt":
        if (
            not data.jwk
            or data.jwk.get("kty") != "EC"
            or data.jwk.get("crv") != "P-256"
            or "d" in data.jwk
        ):
            raise AppError("invalid_client_metadata", "private_key_jwt needs a public EC P-256 jwk")
        try:
            jwt.PyJWK({k: data.jwk[k] for k in ("kty", "crv", "x", "y")}, algorithm="ES256")
        except (jwt.PyJWTError, KeyError, ValueError):
            raise AppError(
                "invalid_client_metadata", "the jwk is not a valid P-256 public key"
            ) from None
    return hosts.pop()


# --- small helpers ---------------------------------------------------------------------------


def coarse_location(ip: str) -> str | None:
    """What can be said about where an address is without a geolocation database."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.is_loopback:
        return "本机 / this machine"
    if address.is_private:
        return "内部网络 / private network"
    return None


def login_key(session_id: str) -> str:
    """The store key of a login session; an id not shaped like ours is simply unknown."""
    if not _OPAQUE_ID.match(session_id):
        raise AppError("login_session_not_found")
    return f"oidc:login:{session_id}"


def flow_key(flow_id: str) -> str:
    if not _OPAQUE_ID.match(flow_id):
        raise AppError("login_session_not_found", "this login page expired; reload it")
    return f"oidc:flow:{flow_id}"


def with_query(uri: str, params: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{query}"


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def new_user_code() -> str:
    chars = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalize_user_code(raw: str) -> str:
    chars = "".join(c for c in raw.upper() if c in USER_CODE_ALPHABET)
    return f"{chars[:4]}-{chars[4:]}" if len(chars) == 8 else ""


_encode = msgspec.msgpack.Encoder().encode
_LOGIN = msgspec.msgpack.Decoder(schemas.LoginSession)
_CODE = msgspec.msgpack.Decoder(schemas.CodeGrant)
_ACCESS = msgspec.msgpack.Decoder(schemas.AccessRecord)
_DEVICE = msgspec.msgpack.Decoder(schemas.DeviceGrant)
_FLOW = msgspec.msgpack.Decoder(schemas.LoginFlow)

#: The cookie secret a browser holds for a login flow (looked up by flow id).
BrowserSecrets = Callable[[str | None], str | None]

_private_keys: dict[str, ec.EllipticCurvePrivateKey] = {}
_clients: dict[str, tuple[float, RelyingParty]] = {}  # client id -> (trusted until, client)

# hand-written joins: piccolo's foreign-key chains cost more per request than the queries
_FACTS_SQL = (
    "SELECT e.status AS ecard_status, c.status AS card_status, c.region, p.id AS person_id, p.name"
    " FROM ecard e JOIN card c ON c.id = e.card JOIN person p ON p.id = c.person WHERE e.id = {}"
)
#: A new token family, written only while the card and e-card are active (one statement, so a
#: card reported lost after the approval gets no tokens and the check costs no extra query).
_NEW_FAMILY_SQL = (
    "INSERT INTO oidc_token_family (id, client, ecard_id, subject, scope, auth_time, expires_at)"
    " SELECT CAST({} AS VARCHAR), CAST({} AS VARCHAR), e.id, CAST({} AS VARCHAR), CAST({} AS TEXT),"
    " CAST({} AS BIGINT), CAST({} AS BIGINT)"
    " FROM ecard e JOIN card c ON c.id = e.card"
    " WHERE e.id = {} AND e.status = 'active' AND c.status = 'active' RETURNING id"
)


class AuthorizationError(Exception):
    """A refusal that goes back to the client's redirect URI (both were verified first)."""

    def __init__(self, redirect_uri: str, state: str | None, error: AppError, issuer: str) -> None:
        super().__init__(error.code)
        self.location = with_query(
            redirect_uri,
            {"error": error.code, "error_description": str(error), "state": state, "iss": issuer},
        )
        self.error = error


@dataclass
class OidcService:
    platform: Platform

    def __post_init__(self) -> None:
        self.policy = current_policy()
        self.store = self.platform.store
        self.issuer = self.platform.settings.public_url.rstrip("/")

    # --- rate limits and audit ----------------------------------------------------------------
    async def _limit(self, key: str, window: int, limit: int) -> None:
        decision = await self.store.hit(key, window, limit)
        if not decision.allowed:
            raise rate_limited(decision.retry_after, "temporarily_unavailable")

    async def _refused(self, actor: str, action: str, client_id: str, reason: str) -> None:
        await audit_refusal(
            self.platform,
            actor,
            f"oidc.{action}.refused",
            "oidc_client",
            client_id[:40] or "-",
            reason,
        )

    # --- client filing ------------------------------------------------------------------------
    async def file_client(
        self, data: schemas.ClientFiling, operator: OperatorPrincipal
    ) -> schemas.ClientView:
        sector = check_filing(data)
        client_id = f"rp_{secrets.token_hex(12)}"
        secret = (
            CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
            if data.token_endpoint_auth_method in ("client_secret_basic", "client_secret_post")
            else None
        )
        jwk = (
            {k: data.jwk[k] for k in ("kty", "crv", "x", "y")}
            if data.jwk and "x" in data.jwk
            else None
        )
        try:
            await OidcClient.insert(
                OidcClient(
                    id=client_id,
                    name=data.name.strip(),
                    logo_uri=data.logo_uri,
                    redirect_uris=json.dumps(data.redirect_uris),
                    post_logout_redirect_uris=json.dumps(data.post_logout_redirect_uris),
                    scopes=json.dumps(sorted(set(data.scopes))),
                    client_type=data.client_type,
                    auth_method=data.token_endpoint_auth_method,
                    secret_digest=secret_digest(secret) if secret else None,
                    public_jwk=json.dumps(jwk) if jwk else None,
                    sector=sector,
                    status="pending",
                    filed_by=operator.id,
                )
            ).run()
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError(
                    "invalid_client_metadata", "a client with this name is already filed"
                ) from None
            raise
        await audit(operator.actor, "oidc.client.file", "oidc_client", client_id)
        return (await self.filed_client(client_id)).view(client_secret=secret)

    async def filed_client(self, client_id: str) -> RelyingParty:
        """The client as filed now (read from the database)."""
        row = (
            await OidcClient.select().where(OidcClient.id == client_id).first()
            if client_id
            else None
        )
        if row is None:
            raise AppError("oidc_client_not_found")
        client = RelyingParty.of(row)
        _clients[client_id] = (time.monotonic() + self.policy.client_cache_seconds, client)
        return client

    async def client(self, client_id: str) -> RelyingParty:
        """The client as this worker saw it at most ``client_cache_seconds`` ago."""
        cached = _clients.get(client_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return await self.filed_client(client_id)

    async def change_client_status(
        self, client_id: str, change: schemas.ClientStatusChange, operator: OperatorPrincipal
    ) -> schemas.ClientView:
        current = await self.filed_client(client_id)
        if change.status not in CLIENT_TRANSITIONS[current.status]:
            raise AppError(
                "client_status_conflict", f"{current.status} → {change.status} is not allowed"
            )
        updated = (
            await OidcClient.update(
                {OidcClient.status: change.status, OidcClient.updated_at: dt.datetime.now(dt.UTC)}
            )
            .where((OidcClient.id == client_id) & (OidcClient.status == current.status))
            .returning(OidcClient.id)
        )
        if not updated:
            raise AppError(
                "client_status_conflict", "the status changed concurrently; reload and retry"
            )
        await audit(
            operator.actor,
            "oidc.client.status",
            "oidc_client",
            client_id,
            change.reason,
            to=change.status,
        )
        return (await self.filed_client(client_id)).view()

    async def live_client(self, client_id: str | None) -> RelyingParty:
        try:
            client = await self.client(client_id or "")
        except AppError:
            raise AppError("invalid_client", "unknown client_id") from None
        if client.status != "live":
            raise AppError("client_not_live")
        return client

    # --- client authentication at the token, revocation, introspection, device endpoints ------
    async def authenticate_client(
        self, form: Mapping[str, str], basic: tuple[str, str] | None
    ) -> RelyingParty:
        """Exactly one method, and the one the client filed; secrets compared in constant time."""
        presented = [
            method
            for method, present in (
                ("client_secret_basic", basic is not None),
                ("client_secret_post", "client_secret" in form),
                ("private_key_jwt", "client_assertion" in form),
            )
            if present
        ]
        if len(presented) > 1:
            raise AppError("invalid_request", "use exactly one client authentication method")
        method = presented[0] if presented else "none"
        if method == "private_key_jwt":
            client_id = self._assertion_issuer(form)
        else:
            client_id = basic[0] if basic else form.get("client_id", "")
        if basic and form.get("client_id", client_id) != client_id:
            raise AppError("invalid_request", "client_id differs from the authenticated client")
        client = await self._client_or_none(client_id)
        if method in ("client_secret_basic", "client_secret_post"):
            secret = basic[1] if basic else form["client_secret"]
            # fails closed for a client without a stored secret; costs the same for unknown ids
            secret_ok = secrets_match(secret, client.secret_digest if client else None)
        else:
            secret_ok = True
        if client is None or method != client.auth_method or not secret_ok:
            await self._limit(
                f"oidc:auth-fail:{client_id[:40]}",
                300,
                self.policy.failed_client_auth_per_client_5min,
            )
            await self._refused("client:-", "client_auth", client_id, f"method {method}")
            raise AppError(
                "invalid_client", headers={"WWW-Authenticate": 'Basic realm="ecard-oidc"'}
            )
        if method == "private_key_jwt":
            await self._verify_assertion(
                client, form["client_assertion"], form.get("client_assertion_type")
            )
        if client.status != "live":
            raise AppError("client_not_live")
        return client

    async def _client_or_none(self, client_id: str) -> RelyingParty | None:
        try:
            return await self.client(client_id)
        except AppError:
            return None

    @staticmethod
    def _assertion_issuer(form: Mapping[str, str]) -> str:
        try:
            claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AppError("invalid_client", "malformed client assertion") from None
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer != form.get("client_id", issuer):
            raise AppError("invalid_client", "client assertion iss must be the client_id")
        return issuer

    async def _verify_assertion(
        self, client: RelyingParty, assertion: str, assertion_type: str | None
    ) -> None:
        """RFC 7523: ES256 only (no none, no HMAC keyed with the public key), iss = sub = client,
        aud = this issuer or its token endpoint, at most an hour of life, single-use jti."""
        if assertion_type != ASSERTION_TYPE:
            raise AppError("invalid_client", "client_assertion_type must be jwt-bearer")
        if not client.public_jwk:
            raise AppError("invalid_client", "no key filed for this client")
        key = jwt.PyJWK(client.public_jwk, algorithm="ES256")
        try:
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=["ES256"],
                audience=[self.issuer, f"{self.issuer}/oidc/token"],
                issuer=client.id,
                options={"require": ["exp", "iat", "jti", "sub", "aud", "iss"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise AppError("invalid_client", f"client assertion rejected: {exc}") from None
        if claims["sub"] != client.id or claims["exp"] - claims["iat"] > MAX_ASSERTION_LIFETIME:
            raise AppError(
                "invalid_client",
                f"client assertion must have sub = iss and live at most {MAX_ASSERTION_LIFETIME} s",
            )
        remembered = max(
            1, int(claims["exp"] - time.time()) + 30
        )  # as long as it could be replayed
        if not await self.store.put_if_absent(
            f"oidc:jti:{client.id}:{secret_digest(str(claims['jti']))}", b"1", remembered
        ):
            raise AppError("invalid_client", "client assertion replayed")

    # --- the authorization endpoint -----------------------------------------------------------
    async def validate_authorization(
        self, params: Mapping[str, str]
    ) -> tuple[RelyingParty, schemas.AuthorizationRequest]:
        """Client and redirect URI errors raise AppError (shown on a page, never redirected);
        everything after them raises AuthorizationError (sent to the verified redirect URI)."""
        client = await self.live_client(params.get("client_id"))
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            await self._refused(
                f"oidc_client:{client.id}", "authorize", client.id, "redirect_uri mismatch"
            )
            raise AppError("invalid_redirect_uri")
        state = params.get("state")
        try:
            request = self._check_request(client, params, redirect_uri, state)
        except AppError as error:
            await self._refused(f"oidc_client:{client.id}", "authorize", client.id, error.code)
            raise AuthorizationError(redirect_uri, state, error, self.issuer) from None
        return client, request

    @staticmethod
    def _check_request(
        client: RelyingParty, params: Mapping[str, str], redirect_uri: str, state: str | None
    ) -> schemas.AuthorizationRequest:
        if "request" in params or "request_uri" in params:
            raise AppError("request_not_supported")
        if params.get("response_type") != "code":
            raise AppError(
                "unsupported_response_type", "only the authorization code flow (response_type=code)"
            )
        if params.get("response_mode", "query") != "query":
            raise AppError("invalid_request", "only response_mode=query is supported")
        if any(len(params.get(name) or "") > _MAX_PARAM for name in ("state", "nonce")):
            raise AppError(
                "invalid_request", f"state and nonce are limited to {_MAX_PARAM} characters"
            )
        scope = parse_scope(params.get("scope"), client.scopes)
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge is None and client.client_type == "public":
            raise AppError("invalid_request", "public clients must use PKCE (code_challenge, S256)")
        if challenge is not None and method != "S256":
            raise AppError("invalid_request", "code_challenge_method must be S256")
        if challenge is not None and not _PKCE_CHALLENGE.match(challenge):
            raise AppError("invalid_request", "code_challenge must be a base64url SHA-256 digest")
        if "none" in (params.get("prompt") or "").split():
            raise AppError("login_required")
        return schemas.AuthorizationRequest(
            client_id=client.id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            nonce=params.get("nonce"),
            code_challenge=challenge,
        )

    async def start_flow(
        self, request: schemas.AuthorizationRequest, origin: schemas.LoginOrigin
    ) -> tuple[str, str, str]:
        """A page's login flow (its cookie secret) and its first QR session: (flow, secret, session)."""
        await self._limit(
            f"oidc:login-ip:{origin.ip}", 60, self.policy.login_sessions_per_ip_minute
        )
        flow_id, browser_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        flow = schemas.LoginFlow(
            request=request, browser_digest=secret_digest(browser_secret), origin=origin
        )
        await self.store.put(flow_key(flow_id), _encode(flow), self.policy.flow_ttl)
        return flow_id, browser_secret, await self._new_session(flow, flow_id)

    async def _new_session(
        self, flow: schemas.LoginFlow, flow_id: str | None, user_code: str | None = None
    ) -> str:
        session_id = secrets.token_urlsafe(24)
        ttl = self.policy.device_session_ttl if user_code else self.policy.login_session_ttl
        session = schemas.LoginSession(
            request=flow.request,
            browser_digest=flow.browser_digest,
            flow_id=flow_id,
            origin=flow.origin,
            expires_at=int(time.time()) + ttl,
            user_code=user_code,
        )
        await self.store.put(login_key(session_id), _encode(session), ttl)
        return session_id

    async def renew_session(self, flow_id: str, browser_secret: str | None) -> str:
        """A fresh QR for a page whose QR expired (the flow, and its cookie, live longer)."""
        raw = await self.store.get(flow_key(flow_id))
        if raw is None:
            raise AppError("login_session_not_found", "this login page expired; reload it")
        flow = _FLOW.decode(raw)
        self._check_browser(flow.browser_digest, browser_secret)
        await self._limit(
            f"oidc:login-ip:{flow.origin.ip}", 60, self.policy.login_sessions_per_ip_minute
        )
        return await self._new_session(flow, flow_id)

    @staticmethod
    def _check_browser(browser_digest: str, browser_secret: str | None) -> None:
        """Only the browser that started a login may watch or finish it."""
        if not browser_digest or not hmac.compare_digest(
            secret_digest(browser_secret or ""), browser_digest
        ):
            raise AppError("forbidden", "this login belongs to another browser")

    async def _session(self, session_id: str) -> tuple[bytes, schemas.LoginSession]:
        raw = await self.store.get(login_key(session_id))
        if raw is None:
            raise AppError("login_session_not_found")
        return raw, _LOGIN.decode(raw)

    async def qr_text(self, session_id: str) -> str:
        """What the login QR says: the scheme the app recognises and a live session's id."""
        await self._session(session_id)
        return f"{QR_SCHEME}{session_id}"

    async def poll(
        self, session_id: str, browser_secret_of: BrowserSecrets, known: str, wait: bool
    ) -> schemas.LoginPoll:
        """The page's long poll: returns when the state differs from ``known`` or time runs out.
        Polls the store, so it works whichever worker the holder's answer reached.  An approval
        reads as ``approved_pending_confirmation`` with the approving holder's masked name, and
        nothing more about them: the browser must confirm it (:meth:`confirm`) before any code."""
        deadline = time.monotonic() + (self.policy.long_poll_seconds if wait else 0)
        checked = False
        while True:
            raw = await self.store.get(login_key(session_id))
            if raw is None:
                return schemas.LoginPoll(state="expired")
            session = _LOGIN.decode(raw)
            if not checked:
                self._check_browser(session.browser_digest, browser_secret_of(session.flow_id))
                checked = True
            polled = _page_view(session)
            if polled.state != known or time.monotonic() >= deadline:
                return polled
            await asyncio.sleep(0.25)

    async def _browser_checked(
        self, session_id: str, browser_secret_of: BrowserSecrets
    ) -> schemas.LoginSession:
        """The session, once the browser asking holds its flow's secret."""
        _, session = await self._session(session_id)
        self._check_browser(session.browser_digest, browser_secret_of(session.flow_id))
        return session

    async def _take(self, session_id: str, state: str | None = None) -> schemas.LoginSession:
        """The session, taken from the store, so at most one of continue, confirm and cancel acts
        on it (``state``: the one it was checked to be in, which an answered session keeps)."""
        raw = await self.store.take(login_key(session_id))
        session = _LOGIN.decode(raw) if raw is not None else None
        if session is None or (state is not None and session.state != state):
            raise AppError("login_session_not_found")
        return session

    async def finish(self, session_id: str, browser_secret_of: BrowserSecrets) -> str:
        """Where the page goes once the holder denied: the redirect URI with error=access_denied,
        ``state`` and ``iss`` (RFC 9207).  An approval goes on only through :meth:`confirm`."""
        session = await self._browser_checked(session_id, browser_secret_of)
        if session.state == "approved":
            raise AppError(
                "authorization_pending", "confirm on the login page that this is you first"
            )
        if session.state != "denied":
            raise AppError("authorization_pending")
        session = await self._take(session_id, "denied")
        return self._denied_location(session.request, "the holder declined in the app")

    async def confirm(self, session_id: str, browser_secret_of: BrowserSecrets) -> str:
        """ "是本人 / continue": the browser that started the login accepts the holder shown to it
        (draft-ietf-oauth-cross-device-security); only now is the authorization code issued.  The
        session is taken atomically, so a second confirm (or a cancel) finds nothing."""
        session = await self._browser_checked(session_id, browser_secret_of)
        if session.state != "approved":
            raise AppError("authorization_pending", "the holder has not approved this login")
        session = await self._take(session_id, "approved")
        request = session.request
        code = secrets.token_urlsafe(32)
        grant = schemas.CodeGrant(
            request=request,
            ecard_id=session.ecard_id or "",
            subject=session.subject or "",
            auth_time=session.auth_time or 0,
        )
        await self.store.put(
            f"oidc:code:{secret_digest(code)}", _encode(grant), self.policy.code_ttl
        )
        return with_query(
            request.redirect_uri, {"code": code, "state": request.state, "iss": self.issuer}
        )

    async def cancel(self, session_id: str, browser_secret_of: BrowserSecrets) -> str:
        """ "不是我 / cancel": the browser discards the login (an approval by someone else among
        them); no code is ever issued for it and the client hears ``access_denied``."""
        await self._browser_checked(session_id, browser_secret_of)
        session = await self._take(session_id)
        await audit(
            "browser:-",
            "oidc.login.cancel",
            "oidc_client",
            session.request.client_id,
            "cancelled in the browser",
            after_approval=session.state == "approved",
        )
        return self._denied_location(session.request, "the login was cancelled in the browser")

    def _denied_location(self, request: schemas.AuthorizationRequest, detail: str) -> str:
        denied = AppError("access_denied", detail)
        return AuthorizationError(request.redirect_uri, request.state, denied, self.issuer).location

    # --- the holder's app ---------------------------------------------------------------------
    async def describe(self, session_id: str, holder: HolderPrincipal) -> schemas.LoginSessionView:
        """Who asks for what and from where; the first holder to look claims the session."""
        raw, session = await self._session(session_id)
        self._check_open(session, holder)
        if session.state == "pending":
            scanned = msgspec.structs.replace(session, state="scanned", ecard_id=holder.ecard_id)
            if not await self.store.compare_and_set(
                login_key(session_id), raw, _encode(scanned), _ttl(session)
            ):
                raise AppError("login_session_answered")
            session = scanned
        client = await self.client(session.request.client_id)
        return schemas.LoginSessionView(
            session_id=session_id,
            state=session.state,
            client_name=client.name,
            client_logo_uri=client.logo_uri,
            scopes=[
                schemas.ScopeView(s, SCOPES[s].zh, SCOPES[s].en)
                for s in session.request.scope.split()
            ],
            origin=session.origin,
            expires_at=session.expires_at,
        )

    async def describe_user_code(
        self, user_code: str, holder: HolderPrincipal
    ) -> schemas.LoginSessionView:
        await self._limit(
            f"oidc:user-code:{holder.ecard_id}", 60, self.policy.user_code_lookups_per_holder_minute
        )
        code = normalize_user_code(user_code)
        session_id = await self.store.get(f"oidc:user-code:{code}") if code else None
        if session_id is None:
            raise AppError("login_session_not_found")
        return await self.describe(session_id.decode(), holder)

    @staticmethod
    def _check_open(session: schemas.LoginSession, holder: HolderPrincipal) -> None:
        """Pending or scanned (by this holder): an answered session is final for the app."""
        if session.state in ("approved", "denied"):
            raise AppError("login_session_answered")
        if session.ecard_id and session.ecard_id != holder.ecard_id:
            raise AppError("login_session_answered", "another holder is answering this login")

    async def answer(
        self, session_id: str, holder: HolderPrincipal, approve: bool, password: str | None = None
    ) -> schemas.LoginAnswer:
        """Approve or deny, once: a compare-and-set in the store decides between racing answers.
        Approving steps up: the holder's 电子社保卡密码 is checked (after the session, the client
        and the card, before the answer is written; :func:`verify_holder_password`)."""
        raw, session = await self._session(session_id)
        self._check_open(session, holder)
        client_id = session.request.client_id
        subject = holder_name = None
        expires_at = session.expires_at
        if approve:
            client = await self.client(client_id)
            if client.status != "live":
                await self._refused(holder.actor, "login", client_id, "client not live")
                raise AppError("client_not_live")
            facts = await self._require_active(holder.ecard_id, client_id, holder.actor)
            if not password:
                raise AppError("password_required")
            await verify_holder_password(
                self.platform, facts.person_id, password, actor=holder.actor
            )
            subject = self.subject(client, facts)
            if (
                session.user_code is None
            ):  # a page login: its browser must still confirm who approved
                holder_name = mask_name(facts.name)
                expires_at = max(expires_at, int(time.time()) + self.policy.confirm_ttl)
        answered = msgspec.structs.replace(
            session,
            state="approved" if approve else "denied",
            ecard_id=holder.ecard_id,
            auth_time=int(time.time()),
            subject=subject,
            holder_name=holder_name,
            expires_at=expires_at,
        )
        if not await self.store.compare_and_set(
            login_key(session_id), raw, _encode(answered), _ttl(answered)
        ):
            raise AppError("login_session_answered")
        await audit(
            holder.actor,
            "oidc.login.approve" if approve else "oidc.login.deny",
            "oidc_client",
            client_id,
            device=session.user_code is not None,
        )
        return schemas.LoginAnswer(session_id=session_id, state=answered.state)

    def subject(self, client: RelyingParty, facts: HolderFacts) -> str:
        """The pairwise ``sub``: one per person and sector, unlinkable across sectors."""
        return pseudonym(self.platform.pseudonym_key, "oidc-sub", client.sector, facts.person_id)

    @staticmethod
    async def _facts(ecard_id: str) -> HolderFacts | None:
        rows = await ECard.raw(_FACTS_SQL, ecard_id)
        row = rows[0] if rows else None
        if row is None or row["ecard_status"] != "active" or row["card_status"] != "active":
            return None
        return HolderFacts(
            ecard_id=ecard_id,
            person_id=row["person_id"],
            name=row["name"],
            card_status=row["card_status"],
            card_region=row["region"],
        )

    async def _require_active(self, ecard_id: str, client_id: str, actor: str) -> HolderFacts:
        """Only an active card and e-card log anyone in; a card lost meanwhile stops the login."""
        facts = await self._facts(ecard_id)
        if facts is None:
            await self._refused(actor, "login", client_id, "card or e-card not active")
            raise AppError("card_not_active", "the card or e-card is not active")
        return facts

    # --- devices (RFC 8628) -------------------------------------------------------------------
    async def authorize_device(
        self, client: RelyingParty, scope: str | None, origin: schemas.LoginOrigin
    ) -> schemas.DeviceAuthorization:
        await self._limit(
            f"oidc:login-ip:{origin.ip}", 60, self.policy.login_sessions_per_ip_minute
        )
        request = schemas.AuthorizationRequest(
            client_id=client.id,
            redirect_uri="",
            scope=parse_scope(scope, client.scopes),
            state=None,
            nonce=None,
            code_challenge=None,
        )
        ttl = self.policy.device_session_ttl
        for _ in range(5):
            user_code = new_user_code()
            flow = schemas.LoginFlow(request=request, browser_digest="", origin=origin)
            session_id = await self._new_session(flow, None, user_code)
            if await self.store.put_if_absent(
                f"oidc:user-code:{user_code}", session_id.encode(), ttl
            ):
                break
        else:  # pragma: no cover - 20^8 codes; five collisions in a row means the store is full
            raise AppError("store_unavailable")
        device_code = secrets.token_urlsafe(32)
        grant = schemas.DeviceGrant(client_id=client.id, session_id=session_id)
        await self.store.put(f"oidc:device:{secret_digest(device_code)}", _encode(grant), ttl)
        return schemas.DeviceAuthorization(
            device_code=device_code,
            user_code=user_code,
            verification_uri=f"{self.issuer}/oidc/device",
            verification_uri_complete=with_query(
                f"{self.issuer}/oidc/device", {"user_code": user_code}
            ),
            expires_in=ttl,
            interval=self.policy.device_interval,
        )

    # --- the token endpoint -------------------------------------------------------------------
    async def token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, ip: str
    ) -> schemas.TokenResponse:
        await self._limit(f"oidc:token-ip:{ip}", 60, self.policy.token_requests_per_ip_minute)
        client = await self.authenticate_client(form, basic)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return await self._redeem_code(client, form)
        if grant_type == "refresh_token":
            return await self._refresh(client, form)
        if grant_type == DEVICE_GRANT:
            return await self._redeem_device_code(client, form)
        raise AppError("unsupported_grant_type")

    async def _redeem_code(
        self, client: RelyingParty, form: Mapping[str, str]
    ) -> schemas.TokenResponse:
        """Single use; a replay revokes what the first redemption issued (RFC 6749 §4.1.2, RFC 9700
        §4.2.4); bound to the client, the exact redirect URI and the PKCE verifier.

        Why a replay never leaves a live family, whatever the interleaving (redeemer A, replayer B,
        on any workers; every store operation is atomic, every SQL statement commits on its own):

        1. The family's id is decided before consumption and written *by* the consumption: A's
           ``put_if_absent(code-spent, family id)`` both decides "first use" (exactly one caller
           wins) and records which family a replay must revoke.  There is no moment at which the
           code is consumed but its family unknown, so B, which loses the ``put_if_absent`` (or
           finds the code gone and the marker present), always learns A's family id.  A code read
           as absent with no marker was never redeemed (or expired unredeemed): "unknown".
        2. B revokes with :meth:`_revoke_family`: store mark (b1), then the database row (b2),
           then the store mark again (b3).  b1 comes after A's consumption (a0).
        3. A creates the row (a1, INSERT), stores the access token (a2), then reads the mark (a3),
           refusing (and revoking its own row) when it is set; A also refuses when a0..a3 took
           longer than half the access-token lifetime (:meth:`_tokens`), so a3 < b1 + ttl and a
           mark written at b1 is still live at a3.
           - b1 before a3: A sees the mark and hands out nothing (its row is revoked by A).
           - a3 before b1: then a1 < a3 < b1 < b2, so B's UPDATE (b2) finds A's row and revokes it:
             the refresh token is dead.  a2 < b1, so the mark (same lifetime as the access token,
             written later) outlives the access token, which :meth:`_access` therefore refuses.
           Under PostgreSQL's READ COMMITTED, "b2 finds the row" holds whenever A's INSERT
           committed before b2's statement began; if it did not, b2 began after b1 and before
           A's commit, hence b1 < a3: the first case.
        The refresh path (:meth:`_refresh`) keeps the same order (rotate the row, store the access
        token, read the mark) and refuses a revoked row, so it can neither revive the family.
        """
        code_digest = secret_digest(form.get("code", ""))
        started = time.monotonic()
        family_id = new_id()
        raw = await self.store.get(f"oidc:code:{code_digest}")
        first = raw is not None and await self.store.put_if_absent(
            f"oidc:code-spent:{code_digest}", family_id.encode(), self.policy.spent_code_memory
        )
        if raw is None or not first:
            spent_family = await self.store.get(f"oidc:code-spent:{code_digest}")
            if spent_family is not None:
                await self._revoke_family(spent_family.decode(), "code_replay")
                await self._refused(
                    f"oidc_client:{client.id}", "code", client.id, "code replayed; family revoked"
                )
                raise AppError(
                    "invalid_grant",
                    "authorization code already used; tokens issued with it are revoked",
                )
            raise AppError("invalid_grant", "unknown or expired authorization code")
        await self.store.delete(f"oidc:code:{code_digest}")  # spent: the marker alone decides now
        grant = _CODE.decode(raw)
        try:
            self._check_code(grant, client, form)
        except AppError as error:
            await self._refused(
                f"oidc_client:{client.id}", "code", client.id, error.detail or error.code
            )
            raise
        return await self._issue_new_family(
            client,
            family_id,
            grant.ecard_id,
            grant.subject,
            grant.request.scope,
            grant.auth_time,
            grant.request.nonce,
            started,
        )

    @staticmethod
    def _check_code(
        grant: schemas.CodeGrant, client: RelyingParty, form: Mapping[str, str]
    ) -> None:
        if grant.request.client_id != client.id:
            raise AppError("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != grant.request.redirect_uri:
            raise AppError("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier")
        if grant.request.code_challenge is None:
            if verifier is not None:
                raise AppError("invalid_grant", "code_verifier sent but no code_challenge was")
            return
        if verifier is None or not _PKCE_VERIFIER.match(verifier):
            raise AppError("invalid_grant", "a valid code_verifier is required")
        if not hmac.compare_digest(s256(verifier), grant.request.code_challenge):
            raise AppError("invalid_grant", "code_verifier does not match code_challenge")

    async def _redeem_device_code(
        self, client: RelyingParty, form: Mapping[str, str]
    ) -> schemas.TokenResponse:
        device_digest = secret_digest(form.get("device_code", ""))
        started = time.monotonic()
        raw = await self.store.get(f"oidc:device:{device_digest}")
        if raw is None:
            raise AppError("expired_token")
        grant = _DEVICE.decode(raw)
        if grant.client_id != client.id:
            raise AppError("invalid_grant", "the device code was issued to another client")
        if not await self.store.put_if_absent(
            f"oidc:device-poll:{device_digest}", b"1", self.policy.device_interval
        ):
            raise AppError("slow_down")
        _, session = await self._device_session(grant.session_id)
        if session.state not in ("approved", "denied"):
            raise AppError("authorization_pending")
        taken = await self.store.take(login_key(grant.session_id))
        await self.store.delete(f"oidc:device:{device_digest}")
        if taken is None:
            raise AppError("invalid_grant", "the device code was already redeemed")
        session = _LOGIN.decode(taken)
        if session.state == "denied":
            raise AppError("access_denied")
        return await self._issue_new_family(
            client,
            new_id(),
            session.ecard_id or "",
            session.subject or "",
            session.request.scope,
            session.auth_time or 0,
            None,
            started,
        )

    async def _device_session(self, session_id: str) -> tuple[bytes, schemas.LoginSession]:
        try:
            return await self._session(session_id)
        except AppError:
            raise AppError("expired_token") from None

    async def _issue_new_family(
        self,
        client: RelyingParty,
        family_id: str,
        ecard_id: str,
        subject: str,
        scope: str,
        auth_time: int,
        nonce: str | None,
        started: float,
    ) -> schemas.TokenResponse:
        """Tokens of a new login, only while its card and e-card are still active (``started``:
        :func:`time.monotonic` before the grant was consumed; see :meth:`_tokens`)."""
        expires_at = int(time.time()) + self.policy.refresh_token_ttl
        written = await OidcTokenFamily.raw(
            _NEW_FAMILY_SQL, family_id, client.id, subject, scope, auth_time, expires_at, ecard_id
        )
        if not written:
            await self._refused(
                f"oidc_client:{client.id}", "token", client.id, "card or e-card not active"
            )
            raise AppError("invalid_grant", "the card or e-card is no longer active")
        return await self._tokens(
            client, family_id, ecard_id, subject, scope, auth_time, 0, nonce, started
        )

    async def _tokens(
        self,
        client: RelyingParty,
        family_id: str,
        ecard_id: str,
        subject: str,
        scope: str,
        auth_time: int,
        generation: int,
        nonce: str | None,
        started: float,
    ) -> schemas.TokenResponse:
        """Tokens of a family whose row was just created or rotated (``started``: before that).

        The access token is stored first and the family's revocation mark read after it: a
        revocation that raced this issuance is either seen here (nothing is handed out) or wrote
        its mark later than the access token, so the mark outlives it (see :meth:`_redeem_code`).
        An issuance slower than half an access token's life is refused, so a mark written after
        it started cannot have expired before it is read."""
        now = int(time.time())
        access_token = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = schemas.AccessRecord(
            family_id=family_id,
            client_id=client.id,
            ecard_id=ecard_id,
            subject=subject,
            scope=scope,
            issued_at=now,
            expires_at=now + self.policy.access_token_ttl,
        )
        access_key = f"oidc:at:{secret_digest(access_token)}"
        await self.store.put(access_key, _encode(record), self.policy.access_token_ttl)
        revoked = await self.store.get(f"oidc:family-revoked:{family_id}") is not None
        if revoked or time.monotonic() - started >= self.policy.access_token_ttl / 2:
            await self.store.delete(access_key)
            await self._revoke_family(
                family_id, "revoked_during_issuance" if revoked else "issuance_too_slow"
            )
            raise AppError(
                "invalid_grant", "the login's tokens were revoked while they were being issued"
            )
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": client.id,
            "azp": client.id,
            "exp": now + self.policy.id_token_ttl,
            "iat": now,
            "auth_time": auth_time,
            "acr": ACR_SCAN_LOGIN,
            "amr": AMR_SCAN_LOGIN,
            "sid": family_id,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return schemas.TokenResponse(
            access_token=access_token,
            token_type="Bearer",
            expires_in=self.policy.access_token_ttl,
            scope=scope,
            id_token=self.sign(claims),
            refresh_token=self._refresh_token(family_id, generation),
        )

    def sign(self, claims: dict[str, Any]) -> str:
        record = self.platform.keys.ring.signing_key(self.platform.settings.region_code)
        key = _private_keys.get(record.kid)
        if key is None:
            key = _private_keys[record.kid] = record.private_key()
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": record.kid, "typ": "JWT"})

    # --- refresh tokens: MAC over (family, generation) ----------------------------------------
    def _refresh_mac(self, family_id: str, generation: int) -> str:
        return b64url(
            keyed_digest(self.platform.pseudonym_key, "oidc-refresh", f"{family_id}.{generation}")
        )

    def _refresh_token(self, family_id: str, generation: int) -> str:
        return f"{REFRESH_TOKEN_PREFIX}{family_id}.{generation}.{self._refresh_mac(family_id, generation)}"

    def _parse_refresh(self, token: str) -> tuple[str, int] | None:
        """(family, generation) of a refresh token this issuer minted, else None."""
        if not token.startswith(REFRESH_TOKEN_PREFIX):
            return None
        family_id, _, rest = token[len(REFRESH_TOKEN_PREFIX) :].partition(".")
        generation, _, mac = rest.partition(".")
        if not generation.isdigit() or len(generation) > 9:
            return None
        if not hmac.compare_digest(
            mac.encode(), self._refresh_mac(family_id, int(generation)).encode()
        ):
            return None
        return family_id, int(generation)

    async def _refresh(
        self, client: RelyingParty, form: Mapping[str, str]
    ) -> schemas.TokenResponse:
        """Rotation on every use; presenting an older generation revokes the whole family."""
        parsed = self._parse_refresh(form.get("refresh_token", ""))
        if parsed is None:
            raise AppError("invalid_grant", "unknown refresh token")
        family_id, generation = parsed
        started = time.monotonic()
        family = await OidcTokenFamily.select().where(OidcTokenFamily.id == family_id).first()
        if family is None or family["client"] != client.id:
            raise AppError("invalid_grant", "unknown refresh token")
        if family["revoked"] or family["expires_at"] < time.time():
            raise AppError("invalid_grant", "the refresh token is revoked or expired")
        rotated = (
            await OidcTokenFamily.update({OidcTokenFamily.generation: generation + 1})
            .where(
                (OidcTokenFamily.id == family_id)
                & (OidcTokenFamily.generation == generation)
                & (OidcTokenFamily.revoked == False)  # noqa: E712
            )
            .returning(OidcTokenFamily.id)
        )
        if not rotated:
            await self._revoke_family(family_id, "refresh_reuse")
            await self._refused(
                f"oidc_client:{client.id}",
                "refresh",
                client.id,
                "refresh token reused; family revoked",
            )
            raise AppError(
                "invalid_grant", "refresh token reuse detected; the login's tokens are revoked"
            )
        scope = family["scope"]
        if "scope" in form:
            narrowed = parse_scope(form["scope"], frozenset(scope.split()))
            scope = narrowed
        if await self._facts(family["ecard_id"]) is None:
            await self._revoke_family(family_id, "card_not_active")
            raise AppError("invalid_grant", "the card or e-card is no longer active")
        return await self._tokens(
            client,
            family_id,
            family["ecard_id"],
            family["subject"],
            scope,
            family["auth_time"],
            generation + 1,
            None,
            started,
        )

    async def _revoke_family(self, family_id: str, reason: str) -> None:
        """Mark, row, mark again: the order :meth:`_redeem_code` relies on.  The first mark stops
        an issuance that has not yet read it; the second one is written after the row is revoked,
        so it outlives every access token of an issuance that rotated the row before that."""
        marker = f"oidc:family-revoked:{family_id}"
        await self.store.put(marker, b"1", self.policy.access_token_ttl)
        await OidcTokenFamily.update(
            {OidcTokenFamily.revoked: True, OidcTokenFamily.revoked_reason: reason}
        ).where((OidcTokenFamily.id == family_id) & (OidcTokenFamily.revoked == False))  # noqa: E712
        await self.store.put(marker, b"1", self.policy.access_token_ttl)

    # --- using access tokens ------------------------------------------------------------------
    async def _access(self, token: str) -> schemas.AccessRecord | None:
        if not token.startswith(ACCESS_TOKEN_PREFIX):
            return None
        raw = await self.store.get(f"oidc:at:{secret_digest(token)}")
        if raw is None:
            return None
        record = _ACCESS.decode(raw)
        if record.expires_at < time.time() or await self.store.get(
            f"oidc:family-revoked:{record.family_id}"
        ):
            return None
        return record

    async def userinfo(self, token: str | None) -> dict[str, Any]:
        invalid = AppError(
            "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
        record = await self._access(token or "")
        if record is None:
            raise invalid
        client = await self.client(record.client_id)
        facts = await self._facts(record.ecard_id)
        if facts is None or client.status != "live":
            raise invalid
        claims: dict[str, Any] = {"sub": record.subject}
        for scope in record.scope.split():
            claims.update(SCOPES[scope].claims(facts, self.platform.pseudonym_key, client.sector))
        return claims

    async def revoke(self, client: RelyingParty, token: str) -> None:
        """RFC 7009: the client's own access or refresh token; unknown tokens are not an error."""
        record = await self._access(token)
        if record is not None and record.client_id == client.id:
            await self.store.delete(f"oidc:at:{secret_digest(token)}")
            await audit(
                f"oidc_client:{client.id}",
                "oidc.token.revoke",
                "oidc_client",
                client.id,
                kind="access",
            )
            return
        parsed = self._parse_refresh(token)
        if parsed is not None:
            owner = (
                await OidcTokenFamily.select(OidcTokenFamily.client)
                .where(OidcTokenFamily.id == parsed[0])
                .first()
            )
            if owner is not None and owner["client"] == client.id:
                await self._revoke_family(parsed[0], "revoked_by_client")
                await audit(
                    f"oidc_client:{client.id}",
                    "oidc.token.revoke",
                    "oidc_client",
                    client.id,
                    kind="refresh",
                )

    async def introspect(self, client: RelyingParty, token: str) -> schemas.Introspection:
        """RFC 7662, for the client's own tokens only (another client's token reads as inactive)."""
        record = await self._access(token)
        if record is not None and record.client_id == client.id:
            return schemas.Introspection(
                active=True,
                scope=record.scope,
                client_id=client.id,
                token_type="Bearer",
                exp=record.expires_at,
                iat=record.issued_at,
                sub=record.subject,
                aud=client.id,
                iss=self.issuer,
                sid=record.family_id,
            )
        parsed = self._parse_refresh(token)
        if parsed is not None:
            family = await OidcTokenFamily.select().where(OidcTokenFamily.id == parsed[0]).first()
            if (
                family is not None
                and family["client"] == client.id
                and not family["revoked"]
                and family["generation"] == parsed[1]
                and family["expires_at"] > time.time()
            ):
                return schemas.Introspection(
                    active=True,
                    scope=family["scope"],
                    client_id=client.id,
                    token_type="refresh_token",
                    exp=family["expires_at"],
                    sub=family["subject"],
                    aud=client.id,
                    iss=self.issuer,
                    sid=family["id"],
                )
        return schemas.Introspection(active=False)

    # --- RP-initiated logout ------------------------------------------------------------------
    async def end_session(self, params: Mapping[str, str]) -> str | None:
        """Revoke the login named by a genuine ID token of ours; where to go next (a filed
        post-logout URI) or None for our own "signed out" page."""
        claims = self.verify_id_token_hint(params.get("id_token_hint", ""))
        client = await self.client(claims["aud"] if isinstance(claims["aud"], str) else "")
        if params.get("client_id", client.id) != client.id:
            raise AppError("invalid_request", "client_id does not match the ID token")
        target = params.get("post_logout_redirect_uri")
        if target is not None and target not in client.post_logout_redirect_uris:
            raise AppError(
                "invalid_redirect_uri", "post_logout_redirect_uri is not filed for this client"
            )
        family = (
            await OidcTokenFamily.select(OidcTokenFamily.client)
            .where(OidcTokenFamily.id == claims.get("sid", ""))
            .first()
        )
        if family is not None and family["client"] == client.id:
            await self._revoke_family(claims["sid"], "logout")
            await audit(f"oidc_client:{client.id}", "oidc.logout", "oidc_client", client.id)
        return with_query(target, {"state": params.get("state")}) if target else None

    def verify_id_token_hint(self, token: str) -> dict[str, Any]:
        """Our signature (ES256 only: alg=none and HMAC-keyed-with-our-public-key are refused) and
        issuer; an expired hint is still a valid hint."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            record = next(k for k in self.platform.keys.ring.verification_keys() if k.kid == kid)
            return jwt.decode(
                token,
                record.public_key(),
                algorithms=["ES256"],
                issuer=self.issuer,
                options={
                    "verify_exp": False,
                    "verify_aud": False,
                    "require": ["iss", "aud", "sub", "sid"],
                },
            )
        except (jwt.PyJWTError, StopIteration):
            raise AppError(
                "invalid_request", "id_token_hint is not an ID token issued here"
            ) from None

    # --- discovery ----------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/oidc/authorize",
            "token_endpoint": f"{base}/oidc/token",
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "revocation_endpoint": f"{base}/oidc/revoke",
            "introspection_endpoint": f"{base}/oidc/introspect",
            "end_session_endpoint": f"{base}/oidc/logout",
            "device_authorization_endpoint": f"{base}/oidc/device_authorization",
            "scopes_supported": [s for s, spec in SCOPES.items() if not spec.needs_consent],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
            "revocation_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "acr",
                "amr",
                "sid",
                "azp",
                "name",
                "card_status",
                "issuer_region",
                "ecard_pseudonym",
            ],
            "acr_values_supported": [ACR_SCAN_LOGIN],
            "ui_locales_supported": ["zh-CN", "en"],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
            "frontchannel_logout_supported": False,
            "backchannel_logout_supported": False,
        }


def _ttl(session: schemas.LoginSession) -> int:
    return max(1, session.expires_at - int(time.time()))


def _page_view(session: schemas.LoginSession) -> schemas.LoginPoll:
    """What the login page may know of a session: its state and, once approved, the approving
    holder's masked name (张*三) so the person at the browser can tell whether it was them."""
    if session.state == "approved":
        return schemas.LoginPoll(
            state="approved_pending_confirmation", holder_name=session.holder_name or "*"
        )
    return schemas.LoginPoll(state=session.state)


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: form-urlencoded id and secret inside HTTP Basic."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise AppError("invalid_client", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        raise AppError("invalid_client", "malformed Basic credentials")
    return unquote(client_id), unquote(secret)
