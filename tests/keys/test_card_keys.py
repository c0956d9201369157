"""The PSAM role behind the key provider: a card personalised by the role authenticates to it, in
software (SM4, master keys derived from the keyring) and in a PKCS#11 token (AES-128 in SoftHSM2,
master keys non-extractable), with the same APDU protocol."""

from __future__ import annotations

import os

import pkcs11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from ecard.crypto.keyring import Keyring
from ecard.crypto.provider import KeyProvider, KeyProviderUnavailable, open_key_provider
from ecard.crypto.provider.pkcs11 import Pkcs11KeyProvider, card_master_label
from ecard.terminal import psam
from ecard.terminal.apdu import SW
from ecard.terminal.service import issuer_master_keys
from ecard.terminal.virtual_card import VirtualCard
from tests.keys.conftest import SoftHsm
from tests.terminal.helpers import FACTS, SELECT_SSSE, send

CARD_ID = FACTS.card_identification_code
RING = Keyring.create(["330000"])


@pytest.fixture(params=["file", "pkcs11"])
def provider(request: pytest.FixtureRequest) -> KeyProvider:
    if request.param == "file":
        return open_key_provider("file")
    hsm: Pkcs11KeyProvider = request.getfixturevalue("hsm_provider")
    hsm.ensure_card_masters("330000")
    return hsm


def role(provider: KeyProvider) -> psam.CardKeyRole:
    return provider.card_keys(lambda: RING)


def internal_authenticate(card: VirtualCard, challenge: bytes) -> bytes:
    answer, sw = send(card, bytes([0x00, 0x88, 0x00, 0x00, len(challenge)]) + challenge + b"\x00")
    assert sw == SW.OK
    return answer


def test_a_card_personalised_by_the_role_authenticates_both_ways(provider: KeyProvider) -> None:
    card_keys = role(provider)
    card = VirtualCard(FACTS, card_keys.card_keys("330000", CARD_ID))
    assert send(card, SELECT_SSSE)[1] in (SW.OK, 0x6113)
    for size in psam.CHALLENGE_SIZES:
        challenge = os.urandom(size)
        answer = internal_authenticate(card, challenge)
        assert card_keys.verify_internal_authenticate("330000", CARD_ID, challenge, answer)
        assert not card_keys.verify_internal_authenticate(
            "330000", CARD_ID, os.urandom(size), answer
        )
    card_challenge, sw = send(card, "0084000008")
    assert sw == SW.OK
    cryptogram = card_keys.external_authenticate_cryptogram("330000", CARD_ID, card_challenge)
    assert send(card, bytes.fromhex("0082000010") + cryptogram)[1] == SW.OK


def test_a_card_of_other_master_keys_is_refused(provider: KeyProvider) -> None:
    clone = VirtualCard(
        FACTS,
        psam.derive_card_keys(
            psam.MasterKeys(bytes(16), bytes(16)), CARD_ID, role(provider).cipher
        ),
    )
    challenge = os.urandom(8)
    answer = internal_authenticate(clone, challenge)
    assert not role(provider).verify_internal_authenticate("330000", CARD_ID, challenge, answer)


def test_the_file_role_is_todays_sm4_derivation() -> None:
    """Cards and terminals personalised before the provider existed keep working."""
    masters = issuer_master_keys(RING, "330000")
    software = role(open_key_provider("file"))
    assert software.cipher == "SM4"
    assert software.card_keys("330000", CARD_ID) == psam.derive_card_keys(masters, CARD_ID)
    challenge = os.urandom(16)
    assert software.external_authenticate_cryptogram(
        "330000", CARD_ID, challenge
    ) == psam.external_authenticate_cryptogram(masters, CARD_ID, challenge)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(card_id=st.binary(min_size=16, max_size=16), challenge=st.sampled_from([8, 16]))
def test_the_token_computes_what_the_card_it_personalised_computes(
    hsm_provider: Pkcs11KeyProvider, card_id: bytes, challenge: int
) -> None:
    hsm_provider.ensure_card_masters("330000")
    token_role = role(hsm_provider)
    code, data = card_id.hex().upper(), os.urandom(challenge)
    keys = token_role.card_keys("330000", code)
    assert keys.cipher == "AES" and keys.internal_auth != keys.external_auth
    assert token_role.external_authenticate_cryptogram(
        "330000", code, data
    ) == psam.authentication_cryptogram(keys.external_auth, data, "AES")
    answer = psam.authentication_cryptogram(keys.internal_auth, data, "AES")
    assert token_role.verify_internal_authenticate("330000", code, data, answer)


def test_master_keys_stay_in_the_token(hsm_provider: Pkcs11KeyProvider, softhsm: SoftHsm) -> None:
    hsm_provider.ensure_card_masters("330000")
    assert hsm_provider.ensure_card_masters("330000") is False  # present: nothing made
    lib = pkcs11.lib(softhsm.module)
    with lib.get_token(token_label=softhsm.token_label).open() as session:
        for purpose in ("internal", "external"):
            master = session.get_key(
                object_class=ObjectClass.SECRET_KEY, label=card_master_label("330000", purpose)
            )
            assert master[Attribute.EXTRACTABLE] is False and master[Attribute.SENSITIVE] is True
            assert master[Attribute.ENCRYPT] is False  # only diversification, no raw cipher
            with pytest.raises(p11.AttributeSensitive):
                master[Attribute.VALUE]


def test_a_region_without_master_keys_in_the_token_is_unavailable(
    hsm_provider: Pkcs11KeyProvider,
) -> None:
    with pytest.raises(KeyProviderUnavailable, match="card master key"):
        role(hsm_provider).external_authenticate_cryptogram("990000", CARD_ID, bytes(8))


def test_malformed_card_facts_are_refused_before_the_token(
    hsm_provider: Pkcs11KeyProvider,
) -> None:
    from ecard.terminal.errors import TerminalError

    with pytest.raises(TerminalError):
        role(hsm_provider).external_authenticate_cryptogram("330000", "zz", bytes(8))
    with pytest.raises(TerminalError):
        role(hsm_provider).external_authenticate_cryptogram("330000", CARD_ID, bytes(9))
