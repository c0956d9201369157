"""The virtual card answers the APDUs real reader code sends, as a social security card does."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecard.terminal import psam, tlv
from ecard.terminal.apdu import SW
from ecard.terminal.card_model import SSSE_DF_NAME, Access, parse_record
from ecard.terminal.virtual_card import ATR, VirtualCard, encode_pin
from tests.terminal.helpers import FACTS, MASTERS, SELECT_SSSE, CountingRandom, send

CARD_ID = FACTS.card_identification_code


def _external_authenticate(card: VirtualCard) -> int:
    challenge, sw = send(card, "0084000008")
    assert sw == SW.OK and len(challenge) == 8
    cryptogram = psam.external_authenticate_cryptogram(MASTERS, CARD_ID, challenge)
    return send(card, bytes.fromhex("0082000010") + cryptogram)[1]


def test_the_atr_is_a_well_formed_t1_atr() -> None:
    assert ATR[0] == 0x3B and ATR[2] == 0x01  # direct convention, TD1 says T=1
    check = 0
    for byte in ATR[1:]:
        check ^= byte
    assert check == 0  # TCK


def test_the_ssse_read_sequence_of_real_reader_code(card: VirtualCard) -> None:
    assert send(card, SELECT_SSSE)[1] == 0x6113  # FCI waits for GET RESPONSE (T=0 style)
    fci, sw = send(card, "00C0000013")
    assert sw == SW.OK
    assert tlv.decode_one(fci).find(0x84).value == SSSE_DF_NAME
    assert send(card, "00A4020002EF05") == (b"", SW.OK)
    for tag in range(1, 8):
        record, sw = send(card, f"00B2{tag:02X}0400")
        item, fact = parse_record(record)
        assert sw == SW.OK and getattr(FACTS, item.field) == fact


def test_card_number_by_sfi_straight_after_selecting_ssse(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    assert send(card, "00B2072C0B") == (b"\x07\x09A12345678", SW.OK)  # exact Le
    assert send(card, "00B2072C00") == (b"\x07\x09A12345678", SW.OK)  # Le 00: up to 256


def test_wrong_le_gets_6cxx_with_the_exact_length(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    assert send(card, "00B2072C05") == (b"", 0x6C0B)


def test_sfi_files_are_not_found_outside_the_ssse(card: VirtualCard) -> None:
    assert send(card, "00B2072C00")[1] == SW.FILE_NOT_FOUND


def test_holder_data_needs_external_authentication(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    assert send(card, "00A4020002EF06") == (b"", SW.OK)
    assert send(card, "00B2080014")[1] == SW.SECURITY_STATUS_NOT_SATISFIED
    assert _external_authenticate(card) == SW.OK
    record, sw = send(card, "00B2080014")  # by data-item tag, as reader code reads EF06
    assert sw == SW.OK and parse_record(record)[1] == FACTS.social_security_number
    record, sw = send(card, "00B2020400")  # by record number
    assert sw == SW.OK and parse_record(record)[1] == FACTS.name
    assert parse_record(send(card, "00B20D0006")[0])[1] == FACTS.birth_date


def test_leaving_the_application_drops_the_security_state(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    _external_authenticate(card)
    send(card, "00A40000023F00")
    send(card, SELECT_SSSE)
    assert send(card, "00B2013400")[1] == SW.SECURITY_STATUS_NOT_SATISFIED
    card.reset()
    send(card, SELECT_SSSE)
    assert send(card, "00B2013400")[1] == SW.SECURITY_STATUS_NOT_SATISFIED


def test_a_challenge_is_single_use(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    challenge = send(card, "0084000008")[0]
    cryptogram = psam.external_authenticate_cryptogram(MASTERS, CARD_ID, challenge)
    assert send(card, bytes.fromhex("0082000010") + cryptogram)[1] == SW.OK
    assert (
        send(card, bytes.fromhex("0082000010") + cryptogram)[1]
        == SW.CONDITIONS_OF_USE_NOT_SATISFIED
    )
    send(card, "0084000008")  # a fresh challenge does not revive the old cryptogram
    assert send(card, bytes.fromhex("0082000010") + cryptogram)[1] == SW.AUTHENTICATION_FAILED
    assert send(card, "00B2013400")[1] == SW.SECURITY_STATUS_NOT_SATISFIED


def test_a_challenge_does_not_survive_another_command(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    challenge = send(card, "0084000010")[0]
    send(card, "00B2072C00")
    cryptogram = psam.external_authenticate_cryptogram(MASTERS, CARD_ID, challenge)
    assert (
        send(card, bytes.fromhex("0082000010") + cryptogram)[1]
        == SW.CONDITIONS_OF_USE_NOT_SATISFIED
    )


def test_a_cryptogram_from_the_wrong_key_fails(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    challenge = send(card, "0084000008")[0]
    other = psam.MasterKeys(internal_auth=bytes(16), external_auth=bytes(16))
    forged = psam.external_authenticate_cryptogram(other, CARD_ID, challenge)
    assert send(card, bytes.fromhex("0082000010") + forged)[1] == SW.AUTHENTICATION_FAILED


@pytest.mark.parametrize("size", [8, 16])
def test_internal_authenticate_proves_the_card_genuine(card: VirtualCard, size: int) -> None:
    challenge = bytes(range(size))
    assert send(card, bytes([0x00, 0x88, 0x00, 0x00, size]) + challenge)[1] == 0x6110
    answer, sw = send(card, "00C0000010")
    assert sw == SW.OK
    assert psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, answer)
    answer, sw = send(card, bytes([0x00, 0x88, 0x00, 0x00, size]) + challenge + b"\x00")
    assert sw == SW.OK and psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, answer)


def test_pin_retry_counter_and_lock(card: VirtualCard) -> None:
    wrong, right = encode_pin("000000").hex(), encode_pin("123456").hex()
    assert send(card, "00200000")[1] == 0x63C3
    assert send(card, f"0020000003{wrong}")[1] == 0x63C2
    assert send(card, f"0020000003{right}")[1] == SW.OK  # a right PIN resets the counter
    assert send(card, "00200000")[1] == SW.OK
    assert [send(card, f"0020000003{wrong}")[1] for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert send(card, f"0020000003{right}")[1] == SW.AUTHENTICATION_METHOD_BLOCKED
    card.reset()
    assert send(card, f"0020000003{right}")[1] == SW.AUTHENTICATION_METHOD_BLOCKED  # non-volatile


def test_holder_data_can_also_require_the_pin() -> None:
    keys = psam.derive_card_keys(MASTERS, CARD_ID)
    card = VirtualCard(
        FACTS,
        keys,
        personal_data_access=Access.EXTERNAL_AUTH_AND_PIN,
        random_bytes=CountingRandom(),
    )
    send(card, SELECT_SSSE)
    _external_authenticate(card)
    assert send(card, "00B2013400")[1] == SW.SECURITY_STATUS_NOT_SATISFIED
    send(card, f"0020000003{encode_pin('123456').hex()}")
    assert send(card, "00B2013400")[1] == SW.OK


def test_read_binary_of_ef_dir(card: VirtualCard) -> None:
    body, sw = send(card, "00B09E0000")  # SFI 1E, offset 0, Le 256
    assert sw == SW.OK and tlv.decode_one(body).find(0x4F).value == SSSE_DF_NAME
    assert send(card, "00B09E0004") == (body[:4], SW.OK)
    assert send(card, "00B0000204") == (body[2:6], SW.OK)  # current EF after the SFI read
    assert send(card, f"00B000{len(body) - 1:02X}08") == (body[-1:], SW.END_OF_FILE)
    assert send(card, "00B000FF01")[1] == SW.WRONG_P1_P2  # offset beyond the end


@pytest.mark.parametrize(
    ("hex_command", "sw"),
    [
        ("80A4040000", SW.CLA_NOT_SUPPORTED),
        ("00FF000000", SW.INS_NOT_SUPPORTED),
        ("00A4", SW.WRONG_LENGTH),  # truncated APDU
        ("00A404000F7378", SW.WRONG_LENGTH),  # Lc disagrees with the data
        ("00A4040004AABBCCDD", SW.FILE_NOT_FOUND),  # unknown DF name
        ("00A4020002EF07", SW.FILE_NOT_FOUND),
        ("00A4020001EF", SW.WRONG_LENGTH),
        ("00A4080000", SW.INCORRECT_P1_P2),
        ("00A4040108AABBCCDDEEFF0011", SW.INCORRECT_P1_P2),
        ("00B2010400", SW.COMMAND_NOT_ALLOWED_NO_CURRENT_EF),
        ("00B201FC00", SW.INCORRECT_P1_P2),  # SFI 31 is reserved
        ("00B2010500", SW.INCORRECT_P1_P2),  # read-all modes are not supported
        ("00B20104", SW.WRONG_LENGTH),  # no Le
        ("00B201F400", SW.INCOMPATIBLE_FILE_STRUCTURE),  # READ RECORD on the transparent EF.DIR
        ("00B0850000", SW.FILE_NOT_FOUND),
        ("0084000004", SW.WRONG_LENGTH),  # challenges are 8 or 16 bytes
        ("00C0000010", SW.CONDITIONS_OF_USE_NOT_SATISFIED),  # nothing to get
        ("0082000010" + "00" * 16, SW.CONDITIONS_OF_USE_NOT_SATISFIED),  # no challenge asked
        ("0082000008" + "00" * 8, SW.WRONG_LENGTH),
        ("00880000040000", SW.WRONG_LENGTH),
        ("00200100", SW.INCORRECT_P1_P2),
    ],
)
def test_bad_commands_get_the_standard_status_word(
    card: VirtualCard, hex_command: str, sw: int
) -> None:
    assert send(card, hex_command)[1] == sw


def test_missing_records_and_transparent_reads_of_record_files(card: VirtualCard) -> None:
    send(card, SELECT_SSSE)
    assert send(card, "00B2083000")[1] == SW.SECURITY_STATUS_NOT_SATISFIED
    assert send(card, "00B2092C00")[1] == SW.RECORD_NOT_FOUND
    assert send(card, "00B2082C00")[1] == SW.RECORD_NOT_FOUND  # EF05 holds items 01..07 only
    assert send(card, "00B0850000")[1] == SW.INCOMPATIBLE_FILE_STRUCTURE


def test_select_returns_fcp_on_request(card: VirtualCard) -> None:
    fcp, sw = send(card, "00A404040F" + SELECT_SSSE[5:].hex() + "00")
    assert sw == SW.OK and tlv.decode_one(fcp).find(0x84).value == SSSE_DF_NAME
    fcp, sw = send(card, "00A4020402EF0500")
    assert sw == SW.OK and tlv.decode_one(fcp).find(0x88).value == b"\x05"
    assert send(card, "00A4040C0F" + SELECT_SSSE[5:].hex()) == (b"", SW.OK)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_command_streams_always_get_a_status_word(
    card: VirtualCard, commands: list[bytes]
) -> None:
    card.reset()
    send(card, SELECT_SSSE)
    for command in commands:
        response = card.transmit(command)
        assert len(response) >= 2
    # noise never authenticates
    assert send(card, "00B2013400")[1] == SW.SECURITY_STATUS_NOT_SATISFIED
