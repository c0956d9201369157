"""Request and response bodies of the code service (msgspec Structs, validated at the edge)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

ImageFormat = Literal["png", "svg"]
ErrorCorrectionLevel = Literal["L", "M", "Q", "H"]

#: Identity fields a verifier can be entitled to (``ApiClient.entitlements``), least to most.
EntitledField = Literal[
    "masked_name",
    "card_status",
    "region",
    "masked_card_number",
    "masked_identity_number",
    "full_name",
    "card_number",
    "identity_number",
]
ENTITLED_FIELDS: tuple[str, ...] = EntitledField.__args__  # type: ignore[attr-defined]


class CodeIssued(msgspec.Struct, kw_only=True):
    """A fresh dynamic code: show it as a QR until ``refresh_at``, it verifies until
    ``expires_at``."""

    code: str
    issued_at: int
    expires_at: int
    refresh_at: int
    lifetime: int


class ElicenseIssued(msgspec.Struct, kw_only=True):
    """The signed e-license (JWS); verify with the trust list (``ecard verify`` or the kit)."""

    token: str
    expires_at: int


class VerifyRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: str  # the scanned text, as the scanner typed it; any text gets a reasoned answer


class VerifiedFields(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Exactly the fields the verifier is entitled to; the rest stay absent."""

    masked_name: str | None = None
    card_status: str | None = None
    region: str | None = None
    masked_card_number: str | None = None
    masked_identity_number: str | None = None
    full_name: str | None = None
    card_number: str | None = None
    identity_number: str | None = None


class VerificationResult(msgspec.Struct, kw_only=True):
    valid: bool
    reason: str | None  # None when valid; else a stable reason code (see docs/codes-service.md)
    message: dict[str, str]  # {"zh-CN": ..., "en": ...}
    verified_at: int
    issuer_region: str | None = None
    issuer_name: str | None = None
    expires_at: int | None = None
    fields: VerifiedFields = msgspec.field(default_factory=VerifiedFields)


class VerifierSession(msgspec.Struct, kw_only=True):
    """A short-lived token for the verifier page, so the client secret is typed once and not
    kept."""

    access_token: str
    token_type: str
    expires_in: int
    verifier_name: str
    entitlements: list[str]


class HolderVerification(msgspec.Struct, kw_only=True):
    at: dt.datetime
    verifier: str  # the institution's registered name
    result: str  # "valid" or a reason code


class HolderVerificationPage(msgspec.Struct, kw_only=True):
    items: list[HolderVerification]
    total: int
    limit: int
    offset: int
