"""The platform's half of card authentication (卡认证), the role a terminal's PSAM plays.

Every card holds two SM4 keys diversified from the issuer's master keys by its card
identification code (卡识别码): one for INTERNAL AUTHENTICATE (the card proves it is genuine) and
one for EXTERNAL AUTHENTICATE (the terminal proves it may read protected files).  Keeping the two
apart means a card can never be made to compute, through INTERNAL AUTHENTICATE, the cryptogram
that would open its own protected files.

Both answers are an SM4 CBC-MAC (ISO/IEC 9797-1 MAC algorithm 1, zero IV, 16 bytes) over the
challenge *always* padded by ISO/IEC 9797-1 method 2 (``80`` then ``00`` to a whole block): an
8-byte challenge is one block, a 16-byte one two (the second ``80 00..``).  Padding every length
makes the padded message determine the challenge exactly, so an 8-byte challenge ``C`` and the
16-byte ``C || 80 00 00 00 00 00 00 00`` get different answers: an answer captured for one is no
answer for the other.  (Padding only the 8-byte challenges, as this module once did, gave both the
same block, and a captured authentication could be relayed a second time under the padded twin.)
For 8-byte challenges the answer is the single SM4-ECB block it always was.

Real cards use keys and diversification of the national key system, which are not public: this is
a faithful shape, not the real key hierarchy.  Pure: no I/O.

The platform plays this role through a :class:`CardKeyRole` ("derive a card's keys, compute or
check a cryptogram"): :class:`SoftwareCardKeys` here (master keys in memory; development and the
virtual card), or a PKCS#11 token holding the master keys (:mod:`ecard.crypto.provider.pkcs11`).
The block cipher is SM4 (GM/T 0002) as on real cards; a token without SM4 (SoftHSM2) runs the same
protocol with AES-128 (``cipher="AES"``), and a card personalised by it computes with AES too.
``docs/terminal-card-model.md`` says what a real PSAM/HSM plugs in.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Literal, Protocol

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ecard.terminal.errors import TerminalError, TerminalReason

SM4_KEY_BYTES = 16
SM4_BLOCK_BYTES = 16
CHALLENGE_SIZES = (8, 16)
CARD_IDENTIFICATION_CODE_BYTES = 16

#: the card's block cipher: SM4 on real cards; AES-128 where the key system has no SM4 (SoftHSM2)
Cipher128 = Literal["SM4", "AES"]
Purpose = Literal["internal", "external"]


class _SecretKeys(msgspec.Struct, frozen=True):
    internal_auth: bytes
    external_auth: bytes

    def __repr__(self) -> str:  # keys must never reach a log line
        return f"{type(self).__name__}(<redacted>)"


class MasterKeys(_SecretKeys, frozen=True):
    """The issuer's master keys (held by the platform / PSAM, never by a card)."""


class CardKeys(_SecretKeys, frozen=True):
    """One card's diversified keys (what the chip holds) and the block cipher it computes with."""

    cipher: Cipher128 = "SM4"


def _algorithm(cipher: Cipher128, key: bytes) -> algorithms.SM4 | algorithms.AES128:
    if len(key) != SM4_KEY_BYTES:
        raise TerminalError(TerminalReason.BAD_KEY, f"card keys are {SM4_KEY_BYTES} bytes")
    return algorithms.SM4(key) if cipher == "SM4" else algorithms.AES128(key)


def _sm4_ecb_block(key: bytes, block: bytes, cipher: Cipher128 = "SM4") -> bytes:
    # one block with the card's diversified key, as the card computes it (not a message mode)
    encryptor = Cipher(_algorithm(cipher, key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def _card_id_bytes(card_identification_code: str) -> bytes:
    try:
        raw = bytes.fromhex(card_identification_code)
    except ValueError:
        raw = b""
    if len(raw) != CARD_IDENTIFICATION_CODE_BYTES:
        raise TerminalError(
            TerminalReason.BAD_CARD_FACTS, "a card identification code is 32 hex digits"
        )
    return raw


def card_id_bytes(card_identification_code: str) -> bytes:
    """The 16 bytes a card key is diversified by; refuses anything but 32 hex digits."""
    return _card_id_bytes(card_identification_code)


def derive_card_key(
    master_key: bytes, card_identification_code: str, cipher: Cipher128 = "SM4"
) -> bytes:
    """The card's key: SM4-ECB of its 16-byte card identification code under the master key."""
    return _sm4_ecb_block(master_key, _card_id_bytes(card_identification_code), cipher)


def derive_card_keys(
    masters: MasterKeys, card_identification_code: str, cipher: Cipher128 = "SM4"
) -> CardKeys:
    return CardKeys(
        internal_auth=derive_card_key(masters.internal_auth, card_identification_code, cipher),
        external_auth=derive_card_key(masters.external_auth, card_identification_code, cipher),
        cipher=cipher,
    )


def pad_challenge(challenge: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2 of an 8- or 16-byte challenge: ``80`` then ``00`` up to a
    whole number of SM4 blocks (16 or 32 bytes).  Always padded, so injective: no two challenges
    of any accepted lengths share a padded form."""
    if len(challenge) not in CHALLENGE_SIZES:
        raise TerminalError(TerminalReason.BAD_CHALLENGE, "challenges are 8 or 16 bytes")
    padded = challenge + b"\x80"
    return padded + b"\x00" * (-len(padded) % SM4_BLOCK_BYTES)


def authentication_cryptogram(
    card_key: bytes, challenge: bytes, cipher: Cipher128 = "SM4"
) -> bytes:
    """SM4 CBC-MAC (zero IV, the last block) over the padded challenge: the card's INTERNAL
    AUTHENTICATE answer under its internal key, the terminal's EXTERNAL AUTHENTICATE cryptogram
    under the external key.  16 bytes either way."""
    padded = pad_challenge(challenge)
    algorithm = _algorithm(cipher, card_key)
    encryptor = Cipher(algorithm, modes.CBC(bytes(SM4_BLOCK_BYTES))).encryptor()
    return (encryptor.update(padded) + encryptor.finalize())[-SM4_BLOCK_BYTES:]


def verify_internal_authenticate(
    masters: MasterKeys, card_identification_code: str, challenge: bytes, answer: bytes
) -> bool:
    """Is ``answer`` what the genuine card with this identification code returns for
    ``challenge``?"""
    card_key = derive_card_key(masters.internal_auth, card_identification_code)
    return hmac.compare_digest(authentication_cryptogram(card_key, challenge), answer)


def external_authenticate_cryptogram(
    masters: MasterKeys, card_identification_code: str, card_challenge: bytes
) -> bytes:
    """What a terminal sends in EXTERNAL AUTHENTICATE after GET CHALLENGE returned
    ``card_challenge``."""
    card_key = derive_card_key(masters.external_auth, card_identification_code)
    return authentication_cryptogram(card_key, card_challenge)


# --- the PSAM role as the platform plays it ----------------------------------------------------


class CardKeyRole(Protocol):
    """What a card key system does for the platform (a PSAM, or an HSM holding the issuer's card
    master keys).  Every method names the issuing region (its master keys) and the card by its
    32-hex-digit card identification code; the master keys never leave the role."""

    #: the block cipher of the cards it personalises: ``SM4`` (real key systems) or ``AES``
    cipher: Cipher128

    def card_keys(self, region: str, card_identification_code: str) -> CardKeys:
        """Personalisation: the card's two diversified keys, to be written into its chip."""
        ...

    def verify_internal_authenticate(
        self, region: str, card_identification_code: str, challenge: bytes, answer: bytes
    ) -> bool:
        """卡认证: is ``answer`` the genuine card's INTERNAL AUTHENTICATE answer to the
        ``challenge``?"""
        ...

    def external_authenticate_cryptogram(
        self, region: str, card_identification_code: str, card_challenge: bytes
    ) -> bytes:
        """The 16-byte EXTERNAL AUTHENTICATE cryptogram for the card's ``card_challenge``."""
        ...


class SoftwareCardKeys:
    """The role with master keys in memory (``masters(region)``): development, the virtual card,
    and a terminal's offline PSAM in tests."""

    def __init__(self, masters: Callable[[str], MasterKeys], cipher: Cipher128 = "SM4") -> None:
        self._masters = masters
        self.cipher: Cipher128 = cipher

    def card_keys(self, region: str, card_identification_code: str) -> CardKeys:
        return derive_card_keys(self._masters(region), card_identification_code, self.cipher)

    def verify_internal_authenticate(
        self, region: str, card_identification_code: str, challenge: bytes, answer: bytes
    ) -> bool:
        card_key = derive_card_key(
            self._masters(region).internal_auth, card_identification_code, self.cipher
        )
        expected = authentication_cryptogram(card_key, challenge, self.cipher)
        return hmac.compare_digest(expected, answer)

    def external_authenticate_cryptogram(
        self, region: str, card_identification_code: str, card_challenge: bytes
    ) -> bytes:
        card_key = derive_card_key(
            self._masters(region).external_auth, card_identification_code, self.cipher
        )
        return authentication_cryptogram(card_key, card_challenge, self.cipher)
