"""Request and response bodies of the terminal service (msgspec Structs, validated at the edge).

Relayed card answers are hex strings of whole response APDUs (data and SW1-SW2), so the APDU,
BER-TLV and record codecs judge exactly what the card sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from ecard.codes.schemas import VerifiedFields
from ecard.registry.schemas import CardStatus, RegionCode
from ecard.terminal.apdu import MAX_RESPONSE_BYTES
from ecard.terminal.records import MAX_BATCH_RECORDS, SignedRecord

#: One byte over the longest response APDU still reaches the codec, which names the refusal.
ResponseHex = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]*$", max_length=2 * MAX_RESPONSE_BYTES + 2)
]
ChallengeHex = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]*$", max_length=64)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f<>]+$")]
TerminalKind = Literal["hospital", "pharmacy", "service_hall", "transport", "gate", "bank", "other"]
Entitlement = Annotated[str, msgspec.Meta(max_length=64)]


class TerminalCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A terminal of an institution; ``public_jwk`` is the terminal's ES256 key (P-256 JWK)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    institution: Text
    terminal_kind: TerminalKind
    address: Text
    region: RegionCode
    public_jwk: dict[str, str]
    #: which card fields the institution may learn (as for verifiers) and ``card_personal_data``
    #: to be given EXTERNAL AUTHENTICATE cryptograms that open the chip's EF06
    entitlements: list[Entitlement] = msgspec.field(default_factory=lambda: ["card_status"])


class TerminalView(msgspec.Struct):
    id: str
    name: str
    institution: str
    terminal_kind: str
    address: str
    region: str
    status: str
    entitlements: list[str]
    created_at: dt.datetime


class TerminalPage(msgspec.Struct):
    items: list[TerminalView]
    total: int
    limit: int
    offset: int


class TerminalStatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["active", "disabled"]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class CardAuthenticationRequest(msgspec.Struct, forbid_unknown_fields=True):
    """卡鉴权 online: what the terminal read and what the card answered, relayed as they are."""

    card_record: ResponseHex  # READ RECORD of EF05 item 01 (卡识别码), response APDU
    challenge: ChallengeHex  # the terminal's challenge, 8 or 16 bytes
    answer: ResponseHex  # INTERNAL AUTHENTICATE's response APDU


class CardAuthenticationResult(msgspec.Struct):
    authentic: bool  # the answer is the genuine chip's (a forged one is an error, not False)
    usable: bool  # authentic, active (not lost, frozen or cancelled) and not expired
    card_status: CardStatus
    expiry_date: dt.date
    region: str
    reference: str  # the card's pseudonymous reference for acceptance records
    fields: VerifiedFields  # what this terminal's institution is entitled to


class ExternalAuthenticationRequest(msgspec.Struct, forbid_unknown_fields=True):
    card_record: ResponseHex  # READ RECORD of EF05 item 01, response APDU
    card_challenge: ResponseHex  # GET CHALLENGE's response APDU


class ExternalAuthenticationResult(msgspec.Struct):
    cryptogram: str  # hex; send as EXTERNAL AUTHENTICATE 0082 0000 10 <cryptogram>


class CodeAcceptRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class HceProvisionRequest(msgspec.Struct, forbid_unknown_fields=True):
    device_key: dict[str, str]  # the phone's P-256 public JWK; the private key never leaves it


class HceProvisioned(msgspec.Struct):
    certificate: str  # base64url; what the HCE card keeps as its record E1
    certificate_id: str  # the e-card's reference in acceptance records
    region: str
    not_before: int
    not_after: int


class RecordUpload(msgspec.Struct, forbid_unknown_fields=True):
    """A batch of signed offline records; ``codes`` maps QR references to the scanned code texts,
    so the platform can check (by the code's own signature) when each code expired."""

    records: Annotated[list[SignedRecord], msgspec.Meta(max_length=MAX_BATCH_RECORDS)]
    codes: dict[str, Annotated[str, msgspec.Meta(max_length=1024)]] = msgspec.field(
        default_factory=dict
    )


class Gap(msgspec.Struct):
    first: int
    last: int


class UploadReport(msgspec.Struct):
    """Each uploaded record is counted once in the first five; the last two flag accepted ones.
    Lists hold counters."""

    stored: int
    duplicates: list[int]
    conflicts: list[int]
    rollbacks: list[int]
    wrong_key: list[int]
    gaps: list[Gap]
    revoked_before_acceptance: list[int]
    expired_codes: list[int]


class AnomalyView(msgspec.Struct):
    anomaly: str
    counter: int
    reference: str
    accepted_at: int
    found_at: dt.datetime


class ReconciliationReport(msgspec.Struct):
    terminal: TerminalView
    records: int
    accepted: int
    refused: int
    last_counter: int
    last_accepted_at: int | None
    gaps: list[Gap]
    anomalies: dict[str, int]  # counts by kind
    recent_anomalies: list[AnomalyView]
