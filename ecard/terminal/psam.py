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
"""

from __future__ import annotations

import hmac

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ecard.terminal.errors import TerminalError, TerminalReason

SM4_KEY_BYTES = 16
SM4_BLOCK_BYTES = 16
CHALLENGE_SIZES = (8, 16)
CARD_IDENTIFICATION_CODE_BYTES = 16


class _SecretKeys(msgspec.Struct, frozen=True):
    internal_auth: bytes
    external_auth: bytes

    def __repr__(self) -> str:  # keys must never reach a log line
        return f"{type(self).__name__}(<redacted>)"


class MasterKeys(_SecretKeys, frozen=True):
    """The issuer's master keys (held by the platform / PSAM, never by a card)."""


class CardKeys(_SecretKeys, frozen=True):
    """One card's diversified keys (what the chip holds)."""


def _sm4_ecb_block(key: bytes, block: bytes) -> bytes:
    if len(key) != SM4_KEY_BYTES:
        raise TerminalError(TerminalReason.BAD_KEY, f"SM4 keys are {SM4_KEY_BYTES} bytes")
    # one block with the card's diversified key, as the card computes it (not a message mode)
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()  # noqa: S305
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


def derive_card_key(master_key: bytes, card_identification_code: str) -> bytes:
    """The card's key: SM4-ECB of its 16-byte card identification code under the master key."""
    return _sm4_ecb_block(master_key, _card_id_bytes(card_identification_code))


def derive_card_keys(masters: MasterKeys, card_identification_code: str) -> CardKeys:
    return CardKeys(
        internal_auth=derive_card_key(masters.internal_auth, card_identification_code),
        external_auth=derive_card_key(masters.external_auth, card_identification_code),
    )


def pad_challenge(challenge: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2 of an 8- or 16-byte challenge: ``80`` then ``00`` up to a
    whole number of SM4 blocks (16 or 32 bytes).  Always padded, so injective: no two challenges
    of any accepted lengths share a padded form."""
    if len(challenge) not in CHALLENGE_SIZES:
        raise TerminalError(TerminalReason.BAD_CHALLENGE, "challenges are 8 or 16 bytes")
    padded = challenge + b"\x80"
    return padded + b"\x00" * (-len(padded) % SM4_BLOCK_BYTES)


def authentication_cryptogram(card_key: bytes, challenge: bytes) -> bytes:
    """SM4 CBC-MAC (zero IV, the last block) over the padded challenge: the card's INTERNAL
    AUTHENTICATE answer under its internal key, the terminal's EXTERNAL AUTHENTICATE cryptogram
    under the external key.  16 bytes either way."""
    padded = pad_challenge(challenge)
    if len(card_key) != SM4_KEY_BYTES:
        raise TerminalError(TerminalReason.BAD_KEY, f"SM4 keys are {SM4_KEY_BYTES} bytes")
    encryptor = Cipher(algorithms.SM4(card_key), modes.CBC(bytes(SM4_BLOCK_BYTES))).encryptor()
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
