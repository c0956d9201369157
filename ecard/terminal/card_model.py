"""The social security card (社会保障卡) application as field terminals address it.

Terminals select the SSSE directory by its DF name ``sx1.sh.社会保障`` (GBK), then read the card
data items as records of EF05 (card information) and EF06 (holder information).  Each record holds
one data item as SIMPLE-TLV: one tag byte (the data-item number), one length byte, the value.
Which parts of this layout come from public reader code and which are assumptions is written down
in ``docs/terminal-card-model.md``.

Here are the data items, how card facts become record values and back, and the file tree; the
virtual card (``virtual_card``) adds behaviour.  Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import Enum, StrEnum

import msgspec

from ecard.offline.package import card_reference
from ecard.terminal import tlv
from ecard.terminal.errors import TerminalError, TerminalReason

#: ``sx1.sh.社会保障`` in GBK: the DF name of the SSSE (social security) application.
SSSE_DF_NAME = "sx1.sh.社会保障".encode("gbk")
MF_FID = 0x3F00
EF_DIR_FID = 0x2F00
EF_DIR_SFI = 0x1E
EF05_FID = 0xEF05
EF06_FID = 0xEF06
EF05_SFI = 0x05
EF06_SFI = 0x06

_DIGITS = re.compile(r"[0-9]*")
_HEX32 = re.compile(r"[0-9A-F]{32}")
_REGION = re.compile(r"[0-9]{6}")


class CardFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a card carries, in the registry's terms, so a virtual card can match a registry row.

    ``card_identification_code`` (卡识别码) is 32 hex digits whose first six are the issuing
    region code; ``issuing_org_code`` (初始化机构编号) up to 24 digits; ``ethnicity`` the two-digit
    GB 3304 code; ``gender`` the GB/T 2261.1 digit; ``birth_place`` a six-digit region code or
    empty.
    """

    card_number: str
    card_identification_code: str
    card_type: str
    spec_version: str
    issuing_org_code: str
    issue_date: dt.date
    expiry_date: dt.date
    social_security_number: str
    name: str
    gender: str
    ethnicity: str
    birth_date: dt.date
    birth_place: str = ""

    @property
    def region_code(self) -> str:
        return self.card_identification_code[:6]


class Encoding(StrEnum):
    AN = "an"  # ASCII, exact length
    CN = "cn"  # packed BCD digits, left-justified, padded with F
    B = "b"  # binary, written as upper-case hex in the facts
    GBK = "gbk"  # GBK text, padded with 00
    DATE = "date"  # YYYYMMDD as 4 bytes of BCD


class DataItem(msgspec.Struct, frozen=True):
    """One data item: its tag (the item number), where it lives, its size and coding."""

    tag: int
    ef_fid: int
    record_number: int
    length: int
    encoding: Encoding
    field: str
    label_zh: str


DATA_ITEMS: tuple[DataItem, ...] = (
    DataItem(0x01, EF05_FID, 1, 16, Encoding.B, "card_identification_code", "卡识别码"),
    DataItem(0x02, EF05_FID, 2, 1, Encoding.AN, "card_type", "卡的类别"),
    DataItem(0x03, EF05_FID, 3, 4, Encoding.AN, "spec_version", "规范版本"),
    DataItem(0x04, EF05_FID, 4, 12, Encoding.CN, "issuing_org_code", "初始化机构编号"),
    DataItem(0x05, EF05_FID, 5, 4, Encoding.DATE, "issue_date", "发卡日期"),
    DataItem(0x06, EF05_FID, 6, 4, Encoding.DATE, "expiry_date", "卡有效期"),
    DataItem(0x07, EF05_FID, 7, 9, Encoding.AN, "card_number", "卡号"),
    DataItem(0x08, EF06_FID, 1, 18, Encoding.AN, "social_security_number", "社会保障号码"),
    DataItem(0x09, EF06_FID, 2, 30, Encoding.GBK, "name", "姓名"),
    DataItem(0x0A, EF06_FID, 4, 1, Encoding.AN, "gender", "性别"),
    DataItem(0x0B, EF06_FID, 5, 1, Encoding.CN, "ethnicity", "民族"),
    DataItem(0x0C, EF06_FID, 6, 3, Encoding.CN, "birth_place", "出生地"),
    DataItem(0x0D, EF06_FID, 7, 4, Encoding.DATE, "birth_date", "出生日期"),
)
ITEMS_BY_TAG = {item.tag: item for item in DATA_ITEMS}


def _bad_fact(item: DataItem, why: str) -> TerminalError:
    return TerminalError(TerminalReason.BAD_CARD_FACTS, f"{item.field} ({item.label_zh}): {why}")


def _bcd(digits: str, length: int) -> bytes:
    return bytes.fromhex(digits.ljust(2 * length, "F"))


def encode_item(item: DataItem, facts: CardFacts) -> bytes:
    """The value bytes of ``item`` for ``facts``; a fact that does not fit is refused."""
    fact = getattr(facts, item.field)
    match item.encoding:
        case Encoding.DATE:
            if not 1900 <= fact.year <= 2099:
                raise _bad_fact(item, "year outside 1900..2099")
            return bytes.fromhex(fact.strftime("%Y%m%d"))
        case Encoding.AN:
            if not (fact.isascii() and fact.isprintable() and len(fact) == item.length):
                raise _bad_fact(item, f"{item.length} printable ASCII characters")
            return fact.encode("ascii")
        case Encoding.CN:
            if not (_DIGITS.fullmatch(fact) and len(fact) <= 2 * item.length):
                raise _bad_fact(item, f"up to {2 * item.length} digits")
            return _bcd(fact, item.length)
        case Encoding.B:
            if not _HEX32.fullmatch(fact) or not _REGION.fullmatch(fact[:6]):
                raise _bad_fact(item, "32 upper-case hex digits starting with a region code")
            return bytes.fromhex(fact)
        case Encoding.GBK:
            try:
                raw = fact.encode("gbk")
            except UnicodeEncodeError:
                raise _bad_fact(item, "not representable in GBK") from None
            if not raw or len(raw) > item.length or "\x00" in fact:
                raise _bad_fact(item, f"1..{item.length} bytes of GBK")
            return raw.ljust(item.length, b"\x00")


def _bad_record(item: DataItem, why: str) -> TerminalError:
    return TerminalError(TerminalReason.BAD_RECORD, f"item {item.tag:02X}: {why}")


def decode_item(item: DataItem, value: bytes) -> str | dt.date:
    """The fact a card's value bytes stand for: the inverse of :func:`encode_item`."""
    if len(value) != item.length:
        raise _bad_record(item, f"{len(value)} bytes, expected {item.length}")
    match item.encoding:
        case Encoding.DATE:
            try:
                return dt.datetime.strptime(value.hex(), "%Y%m%d").date()
            except ValueError:
                raise _bad_record(item, "not a BCD date") from None
        case Encoding.AN:
            if not all(0x20 <= byte < 0x7F for byte in value):
                raise _bad_record(item, "not printable ASCII")
            return value.decode("ascii")
        case Encoding.CN:
            digits = value.hex().upper().rstrip("F")
            if not _DIGITS.fullmatch(digits):
                raise _bad_record(item, "not BCD digits")
            return digits
        case Encoding.B:
            return value.hex().upper()
        case Encoding.GBK:
            try:
                return value.rstrip(b"\x00").decode("gbk")
            except UnicodeDecodeError:
                raise _bad_record(item, "not GBK text") from None


def encode_record(item: DataItem, facts: CardFacts) -> bytes:
    """A record as the card stores it: tag, length, value."""
    return bytes((item.tag, item.length)) + encode_item(item, facts)


def parse_record(raw: bytes) -> tuple[DataItem, str | dt.date]:
    """A record read from a card: which item it is and the fact it carries."""
    if len(raw) < 2:
        raise TerminalError(TerminalReason.BAD_RECORD, "a record has a tag and a length")
    item = ITEMS_BY_TAG.get(raw[0])
    if item is None:
        raise TerminalError(TerminalReason.BAD_RECORD, f"unknown data item {raw[0]:02X}")
    if raw[1] != len(raw) - 2:
        raise _bad_record(item, f"length byte {raw[1]} but {len(raw) - 2} value bytes")
    return item, decode_item(item, raw[2:])


def check_facts(facts: CardFacts) -> None:
    """Refuse facts a card could not carry (before building a card from them)."""
    for item in DATA_ITEMS:
        encode_item(item, facts)
    if facts.expiry_date <= facts.issue_date:
        raise TerminalError(TerminalReason.BAD_CARD_FACTS, "expiry_date must follow issue_date")


class FileStructure(Enum):
    TRANSPARENT = 0x01
    LINEAR_FIXED = 0x02


class Access(StrEnum):
    """Who may read an EF: anyone, a terminal that passed EXTERNAL AUTHENTICATE, or that and the
    holder's PIN."""

    ALWAYS = "always"
    EXTERNAL_AUTH = "external_auth"
    EXTERNAL_AUTH_AND_PIN = "external_auth_and_pin"


class ElementaryFile(msgspec.Struct, frozen=True):
    fid: int
    sfi: int
    structure: FileStructure
    read_access: Access
    #: the records (linear fixed) or a single item holding the whole body (transparent)
    contents: tuple[bytes, ...]


class DedicatedFile(msgspec.Struct, frozen=True):
    fid: int | None
    name: bytes | None
    files: tuple[ElementaryFile, ...]

    def by_fid(self, fid: int) -> ElementaryFile | None:
        return next((ef for ef in self.files if ef.fid == fid), None)

    def by_sfi(self, sfi: int) -> ElementaryFile | None:
        return next((ef for ef in self.files if ef.sfi == sfi), None)


def _records_of(fid: int, facts: CardFacts) -> tuple[bytes, ...]:
    """Records numbered from 1; a number no item uses is an empty slot (not found when read)."""
    items = {item.record_number: item for item in DATA_ITEMS if item.ef_fid == fid}
    return tuple(
        encode_record(items[number], facts) if number in items else b""
        for number in range(1, max(items) + 1)
    )


def ef_dir_contents() -> bytes:
    """EF.DIR (ISO 7816-4 §8.2.1.1): one application template naming the SSSE application."""
    return tlv.encode(tlv.Tlv(0x61, children=(tlv.Tlv(0x4F, SSSE_DF_NAME), tlv.Tlv(0x50, b"SSSE"))))


def build_file_tree(
    facts: CardFacts, personal_data_access: Access
) -> tuple[DedicatedFile, DedicatedFile]:
    """(MF, SSSE DF) for a card carrying ``facts``."""
    check_facts(facts)
    master = DedicatedFile(
        MF_FID,
        None,
        (
            ElementaryFile(
                EF_DIR_FID,
                EF_DIR_SFI,
                FileStructure.TRANSPARENT,
                Access.ALWAYS,
                (ef_dir_contents(),),
            ),
        ),
    )
    ssse = DedicatedFile(
        None,
        SSSE_DF_NAME,
        (
            ElementaryFile(
                EF05_FID,
                EF05_SFI,
                FileStructure.LINEAR_FIXED,
                Access.ALWAYS,
                _records_of(EF05_FID, facts),
            ),
            ElementaryFile(
                EF06_FID,
                EF06_SFI,
                FileStructure.LINEAR_FIXED,
                personal_data_access,
                _records_of(EF06_FID, facts),
            ),
        ),
    )
    return master, ssse


# --- the registry's identification code as the chip carries it ----------------------------------

#: The chip carries 24 hex digits of a shorter registry identification code after the region and
#: its length (two digits), padded with F; a 32-digit code is carried as it is.
_SHORT_CODE_DIGITS = 24


def chip_identification_code(region: str, identification_code: str) -> str:
    """The 卡识别码 the chip carries for a registry card (32 hex digits, region first)."""
    code = identification_code.upper()
    if len(code) == 32:
        return code
    if len(code) <= _SHORT_CODE_DIGITS:
        return f"{region}{len(code):02d}{code.ljust(_SHORT_CODE_DIGITS, 'F')}"
    raise TerminalError(
        TerminalReason.BAD_CARD_FACTS, "identification codes are 32 hex digits, or at most 24"
    )


def registry_identification_codes(chip_code: str) -> list[str]:
    """The registry codes a chip's 卡识别码 may stand for (the inverse of the above)."""
    candidates = [chip_code]
    length = chip_code[6:8]
    if length.isdigit() and 1 <= int(length) <= _SHORT_CODE_DIGITS:
        short, padding = chip_code[8 : 8 + int(length)], chip_code[8 + int(length) :]
        if padding == "F" * len(padding):
            candidates.append(short)
    return candidates


def chip_code_or_none(region: str, identification_code: str) -> str | None:
    """The chip's 卡识别码 for a registry card, or None for a code no chip can carry."""
    try:
        return chip_identification_code(region, identification_code)
    except TerminalError:
        return None


def chip_reference(region: str, identification_code: str) -> str | None:
    """The reference offline records and the chip blacklist carry for a registry card (None when
    no chip can carry its code)."""
    chip_code = chip_code_or_none(region, identification_code)
    return card_reference(chip_code) if chip_code else None
