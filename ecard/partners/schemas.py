"""Requests and responses of the application catalogue (msgspec Structs).  No personal data: a
filing names an organisation's system, never a person."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ecard.oidc.schemas import AuthMethod, ClientType, HttpsUri

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f<>]+$")]
Organisation = Annotated[str, msgspec.Meta(max_length=128, pattern=r"^[^\x00-\x1f\x7f<>]*$")]
CatalogueName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
RegionOrAll = Annotated[str, msgspec.Meta(pattern=r"^([1-9]\d{5}|\*)$")]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
StepName = Literal["assess", "security_test", "approve", "go_live", "suspend", "resume", "reject"]
Capability = Literal["channel", "verifier", "login", "data", "department", "terminal"]
Status = Literal[
    "submitted", "assessed", "security_tested", "approved", "live", "suspended", "rejected"
]


class NoSettings(msgspec.Struct, forbid_unknown_fields=True):
    """A capability with nothing more to file (channel, department)."""


class VerifierSettings(msgspec.Struct, forbid_unknown_fields=True):
    #: identity fields it may see when it verifies a code (``ecard.codes.schemas.ENTITLED_FIELDS``)
    fields: Annotated[list[CatalogueName], msgspec.Meta(max_length=20)]


class LoginSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Scan-to-login (OIDC): kept in ``oidc_client`` under the filing's id."""

    redirect_uris: Annotated[list[HttpsUri], msgspec.Meta(min_length=1, max_length=20)]
    scopes: Annotated[list[CatalogueName], msgspec.Meta(min_length=1, max_length=20)]
    client_type: ClientType = "confidential"
    token_endpoint_auth_method: AuthMethod = "client_secret_basic"  # noqa: S105
    logo_uri: HttpsUri | None = None
    post_logout_redirect_uris: Annotated[list[HttpsUri], msgspec.Meta(max_length=20)] = []


class DataSettings(msgspec.Struct, forbid_unknown_fields=True):
    #: consent scopes it may ask holders for (``ecard.consent.scopes.SCOPES``)
    scopes: Annotated[list[CatalogueName], msgspec.Meta(max_length=20)]
    #: purposes it is filed for (``ecard.consent.scopes.PURPOSES``); empty on filings of the older
    #: path, which named none
    purposes: Annotated[list[CatalogueName], msgspec.Meta(max_length=20)] = []


class TerminalSettings(msgspec.Struct, forbid_unknown_fields=True):
    #: card fields the terminal may learn, and ``card_personal_data``
    entitlements: Annotated[list[CatalogueName], msgspec.Meta(max_length=20)]


class Capabilities(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    channel: NoSettings | None = None
    verifier: VerifierSettings | None = None
    login: LoginSettings | None = None
    data: DataSettings | None = None
    department: NoSettings | None = None
    terminal: TerminalSettings | None = None


class FilingCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partner system filed for one or more capabilities; it starts ``submitted``."""

    name: Name
    capabilities: Capabilities
    organisation: Organisation = ""
    regions: Annotated[list[RegionOrAll], msgspec.Meta(min_length=1, max_length=40)] = (
        msgspec.field(default_factory=lambda: ["*"])
    )
    #: a public EC P-256 JWK (private_key_jwt, signed terminal requests, signed evidence)
    jwk: dict[str, str] | None = None


class StepTake(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    step: StepName
    reason: Reason = ""


class StepView(msgspec.Struct, kw_only=True):
    step: str
    from_status: str | None
    to_status: str
    actor: str
    reason: str
    at: str  # RFC 3339


class FilingView(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    organisation: str
    status: Status
    #: capability -> its settings (login's from ``oidc_client``)
    capabilities: dict[str, Any]
    regions: list[str]
    entitlements: list[str]
    allowed_steps: list[str]
    created_at: str
    updated_at: str
    client_secret: str | None = None  # shown once, when filed


class FilingPage(msgspec.Struct, kw_only=True):
    items: list[FilingView]
    total: int
    limit: int
    #: the next page's ``cursor`` (keyset on the id); null on the last page
    next_cursor: str | None = None
    page: int | None = None


class CredentialCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Add a secret (shown once) or a public key; the filing's earlier ones of that kind keep
    working for ``overlap_seconds`` more (default and most: ``docs/partners.md``)."""

    kind: Literal["secret", "jwk"]
    jwk: dict[str, str] | None = None
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0)] | None = None
    reason: Reason = ""


class CredentialView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A credential as listed: never the secret, nor its digest."""

    id: str
    kind: str
    state: Literal["current", "overlap", "ended"]
    created_at: int
    kid: str | None = None
    public_jwk: dict[str, str] | None = None
    not_after: int | None = None
    ended_at: int | None = None


class CredentialIssued(msgspec.Struct, kw_only=True, omit_defaults=True):
    credential: CredentialView
    #: when the filing's earlier credentials of this kind stop working
    overlap_until: int | None = None
    client_secret: str | None = None  # shown once
