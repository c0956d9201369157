"""Request and response bodies of the registry API (msgspec Structs, validated at the edge)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

CardStatus = Literal["active", "lost", "frozen", "cancelled", "deceased"]
OperatorRole = Literal["admin", "registry_admin", "auditor", "readonly"]
ClientKind = Literal["channel", "department", "verifier", "relying_party", "terminal"]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f<>]+$")]
IdentityNumber = Annotated[str, msgspec.Meta(min_length=15, max_length=20)]
RegionCode = Annotated[str, msgspec.Meta(pattern=r"^[1-9]\d{5}$")]
CardNumber = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{9,20}$")]
HexId = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-F]{8,32}$")]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Gender = Literal["1", "2", "9"]
Ethnicity = Annotated[str, msgspec.Meta(pattern=r"^\d{2}$")]


class PersonCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    gender: Gender
    identity_number: IdentityNumber
    region: RegionCode
    ethnicity: Ethnicity = "01"


class PersonUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    gender: Gender | None = None
    region: RegionCode | None = None
    ethnicity: Ethnicity | None = None


# Operator views: which role sees which field, full, masked or not at all, is the table in
# ecard/registry/visibility.py; a field some role does not see defaults to UNSET (left out).


class PersonView(msgspec.Struct):
    id: str
    name: str  # masked (张*三) without pii:full
    gender: str
    region: str
    identity_number: str  # masked (330102************) without pii:full
    created_at: dt.datetime
    ethnicity: str | msgspec.UnsetType = msgspec.UNSET  # absent without pii:full
    birth_date: dt.date | msgspec.UnsetType = msgspec.UNSET  # absent without pii:full


class CardCreate(msgspec.Struct, forbid_unknown_fields=True):
    person_id: str
    card_number: CardNumber
    region: RegionCode
    chip_serial: HexId
    identification_code: HexId
    issue_date: dt.date
    expiry_date: dt.date


class CardView(msgspec.Struct):
    id: str
    person_id: str
    card_number: str  # masked (last four) without pii:full
    region: str
    issue_date: dt.date
    expiry_date: dt.date
    status: CardStatus
    status_version: int
    chip_serial: str | msgspec.UnsetType = msgspec.UNSET  # absent without pii:full
    identification_code: str | msgspec.UnsetType = msgspec.UNSET  # 卡识别码; absent without pii:full


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: CardStatus
    reason: Reason
    expected_version: int | None = None  # optimistic concurrency; omit to take the current one


class StatusEventView(msgspec.Struct):
    from_status: str | None
    to_status: str
    actor: str
    reason: str
    at: dt.datetime


class Page(msgspec.Struct):
    items: list
    total: int
    limit: int
    offset: int


class AuditEventView(msgspec.Struct):
    at: dt.datetime
    actor_kind: str
    actor_id: str
    action: str
    target_kind: str
    target_id: str
    reason: str
    detail: dict


# --- channels, e-cards, holder sessions -------------------------------------------------------


class ECardIssue(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    identity_number: IdentityNumber
    card_number: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]


class TokenPair(msgspec.Struct):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    refresh_expires_in: int


class ECardView(msgspec.Struct):
    id: str
    channel_id: str
    status: str  # effective: the e-card's own state combined with its card's
    card_status: CardStatus
    card_number: str  # masked
    region: str
    holder_name: str  # masked
    identity_number: str  # masked
    created_at: dt.datetime


class ECardIssued(msgspec.Struct):
    ecard: ECardView
    session: TokenPair


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=10, max_length=200)]


class IdentityCheckRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    identity_number: IdentityNumber
    card_number: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]


class IdentityCheckResult(msgspec.Struct, omit_defaults=True):
    match: bool
    card_status: CardStatus | None = None


# --- operators and clients ----------------------------------------------------------------------


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class OperatorToken(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    role: OperatorRole


class OperatorTokensRevoke(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason  # recorded in the audit trail


class OperatorTokensRevoked(msgspec.Struct):
    operator_id: str
    revoked_tokens: int  # live tokens ended by this call


class ClientCreate(msgspec.Struct, forbid_unknown_fields=True):
    kind: ClientKind
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    regions: list[RegionCode | Literal["*"]] = msgspec.field(default_factory=lambda: ["*"])
    entitlements: list[Annotated[str, msgspec.Meta(max_length=64)]] = msgspec.field(default_factory=list)
    public_jwk: dict[str, str] | None = None


class ClientView(msgspec.Struct, omit_defaults=True):
    id: str
    kind: str
    name: str
    status: str
    regions: list[str]
    entitlements: list[str]
    client_secret: str | None = None  # shown once, at creation


class ClientStatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["active", "disabled"]
    reason: Reason
