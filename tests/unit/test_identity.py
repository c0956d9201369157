"""Identity numbers: check digit, shape, birth date; masked forms."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.crypto.identity import (
    InvalidIdentityNumber,
    check_digit,
    mask_card_number,
    mask_identity_number,
    mask_name,
    normalize_identity_number,
)

VALID = "11010519491231002X"  # the example number of GB 11643-1999


def test_the_standards_example_number_is_valid() -> None:
    assert normalize_identity_number(VALID.lower()) == VALID


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("110105194912310021", "check digit"),
        ("11010519491231002", "18 characters"),
        ("01010519491231002X", "18 characters"),  # leading zero: no region starts with 0
        ("110105194913310029", "birth date"),
        ("11010519491231002Y", "18 characters"),
        ("", "18 characters"),
    ],
)
def test_malformed_numbers_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(InvalidIdentityNumber, match=why):
        normalize_identity_number(raw)


@given(st.text(max_size=40))
def test_arbitrary_text_is_either_valid_or_refused_never_crashes(text: str) -> None:
    try:
        number = normalize_identity_number(text)
    except InvalidIdentityNumber:
        return
    assert check_digit(number[:17]) == number[17]


@given(
    st.from_regex(
        r"[1-9]\d{5}(19[5-9]\d|20[01]\d)(0[1-9]|1[0-2])(0[1-9]|1\d|2[0-8])\d{3}", fullmatch=True
    )
)
def test_every_single_digit_change_is_caught(first17: str) -> None:
    number = first17 + check_digit(first17)
    assert normalize_identity_number(number) == number
    for position in range(17):
        digit = int(number[position])
        changed = number[:position] + str((digit + 1) % 10) + number[position + 1 :]
        if changed[0] == "0":
            continue
        with pytest.raises(InvalidIdentityNumber):
            normalize_identity_number(changed)


def test_masks_keep_only_what_staff_need() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("张小三") == "张*三"
    assert mask_name("欧阳小明") == "欧**明"
    assert mask_identity_number(VALID) == "1101**********002X"
    assert mask_card_number("A12345678") == "*****5678"
