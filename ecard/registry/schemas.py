"""Request and response bodies of the registry API (msgspec Structs, validated at the edge)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

#: ecard.registry.lifecycle.CardStatus, as the API spells it
CardStatus = Literal[
    "produced",
    "in_stock",
    "issued",
    "active",
    "lost_temporary",
    "lost",
    "frozen",
    "replacement_pending",
    "replaced",
    "cancelled",
    "deceased",
]
ReplacementReason = Literal["lost", "damaged", "expired", "name_changed", "number_changed", "other"]
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
    identification_code: str | msgspec.UnsetType = (
        msgspec.UNSET
    )  # 卡识别码; absent without pii:full


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: CardStatus
    reason: Reason
    expected_version: int | None = None  # optimistic concurrency; omit to take the current one


class ReplacementRequest(msgspec.Struct, forbid_unknown_fields=True):
    """补领 / 换领 requested: the card can no longer be 解挂."""

    reason: ReplacementReason
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    expected_version: int | None = None


class NewCard(msgspec.Struct, forbid_unknown_fields=True):
    """The replacing card's own facts (立等可取: made and handed over at the counter)."""

    card_number: CardNumber
    chip_serial: HexId
    identification_code: HexId
    issue_date: dt.date
    expiry_date: dt.date
    region: RegionCode | None = None  # the old card's region when omitted


class Replacement(msgspec.Struct, forbid_unknown_fields=True):
    """The replacement itself: either a stock card already made for the person (``stock_card_id``)
    or a new card's facts (``new_card``), exactly one."""

    new_card: NewCard | None = None
    stock_card_id: str | None = None


class ReplacementDone(msgspec.Struct):
    old_card_id: str
    new_card_id: str
    ecards_moved: int
    hce_certificates_revoked: int


class LossReported(msgspec.Struct):
    card_status: str
    lapses_at: int  # epoch seconds: the card is active again then, unless made formal before


class LossUndo(msgspec.Struct, forbid_unknown_fields=True):
    """Undo a 临时挂失 from the app: the session's refresh token (its access token ended with the
    loss) and the holder's 电子社保卡密码."""

    refresh_token: Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
    password: Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")]


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
    #: false when ``total`` is a lower bound: a person search counts at most 10,000 matches past
    #: its offset (``registry.service.COUNT_CAP``)
    total_exact: bool = True


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


#: An RFC 7638 SHA-256 JWK thumbprint, base64url without padding.
JwkThumbprint = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{43}$")]
#: a compact JWS, bounded (ecard.registry.evidence checks it rule by rule)
Evidence = Annotated[str, msgspec.Meta(max_length=8192)]
#: the 电子社保卡密码: six digits
HolderPassword = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]


class ECardIssue(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    identity_number: IdentityNumber
    card_number: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    #: the thumbprint of the key the app made on the phone (RFC 9449 §10): the session is bound to
    #: it (token_type ``DPoP``); required when the platform's ``holder_dpop`` is ``required``
    dpop_jkt: JwkThumbprint | None = None
    #: the channel's 实人 evidence for this applicant: a compact JWS (ES256) signed with the
    #: channel's registered key (``docs/front-door.md``).  Required: without it the answer is
    #: ``evidence_required`` (optional here only so that the answer is that code)
    evidence: Evidence | None = None


class TokenPair(msgspec.Struct):
    access_token: str
    refresh_token: str
    token_type: str  # "DPoP" when bound to a device key (send a DPoP proof with it), else "Bearer"
    expires_in: int
    refresh_expires_in: int


class HolderSessionView(msgspec.Struct, omit_defaults=True):
    """One of the holder's signed-in sessions (any channel app holding an e-card of the card)."""

    id: str  # stable across refreshes: what ``POST /holder/v1/sessions/{id}/revoke`` takes
    channel_id: str
    channel_name: str
    created_at: dt.datetime  # when the holder signed in on that app
    current: bool  # the session this request comes from
    last_used: dt.datetime | None = None  # the last refresh (not every request)
    device_key: str | None = None  # the first characters of the device key's thumbprint, if bound


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
    entitlements: list[Annotated[str, msgspec.Meta(max_length=64)]] = msgspec.field(
        default_factory=list
    )
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


# --- stock cards (库存卡) and death records (死亡人员) -------------------------------------------

#: An outlet (网点): its code or name as the province spells it.
Outlet = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f<>]+$")]
#: Most cards one batch may carry.
MAX_BATCH_CARDS = 1000


class StockCard(msgspec.Struct, forbid_unknown_fields=True):
    """One personalised card of a batch, made for ``person_id``."""

    person_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    card_number: CardNumber
    chip_serial: HexId
    identification_code: HexId
    issue_date: dt.date
    expiry_date: dt.date


class CardBatchCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A batch of stock cards from the card factory for one outlet; all its cards or none."""

    outlet: Outlet
    region: RegionCode
    cards: Annotated[list[StockCard], msgspec.Meta(min_length=1, max_length=MAX_BATCH_CARDS)]


class CardBatchView(msgspec.Struct):
    id: str
    outlet: str
    region: str
    status: Literal["produced", "delivered"]
    card_count: int
    counts: dict[str, int]  # card status -> how many of the batch's cards are in it now
    card_ids: list[str]
    created_by: str
    created_at: dt.datetime
    delivered_at: dt.datetime | None = None


class StockCardStep(msgspec.Struct, forbid_unknown_fields=True):
    """Hand-over or activation of a stock card; the body may be empty."""

    note: Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")] = ""
    expected_version: int | None = None


class DeathRecordRejection(msgspec.Struct):
    line: int  # the file's line number (the header is line 1)
    reason: str  # a reason code (docs/lifecycle-operations.md); never the row's content


class DeathImportReport(msgspec.Struct):
    dry_run: bool
    rows_read: int
    persons_marked: int  # persons recorded deceased by this import (would be, in a dry run)
    cards_ended: int  # cards that became deceased (would, in a dry run)
    already_deceased: int  # rows of persons already recorded deceased: nothing changed
    rejected_total: int
    rejected_by_reason: dict[str, int]
    rejected: list[DeathRecordRejection]  # the first rejections, by line
    rejected_truncated: bool  # more rows were rejected than ``rejected`` lists


class HolderPasswordSet(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /holder/v1/password``: the first 电子社保卡密码 of the person."""

    password: HolderPassword


class HolderPasswordReset(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /holder/v1/password/reset``: a new password, through the channel's 实人 evidence."""

    password: HolderPassword
    evidence: Evidence | None = None


class HolderPasswordState(msgspec.Struct):
    """Whether the person has a password, and until when it is locked (epoch seconds, or null)."""

    set: bool
    locked_until: int | None = None
