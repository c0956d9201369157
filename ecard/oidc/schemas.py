"""Requests, responses and store records of the OpenID provider (msgspec Structs).

Store records are encoded with msgpack; every record carries what the next step must check, so a
step never has to trust the browser for it (client, redirect URI, PKCE challenge, nonce).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

ClientType = Literal["public", "confidential"]
AuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
ClientStatus = Literal["pending", "approved", "live", "suspended", "rejected"]
LoginState = Literal["pending", "scanned", "approved", "denied"]

HttpsUri = Annotated[str, msgspec.Meta(min_length=8, max_length=512)]


# --- client filing (应用目录备案) ------------------------------------------------------------


class ClientFiling(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    redirect_uris: Annotated[list[HttpsUri], msgspec.Meta(min_length=1, max_length=20)]
    scopes: Annotated[list[str], msgspec.Meta(min_length=1, max_length=20)]
    client_type: ClientType
    token_endpoint_auth_method: AuthMethod
    logo_uri: HttpsUri | None = None
    post_logout_redirect_uris: Annotated[list[HttpsUri], msgspec.Meta(max_length=20)] = []
    jwk: dict[str, str] | None = None  # the public key for private_key_jwt


class ClientStatusChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: Literal["approved", "live", "suspended", "rejected"]
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class ClientView(msgspec.Struct, kw_only=True, omit_defaults=True):
    client_id: str
    name: str
    status: ClientStatus
    client_type: ClientType
    token_endpoint_auth_method: AuthMethod
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    sector: str
    logo_uri: str | None = None
    client_secret: str | None = None  # shown once, at filing


# --- what the holder's app sees and answers ---------------------------------------------------


class ScopeView(msgspec.Struct):
    scope: str
    zh: str
    en: str


class LoginOrigin(msgspec.Struct, kw_only=True):
    """Where the login started, so the holder can spot a QR relayed from someone else's screen."""

    ip: str
    location: str | None
    user_agent: str
    started_at: int


class DataScopeView(msgspec.Struct):
    """A data scope the login asks for, with the exact fields it would release."""

    scope: str
    zh: str
    en: str
    fields: list[str]


class DataRequestView(msgspec.Struct, kw_only=True):
    """The consent part of a login (its ``authorization_details``): what data, why, how long.
    Each scope can be refused on its own (:class:`LoginApproval` ``data_scopes``)."""

    scopes: list[DataScopeView]
    purpose_code: str
    purpose_zh: str
    purpose_en: str
    purpose: str
    duration_seconds: int


class LoginSessionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Who asks for what and from where: the login scopes (granted by approving the login) and,
    listed apart, the data the site asks for with the holder's consent (``data``)."""

    session_id: str
    state: LoginState
    client_name: str
    client_logo_uri: str | None
    scopes: list[ScopeView]
    origin: LoginOrigin
    expires_at: int
    data: DataRequestView | None = None


class LoginApproval(msgspec.Struct, forbid_unknown_fields=True):
    """The holder's approval of a login: the 电子社保卡密码 (step-up; ``docs/front-door.md``) and,
    when the login asks for data, the data scopes granted: all of them when ``data_scopes`` is
    omitted, none when it is empty, else exactly those listed (each one a requested scope)."""

    password: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    data_scopes: Annotated[list[str], msgspec.Meta(max_length=16)] | None = None


class LoginAnswer(msgspec.Struct, kw_only=True):
    session_id: str
    state: LoginState


# --- what the login page polls ------------------------------------------------------------------


PageState = Literal["pending", "scanned", "approved_pending_confirmation", "denied", "expired"]


class LoginPoll(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The page's view: ``approved_pending_confirmation`` carries the approving holder's masked
    name (张*三) and nothing else about them; the page then confirms or cancels."""

    state: PageState
    holder_name: str | None = None


class LoginContinuation(msgspec.Struct, kw_only=True):
    """Where the page goes after confirming or cancelling: the client's redirect URI with a code
    (confirm) or ``error=access_denied`` (cancel), ``state`` and ``iss``."""

    location: str


class RenewedLogin(msgspec.Struct, kw_only=True):
    session_id: str
    qr_svg_url: str
    expires_in: int


# --- OAuth / OIDC responses ----------------------------------------------------------------------


#: RFC 9396 ``type`` of the consent part of an authorization request
CONSENT_DETAIL_TYPE = "ecard_consent"


class ConsentDetailIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One RFC 9396 authorization detail of type ``ecard_consent``: data scopes (``datatypes``,
    RFC 9396 §2.2) for a catalogue purpose and a time (``docs/consent.md``)."""

    type: str
    datatypes: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(min_length=1, max_length=16)
    ]
    purpose_code: Annotated[str, msgspec.Meta(max_length=32)]
    duration_seconds: int
    purpose: Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00-\x1f<>]*$")] = ""


class AuthorizationDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9396 §7: what the holder granted of the requested details, and the consent grant's id
    (``grant_id``) for the data API (``/consent/v1/grants/{grant_id}/data``)."""

    type: str
    datatypes: list[str]
    purpose_code: str
    duration_seconds: int
    purpose: str = ""
    grant_id: str | None = None


class TokenResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    id_token: str | None = None
    refresh_token: str | None = None
    #: RFC 9396 §7, on the tokens of a login that asked for data: the granted details (an empty
    #: list when the holder refused every data scope)
    authorization_details: list[AuthorizationDetail] | None = None


class DeviceAuthorization(msgspec.Struct, kw_only=True):
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class Introspection(msgspec.Struct, kw_only=True, omit_defaults=True):
    active: bool
    scope: str | None = None
    client_id: str | None = None
    token_type: str | None = None
    exp: int | None = None
    iat: int | None = None
    sub: str | None = None
    aud: str | None = None
    iss: str | None = None
    sid: str | None = None


# --- store records (msgpack) ---------------------------------------------------------------------


class ConsentAsk(msgspec.Struct, kw_only=True, array_like=True):
    """The consent part of a validated authorization request (its ``ecard_consent`` detail)."""

    scopes: list[str]
    purpose_code: str
    purpose: str
    duration_seconds: int


class AuthorizationRequest(msgspec.Struct, kw_only=True, array_like=True):
    """A validated authorization request: everything later steps hold the client to."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    consent: ConsentAsk | None = None  # data asked for with the login (RFC 9396)


class LoginFlow(msgspec.Struct, kw_only=True, array_like=True):
    """One login page: outlives its QR sessions, so an expired QR can be replaced in place."""

    request: AuthorizationRequest
    browser_digest: str  # sha256 of the page's cookie secret; "" for device logins
    origin: LoginOrigin


class LoginSession(msgspec.Struct, kw_only=True, array_like=True):
    """A login QR's life: created by the page (or a device), answered once by one holder."""

    request: AuthorizationRequest
    browser_digest: str
    flow_id: str | None
    origin: LoginOrigin
    expires_at: int
    state: LoginState = "pending"
    ecard_id: str | None = None
    auth_time: int | None = None
    user_code: str | None = None
    subject: str | None = None  # the pairwise sub, once approved
    holder_name: str | None = (
        None  # masked (张*三), once approved on a page: what the browser confirms
    )
    granted_data: list[str] | None = None  # of ``request.consent``, once approved


class CodeGrant(msgspec.Struct, kw_only=True, array_like=True):
    request: AuthorizationRequest
    ecard_id: str
    subject: str  # pairwise, fixed at approval
    auth_time: int
    consent_id: str | None = None  # the answer to ``request.consent``, recorded at confirmation
    granted_data: list[str] | None = None


class DeviceGrant(msgspec.Struct, kw_only=True, array_like=True):
    client_id: str
    session_id: str


class AccessRecord(msgspec.Struct, kw_only=True, array_like=True):
    family_id: str
    client_id: str
    ecard_id: str
    subject: str
    scope: str
    issued_at: int
    expires_at: int


# --- what the holder sees of the sites they logged in to and the grants they gave --------------


class HolderAuthorization(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One site the holder is logged in to (``kind`` login: a live token family) or one live grant
    they gave (``kind`` grant); revoked by ``POST /holder/v1/authorizations/{kind}/{id}/revoke``."""

    kind: Literal["login", "grant"]
    id: str
    party_id: str
    party_name: str
    scopes: list[str]  # login scopes, or the granted data scopes
    since: int  # epoch seconds: the login's time, or the grant's start
    expires_at: int  # epoch seconds
    purpose_code: str | None = None
    purpose: str | None = None
