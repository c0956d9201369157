"""Request and response bodies of the consent and ledger APIs (msgspec Structs)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from ledger import Receipt
from ledger.log import History
from ledger.verify import AuditReport, ReceiptCheck, Standing

ScopeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Scopes = Annotated[list[ScopeId], msgspec.Meta(min_length=1, max_length=16)]
ConsentStatus = Literal["pending", "granted", "denied", "revoked", "expired"]
PlainText = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00-\x1f<>]*$")]


class HolderRef(msgspec.Struct, forbid_unknown_fields=True):
    """Whom the request is for, by exactly one of: the pairwise ``sub`` this relying party received
    when the holder logged in to it (the same filing's logins only), or the identity number the
    relying party already holds."""

    identity_number: Annotated[str, msgspec.Meta(min_length=15, max_length=20)] | None = None
    sub: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class RequestCreate(msgspec.Struct, forbid_unknown_fields=True):
    holder: HolderRef
    scopes: Scopes
    purpose_code: Annotated[str, msgspec.Meta(max_length=32)]
    duration_seconds: int
    purpose: PlainText = ""
    recipient: Annotated[str, msgspec.Meta(max_length=128, pattern=r"^[^\x00-\x1f<>]*$")] | None = (
        None
    )


class Approval(msgspec.Struct, forbid_unknown_fields=True):
    """Approve all requested scopes (``scopes`` omitted) or only some of them, with the holder's
    电子社保卡密码 (step-up; ``password_required`` without it, ``docs/front-door.md``)."""

    scopes: Scopes | None = None
    password: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class ScopeView(msgspec.Struct):
    id: str
    zh: str
    en: str
    fields: list[str]


class PurposeView(msgspec.Struct):
    code: str
    zh: str
    en: str


class Catalogue(msgspec.Struct):
    scopes: list[ScopeView]
    purposes: list[PurposeView]
    min_duration_seconds: int
    max_duration_seconds: int


class PartyView(msgspec.Struct):
    id: str
    name: str


class AccessView(msgspec.Struct):
    id: str
    at: dt.datetime
    scopes: list[str]


class ConsentView(msgspec.Struct, omit_defaults=True):
    """A request and, once answered, its grant; ``status`` is effective now (a lapsed grant shows
    ``expired`` even before the sweep records it)."""

    id: str
    status: ConsentStatus
    relying_party: PartyView
    requested_scopes: list[ScopeView]
    granted_scopes: list[ScopeView]
    purpose_code: str
    purpose: str
    recipient: str
    duration_seconds: int
    created_at: dt.datetime
    request_expires_at: dt.datetime
    answered_at: dt.datetime | None = None
    starts_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    access_count: int = 0
    accesses: list[AccessView] | None = None


class RequestCreated(msgspec.Struct):
    id: str
    status: ConsentStatus
    request_expires_at: dt.datetime


class DataView(msgspec.Struct):
    """What one access released: only the fields of the scopes asked for and covered."""

    grant_id: str
    access_id: str
    scopes: list[str]
    served_at: dt.datetime
    data: dict[str, Any]


class CanonicalConsent(msgspec.Struct, frozen=True):
    """The bytes the ledger commitment binds (field order is the encoding order)."""

    v: int
    id: str
    relying_party: str
    person: str | None
    scopes: list[str]
    purpose_code: str
    purpose: str
    recipient: str
    duration_seconds: int
    created_ms: int


class EventReceipt(msgspec.Struct):
    event: str
    time_ms: int
    seq: int | None
    receipt: Receipt | None  # None until the relay has appended it (a fraction of a second)


#: bounds of a receipt sent to the public check: what the log's binary forms can hold (u64 seqs and
#: times, kept to PostgreSQL's signed BIGINT; a u32 count) and what its hashes and keys measure, so
#: a hostile number is a 400 ``validation_failed`` here, never an overflow further in (issue 16 §7)
Int63 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class ReceiptIn(msgspec.Struct, frozen=True):
    """A :class:`ledger.Receipt` as ``POST /ledger/v1/receipts/check`` accepts it: same fields,
    every one bounded."""

    log_key_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
    seq: Int63
    entry_hash: Hash32
    issued_ms: Int63
    first_seq: Int63
    count: Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]
    path: Annotated[tuple[Hash32, ...], msgspec.Meta(max_length=64)]
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]

    def receipt(self) -> Receipt:
        return Receipt(**msgspec.structs.asdict(self))


class GrantReceipts(msgspec.Struct):
    """Everything a holder needs to prove this grant's history: the canonical form and salt open
    the commitment every ledger entry of the grant carries."""

    grant_id: str
    commitment: bytes
    salt: bytes
    canonical: bytes
    log_key_id: str
    events: list[EventReceipt]


class AccessProof(msgspec.Struct):
    """The relying party's evidence: the grant's whole ledger history up to this access, with
    inclusion proofs, and what it says (``standing.live``: granted and not ended at the access)."""

    access_id: str
    seq: int
    history: History
    standing: Standing


class WriterView(msgspec.Struct):
    id: str
    key_id: str
    public_key: bytes
    status: str


class LedgerKeys(msgspec.Struct):
    log_key_id: str
    log_public_key: bytes  # raw Ed25519, base64 in JSON
    writers: list[WriterView]


class LedgerVerification(msgspec.Struct):
    audit: AuditReport
    ok: bool
    chain_checked: bool
    receipt: ReceiptCheck | None = None
