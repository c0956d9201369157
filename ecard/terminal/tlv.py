"""BER-TLV data objects as ISO/IEC 7816-4 §5.2 uses them (ISO/IEC 8825-1 rules, definite lengths).

Tags are kept as the integer of their bytes (``0x9F36``, ``0x6F``), so they read like the
specifications print them.  A tag is one to three bytes: the first byte with its low five bits
all ones announces subsequent bytes, each with bit 8 set while more follow.  Lengths use the short
form (00..7F) or the long form 81..84; the indefinite form (80) is not allowed in ISO 7816.
Cards sometimes send long-form lengths that would fit the short form (``81 05``); they are
accepted, and the encoder always writes the minimal form.

Parsing is bounded: the input size and the nesting depth of constructed objects are limited,
every length is checked against the bytes that remain before anything is sliced, and the parser
never recurses deeper than ``max_depth`` — so hostile input costs at most linear time and memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ecard.terminal.errors import TerminalError, TerminalReason

MAX_TAG_BYTES = 3
MAX_LENGTH_BYTES = 4
DEFAULT_MAX_DEPTH = 8
DEFAULT_MAX_SIZE = 65_536
_CONSTRUCTED_BIT = 0x20
_MULTI_BYTE_TAG = 0x1F
_MORE_TAG_BYTES = 0x80


class Tlv(msgspec.Struct, frozen=True):
    """One data object: a primitive one has ``value``, a constructed one ``children``."""

    tag: int
    value: bytes = b""
    children: tuple[Tlv, ...] = ()

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def find(self, tag: int) -> Tlv | None:
        """The first direct child with ``tag``."""
        return find(self.children, tag)


def find(objects: Iterable[Tlv], tag: int) -> Tlv | None:
    return next((item for item in objects if item.tag == tag), None)


def tag_bytes(tag: int) -> bytes:
    """The encoded form of ``tag``; refuses integers that are not a well-formed BER tag."""
    if not isinstance(tag, int) or tag <= 0:
        raise TerminalError(TerminalReason.TLV_BAD_TAG, "a tag is a positive integer")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    end = _tag_end(raw, 0, len(raw))
    if end != len(raw):
        raise TerminalError(TerminalReason.TLV_BAD_TAG, f"{raw.hex()} is not one BER tag")
    return raw


def is_constructed(tag: int) -> bool:
    return bool(tag_bytes(tag)[0] & _CONSTRUCTED_BIT)


def _tag_end(data: bytes, offset: int, stop: int) -> int:
    """Offset just past the tag starting at ``offset``; checks the ISO 7816-4 tag rules."""
    first = data[offset]
    if first in (0x00, 0xFF):
        raise TerminalError(TerminalReason.TLV_BAD_TAG, f"first tag byte {first:02X} is invalid")
    if first & _MULTI_BYTE_TAG != _MULTI_BYTE_TAG:
        return offset + 1
    position = offset + 1
    while True:
        if position >= stop:
            raise TerminalError(TerminalReason.TLV_TRUNCATED, "tag runs past the end")
        byte = data[position]
        if position == offset + 1 and (byte == _MORE_TAG_BYTES or byte < _MULTI_BYTE_TAG):
            raise TerminalError(TerminalReason.TLV_BAD_TAG, "tag number is not minimally encoded")
        position += 1
        if position - offset > MAX_TAG_BYTES:
            raise TerminalError(
                TerminalReason.TLV_BAD_TAG, f"tag longer than {MAX_TAG_BYTES} bytes"
            )
        if not byte & _MORE_TAG_BYTES:
            return position


def length_bytes(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    if size > MAX_LENGTH_BYTES:
        raise TerminalError(TerminalReason.TLV_BAD_LENGTH, "value too long for BER-TLV")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def _read_length(data: bytes, offset: int, stop: int) -> tuple[int, int]:
    """(length, offset of the value)."""
    if offset >= stop:
        raise TerminalError(TerminalReason.TLV_TRUNCATED, "length field missing")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    if size == 0:
        raise TerminalError(TerminalReason.TLV_BAD_LENGTH, "indefinite length is not allowed")
    if size > MAX_LENGTH_BYTES:
        raise TerminalError(TerminalReason.TLV_BAD_LENGTH, f"{size}-byte length field")
    end = offset + 1 + size
    if end > stop:
        raise TerminalError(TerminalReason.TLV_TRUNCATED, "length field runs past the end")
    return int.from_bytes(data[offset + 1 : end], "big"), end


def _parse(data: bytes, start: int, stop: int, depth: int, max_depth: int) -> tuple[Tlv, ...]:
    objects: list[Tlv] = []
    offset = start
    while offset < stop:
        tag_end = _tag_end(data, offset, stop)
        tag = int.from_bytes(data[offset:tag_end], "big")
        length, value_start = _read_length(data, tag_end, stop)
        value_end = value_start + length
        if value_end > stop:
            raise TerminalError(
                TerminalReason.TLV_TRUNCATED, f"value of tag {tag:X} runs past the end"
            )
        if data[offset] & _CONSTRUCTED_BIT:
            if depth >= max_depth:
                raise TerminalError(TerminalReason.TLV_TOO_DEEP, f"nested deeper than {max_depth}")
            children = _parse(data, value_start, value_end, depth + 1, max_depth)
            objects.append(Tlv(tag, children=children))
        else:
            objects.append(Tlv(tag, value=bytes(data[value_start:value_end])))
        offset = value_end
    return tuple(objects)


def decode(
    data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, max_size: int = DEFAULT_MAX_SIZE
) -> tuple[Tlv, ...]:
    """All data objects in ``data`` (which they must fill exactly)."""
    if len(data) > max_size:
        raise TerminalError(TerminalReason.TLV_TOO_LARGE, f"{len(data)} bytes, limit {max_size}")
    return _parse(bytes(data), 0, len(data), 0, max_depth)


def decode_one(data: bytes, **limits: int) -> Tlv:
    """Exactly one data object filling ``data``."""
    objects = decode(data, **limits)
    if len(objects) != 1:
        raise TerminalError(
            TerminalReason.TLV_TRUNCATED, f"expected one data object, found {len(objects)}"
        )
    return objects[0]


def encode(*objects: Tlv) -> bytes:
    """Minimal definite-length encoding; a primitive must not have children nor a constructed one a
    value."""
    out = bytearray()
    for item in objects:
        raw_tag = tag_bytes(item.tag)
        if raw_tag[0] & _CONSTRUCTED_BIT:
            if item.value:
                raise TerminalError(
                    TerminalReason.TLV_BAD_TAG, f"constructed tag {item.tag:X} with a value"
                )
            value = encode(*item.children)
        else:
            if item.children:
                raise TerminalError(
                    TerminalReason.TLV_BAD_TAG, f"primitive tag {item.tag:X} with children"
                )
            value = item.value
        out += raw_tag + length_bytes(len(value)) + value
    return bytes(out)
