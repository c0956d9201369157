"""The e-card on the card protocol (NFC host card emulation): a device-bound certificate, a
reference HCE card that answers like the chip, and the terminal's offline check of it.

The platform provisions to an e-card a short-lived key pair's certificate, signed by the issuer's
code-signing key (the one in the trust list), so a terminal that holds only the trust list and the
revocation list can authenticate the e-card OFFLINE, as EMV's dynamic data authentication does:
it reads the certificate, sends a fresh challenge by INTERNAL AUTHENTICATE, and checks that the
device key certified by the issuer signed that challenge.  A copied certificate is useless
without the device key; a recorded answer is useless for another challenge.

    certificate = body || ES256 r||s (64) over  b"ecard/hce-certificate" 0x00 || body
    body        = version(1) region(3) key_id(8) not_before(4) not_after(4)
                  len(1) pseudonym  device_key(65, uncompressed SEC1 P-256 point)
    answer      = ES256 r||s (64) by the device key
                  over  b"ecard/hce-authenticate" 0x00 || challenge

The HCE card selects the SSSE application by the same DF name, keeps the certificate as record 1
of SFI 05 under the private tag ``E1`` (a physical card has ``01`` 卡识别码 there, which is how a
terminal tells them apart), and carries no personal data at all.  Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import struct
from enum import StrEnum

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.code_format import MAX_PSEUDONYM_BYTES
from ecard.offline.documents import DEFAULT_SKEW_SECONDS
from ecard.offline.es256 import (
    RAW_SIGNATURE_BYTES,
    SHORT_KEY_ID_BYTES,
    b64url_encode,
    sign_raw,
    verify_raw,
)
from ecard.offline.reasons import OfflineError, Reason
from ecard.offline.revocation import RevocationSet
from ecard.offline.trust import TrustedKey, TrustStore
from ecard.terminal import tlv
from ecard.terminal.apdu import (
    SHORT_MAX_LE,
    SW,
    CommandApdu,
    ResponseApdu,
    decode_command,
    wrong_le,
)
from ecard.terminal.card_model import EF05_SFI, SSSE_DF_NAME
from ecard.terminal.errors import TerminalError

CERTIFICATE_VERSION = 1
CERTIFICATE_TAG = 0xE1  # record tag of the certificate (private use; physical cards start with 01)
CERTIFICATE_DOMAIN = b"ecard/hce-certificate\x00"
AUTHENTICATE_DOMAIN = b"ecard/hce-authenticate\x00"
DEVICE_KEY_BYTES = 65
MAX_LIFETIME_SECONDS = 7 * 86_400
CHALLENGE_SIZES = (8, 16)
_HEAD = struct.Struct(f">B3s{SHORT_KEY_ID_BYTES}sIIB")


class HceReason(StrEnum):
    """Refusals of the dynamic part (the certificate's are the offline kit's :class:`Reason`)."""

    FORGED_ANSWER = "forged_answer"  # the challenge was not signed by the certified device key
    BAD_CHALLENGE = "bad_challenge"


class CertificateClaims(msgspec.Struct, frozen=True, kw_only=True):
    region: str
    key_id: bytes  # short id of the issuer key (as in codes)
    not_before: int
    not_after: int
    pseudonym: bytes  # the card's pseudonym, as in codes and the revocation list
    device_key: bytes  # 65-byte uncompressed P-256 point

    def device_public_key(self) -> ec.EllipticCurvePublicKey:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.device_key)


class Certificate(msgspec.Struct, frozen=True):
    claims: CertificateClaims
    body: bytes
    signature: bytes

    @property
    def certificate_id(self) -> str:
        """The e-card's reference in acceptance records: a digest of the body (signatures are
        malleable), base64url so it never looks like a number."""
        return certificate_id(self.body)


def certificate_id(body: bytes) -> str:
    return b64url_encode(hashlib.sha256(CERTIFICATE_DOMAIN + body).digest()[:16])


def _malformed(detail: str) -> OfflineError:
    return OfflineError(Reason.MALFORMED, detail)


def device_key_bytes(public_key: ec.EllipticCurvePublicKey) -> bytes:
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise _malformed("device keys are P-256")
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def encode_body(claims: CertificateClaims) -> bytes:
    if not (len(claims.region) == 6 and claims.region.isdigit()):
        raise _malformed("region must be six digits")
    if len(claims.key_id) != SHORT_KEY_ID_BYTES:
        raise _malformed("key id must be 8 bytes")
    if not 1 <= len(claims.pseudonym) <= MAX_PSEUDONYM_BYTES:
        raise _malformed(f"pseudonym must be 1-{MAX_PSEUDONYM_BYTES} bytes")
    if not 0 <= claims.not_before < claims.not_after <= 0xFFFF_FFFF:
        raise _malformed("validity must be a non-empty window of 32-bit epoch seconds")
    if claims.not_after - claims.not_before > MAX_LIFETIME_SECONDS:
        raise _malformed("a device certificate lives at most 7 days")
    if len(claims.device_key) != DEVICE_KEY_BYTES:
        raise _malformed("the device key is a 65-byte uncompressed P-256 point")
    head = _HEAD.pack(
        CERTIFICATE_VERSION,
        int(claims.region).to_bytes(3, "big"),
        claims.key_id,
        claims.not_before,
        claims.not_after,
        len(claims.pseudonym),
    )
    return head + claims.pseudonym + claims.device_key


def issue_certificate(claims: CertificateClaims, issuer_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The certificate bytes; refuses claims no terminal would parse."""
    body = encode_body(claims)
    parse_certificate(body + bytes(RAW_SIGNATURE_BYTES))  # the device key must be a curve point
    return body + sign_raw(issuer_key, CERTIFICATE_DOMAIN + body)


def parse_certificate(raw: bytes) -> Certificate:
    """Decode a certificate read from an e-card; its signature is NOT checked here."""
    if len(raw) < _HEAD.size + 1 + DEVICE_KEY_BYTES + RAW_SIGNATURE_BYTES:
        raise _malformed("certificate truncated")
    body, signature = raw[:-RAW_SIGNATURE_BYTES], raw[-RAW_SIGNATURE_BYTES:]
    version, region, key_id, not_before, not_after, pseudonym_length = _HEAD.unpack_from(body)
    if version != CERTIFICATE_VERSION:
        raise OfflineError(Reason.UNSUPPORTED_VERSION, f"certificate version {version}")
    if len(body) != _HEAD.size + pseudonym_length + DEVICE_KEY_BYTES:
        raise _malformed("certificate field lengths do not add up")
    region_number = int.from_bytes(region, "big")
    claims = CertificateClaims(
        region=f"{region_number:06d}",
        key_id=key_id,
        not_before=not_before,
        not_after=not_after,
        pseudonym=body[_HEAD.size : _HEAD.size + pseudonym_length],
        device_key=body[-DEVICE_KEY_BYTES:],
    )
    if region_number > 999_999 or encode_body(claims) != body:
        raise _malformed("certificate fields out of range")
    try:
        claims.device_public_key()
    except ValueError:
        raise _malformed("the device key is not a P-256 point") from None
    return Certificate(claims, body, signature)


def sign_challenge(device_key: ec.EllipticCurvePrivateKey, challenge: bytes) -> bytes:
    return sign_raw(device_key, AUTHENTICATE_DOMAIN + challenge)


# --- the terminal's offline check -----------------------------------------------------------


class HceVerdict(msgspec.Struct, frozen=True, kw_only=True):
    reason: str | None  # None: genuine, current, not revoked, and it signed our challenge
    certificate: Certificate | None = None
    issuer: TrustedKey | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def authenticate_offline(
    certificate: bytes,
    challenge: bytes,
    answer: bytes,
    trust: TrustStore,
    revocations: RevocationSet,
    now: int,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
) -> HceVerdict:
    """Offline dynamic data authentication of an e-card; never raises on bad input."""
    try:
        parsed = parse_certificate(certificate)
    except OfflineError as error:
        return HceVerdict(reason=error.reason)
    claims = parsed.claims

    def refuse(reason: str, issuer: TrustedKey | None = None) -> HceVerdict:
        return HceVerdict(reason=reason, certificate=parsed, issuer=issuer)

    key = trust.by_short_id.get(claims.key_id)
    if key is None:
        return refuse(
            Reason.UNKNOWN_KEY if claims.region in trust.regions else Reason.UNKNOWN_ISSUER
        )
    if key.entry.region != claims.region:
        return refuse(Reason.ISSUER_MISMATCH, key.entry)
    if not verify_raw(key.public_key, parsed.signature, CERTIFICATE_DOMAIN + parsed.body):
        return refuse(Reason.BAD_SIGNATURE, key.entry)
    key_refusal = key.refusal(claims.not_before, now, skew_seconds)
    if key_refusal is not None:
        return refuse(key_refusal, key.entry)
    if claims.not_before > now + skew_seconds:
        return refuse(Reason.NOT_YET_VALID, key.entry)
    if now >= claims.not_after + skew_seconds:
        return refuse(Reason.EXPIRED, key.entry)
    if now > trust.content.next_update + skew_seconds:
        return refuse(Reason.STALE_TRUST_LIST, key.entry)
    if now > revocations.next_update + skew_seconds:
        return refuse(Reason.STALE_REVOCATION_LIST, key.entry)
    if revocations.lookup(claims.region, claims.pseudonym) is not None:
        return refuse(Reason.REVOKED, key.entry)
    if len(challenge) not in CHALLENGE_SIZES:
        return refuse(HceReason.BAD_CHALLENGE, key.entry)
    if not verify_raw(claims.device_public_key(), answer, AUTHENTICATE_DOMAIN + challenge):
        return refuse(HceReason.FORGED_ANSWER, key.entry)
    return HceVerdict(reason=None, certificate=parsed, issuer=key.entry)


# --- the reference HCE card -----------------------------------------------------------------


def _status(sw: int) -> ResponseApdu:
    return ResponseApdu(b"", sw)


class HceCard:
    """The e-card as an NFC card (what a channel app's HCE service answers).

    SELECT by the SSSE DF name, READ RECORD 1 of SFI 05 (the certificate record), INTERNAL
    AUTHENTICATE (an ES256 signature of the challenge); everything else is refused with the
    status word a chip would give.  Le must be present (ISO-DEP readers always send it): the
    exact length or 00, else 6Cxx; absent → 6700.
    """

    def __init__(self, certificate: bytes, device_key: ec.EllipticCurvePrivateKey) -> None:
        self._record = bytes((CERTIFICATE_TAG, len(certificate))) + certificate
        self._device_key = device_key
        self._selected = False

    def reset(self) -> None:
        self._selected = False

    def transmit(self, command: bytes) -> bytes:
        try:
            apdu = decode_command(command)
        except TerminalError:
            return _status(SW.WRONG_LENGTH).encode()
        return self.process(apdu).encode()

    def process(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.cla != 0x00:
            return _status(SW.CLA_NOT_SUPPORTED)
        match apdu.ins:
            case 0xA4:  # SELECT
                return self._select(apdu)
            case 0xB2:  # READ RECORD
                return self._read_record(apdu)
            case 0x88:  # INTERNAL AUTHENTICATE
                return self._internal_authenticate(apdu)
        return _status(SW.INS_NOT_SUPPORTED)

    @staticmethod
    def _deliver(apdu: CommandApdu, data: bytes) -> ResponseApdu:
        if apdu.le is None:
            return _status(SW.WRONG_LENGTH)
        if apdu.le not in (len(data), SHORT_MAX_LE):
            return _status(wrong_le(len(data)))
        return ResponseApdu(data, SW.OK)

    def _select(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p1 != 0x04 or apdu.p2 not in (0x00, 0x0C):
            return _status(SW.INCORRECT_P1_P2)
        if apdu.data != SSSE_DF_NAME:
            self._selected = False
            return _status(SW.FILE_NOT_FOUND)
        self._selected = True
        if apdu.p2 == 0x0C:
            return _status(SW.OK)
        fci = tlv.encode(tlv.Tlv(0x6F, children=(tlv.Tlv(0x84, SSSE_DF_NAME),)))
        return ResponseApdu(fci, SW.OK) if apdu.le is not None else _status(SW.OK)

    def _read_record(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.data:
            return _status(SW.WRONG_LENGTH)
        if not self._selected:
            return _status(SW.COMMAND_NOT_ALLOWED_NO_CURRENT_EF)
        sfi, mode = apdu.p2 >> 3, apdu.p2 & 0x07
        if mode != 0b100 or apdu.p1 == 0:
            return _status(SW.INCORRECT_P1_P2)
        if sfi != EF05_SFI:
            return _status(SW.FILE_NOT_FOUND)
        if apdu.p1 != 1:
            return _status(SW.RECORD_NOT_FOUND)
        return self._deliver(apdu, self._record)

    def _internal_authenticate(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            return _status(SW.INCORRECT_P1_P2)
        if not self._selected:
            return _status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if len(apdu.data) not in CHALLENGE_SIZES:
            return _status(SW.WRONG_LENGTH)
        return self._deliver(apdu, sign_challenge(self._device_key, apdu.data))
