"""The platform's half of card authentication: keys per card, answers only the genuine card gives,
for exactly the challenge it was given."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_every_challenge_is_padded_by_iso_9797_method_2() -> None:
    assert psam.pad_challenge(b"\x01" * 8) == b"\x01" * 8 + b"\x80" + b"\x00" * 7
    assert psam.pad_challenge(b"\x01" * 16) == b"\x01" * 16 + b"\x80" + b"\x00" * 15


def test_known_answers() -> None:
    """Pinned values: an 8-byte challenge's answer is the one SM4-ECB block of its padded form (as
    before), a 16-byte challenge's the SM4 CBC-MAC of its two padded blocks."""
    key = bytes(range(16))
    ecb = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()  # noqa: S305 - the card's own scheme
    eight = bytes(range(8))
    assert psam.authentication_cryptogram(key, eight) == ecb.update(eight + b"\x80" + bytes(7))
    sixteen = bytes(range(16))
    first = ecb.update(sixteen)
    second = ecb.update(bytes(a ^ b for a, b in zip(first, b"\x80" + bytes(15), strict=True)))
    assert psam.authentication_cryptogram(key, sixteen) == second


def padded_twin(challenge: bytes) -> bytes:
    """The 16-byte challenge whose one block is the 8-byte challenge's old padded block."""
    return challenge + b"\x80" + bytes(7)


def test_an_answer_for_a_challenge_is_no_answer_for_its_padded_twin() -> None:
    """C (8 bytes) and C || 80 00.. (16 bytes) once shared one padded block and so one answer: a
    captured authentication could be relayed again under the twin.  Now the answers differ."""
    keys = psam.derive_card_keys(MASTERS, CARD_ID)
    challenge = bytes.fromhex("0102030405060708")
    answer = psam.authentication_cryptogram(keys.internal_auth, challenge)
    assert psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, answer)
    assert not psam.verify_internal_authenticate(MASTERS, CARD_ID, padded_twin(challenge), answer)
    twin_answer = psam.authentication_cryptogram(keys.internal_auth, padded_twin(challenge))
    assert not psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, twin_answer)
    external = psam.external_authenticate_cryptogram(MASTERS, CARD_ID, challenge)
    assert external != psam.external_authenticate_cryptogram(
        MASTERS, CARD_ID, padded_twin(challenge)
    )


CHALLENGES = st.one_of(st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16))


@settings(max_examples=300, deadline=None)
@given(one=CHALLENGES, other=CHALLENGES)
def test_padding_is_injective_and_answers_bind_the_exact_challenge(
    one: bytes, other: bytes
) -> None:
    keys = psam.derive_card_keys(MASTERS, CARD_ID)
    answer = psam.authentication_cryptogram(keys.internal_auth, one)
    assert len(answer) == psam.SM4_BLOCK_BYTES
    assert psam.verify_internal_authenticate(MASTERS, CARD_ID, one, answer)
    for candidate in (other, padded_twin(one[:8]) if len(one) == 8 else one[:8]):
        if candidate != one:
            assert psam.pad_challenge(candidate) != psam.pad_challenge(one)
            assert not psam.verify_internal_authenticate(MASTERS, CARD_ID, candidate, answer)


@settings(max_examples=200, deadline=None)
@given(challenge=st.binary(max_size=40))
def test_only_eight_and_sixteen_byte_challenges_are_taken(challenge: bytes) -> None:
    keys = psam.derive_card_keys(MASTERS, CARD_ID)
    if len(challenge) in psam.CHALLENGE_SIZES:
        assert len(psam.pad_challenge(challenge)) in (16, 32)
        return
    with pytest.raises(TerminalError) as caught:
        psam.authentication_cryptogram(keys.internal_auth, challenge)
    assert caught.value.reason is TerminalReason.BAD_CHALLENGE
    with pytest.raises(TerminalError):
        psam.verify_internal_authenticate(MASTERS, CARD_ID, challenge, bytes(16))


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
