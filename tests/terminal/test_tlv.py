"""BER-TLV: multi-byte tags, long lengths and nesting round-trip; hostile input is
refused, bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.terminal import tlv
from ecard.terminal.errors import TerminalError, TerminalReason

TLV_REASONS = {
    TerminalReason.TLV_TRUNCATED,
    TerminalReason.TLV_BAD_TAG,
    TerminalReason.TLV_BAD_LENGTH,
    TerminalReason.TLV_TOO_DEEP,
    TerminalReason.TLV_TOO_LARGE,
}


def _tag(first: int, more: list[int]) -> int:
    return int.from_bytes(bytes([first, *more]), "big")


single_byte_tags = st.integers(1, 0xFE).filter(lambda b: b & 0x1F != 0x1F)
two_byte_tags = st.builds(
    lambda first, second: _tag(first, [second]),
    st.sampled_from([0x5F, 0x7F, 0x9F, 0xBF, 0xDF]),
    st.integers(0x1F, 0x7F),
)
three_byte_tags = st.builds(
    lambda first, second, third: _tag(first, [second, third]),
    st.sampled_from([0x5F, 0x7F, 0x9F, 0xDF]),
    st.integers(0x81, 0xFF),
    st.integers(0x00, 0x7F),
)
tags = st.one_of(single_byte_tags, two_byte_tags, three_byte_tags)


def _object(tag: int, value: bytes, children: list[tlv.Tlv]) -> tlv.Tlv:
    if tlv.is_constructed(tag):
        return tlv.Tlv(tag, children=tuple(children))
    return tlv.Tlv(tag, value=value)


objects = st.recursive(
    st.builds(_object, tags, st.binary(max_size=300), st.just([])),
    lambda inner: st.builds(_object, tags, st.binary(max_size=40), st.lists(inner, max_size=4)),
    max_leaves=12,
)


@given(st.lists(objects, max_size=4))
def test_objects_round_trip(items: list[tlv.Tlv]) -> None:
    encoded = tlv.encode(*items)
    assert tlv.decode(encoded) == tuple(items)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_a_typed_error(raw: bytes) -> None:
    try:
        items = tlv.decode(raw)
    except TerminalError as error:
        assert error.reason in TLV_REASONS
    else:  # what decodes re-encodes, at most shorter (cards may use non-minimal lengths)
        assert len(tlv.encode(*items)) <= len(raw)


def test_fci_of_the_ssse_application_parses() -> None:
    fci = bytes.fromhex("6F11840F7378312E73682EC9E7BBE1B1A3D5CF")
    (template,) = tlv.decode(fci)
    assert template.tag == 0x6F and template.constructed
    assert template.find(0x84).value.decode("gbk") == "sx1.sh.社会保障"


def test_multi_byte_tags_and_long_form_lengths() -> None:
    value = b"\xab" * 300
    encoded = tlv.encode(tlv.Tlv(0x9F1F, value))
    assert encoded[:5] == bytes.fromhex("9F1F82012C")
    assert tlv.decode_one(encoded) == tlv.Tlv(0x9F1F, value)
    assert tlv.decode(bytes.fromhex("5A8105AABBCCDDEE")) == (
        tlv.Tlv(0x5A, bytes.fromhex("AABBCCDDEE")),
    )


@pytest.mark.parametrize(
    ("hex_input", "reason"),
    [
        ("5A05AABB", TerminalReason.TLV_TRUNCATED),  # value shorter than its length
        ("5A", TerminalReason.TLV_TRUNCATED),  # length missing
        ("9F", TerminalReason.TLV_TRUNCATED),  # tag cut short
        ("5A84FFFFFFFF", TerminalReason.TLV_TRUNCATED),  # 4 GiB claimed, nothing there
        ("5A85FFFFFFFFFF", TerminalReason.TLV_BAD_LENGTH),  # 5-byte length field
        ("5A80", TerminalReason.TLV_BAD_LENGTH),  # indefinite length
        ("0001AA", TerminalReason.TLV_BAD_TAG),
        ("FF01AA", TerminalReason.TLV_BAD_TAG),
        ("1F0501AA", TerminalReason.TLV_BAD_TAG),  # a two-byte tag for a number below 31
        ("1F8001AA", TerminalReason.TLV_BAD_TAG),  # leading zero in the tag number
        ("1F81818101AA", TerminalReason.TLV_BAD_TAG),  # four-byte tag
        ("6F035A01", TerminalReason.TLV_TRUNCATED),  # child runs past its parent
    ],
)
def test_hostile_input_is_refused_with_a_reason(hex_input: str, reason: TerminalReason) -> None:
    with pytest.raises(TerminalError) as caught:
        tlv.decode(bytes.fromhex(hex_input))
    assert caught.value.reason is reason


def test_deep_nesting_is_refused_not_recursed() -> None:
    nested = b""
    for _ in range(10_000):  # far deeper than the interpreter's recursion limit
        nested = b"\x70" + tlv.length_bytes(len(nested)) + nested
    with pytest.raises(TerminalError) as caught:
        tlv.decode(nested, max_size=1 << 20)
    assert caught.value.reason is TerminalReason.TLV_TOO_DEEP


def test_nesting_up_to_the_limit_is_fine() -> None:
    item = tlv.Tlv(0x5A, b"x")
    for _ in range(tlv.DEFAULT_MAX_DEPTH):
        item = tlv.Tlv(0x70, children=(item,))
    assert tlv.decode_one(tlv.encode(item)) == item


def test_oversized_input_is_refused_unread() -> None:
    with pytest.raises(TerminalError) as caught:
        tlv.decode(b"\x5a\x00" * 40_000)
    assert caught.value.reason is TerminalReason.TLV_TOO_LARGE


@pytest.mark.parametrize(
    "item",
    [
        tlv.Tlv(0x6F, value=b"x"),
        tlv.Tlv(0x5A, children=(tlv.Tlv(0x5A, b""),)),
        tlv.Tlv(0x1F05, b""),
    ],
)
def test_inconsistent_objects_cannot_be_encoded(item: tlv.Tlv) -> None:
    with pytest.raises(TerminalError) as caught:
        tlv.encode(item)
    assert caught.value.reason is TerminalReason.TLV_BAD_TAG
