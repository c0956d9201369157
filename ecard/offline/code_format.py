"""The signed QR code format, version 1 (``EC1:``): binary body, signature input, text encoding.

Pure and shared: the platform signs with :mod:`ecard.codes.format`, verifiers and terminals parse
here.  docs/code-format.md is the normative description; keep the two in step.

    text  = "EC1:" base45(body || signature)
    body  = version(1) region(3) key_id(8) usage(1) serial(4) issued_at(4) lifetime(2)
            len(1) pseudonym  len(1) masked_name(UTF-8)  card_last4(4 ASCII)
    signature = ES256 raw r||s (64) over  b"ecard/code" 0x00 || body
"""

from __future__ import annotations

import hashlib
import re
import struct
from enum import IntEnum
from functools import lru_cache

import msgspec

from ecard.offline.es256 import RAW_SIGNATURE_BYTES, SHORT_KEY_ID_BYTES
from ecard.offline.reasons import OfflineError, Reason

FORMAT_VERSION = 1
PREFIX = "EC1:"
SIGNATURE_DOMAIN = b"ecard/code\x00"
MIN_LIFETIME, MAX_LIFETIME, DEFAULT_LIFETIME = 15, 300, 60
MAX_PSEUDONYM_BYTES = 16
MAX_MASKED_NAME_BYTES = 24
CARD_LAST4_BYTES = 4
MAX_REGION = 999_999

# The fixed head, in the three parts an issuer fills at different times (BodyTemplate):
_HEAD_BEFORE_TIMES = struct.Struct(
    f">B3s{SHORT_KEY_ID_BYTES}sB"
)  # version, region (uint24), key id, usage
_HEAD_TIMES = struct.Struct(">II")  # serial, issued_at
_HEAD_AFTER_TIMES = struct.Struct(">HB")  # lifetime, pseudonym length
_HEAD = struct.Struct(
    ">" + "".join(part.format[1:] for part in (_HEAD_BEFORE_TIMES, _HEAD_TIMES, _HEAD_AFTER_TIMES))
)
_MIN_BODY = _HEAD.size + 1 + 1 + 1 + CARD_LAST4_BYTES
_MAX_BODY = _HEAD.size + MAX_PSEUDONYM_BYTES + 1 + MAX_MASKED_NAME_BYTES + CARD_LAST4_BYTES


def _base45_length(byte_count: int) -> int:
    return byte_count // 2 * 3 + byte_count % 2 * 2


MAX_TEXT_LENGTH = len(PREFIX) + _base45_length(_MAX_BODY + RAW_SIGNATURE_BYTES)
_BASE45_ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_NOT_BASE45 = 0xFF
_BASE45_VALUES = bytes(
    _BASE45_ALPHABET.index(c) if c in _BASE45_ALPHABET else _NOT_BASE45 for c in range(256)
)
#: base45 works on 16-bit groups; both directions handle every group of a code at once, as lanes
#: of one big integer (see :func:`b45encode` and :func:`b45decode`)
_DIV45_SHIFT = (
    19  # v // 45 == (v * _DIV45_MULTIPLIER) >> 19 for every v < 2**16 (a test checks all)
)
_DIV45_MULTIPLIER = -(-(1 << _DIV45_SHIFT) // 45)
#: lane digit + 1 -> its character; 0 (the unused top byte of a lane) is deleted
_BASE45_CHARS = bytes([0, *_BASE45_ALPHABET] + [0] * (255 - len(_BASE45_ALPHABET)))


def _repeated(lane: bytes, lanes: int) -> int:
    return int.from_bytes(lane * lanes, "little")


@lru_cache(maxsize=32)
def _encoding_masks(groups: int) -> tuple[int, int]:
    """For 32-bit lanes: the low 11 bits (a quotient of a 16-bit group by 45), and 1 in each of
    the three digit bytes."""
    return _repeated(b"\xff\x07\0\0", groups), _repeated(b"\x01\x01\x01\0", groups)


@lru_cache(maxsize=32)
def _decoding_masks(groups: int) -> tuple[int, int]:
    """For 24-bit lanes: the low byte, and the top byte."""
    return _repeated(b"\xff\0\0", groups), _repeated(b"\0\0\xff", groups)


_OTHER_VERSION = re.compile(r"EC[0-9]+:")
_REGION = re.compile(r"[0-9]{6}")
_CARD_LAST4 = re.compile(r"[0-9A-Z]{4}")


class Usage(IntEnum):
    """What a code may be used for; a verifier names the usages it accepts."""

    SHOW = 1  # 扫码亮证: show identity and card status to a verifier
    TERMINAL = 2  # 读卡扫码终端: use the card at an acceptance terminal (medical, transport ...)
    LOGIN = 3  # 扫码登录: approve a login


_USAGES = {usage.value: usage for usage in Usage}  # a dict lookup: calling the enum costs more


class CodeClaims(msgspec.Struct, frozen=True, kw_only=True):
    """What a code says.  Only pseudonymous or masked data: no name, no identity number."""

    region: str  # issuer region, six digits (GB/T 2260), e.g. "330000"
    key_id: bytes  # first 8 bytes of the signing key's RFC 7638 thumbprint
    pseudonym: bytes  # the card's keyed-hash pseudonym, 1-16 bytes, opaque to verifiers
    serial: int  # uint32, unique per card and second; with the rest it makes each code unique
    issued_at: int  # epoch seconds
    masked_name: str  # e.g. "张*三"; must contain "*"
    card_last4: str  # last four characters of the card number, [0-9A-Z]
    lifetime: int = DEFAULT_LIFETIME  # seconds, 15-300
    usage: Usage = Usage.SHOW

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.lifetime


class ParsedCode(msgspec.Struct, frozen=True):
    """A decoded code whose signature has NOT been checked yet."""

    claims: CodeClaims
    body: bytes
    signature: bytes

    @property
    def code_id(self) -> str:
        """Identifies the code for single-use markers; over the body, because ECDSA signatures are
        malleable (a second valid signature of the same body must not count as a new code)."""
        return hashlib.sha256(self.body).digest()[:16].hex()

    @property
    def signature_input(self) -> bytes:
        return signature_input(self.body)


def signature_input(body: bytes) -> bytes:
    return SIGNATURE_DOMAIN + body


def _malformed(detail: str) -> OfflineError:
    return OfflineError(Reason.MALFORMED, detail)


def check_claims(claims: CodeClaims) -> None:
    """Every rule a field must keep, the same for signing and for parsing."""
    if not _REGION.fullmatch(claims.region):
        raise _malformed("region must be six digits")
    if len(claims.key_id) != SHORT_KEY_ID_BYTES:
        raise _malformed(f"key id must be {SHORT_KEY_ID_BYTES} bytes")
    if not 1 <= len(claims.pseudonym) <= MAX_PSEUDONYM_BYTES:
        raise _malformed(f"pseudonym must be 1-{MAX_PSEUDONYM_BYTES} bytes")
    if not 0 <= claims.serial <= 0xFFFF_FFFF:
        raise _malformed("serial must fit in 32 bits")
    if not 0 <= claims.issued_at <= 0xFFFF_FFFF:
        raise _malformed("issued_at must fit in 32 bits")
    if not MIN_LIFETIME <= claims.lifetime <= MAX_LIFETIME:
        raise _malformed(f"lifetime must be {MIN_LIFETIME}-{MAX_LIFETIME} s")
    if not isinstance(claims.usage, Usage):
        raise _malformed("unknown usage")
    name_bytes = len(claims.masked_name.encode())
    if not 1 <= name_bytes <= MAX_MASKED_NAME_BYTES:
        raise _malformed(f"masked name must be 1-{MAX_MASKED_NAME_BYTES} bytes of UTF-8")
    if "*" not in claims.masked_name or not claims.masked_name.isprintable():
        raise _malformed("the name must be masked (contain '*') and printable")
    if not _CARD_LAST4.fullmatch(claims.card_last4):
        raise _malformed("card_last4 must be four characters 0-9 or A-Z")


def b45decode(text: str) -> bytes:
    """Strict RFC 9285 decoding.  By hand because verification runs at line rate: the per-character
    loop of the ``base45`` package cost a fifth of an ES256 verification; tests check the two
    agree.  The digit values of the whole code, read as one little-endian integer, hold each
    group's three digits in a 24-bit lane, so a group's value is a few big-integer operations for
    every group at once (2.3 µs for a code, against 4.2 µs by a lookup per group)."""
    try:
        values = text.encode("ascii").translate(_BASE45_VALUES)
    except UnicodeEncodeError:
        raise _malformed("not base45") from None
    groups, rest = divmod(len(values), 3)
    if _NOT_BASE45 in values or rest == 1:
        raise _malformed("not base45")
    digits = int.from_bytes(values[: 3 * groups], "little")
    low8, top8 = _decoding_masks(groups)
    numbers = (digits & low8) + 45 * ((digits >> 8) & low8) + 2025 * ((digits >> 16) & low8)
    if numbers & top8:  # a group above 0xFFFF (at most 91124: no carry into the next lane)
        raise _malformed("not base45")
    little = numbers.to_bytes(3 * groups, "little")
    decoded = bytearray(2 * groups)
    decoded[0::2] = little[1::3]  # groups are big-endian
    decoded[1::2] = little[0::3]
    if rest:
        last = values[-2] + values[-1] * 45
        if last > 0xFF:
            raise _malformed("not base45")
        decoded.append(last)
    return bytes(decoded)


class BodyTemplate:
    """A code body with everything but its serial and issue time laid out and checked: a card's
    codes differ only in those two, so an issuer builds this once per card and key, and each code
    is then one ``struct.pack`` and two concatenations."""

    __slots__ = ("_after", "_before", "key_id", "lifetime")

    def __init__(self, claims: CodeClaims) -> None:
        check_claims(claims)
        name = claims.masked_name.encode()
        self.key_id = claims.key_id
        self.lifetime = claims.lifetime
        self._before = _HEAD_BEFORE_TIMES.pack(
            FORMAT_VERSION, int(claims.region).to_bytes(3, "big"), claims.key_id, claims.usage
        )
        self._after = b"".join(
            (
                _HEAD_AFTER_TIMES.pack(claims.lifetime, len(claims.pseudonym)),
                claims.pseudonym,
                len(name).to_bytes(1, "big"),
                name,
                claims.card_last4.encode(),
            )
        )

    def body(self, serial: int, issued_at: int) -> bytes:
        if not (0 <= serial <= 0xFFFF_FFFF and 0 <= issued_at <= 0xFFFF_FFFF):
            raise _malformed("serial and issued_at must fit in 32 bits")
        return self._before + _HEAD_TIMES.pack(serial, issued_at) + self._after


def encode_body(claims: CodeClaims) -> bytes:
    return BodyTemplate(claims).body(claims.serial, claims.issued_at)


def b45encode(data: bytes) -> str:
    """RFC 9285 encoding, every 16-bit group at once in the lanes of a big integer (as in
    :func:`b45decode`): the quotients by 45 by multiplying and shifting, the digits placed as
    bytes and turned into characters by one ``translate``.  About 40 % faster than a lookup per
    group in a 65,536-entry table (3 MiB of objects, touched at random on every code); tests
    check it against the ``base45`` package."""
    groups, odd = divmod(len(data), 2)
    lanes = bytearray(4 * groups)  # 32-bit lanes: a group's three digit bytes, and a spare one
    lanes[0::4] = data[1 : 2 * groups : 2]  # little-endian lanes of big-endian groups
    lanes[1::4] = data[0 : 2 * groups : 2]
    numbers = int.from_bytes(lanes, "little")
    quotient_mask, ones = _encoding_masks(groups)
    by45 = ((numbers * _DIV45_MULTIPLIER) >> _DIV45_SHIFT) & quotient_mask
    by2025 = ((by45 * _DIV45_MULTIPLIER) >> _DIV45_SHIFT) & quotient_mask
    digits = (numbers - 45 * by45) + ((by45 - 45 * by2025) << 8) + (by2025 << 16) + ones
    encoded = digits.to_bytes(4 * groups, "little").translate(_BASE45_CHARS, b"\0")
    if odd:
        encoded += bytes((_BASE45_ALPHABET[data[-1] % 45], _BASE45_ALPHABET[data[-1] // 45]))
    return encoded.decode("ascii")


def encode_text(body: bytes, signature: bytes) -> str:
    if len(signature) != RAW_SIGNATURE_BYTES:
        raise _malformed("an ES256 signature is 64 bytes")
    return PREFIX + b45encode(body + signature)


def decode_body(body: bytes) -> CodeClaims:
    if not _MIN_BODY <= len(body) <= _MAX_BODY:
        raise _malformed("body length out of range")
    version, region, key_id, usage, serial, issued_at, lifetime, pseudonym_length = (
        _HEAD.unpack_from(body)
    )
    if version != FORMAT_VERSION:
        raise OfflineError(Reason.UNSUPPORTED_VERSION, f"body version {version}")
    region_number = int.from_bytes(region, "big")
    if region_number > MAX_REGION:
        raise _malformed("region must be six digits")
    usage_member = _USAGES.get(usage)
    if usage_member is None:
        raise _malformed("unknown usage")
    offset = _HEAD.size + pseudonym_length
    pseudonym = body[_HEAD.size : offset]
    if offset >= len(body):
        raise _malformed("truncated")
    name_end = offset + 1 + body[offset]
    if name_end + CARD_LAST4_BYTES != len(body):
        raise _malformed("field lengths do not add up")
    try:
        masked_name = body[offset + 1 : name_end].decode()
        card_last4 = body[name_end:].decode("ascii")
    except UnicodeDecodeError:
        raise _malformed("text fields are not valid UTF-8 / ASCII") from None
    claims = CodeClaims(
        region=f"{region_number:06d}",
        key_id=key_id,
        pseudonym=pseudonym,
        serial=serial,
        issued_at=issued_at,
        lifetime=lifetime,
        usage=usage_member,
        masked_name=masked_name,
        card_last4=card_last4,
    )
    check_claims(claims)
    return claims


def parse_code(text: str | bytes) -> ParsedCode:
    """Decode a scanned code.  Any input either parses or raises :class:`OfflineError`."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise _malformed("a code is ASCII text") from None
    if not isinstance(text, str):
        raise _malformed("a code is text")
    if len(text) > MAX_TEXT_LENGTH:
        raise OfflineError(Reason.TOO_LONG, f"longer than {MAX_TEXT_LENGTH} characters")
    if not text.startswith(PREFIX):
        if _OTHER_VERSION.match(text):
            raise OfflineError(Reason.UNSUPPORTED_VERSION, "unknown code version")
        raise OfflineError(Reason.WRONG_PREFIX, f"not an {PREFIX} code")
    raw = b45decode(text[len(PREFIX) :])
    body, signature = raw[:-RAW_SIGNATURE_BYTES], raw[-RAW_SIGNATURE_BYTES:]
    if len(signature) != RAW_SIGNATURE_BYTES:
        raise _malformed("truncated")
    return ParsedCode(decode_body(body), body, signature)
