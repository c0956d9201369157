"""The platform's half of card authentication: keys per card, answers only the genuine card gives."""

from __future__ import annotations

import pytest

from ecard.terminal import psam
from ecard.terminal.errors import TerminalError, TerminalReason
from tests.terminal.helpers import FACTS, MASTERS

CARD_ID = FACTS.card_identification_code


def test_each_card_gets_its_own_keys() -> None:
    other = "330300D15600000599110146FFFFFFFF"
    mine, theirs = psam.derive_card_keys(MASTERS, CARD_ID), psam.derive_card_keys(MASTERS, other)
    assert mine.internal_auth != theirs.internal_auth
    assert mine.internal_auth != mine.external_auth


@pytest.mark.parametrize("challenge", [bytes(range(8)), bytes(range(16))])
def test_the_genuine_answer_verifies_and_others_do_not(challenge: bytes) -> None:
    keys = psam.derive_card_keys(MASTERS, CARD_ID)
    answer = psam.authentication_cryptogram(keys.internal_auth, challenge)
    assert psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, answer)
    assert not psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge[::-1], answer)
    assert not psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, answer[:-1] + b"\x00")
    clone = psam.derive_card_keys(psam.MasterKeys(b"\x00" * 16, b"\x00" * 16), CARD_ID)
    forged = psam.authentication_cryptogram(clone.internal_auth, challenge)
    assert not psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, forged)


def test_the_internal_answer_never_opens_the_card() -> None:
    keys = psam.derive_card_keys(MASTERS, CARD_ID)
    challenge = bytes(8)
    internal = psam.authentication_cryptogram(keys.internal_auth, challenge)
    assert internal != psam.external_authenticate_cryptogram(MASTERS, CARD_ID, challenge)


def test_eight_byte_challenges_are_padded_by_iso_9797_method_2() -> None:
    assert psam.pad_challenge(b"\x01" * 8) == b"\x01" * 8 + b"\x80" + b"\x00" * 7


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: psam.pad_challenge(b"\x00" * 4), TerminalReason.BAD_CHALLENGE),
        (lambda: psam.derive_card_key(b"short", CARD_ID), TerminalReason.BAD_KEY),
        (lambda: psam.derive_card_key(bytes(16), "not hex"), TerminalReason.BAD_CARD_FACTS),
        (lambda: psam.derive_card_key(bytes(16), "AB"), TerminalReason.BAD_CARD_FACTS),
    ],
)
def test_bad_inputs_are_typed_errors(call, reason: TerminalReason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TerminalError) as caught:
        call()
    assert caught.value.reason is reason


def test_key_material_is_not_printed() -> None:
    keys = psam.derive_card_keys(MASTERS, CARD_ID)
    assert keys.internal_auth.hex() not in repr(keys) and str(keys.internal_auth) not in repr(keys)
