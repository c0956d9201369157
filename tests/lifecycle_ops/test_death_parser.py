"""The death-record CSV reader as a pure function: every line becomes a record or a rejection with
a reason code — never another exception, never the row's content."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.crypto.identity import check_digit
from ecard.errors import AppError
from ecard.registry import deaths
from ecard.registry.deaths import Header, RowRejected, parse_header, parse_row, read_lines

TODAY = dt.date(2026, 12, 3)
HEADER = parse_header(b"identity_number,died_on,source_ref\n")


def number(birth: str = "19500101", serial: int = 123) -> str:
    first17 = f"330102{birth}{serial:03d}"
    return first17 + check_digit(first17)


def rejection(line: bytes, header: Header = HEADER) -> str:
    with pytest.raises(RowRejected) as rejected:
        parse_row(2, line, header, TODAY)
    return rejected.value.code


def test_a_good_row_is_a_record_with_the_number_normalized() -> None:
    raw = number(serial=7).lower().replace("x", "x")
    record = parse_row(5, f" {raw} ,2026-11-30,GA-330102-2026-000123\r\n".encode(), HEADER, TODAY)
    assert record == deaths.DeathRecord(
        5, number(serial=7), dt.date(2026, 11, 30), "GA-330102-2026-000123"
    )


def test_columns_may_come_in_any_order_and_extra_columns_are_ignored() -> None:
    header = parse_header("\ufeffsource_ref,note,died_on,identity_number\n".encode())
    record = parse_row(2, f'MZ-2026/77,"a, b",2026-01-02,{number()}\n'.encode(), header, TODAY)
    assert (record.source_ref, record.died_on) == ("MZ-2026/77", dt.date(2026, 1, 2))


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"identity_number,died_on\n",
        b"id,died_on,source_ref\n",
        b"identity_number,died_on,source_ref,died_on\n",
        b"\xff\xfe\n",
    ],
)
def test_a_header_without_each_column_once_refuses_the_file(header: bytes) -> None:
    with pytest.raises(AppError) as refused:
        parse_header(header)
    assert refused.value.code == "death_records_invalid"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (f"{number()},2026-11-31,R1", deaths.MALFORMED_DATE),
        (f"{number()},30/11/2026,R1", deaths.MALFORMED_DATE),
        (f"{number()},20261130,R1", deaths.MALFORMED_DATE),
        (f"{number()},,R1", deaths.MALFORMED_DATE),
        (
            f"{number()[:17]}0,2026-11-30,R1",
            deaths.INVALID_IDENTITY_NUMBER,
        ),  # check digit (0 is never it here)
        ("330102195013011234,2026-11-30,R1", deaths.INVALID_IDENTITY_NUMBER),  # month 13
        (",2026-11-30,R1", deaths.INVALID_IDENTITY_NUMBER),
        (f"{number()},2026-12-04,R1", deaths.FUTURE_DATE),
        (f"{number(birth='19800615')},1980-06-14,R1", deaths.BEFORE_BIRTH),
        (f"{number()},2026-11-30,", deaths.INVALID_SOURCE_REF),
        (f"{number()},2026-11-30,{'R' * 65}", deaths.INVALID_SOURCE_REF),
        (
            f"{number()},2026-11-30,张三死亡证明",
            deaths.INVALID_SOURCE_REF,
        ),  # no names in a reference
        (
            f"{number()},2026-11-30,REF-{number()}",
            deaths.INVALID_SOURCE_REF,
        ),  # nor an identity number
        (f"{number()},2026-11-30", deaths.MALFORMED_ROW),
        (f"{number()},2026-11-30,R1,extra", deaths.MALFORMED_ROW),
        (f'{number()},2026-11-30,"R1', deaths.MALFORMED_ROW),
    ],
)
def test_each_broken_rule_has_its_reason_code(line: str, code: str) -> None:
    assert rejection(line.encode()) == code


def test_a_row_that_is_not_utf8_is_malformed() -> None:
    assert rejection(number().encode() + b",2026-11-30,\xff\xfe") == deaths.MALFORMED_ROW
    assert rejection(number().encode() + b",2026-11-30,R\x001") == deaths.MALFORMED_ROW


def test_the_birth_day_and_today_are_both_allowed() -> None:
    assert parse_row(
        2, f"{number(birth='19800615')},1980-06-15,R".encode(), HEADER, TODAY
    ).died_on == dt.date(1980, 6, 15)
    assert parse_row(2, f"{number()},2026-12-03,R".encode(), HEADER, TODAY).died_on == TODAY


def test_lines_are_numbered_and_an_overlong_line_is_skipped_whole() -> None:
    text = b"h\n" + b"x" * (deaths.MAX_LINE_BYTES * 3) + b"\nlast"
    assert list(read_lines(io.BytesIO(text))) == [(1, b"h\n"), (2, None), (3, b"last")]


def test_rows_are_counted_without_the_header() -> None:
    assert deaths.count_rows(io.BytesIO(b"h\na\nb\n")) == 2
    assert deaths.count_rows(io.BytesIO(b"h\na\nb")) == 2
    assert deaths.count_rows(io.BytesIO(b"")) == 0


fields = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            number(),
            number(serial=9),
            "2026-11-30",
            "1950-01-01",
            "2099-01-01",
            "GA-1",
            '"',
            ",",
            "\r",
        ]
    ),
)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(fields, min_size=0, max_size=5).map(
            lambda values: ",".join(values).encode("utf-8", "surrogatepass")
        ),
    )
)
def test_any_line_is_a_record_or_a_rejection_never_an_error(line: bytes) -> None:
    try:
        record = parse_row(2, line, HEADER, TODAY)
    except RowRejected as rejected:
        assert (
            rejected.code in deaths.REASONS and str(rejected) == rejected.code
        )  # the code, nothing of the row
    else:
        assert (
            record.died_on <= TODAY
            and len(record.source_ref) <= 64
            and len(record.identity_number) == 18
        )


@given(st.binary(max_size=200))
def test_any_header_is_read_or_refused_as_invalid(line: bytes) -> None:
    try:
        header = parse_header(line)
    except AppError as refused:
        assert refused.code == "death_records_invalid"
    else:
        assert len(set(header.positions)) == 3 and max(header.positions) < header.width
