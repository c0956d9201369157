"""Card facts become the records real reader code reads, and those records read back to
the facts."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.terminal import card_model as cm
from ecard.terminal.errors import TerminalError, TerminalReason
from tests.terminal.helpers import FACTS


def test_the_ssse_df_name_is_the_gbk_bytes_readers_send() -> None:
    assert cm.SSSE_DF_NAME == bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")


def test_card_identification_record_matches_a_real_card_trace() -> None:
    # reader trace: 00B2010400 -> 0110 330300D15600000599110145FFFFFFFF 9000
    item = cm.ITEMS_BY_TAG[0x01]
    assert cm.encode_record(item, FACTS).hex().upper() == "0110330300D15600000599110145FFFFFFFF"
    # reader trace: 00B2030400 -> 0304 332E3030 9000 ("3.00")
    assert cm.encode_record(cm.ITEMS_BY_TAG[0x03], FACTS).hex().upper() == "0304332E3030"
    assert FACTS.region_code == "330300"


def test_every_item_reads_back_to_its_fact() -> None:
    for item in cm.DATA_ITEMS:
        parsed_item, fact = cm.parse_record(cm.encode_record(item, FACTS))
        assert parsed_item == item
        assert fact == getattr(FACTS, item.field)


names = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=15)


@given(
    name=names,
    birth=st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)),
    ethnicity=st.from_regex(r"[0-9]{2}", fullmatch=True),
    birth_place=st.from_regex(r"([0-9]{6})?", fullmatch=True),
)
def test_holder_facts_round_trip_through_records(
    name: str, birth: dt.date, ethnicity: str, birth_place: str
) -> None:
    facts = msgspec.structs.replace(
        FACTS, name=name, birth_date=birth, ethnicity=ethnicity, birth_place=birth_place
    )
    for item in cm.DATA_ITEMS:
        assert cm.parse_record(cm.encode_record(item, facts))[1] == getattr(facts, item.field)


@pytest.mark.parametrize(
    "change",
    [
        {"card_number": "A1234567"},  # 8 characters, the item holds 9
        {"card_identification_code": "33030"},
        {"card_identification_code": "XX0300D15600000599110145FFFFFFFF"},
        {"social_security_number": "33010619900307123"},
        {"name": "张" * 16},  # 32 bytes of GBK, the item holds 30
        {"name": "😀"},  # not GBK
        {"ethnicity": "123"},
        {"birth_date": dt.date(1850, 1, 1)},
        {"expiry_date": dt.date(2019, 1, 1)},  # before the issue date
    ],
)
def test_facts_a_card_cannot_carry_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(TerminalError) as caught:
        cm.check_facts(msgspec.structs.replace(FACTS, **change))
    assert caught.value.reason is TerminalReason.BAD_CARD_FACTS


@given(st.binary(max_size=40))
def test_arbitrary_records_parse_or_raise_a_typed_error(raw: bytes) -> None:
    try:
        cm.parse_record(raw)
    except TerminalError as error:
        assert error.reason is TerminalReason.BAD_RECORD


def test_ef_dir_names_the_ssse_application() -> None:
    from ecard.terminal import tlv

    (template,) = tlv.decode(cm.ef_dir_contents())
    assert template.find(0x4F).value == cm.SSSE_DF_NAME
