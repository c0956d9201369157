"""The timeline's order and cursor, pure: the conditions each source is read with select exactly
the items after the cursor, whatever the source's time unit and rank."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.timeline.cursor import (
    CursorInvalid,
    Position,
    bounds,
    decode_cursor,
    encode_cursor,
    from_micros,
    micros,
    newest,
)

ID_TYPES = {0: str, 1: int, 2: int}
UNITS = {0: 1_000, 1: 1, 2: 1_000_000}  # ms, µs, s per source rank


def selected(stored: int, row_id: int | str, rank: int, cursor: Position) -> bool:
    """What the SQL condition of :func:`ecard.timeline.service._older` selects, evaluated here."""
    b = bounds(cursor, rank, UNITS[rank])
    if stored < b.strict:
        return True
    if b.exact is None or b.same_time == "none" or stored != b.exact:
        return False
    return b.same_time == "all" or row_id < cursor.id  # type: ignore[operator]


rows = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 5_000), st.integers(0, 30)),
    max_size=40,
    unique_by=lambda r: (r[0], r[2]),
)


@given(rows, st.integers(0, 5_000_000_000), st.integers(0, 2), st.integers(0, 30))
def test_the_source_conditions_select_exactly_what_comes_after_the_cursor(
    rows, at_us, rank, row_id
) -> None:
    cursor = Position(at_us, rank, str(row_id) if rank == 0 else row_id)
    for source, stored, rid in rows:
        key = str(rid) if source == 0 else rid
        position = Position(stored * UNITS[source], source, key)
        assert selected(stored, key, source, cursor) == (position < cursor), (position, cursor)


@given(
    st.lists(st.lists(st.integers(0, 10**6), max_size=12), min_size=1, max_size=5),
    st.integers(1, 7),
)
def test_paging_with_newest_gives_every_item_once_in_order(sources, limit) -> None:
    streams = [
        sorted(((Position(t, rank, i), (rank, i)) for i, t in enumerate(times)), reverse=True)
        for rank, times in enumerate(sources)
    ]
    everything = sorted((entry for stream in streams for entry in stream), reverse=True)
    seen: list = []
    cursor = None
    while True:
        after = [
            [e for e in stream if cursor is None or e[0] < cursor][: limit + 1]
            for stream in streams
        ]
        page, more = newest(after, limit)
        seen += page
        if not more:
            break
        cursor = page[-1][0]
    assert seen == everything


def test_a_cursor_round_trips_and_anything_else_is_refused() -> None:
    for position in (
        Position(0, 1, 0),
        Position(1_733_000_000_123_456, 2, 2**31 - 1),
        Position(5, 0, "ab12"),
    ):
        assert decode_cursor(encode_cursor(position), ID_TYPES) == position
    for text in (
        "",
        "!!",
        "W10",
        "WzEsMiwzLDRd",
        encode_cursor(Position(1, 3, 1)),
        encode_cursor(Position(1, 0, 1)),
        encode_cursor(Position(1, 1, "x")),
        encode_cursor(Position(-5, 1, 1)),
        encode_cursor(Position(1, 0, "a b")),
        encode_cursor(Position(1, 1, -1)),
        encode_cursor(Position(1, 1, 2**31)),
        "A" * 300,
    ):
        with pytest.raises(CursorInvalid):
            decode_cursor(text, ID_TYPES)


def test_times_are_exact_microseconds() -> None:
    for value in (0, 1, 1_733_000_000_999_999, 253_402_300_799_999_999):
        assert micros(from_micros(value)) == value
