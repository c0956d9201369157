"""A virtual social security card that answers terminals' APDUs as the card model says a real one
does.

Built from :class:`~ecard.terminal.card_model.CardFacts` (so its data can match the registry) and
the card's diversified keys.  It answers SELECT (by FID, by child EF FID, by DF name), READ RECORD
(by SFI, from the current EF; by record number or by data-item tag), READ BINARY, GET RESPONSE,
VERIFY (PIN, retry counter, lock), GET CHALLENGE, INTERNAL AUTHENTICATE and EXTERNAL AUTHENTICATE,
with ISO 7816-4 status words.  Malformed APDUs get a status word, never an exception.

Volatile state (current DF/EF, security state, the last challenge, pending response bytes) is
lost on :meth:`VirtualCard.reset`; the PIN retry counter is non-volatile, as on a chip.
No I/O: randomness comes from an injectable ``random_bytes``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from ecard.terminal import psam, tlv
from ecard.terminal.apdu import (
    EXTENDED_MAX_LE,
    SHORT_MAX_LE,
    SW,
    CommandApdu,
    ResponseApdu,
    decode_command,
    more_data,
    verification_failed,
    wrong_le,
)
from ecard.terminal.card_model import (
    Access,
    CardFacts,
    DedicatedFile,
    ElementaryFile,
    FileStructure,
    build_file_tree,
)
from ecard.terminal.errors import TerminalError, TerminalReason

INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2
INS_READ_BINARY = 0xB0
INS_GET_RESPONSE = 0xC0
INS_VERIFY = 0x20
INS_GET_CHALLENGE = 0x84
INS_INTERNAL_AUTHENTICATE = 0x88
INS_EXTERNAL_AUTHENTICATE = 0x82

DEFAULT_PIN_TRIES = 3
PIN_DIGITS = range(4, 13)
_NO_DATA = b""
_DF_DESCRIPTOR = 0x38  # file descriptor byte of a DF (ISO 7816-4 table 12)


def _historical_bytes() -> bytes:
    # category indicator 80, then COMPACT-TLV 5x "card issuer's data": "ECARDSSC"
    issuer_data = b"ECARDSSC"
    return bytes((0x80, 0x50 | len(issuer_data))) + issuer_data


def build_atr() -> bytes:
    """A T=1 ATR (ISO 7816-3): TS 3B, T0 (TD1 present, K historical bytes), TD1 = T=1, TCK."""
    historical = _historical_bytes()
    body = bytes((0x80 | len(historical), 0x01)) + historical
    check = 0
    for byte in body:
        check ^= byte
    return b"\x3b" + body + bytes((check,))


ATR = build_atr()


def encode_pin(pin: str) -> bytes:
    """A PIN as VERIFY carries it: BCD digits, padded with F to whole bytes (PBOC style)."""
    if not (pin.isascii() and pin.isdigit() and len(pin) in PIN_DIGITS):
        raise TerminalError(
            TerminalReason.BAD_CARD_FACTS,
            f"a PIN is {PIN_DIGITS.start}..{PIN_DIGITS.stop - 1} digits",
        )
    return bytes.fromhex(pin + "F" * (len(pin) % 2))


def _respond(data: bytes, sw: int = SW.OK) -> ResponseApdu:
    return ResponseApdu(data, sw)


def _status(sw: int) -> ResponseApdu:
    return ResponseApdu(_NO_DATA, sw)


class VirtualCard:
    """One card.  ``transmit`` takes and returns raw APDU bytes; ``process`` the decoded forms."""

    atr = ATR

    def __init__(
        self,
        facts: CardFacts,
        keys: psam.CardKeys,
        *,
        pin: str = "123456",
        pin_tries: int = DEFAULT_PIN_TRIES,
        personal_data_access: Access = Access.EXTERNAL_AUTH,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.facts = facts
        self._keys = keys
        self._pin = encode_pin(pin)
        self._pin_tries_max = pin_tries
        self.pin_tries_left = pin_tries
        self._random_bytes = random_bytes
        self._master, self._ssse = build_file_tree(facts, personal_data_access)
        self._handlers: dict[int, Callable[[CommandApdu], ResponseApdu]] = {
            INS_SELECT: self._select,
            INS_READ_RECORD: self._read_record,
            INS_READ_BINARY: self._read_binary,
            INS_GET_RESPONSE: self._get_response,
            INS_VERIFY: self._verify,
            INS_GET_CHALLENGE: self._get_challenge,
            INS_INTERNAL_AUTHENTICATE: self._internal_authenticate,
            INS_EXTERNAL_AUTHENTICATE: self._external_authenticate,
        }
        self.reset()

    # --- power and dispatch ---------------------------------------------------------------

    def reset(self) -> bytes:
        """Cold or warm reset: volatile state is cleared; returns the ATR."""
        self._current_df: DedicatedFile = self._master
        self._current_ef: ElementaryFile | None = None
        self._external_authenticated = False
        self._pin_verified = False
        self._challenge: bytes | None = None
        self._pending = _NO_DATA
        return ATR

    def transmit(self, command: bytes) -> bytes:
        try:
            apdu = decode_command(command)
        except TerminalError:
            return _status(SW.WRONG_LENGTH).encode()
        return self.process(apdu).encode()

    def process(self, apdu: CommandApdu) -> ResponseApdu:
        pending, self._pending = self._pending, _NO_DATA
        challenge, self._challenge = (
            self._challenge,
            None,
        )  # a challenge serves the next command only
        if apdu.cla != 0x00:
            return _status(SW.CLA_NOT_SUPPORTED)
        handler = self._handlers.get(apdu.ins)
        if handler is None:
            return _status(SW.INS_NOT_SUPPORTED)
        if apdu.ins == INS_GET_RESPONSE:
            self._pending = pending
        if apdu.ins == INS_EXTERNAL_AUTHENTICATE:
            self._challenge = challenge
        return handler(apdu)

    def _deliver(self, apdu: CommandApdu, data: bytes) -> ResponseApdu:
        """Outgoing data by the Le rules: none given means 61xx and GET RESPONSE (T=0 style),
        the maximum or the exact size returns it, any other Le gets 6Cxx with the exact size."""
        if not data:
            return _status(SW.OK)
        if apdu.le is None:
            self._pending = data
            return _status(more_data(len(data)))
        if apdu.le == len(data) or apdu.le in (SHORT_MAX_LE, EXTENDED_MAX_LE):
            if len(data) > apdu.le:
                self._pending = data[apdu.le :]
                return _respond(data[: apdu.le], more_data(len(self._pending)))
            return _respond(data)
        return _status(wrong_le(len(data)))

    # --- SELECT ---------------------------------------------------------------------------

    def _select(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p2 not in (0x00, 0x04, 0x0C):  # FCI, FCP, no data; first occurrence only
            return _status(SW.INCORRECT_P1_P2)
        match apdu.p1:
            case 0x04:
                if apdu.data != self._ssse.name:
                    return _status(SW.FILE_NOT_FOUND)
                return self._enter_df(apdu, self._ssse)
            case 0x00 if apdu.data in (_NO_DATA, b"\x3f\x00"):
                return self._enter_df(apdu, self._master)
            case 0x00 | 0x02:
                if len(apdu.data) != 2:
                    return _status(SW.WRONG_LENGTH)
                ef = self._current_df.by_fid(int.from_bytes(apdu.data, "big"))
                if ef is None:
                    return _status(SW.FILE_NOT_FOUND)
                self._current_ef = ef
                return self._deliver(apdu, _ef_fcp(ef) if apdu.p2 == 0x04 else _NO_DATA)
        return _status(SW.INCORRECT_P1_P2)

    def _enter_df(self, apdu: CommandApdu, df: DedicatedFile) -> ResponseApdu:
        if df is not self._current_df:
            self._external_authenticated = False
            self._pin_verified = False
        self._current_df, self._current_ef = df, None
        if apdu.p2 == 0x0C:
            return _status(SW.OK)
        return self._deliver(apdu, _df_fci(df) if apdu.p2 == 0x00 else _df_fcp(df))

    # --- reading --------------------------------------------------------------------------

    def _may_read(self, ef: ElementaryFile) -> bool:
        match ef.read_access:
            case Access.ALWAYS:
                return True
            case Access.EXTERNAL_AUTH:
                return self._external_authenticated
            case Access.EXTERNAL_AUTH_AND_PIN:
                return self._external_authenticated and self._pin_verified

    def _target_ef(self, sfi: int) -> ElementaryFile | int:
        """The EF named by ``sfi`` (0: the current EF), or the status word that refuses it."""
        if sfi == 0:
            return (
                self._current_ef
                if self._current_ef is not None
                else SW.COMMAND_NOT_ALLOWED_NO_CURRENT_EF
            )
        ef = self._current_df.by_sfi(sfi)
        if ef is None:
            return SW.FILE_NOT_FOUND
        self._current_ef = ef
        return ef

    def _read_record(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.data:
            return _status(SW.WRONG_LENGTH)
        if apdu.le is None:
            return _status(SW.WRONG_LENGTH)
        sfi, mode = apdu.p2 >> 3, apdu.p2 & 0x07
        if sfi == 0x1F or mode not in (0b000, 0b100) or apdu.p1 == 0:
            return _status(SW.INCORRECT_P1_P2)
        ef = self._target_ef(sfi)
        if isinstance(ef, int):
            return _status(ef)
        if ef.structure is not FileStructure.LINEAR_FIXED:
            return _status(SW.INCOMPATIBLE_FILE_STRUCTURE)
        if not self._may_read(ef):
            return _status(SW.SECURITY_STATUS_NOT_SATISFIED)
        if mode == 0b100:  # P1 is a record number
            record = ef.contents[apdu.p1 - 1] if apdu.p1 <= len(ef.contents) else _NO_DATA
        else:  # P1 is a record identifier (the data-item tag): first occurrence
            record = next((r for r in ef.contents if r and r[0] == apdu.p1), _NO_DATA)
        if not record:
            return _status(SW.RECORD_NOT_FOUND)
        return self._deliver(apdu, record)

    def _read_binary(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.data or apdu.le is None:
            return _status(SW.WRONG_LENGTH)
        if apdu.p1 & 0x80:
            if apdu.p1 & 0x60:
                return _status(SW.INCORRECT_P1_P2)
            target, offset = self._target_ef(apdu.p1 & 0x1F), apdu.p2
        else:
            target, offset = self._target_ef(0), (apdu.p1 << 8) | apdu.p2
        if isinstance(target, int):
            return _status(target)
        if target.structure is not FileStructure.TRANSPARENT:
            return _status(SW.INCOMPATIBLE_FILE_STRUCTURE)
        if not self._may_read(target):
            return _status(SW.SECURITY_STATUS_NOT_SATISFIED)
        body = target.contents[0]
        if offset >= len(body):
            return _status(SW.WRONG_P1_P2)
        chunk = body[offset : offset + apdu.le]
        short_read = len(chunk) < apdu.le and apdu.le not in (SHORT_MAX_LE, EXTENDED_MAX_LE)
        return _respond(chunk, SW.END_OF_FILE if short_read else SW.OK)

    def _get_response(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p1 or apdu.p2:
            return _status(SW.INCORRECT_P1_P2)
        pending, self._pending = self._pending, _NO_DATA
        if not pending:
            return _status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if apdu.le is None:
            return _status(SW.WRONG_LENGTH)
        if apdu.le < len(pending) and apdu.le not in (SHORT_MAX_LE, EXTENDED_MAX_LE):
            self._pending = pending
            return _status(wrong_le(len(pending)))
        self._pending = pending[apdu.le :]
        rest = len(self._pending)
        return _respond(pending[: apdu.le], more_data(rest) if rest else SW.OK)

    # --- PIN ------------------------------------------------------------------------------

    def _verify(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            return _status(SW.INCORRECT_P1_P2)
        if self.pin_tries_left == 0:
            return _status(SW.AUTHENTICATION_METHOD_BLOCKED)
        if not apdu.data:  # ISO 7816-4: VERIFY without data asks for the state
            return _status(
                SW.OK if self._pin_verified else verification_failed(self.pin_tries_left)
            )
        if hmac.compare_digest(apdu.data, self._pin):
            self.pin_tries_left = self._pin_tries_max
            self._pin_verified = True
            return _status(SW.OK)
        self.pin_tries_left -= 1
        self._pin_verified = False
        return _status(verification_failed(self.pin_tries_left))

    # --- challenge and authentication -----------------------------------------------------

    def _get_challenge(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p1 or apdu.p2:
            return _status(SW.INCORRECT_P1_P2)
        if apdu.data or apdu.le not in psam.CHALLENGE_SIZES:
            return _status(SW.WRONG_LENGTH)
        self._challenge = self._random_bytes(apdu.le)
        return _respond(self._challenge)

    def _internal_authenticate(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            return _status(SW.INCORRECT_P1_P2)
        if len(apdu.data) not in psam.CHALLENGE_SIZES:
            return _status(SW.WRONG_LENGTH)
        return self._deliver(
            apdu,
            psam.authentication_cryptogram(self._keys.internal_auth, apdu.data, self._keys.cipher),
        )

    def _external_authenticate(self, apdu: CommandApdu) -> ResponseApdu:
        challenge, self._challenge = self._challenge, None  # single use, whatever the outcome
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            return _status(SW.INCORRECT_P1_P2)
        if len(apdu.data) != psam.SM4_BLOCK_BYTES:
            return _status(SW.WRONG_LENGTH)
        if challenge is None:
            return _status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        expected = psam.authentication_cryptogram(
            self._keys.external_auth, challenge, self._keys.cipher
        )
        self._external_authenticated = hmac.compare_digest(expected, apdu.data)
        return _status(SW.OK if self._external_authenticated else SW.AUTHENTICATION_FAILED)


def _df_fci(df: DedicatedFile) -> bytes:
    """FCI template (6F) with the DF name, as SELECT by name with P2 = 00 returns it."""
    if df.name is None:
        return tlv.encode(tlv.Tlv(0x6F, children=(tlv.Tlv(0x83, df.fid.to_bytes(2, "big")),)))
    return tlv.encode(tlv.Tlv(0x6F, children=(tlv.Tlv(0x84, df.name),)))


def _df_fcp(df: DedicatedFile) -> bytes:
    identity = (
        tlv.Tlv(0x84, df.name) if df.name is not None else tlv.Tlv(0x83, df.fid.to_bytes(2, "big"))
    )
    return tlv.encode(tlv.Tlv(0x62, children=(tlv.Tlv(0x82, bytes((_DF_DESCRIPTOR,))), identity)))


def _ef_fcp(ef: ElementaryFile) -> bytes:
    return tlv.encode(
        tlv.Tlv(
            0x62,
            children=(
                tlv.Tlv(0x82, bytes((ef.structure.value,))),
                tlv.Tlv(0x83, ef.fid.to_bytes(2, "big")),
                tlv.Tlv(0x88, bytes((ef.sfi,))),
            ),
        )
    )
