"""ISO/IEC 7816-4 command and response APDUs (§5.1), short and extended length, cases 1 to 4.

A command is decoded by the rules of §5.1 alone, so what a card receives is exactly one of:

    case 1   CLA INS P1 P2
    case 2S  CLA INS P1 P2 Le                   Le 00 means 256
    case 3S  CLA INS P1 P2 Lc data              Lc 01..FF
    case 4S  CLA INS P1 P2 Lc data Le
    case 2E  CLA INS P1 P2 00 Le1 Le2           Le 0000 means 65536
    case 3E  CLA INS P1 P2 00 Lc1 Lc2 data      Lc 0001..FFFF
    case 4E  CLA INS P1 P2 00 Lc1 Lc2 data Le1 Le2

Anything else (a wrong Lc, a missing or extra byte, Lc = 0) is refused with a typed error before
any data is copied; input longer than the longest extended APDU is refused unread.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from ecard.terminal.errors import TerminalError, TerminalReason

HEADER_BYTES = 4
SHORT_MAX_DATA = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_DATA = 65_535
EXTENDED_MAX_LE = 65_536
#: Case 4E: header, 00, two Lc bytes, 65535 data bytes, two Le bytes.
MAX_COMMAND_BYTES = HEADER_BYTES + 3 + EXTENDED_MAX_DATA + 2
MAX_RESPONSE_BYTES = EXTENDED_MAX_LE + 2


class SW(IntEnum):
    """Status words the card model uses (ISO 7816-4 §5.1.3); 61xx, 63Cx and 6Cxx are built below."""

    OK = 0x9000
    END_OF_FILE = 0x6282  # fewer bytes than Le before the end of a transparent EF
    AUTHENTICATION_FAILED = 0x6300
    WRONG_LENGTH = 0x6700
    INCOMPATIBLE_FILE_STRUCTURE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTHENTICATION_METHOD_BLOCKED = 0x6983
    CONDITIONS_OF_USE_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_CURRENT_EF = 0x6986
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1_P2 = 0x6A86
    WRONG_P1_P2 = 0x6B00  # e.g. an offset beyond the end of a transparent EF
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00


def more_data(available: int) -> int:
    """61xx: ``available`` response bytes wait for GET RESPONSE (xx = 00 means 256 or more)."""
    return 0x6100 | min(available, SHORT_MAX_LE) % SHORT_MAX_LE


def wrong_le(exact: int) -> int:
    """6Cxx: wrong Le; ``exact`` bytes are available (xx = 00 means 256)."""
    return 0x6C00 | min(exact, SHORT_MAX_LE) % SHORT_MAX_LE


def verification_failed(retries_left: int) -> int:
    """63Cx: verification failed, ``retries_left`` (0..15) tries remain."""
    return 0x63C0 | min(retries_left, 0xF)


class CommandApdu(msgspec.Struct, frozen=True):
    """A command APDU.  ``le`` is None when no response data is expected, else 1..256 (short) or
    1..65536 (extended); ``extended`` keeps the length encoding so bytes round-trip exactly."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    @property
    def case(self) -> int:
        return 1 + (self.le is not None) + 2 * bool(self.data)

    def encode(self) -> bytes:
        return encode_command(self)


class ResponseApdu(msgspec.Struct, frozen=True):
    """A response APDU: data field and status word (SW1 << 8 | SW2)."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK

    def encode(self) -> bytes:
        return encode_response(self)


def _bad(reason: TerminalReason, detail: str) -> TerminalError:
    return TerminalError(reason, detail)


def _check_command_fields(apdu: CommandApdu) -> None:
    for name in ("cla", "ins", "p1", "p2"):
        value = getattr(apdu, name)
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise _bad(TerminalReason.APDU_BAD_FIELD, f"{name} must be one byte")
    max_data, max_le = (
        (EXTENDED_MAX_DATA, EXTENDED_MAX_LE) if apdu.extended else (SHORT_MAX_DATA, SHORT_MAX_LE)
    )
    if len(apdu.data) > max_data:
        raise _bad(TerminalReason.APDU_BAD_FIELD, f"data longer than {max_data} bytes")
    if apdu.le is not None and not 1 <= apdu.le <= max_le:
        raise _bad(TerminalReason.APDU_BAD_FIELD, f"Le must be 1..{max_le}")
    if apdu.extended and not apdu.data and apdu.le is None:
        raise _bad(TerminalReason.APDU_BAD_FIELD, "case 1 has no extended form")


def encode_command(apdu: CommandApdu) -> bytes:
    """The bytes of ``apdu`` in its short or extended form; out-of-range fields are refused."""
    _check_command_fields(apdu)
    out = bytearray((apdu.cla, apdu.ins, apdu.p1, apdu.p2))
    if apdu.extended:
        out.append(0)
        if apdu.data:
            out += len(apdu.data).to_bytes(2, "big") + apdu.data
        if apdu.le is not None:
            out += (apdu.le % EXTENDED_MAX_LE).to_bytes(2, "big")
    else:
        if apdu.data:
            out.append(len(apdu.data))
            out += apdu.data
        if apdu.le is not None:
            out.append(apdu.le % SHORT_MAX_LE)
    return bytes(out)


def decode_command(raw: bytes) -> CommandApdu:
    """Parse one command APDU by the case rules of ISO 7816-4 §5.1; see the module docstring."""
    size = len(raw)
    if size > MAX_COMMAND_BYTES:
        raise _bad(TerminalReason.APDU_TOO_LONG, f"{size} bytes")
    if size < HEADER_BYTES:
        raise _bad(TerminalReason.APDU_TRUNCATED, "shorter than CLA INS P1 P2")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    body = raw[HEADER_BYTES:]
    if not body:
        return CommandApdu(cla, ins, p1, p2)
    if len(body) == 1:
        return CommandApdu(cla, ins, p1, p2, le=body[0] or SHORT_MAX_LE)
    if body[0] != 0:
        lc = body[0]
        if len(body) == 1 + lc:
            return CommandApdu(cla, ins, p1, p2, data=bytes(body[1:]))
        if len(body) == 2 + lc:
            return CommandApdu(
                cla, ins, p1, p2, data=bytes(body[1:-1]), le=body[-1] or SHORT_MAX_LE
            )
        raise _bad(
            TerminalReason.APDU_BAD_LENGTH, f"short Lc {lc} does not match {len(body) - 1} bytes"
        )
    if len(body) < 3:
        raise _bad(TerminalReason.APDU_BAD_LENGTH, "extended length field is truncated")
    if len(body) == 3:
        le = int.from_bytes(body[1:3], "big") or EXTENDED_MAX_LE
        return CommandApdu(cla, ins, p1, p2, le=le, extended=True)
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        raise _bad(TerminalReason.APDU_BAD_LENGTH, "extended Lc is zero")
    if len(body) == 3 + lc:
        return CommandApdu(cla, ins, p1, p2, data=bytes(body[3:]), extended=True)
    if len(body) == 5 + lc:
        le = int.from_bytes(body[-2:], "big") or EXTENDED_MAX_LE
        return CommandApdu(cla, ins, p1, p2, data=bytes(body[3:-2]), le=le, extended=True)
    raise _bad(
        TerminalReason.APDU_BAD_LENGTH, f"extended Lc {lc} does not match {len(body) - 3} bytes"
    )


def encode_response(response: ResponseApdu) -> bytes:
    if not 0 <= response.sw <= 0xFFFF:
        raise _bad(TerminalReason.APDU_BAD_FIELD, "a status word is two bytes")
    if len(response.data) > EXTENDED_MAX_LE:
        raise _bad(
            TerminalReason.APDU_BAD_FIELD, f"response data longer than {EXTENDED_MAX_LE} bytes"
        )
    return response.data + response.sw.to_bytes(2, "big")


def decode_response(raw: bytes) -> ResponseApdu:
    """Split a response into data and SW1-SW2; the trailer is mandatory."""
    if len(raw) > MAX_RESPONSE_BYTES:
        raise _bad(TerminalReason.APDU_TOO_LONG, f"{len(raw)} bytes")
    if len(raw) < 2:
        raise _bad(TerminalReason.APDU_TRUNCATED, "a response ends with SW1 SW2")
    return ResponseApdu(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))
