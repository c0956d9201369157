"""Typed refusals of the terminal cores, each with a stable reason code.

The values are a public contract (terminals log and upload them, the HTTP layer maps them to its
error catalogue): add members, never rename or reuse one.
"""

from __future__ import annotations

from enum import StrEnum


class TerminalReason(StrEnum):
    # --- command and response APDUs (ISO 7816-4 §5.1) --------------------------------------
    APDU_TRUNCATED = "apdu_truncated"  # shorter than a header, or a response without SW1-SW2
    APDU_TOO_LONG = "apdu_too_long"  # longer than any extended APDU can be; refused unread
    APDU_BAD_LENGTH = "apdu_bad_length"  # Lc/Le fields that do not add up to the bytes received
    APDU_BAD_FIELD = "apdu_bad_field"  # a value out of range when building an APDU
    # --- BER-TLV (ISO 7816-4 §5.2, ISO 8825-1) ---------------------------------------------
    TLV_TRUNCATED = "tlv_truncated"  # a tag, length or value runs past the end
    TLV_BAD_TAG = "tlv_bad_tag"  # 00/FF first byte, non-minimal or over-long tag number
    TLV_BAD_LENGTH = "tlv_bad_length"  # indefinite or over-long length field
    TLV_TOO_DEEP = "tlv_too_deep"  # constructed objects nested beyond the limit
    TLV_TOO_LARGE = "tlv_too_large"  # input larger than the limit; refused unread
    # --- card data ------------------------------------------------------------------------
    BAD_CARD_FACTS = "bad_card_facts"  # a card fact that does not fit its data item
    BAD_RECORD = "bad_record"  # a card record that is not tag-length-value of the expected item
    # --- card authentication (PSAM role) --------------------------------------------------
    BAD_KEY = "bad_key"  # not a 16-byte SM4 key
    BAD_CHALLENGE = "bad_challenge"  # challenges are 8 or 16 bytes
    # --- offline acceptance records --------------------------------------------------------
    BAD_ACCEPTANCE_RECORD = "bad_acceptance_record"
    # --- the vpcd bridge -------------------------------------------------------------------
    VPCD_PROTOCOL = "vpcd_protocol"  # a frame vpcd would never send


class TerminalError(ValueError):
    """Input was refused; ``reason`` says why in a stable code, ``detail`` adds non-personal
    context."""

    def __init__(self, reason: TerminalReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
