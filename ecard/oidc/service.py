"""Relying parties of the OpenID provider: filing (应用目录备案), the filed client as each worker
sees it, and client authentication at the token, revocation, introspection and device endpoints.

The protocol steps live in modules named after the spec's steps and take a
:class:`ecard.oidc.provider.Provider`: ``authorization`` (the authorization request's checks),
``login_session`` (scan-to-login), ``grants/`` (one module per grant type), ``tokens``
(issuance, refresh MACs, revocation of a login), ``userinfo``, ``revocation``, ``introspection``,
``end_session`` and ``discovery``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

from ecard.auth import OperatorPrincipal
from ecard.errors import AppError, rate_limited
from ecard.oidc import schemas
from ecard.oidc.policy import current_policy
from ecard.oidc.scopes import SCOPES
from ecard.partners import credentials, login, workflow
from ecard.partners import schemas as partner_schemas
from ecard.partners.service import LOGIN_SECRET_PREFIX, PartnerService
from ecard.platform import Platform
from ecard.registry.service import audit_refusal

ASSERTION_TYPE = credentials.ASSERTION_TYPE
CLIENT_SECRET_PREFIX = LOGIN_SECRET_PREFIX
MAX_ASSERTION_LIFETIME = credentials.MAX_ASSERTION_LIFETIME


# --- clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelyingParty:
    """A filing with the ``login`` capability as the OpenID provider sees it: its login settings
    (``oidc_client``) and its filing's name and status (``api_client``).  Its credentials are the
    filing's (``ecard.partners.credentials``)."""

    id: str
    name: str
    logo_uri: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    client_type: str
    auth_method: str
    sector: str
    #: the filing's status (``ecard.partners.workflow.FilingStatus``): only ``live`` works
    status: str

    @classmethod
    def of(cls, row: dict) -> RelyingParty:
        return cls(
            id=row["id"],
            name=row["name"],
            logo_uri=row["logo_uri"],
            redirect_uris=tuple(_json(row["redirect_uris"])),
            post_logout_redirect_uris=tuple(_json(row["post_logout_redirect_uris"])),
            scopes=frozenset(_json(row["scopes"])),
            client_type=row["client_type"],
            auth_method=row["auth_method"],
            sector=row["sector"],
            status=row["status"],
        )

    def view(self, client_secret: str | None = None) -> schemas.ClientView:
        """As ``/operator/v1/oidc/clients`` (the older path) shows it."""
        return schemas.ClientView(
            client_id=self.id,
            name=self.name,
            status=workflow.oidc_status(self.status),  # type: ignore[arg-type]
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


#: What the older path ``/operator/v1/oidc/clients`` may ask, in its vocabulary
#: (``ecard.partners.workflow.oidc_status``); each answer walks the filing's workflow steps.
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
    if public != (data.token_endpoint_auth_method == "none"):  # noqa: S105 - a method name
        raise AppError(
            "invalid_client_metadata",
            "public clients use auth method none; confidential ones may not",
        )
    if data.token_endpoint_auth_method == "private_key_jwt":  # noqa: S105 - a method name
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
        """The older path: a filing with the login capability only (``ecard.partners``)."""
        check_filing(data)
        filing = partner_schemas.FilingCreate(
            name=data.name,
            capabilities=partner_schemas.Capabilities(
                login=partner_schemas.LoginSettings(
                    redirect_uris=data.redirect_uris,
                    scopes=data.scopes,
                    client_type=data.client_type,
                    token_endpoint_auth_method=data.token_endpoint_auth_method,
                    logo_uri=data.logo_uri,
                    post_logout_redirect_uris=data.post_logout_redirect_uris,
                )
            ),
            jwk=data.jwk,
        )
        try:
            filed = await PartnerService(self.platform).file(
                filing, operator.actor, audit_action="oidc.client.file"
            )
        except AppError as error:
            if error.code == "application_exists":
                raise AppError(
                    "invalid_client_metadata", "a client with this name is already filed"
                ) from None
            raise
        return (await self.filed_client(filed.id)).view(client_secret=filed.client_secret)

    async def filed_client(self, client_id: str) -> RelyingParty:
        """The client as filed now (read from the database)."""
        return await login.filed_relying_party(client_id)

    async def client(self, client_id: str) -> RelyingParty:
        """The client as this worker saw it at most ``FILING_CACHE_SECONDS`` ago."""
        return await login.relying_party(client_id)

    async def change_client_status(
        self, client_id: str, change: schemas.ClientStatusChange, operator: OperatorPrincipal
    ) -> schemas.ClientView:
        """The older path: a status of :data:`CLIENT_TRANSITIONS`, reached by the filing's
        workflow steps (each in ``filing_step``), audited once as ``oidc.client.status``."""
        current = await self.filed_client(client_id)
        shown = workflow.oidc_status(current.status)
        if change.status not in CLIENT_TRANSITIONS[shown]:
            raise AppError("client_status_conflict", f"{shown} → {change.status} is not allowed")
        await PartnerService(self.platform).walk_to(
            client_id,
            change.status,
            change.reason or "through /operator/v1/oidc/clients",
            operator.actor,
            audit_action="oidc.client.status",
            to=change.status,
        )
        return (await self.filed_client(client_id)).view()

    async def live_client(self, client_id: str | None) -> RelyingParty:
        try:
            client = await self.client(client_id or "")
        except AppError:
            raise AppError("invalid_client", "unknown client_id") from None
        if not workflow.works(client.status):
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
            # every usable secret of the filing (an overlap may hold two), in constant time each;
            # fails closed without one, and costs the same for unknown ids
            filing = await credentials.filing(client_id) if client is not None else None
            secret_ok = credentials.secret_matches(filing, secret)
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
        if not workflow.works(client.status):
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
        """RFC 7523 under the one clock and replay rule of ``ecard.partners.credentials``; the aud
        may name this issuer or its token endpoint."""
        if assertion_type != ASSERTION_TYPE:
            raise AppError("invalid_client", "client_assertion_type must be jwt-bearer")
        try:
            await credentials.verify_assertion(
                self.store,
                assertion,
                audiences=[self.issuer, f"{self.issuer}/oidc/token"],
                client_id=client.id,
            )
        except credentials.CredentialRefused as refused:
            raise AppError("invalid_client", str(refused)) from None


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: form-urlencoded id and secret inside HTTP Basic
    (``ecard.partners.credentials.parse_basic``); malformed is ``invalid_client``."""
    try:
        return credentials.parse_basic(authorization)
    except credentials.CredentialRefused as refused:
        raise AppError("invalid_client", str(refused)) from None
