"""Identity numbers (GB 11643 公民身份号码 / 社会保障号码) and the masked forms shown to callers."""

from __future__ import annotations

import datetime as dt
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SHAPE = re.compile(r"^[1-9]\d{5}(\d{8})\d{3}[\dX]$")


class InvalidIdentityNumber(ValueError):
    """The number is not an 18-character GB 11643 identity number with a valid check digit."""


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalize_identity_number(raw: str) -> str:
    """Upper-case, strip and validate shape, birth date and check digit; return the
    canonical form."""
    number = raw.strip().upper()
    match = _SHAPE.match(number)
    if not match:
        raise InvalidIdentityNumber("expected 18 characters: 17 digits and a digit or X")
    try:
        dt.datetime.strptime(match.group(1), "%Y%m%d")
    except ValueError:
        raise InvalidIdentityNumber("the birth date inside the number is not a date") from None
    if check_digit(number[:17]) != number[17]:
        raise InvalidIdentityNumber("the check digit does not match")
    return number


def birth_date_of(number: str) -> dt.date:
    return dt.datetime.strptime(number[6:14], "%Y%m%d").date()


def mask_name(name: str) -> str:
    """张三 -> 张*, 张小三 -> 张*三, 欧阳小明 -> 欧**明: first and last characters kept."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_identity_number(number: str) -> str:
    """330102199001011234 -> 3301**********1234."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_card_number(number: str) -> str:
    """Only the last four characters stay visible."""
    return "*" * max(len(number) - 4, 0) + number[-4:]
