"""Command and response APDUs: every ISO 7816-4 case round-trips, anything else is a
typed refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.terminal.apdu import (
    MAX_COMMAND_BYTES,
    CommandApdu,
    ResponseApdu,
    decode_command,
    decode_response,
    encode_command,
    more_data,
    verification_failed,
    wrong_le,
)
from ecard.terminal.errors import TerminalError, TerminalReason

byte = st.integers(0, 255)


@st.composite
def commands(draw: st.DrawFn) -> CommandApdu:
    extended = draw(st.booleans())
    data = draw(st.binary(max_size=300 if extended else 255))
    le = draw(st.none() | st.integers(1, 65_536 if extended else 256))
    if extended and not data and le is None:
        extended = False
    return CommandApdu(draw(byte), draw(byte), draw(byte), draw(byte), data, le, extended)


@given(commands())
def test_every_command_round_trips(apdu: CommandApdu) -> None:
    raw = encode_command(apdu)
    assert decode_command(raw) == apdu
    assert encode_command(decode_command(raw)) == raw


@given(st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_a_typed_error(raw: bytes) -> None:
    try:
        apdu = decode_command(raw)
    except TerminalError as error:
        assert error.reason in {TerminalReason.APDU_TRUNCATED, TerminalReason.APDU_BAD_LENGTH}
    else:
        assert encode_command(apdu) == raw


@pytest.mark.parametrize(
    ("hex_apdu", "case", "data_length", "le"),
    [
        ("00A40000", 1, 0, None),
        ("0084000008", 2, 0, 8),
        ("00B2072C00", 2, 0, 256),  # Le 00 = 256
        ("00A4020002EF05", 3, 2, None),
        ("00A404000F7378312E73682EC9E7BBE1B1A3D5CF", 3, 15, None),
        ("00A404000F7378312E73682EC9E7BBE1B1A3D5CF00", 4, 15, 256),
        ("00B00000000000", 2, 0, 65_536),  # extended Le 0000 = 65536
        ("00DA0000000002AABB", 3, 2, None),
        ("00DA0000000002AABB0100", 4, 2, 256),
    ],
)
def test_real_reader_commands_decode_to_their_case(
    hex_apdu: str, case: int, data_length: int, le: int | None
) -> None:
    apdu = decode_command(bytes.fromhex(hex_apdu))
    assert (apdu.case, len(apdu.data), apdu.le) == (case, data_length, le)


@pytest.mark.parametrize(
    ("hex_apdu", "reason"),
    [
        ("", TerminalReason.APDU_TRUNCATED),
        ("00A404", TerminalReason.APDU_TRUNCATED),
        ("00A404000F7378", TerminalReason.APDU_BAD_LENGTH),  # Lc 15, 2 bytes follow
        ("00A4020002EF05AABB", TerminalReason.APDU_BAD_LENGTH),  # one byte too many after Le
        ("00B000000000", TerminalReason.APDU_BAD_LENGTH),  # extended length cut short
        ("00DA0000000000AA", TerminalReason.APDU_BAD_LENGTH),  # extended Lc = 0 with data present
        ("00DA0000000003AABB", TerminalReason.APDU_BAD_LENGTH),  # extended Lc 3, 2 bytes
    ],
)
def test_malformed_commands_are_refused_with_a_reason(
    hex_apdu: str, reason: TerminalReason
) -> None:
    with pytest.raises(TerminalError) as caught:
        decode_command(bytes.fromhex(hex_apdu))
    assert caught.value.reason is reason


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(TerminalError) as caught:
        decode_command(b"\x00" * (MAX_COMMAND_BYTES + 1))
    assert caught.value.reason is TerminalReason.APDU_TOO_LONG


@pytest.mark.parametrize(
    "apdu",
    [
        CommandApdu(0x100, 0, 0, 0),
        CommandApdu(0, 0, 0, 0, b"x" * 256),
        CommandApdu(0, 0, 0, 0, le=257),
        CommandApdu(0, 0, 0, 0, le=0),
        CommandApdu(0, 0, 0, 0, extended=True),
    ],
)
def test_impossible_commands_cannot_be_built(apdu: CommandApdu) -> None:
    with pytest.raises(TerminalError) as caught:
        encode_command(apdu)
    assert caught.value.reason is TerminalReason.APDU_BAD_FIELD


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_responses_round_trip(data: bytes, sw: int) -> None:
    response = ResponseApdu(data, sw)
    assert decode_response(response.encode()) == response


def test_a_response_without_status_word_is_truncated() -> None:
    with pytest.raises(TerminalError) as caught:
        decode_response(b"\x90")
    assert caught.value.reason is TerminalReason.APDU_TRUNCATED


def test_status_word_builders() -> None:
    assert more_data(0x13) == 0x6113
    assert more_data(300) == 0x6100
    assert wrong_le(11) == 0x6C0B
    assert verification_failed(2) == 0x63C2
    assert ResponseApdu(b"", 0x6A82).sw1 == 0x6A and ResponseApdu(b"", 0x6A82).sw2 == 0x82
