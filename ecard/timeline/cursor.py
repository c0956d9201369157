"""The timeline's order and its paging cursor (pure: no I/O, no framework).

Every item of the timeline has a :class:`Position`: its time in microseconds since the epoch, the
rank of its source, and its row id in that source.  The timeline is sorted newest first by that
triple, which is a total order (a row id is unique within its source, a rank names one source), so
"the items after this one" is well defined whatever the sources hold: the cursor of a page is the
position of its last item, and the next page is every item whose position is lower.

The cursor handed out is the position, as JSON, in base64url: opaque to the app (it only gives it
back), checked strictly when it comes back (a malformed one is refused, never half-read).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import heapq
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

import msgspec

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)
#: a cursor is at most this long (characters) before it is even decoded
MAX_CURSOR_CHARS = 200
#: times are from 1970 to 9999: anything outside is not a position this service gave
MAX_MICROS = 253_402_300_799_999_999
#: the sources' integer row ids are serials (PostgreSQL ``integer``): a larger id was never given
MAX_ROW_ID = 2**31 - 1
_TEXT_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


class Position(NamedTuple):
    """Where an item stands; the timeline is sorted by this triple, highest (newest) first."""

    at_us: int
    rank: int
    id: int | str


class CursorInvalid(ValueError):
    """The ``before`` cursor is not one this service gave."""


def micros(at: dt.datetime) -> int:
    """A time-zone-aware datetime as whole microseconds since the epoch (exact, no float)."""
    return (at - EPOCH) // MICROSECOND


def from_micros(at_us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=at_us)


def encode_cursor(position: Position) -> str:
    raw = msgspec.json.encode([position.at_us, position.rank, position.id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str, id_types: dict[int, type]) -> Position:
    """The position a cursor names.  ``id_types`` maps each source's rank to the type of its row
    ids (``int`` or ``str``); a cursor naming another rank, or an id of the wrong type, is
    refused."""
    if not text or len(text) > MAX_CURSOR_CHARS:
        raise CursorInvalid("the cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at_us, rank, row_id = msgspec.json.decode(raw, type=tuple[int, int, int | str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise CursorInvalid("the cursor is not one this service gave") from None
    if not 0 <= at_us <= MAX_MICROS:
        raise CursorInvalid("the cursor's time is out of range")
    id_type = id_types.get(rank)
    if id_type is None or type(row_id) is not id_type:
        raise CursorInvalid("the cursor names no source of the timeline")
    if isinstance(row_id, int) and not 0 <= row_id <= MAX_ROW_ID:
        raise CursorInvalid("the cursor's id is out of range")
    if isinstance(row_id, str) and not _TEXT_ID.fullmatch(row_id):
        raise CursorInvalid("the cursor's id is malformed")
    return Position(at_us, rank, row_id)


T = TypeVar("T")


def newest(
    sources: Iterable[Sequence[tuple[Position, T]]], limit: int
) -> tuple[list[tuple[Position, T]], bool]:
    """The ``limit`` newest items of several sources, each already sorted newest first, and
    whether more remain.  Each source must hold *more* than ``limit`` items when it has more than
    it returned (the caller asks each for ``limit + 1``): then "more remain" is exact."""
    merged = list(heapq.merge(*sources, key=lambda item: item[0], reverse=True))
    return merged[:limit], len(merged) > limit


class Bounds(NamedTuple):
    """How a source with time unit ``unit`` (microseconds per stored unit) and rank ``rank``
    compares its rows with a cursor: rows strictly older are ``time < strict``; rows of the same
    time are ``time == exact`` (None when no stored value can equal the cursor's time), and of
    those only ``id < cursor id`` when the ranks are equal, all of them when the source ranks
    lower, none when it ranks higher."""

    strict: int
    exact: int | None
    same_time: str  # "all", "lower_ids" or "none"


def bounds(cursor: Position, rank: int, unit: int) -> Bounds:
    """The comparison of :class:`Bounds` for a source storing times in units of ``unit`` µs."""
    strict = -(-cursor.at_us // unit)  # ceil: stored * unit < at_us  ⇔  stored < ceil(at_us / unit)
    exact = cursor.at_us // unit if cursor.at_us % unit == 0 else None
    same_time = "all" if rank < cursor.rank else "lower_ids" if rank == cursor.rank else "none"
    return Bounds(strict, exact, same_time)
