"""The dimensions a use fact is counted by, their catalogues and the time buckets, pure.

A fact is one cell of: time bucket (a UTC hour, or a day in China Standard Time) × region
(GB/T 2260, the finest code known) × scenario × medium × channel × result × cross-province.
Every value of every dimension comes from a catalogue or from public registrations (filings,
terminals, institutions), never from a person.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from ecard.directory import catalogue as cat

#: China Standard Time (no daylight saving): days, months and reports are local calendar days.
CST = dt.timezone(dt.timedelta(hours=8), "CST")
HOUR = 3600
DAY = 86_400

UNSPECIFIED = "unspecified"  # a place or service that names no scenario
NO_CHANNEL = "none"  # the chip card: no channel app is involved
UNKNOWN_CHANNEL = "unknown"  # a QR code or consent: the record does not say which app

SCENARIOS: tuple[str, ...] = (*cat.SCENARIOS, UNSPECIFIED)
MEDIA: tuple[str, ...] = tuple(cat.MEDIA)
RESULTS: tuple[str, ...] = ("success", "refused")
CROSS: tuple[str, ...] = ("same", "cross", "unknown")

#: a terminal's registered kind -> the scenario its uses count under (when it is linked to no
#: institution of the directory)
TERMINAL_KIND_SCENARIO: dict[str, str] = {
    "hospital": "medical",
    "pharmacy": "medical",
    "service_hall": "hrss",
    "transport": "transport",
    "gate": "transport",
}

#: group-by dimensions a query may name; ``prefecture`` and ``province`` coarsen ``region``
DIMENSIONS: tuple[str, ...] = (
    "day",
    "month",
    "region",
    "prefecture",
    "province",
    "scenario",
    "medium",
    "channel",
    "result",
    "cross_province",
)
TIME_DIMENSIONS = frozenset({"day", "month"})
REGION_DIMENSIONS = frozenset({"region", "prefecture", "province"})

_REGION = re.compile(r"^[1-9]\d{5}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


class Cell(NamedTuple):
    """The non-time coordinates of a fact (its ``region`` is the finest code known)."""

    region: str
    scenario: str
    medium: str
    channel: str
    result: str
    cross: str

    @property
    def key(self) -> str:
        return "|".join(self)


def result_of(raw: str) -> str:
    """``valid`` (online verification), ``accepted`` (terminal), ``granted`` and ``success`` are
    successes; any reason code is a refusal."""
    return "success" if raw in ("valid", "accepted", "granted", "success") else "refused"


def province_of(region: str) -> str:
    return region[:2] + "0000"


def prefecture_of(region: str) -> str:
    """330106 → 330100; a province-level code stays itself."""
    return region if region.endswith("0000") else region[:4] + "00"


def cross_of(card_region: str | None, place_region: str | None) -> str:
    """Whether a card of one province was used in another (跨省用卡)."""
    if not card_region or not place_region:
        return "unknown"
    return "same" if card_region[:2] == place_region[:2] else "cross"


def is_region(code: str) -> bool:
    return bool(_REGION.match(code))


def region_in(code: str, scope: Iterable[str]) -> bool:
    """Whether ``code`` lies inside one of ``scope``'s GB/T 2260 codes (``*``: everywhere)."""
    for covering in scope:
        if covering == "*" or code.startswith(cat.region_prefix(covering)):
            return True
    return False


def scenario_field(scenario: str) -> str | None:
    """The 一卡通 field (领域) of a scenario; None for ``unspecified``."""
    found = cat.SCENARIOS.get(scenario)
    return found[1] if found else None


def first_scenario(codes: Sequence[str]) -> str:
    return next((c for c in codes if c in cat.SCENARIOS), UNSPECIFIED)


# --- time -------------------------------------------------------------------------------------


def hour_start(epoch: float) -> int:
    return int(epoch) - int(epoch) % HOUR


def local_day(epoch: float) -> str:
    """The China Standard Time date of an instant, ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(int(epoch), CST).date().isoformat()


def day_start(day: str) -> int:
    """Epoch seconds of 00:00 CST on ``day``."""
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), CST).timestamp())


def month_of(day: str) -> str:
    return day[:7]


def parse_day(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` date, else ValueError."""
    if not _DATE.match(text):
        raise ValueError("expected YYYY-MM-DD")
    return dt.date.fromisoformat(text)


def parse_month(text: str) -> tuple[dt.date, dt.date]:
    """``YYYY-MM`` → its first and last day, else ValueError."""
    if not _MONTH.match(text):
        raise ValueError("expected YYYY-MM")
    first = dt.date.fromisoformat(text + "-01")
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, following - dt.timedelta(days=1)


def days_between(first: dt.date, last: dt.date) -> list[str]:
    """Every day from ``first`` to ``last``, both included."""
    return [
        (first + dt.timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)
    ]


def coordinate(dimension: str, day: str, cell: Cell) -> str:
    """The value of one group-by dimension for a fact of ``day`` in ``cell``."""
    values: Mapping[str, str] = {
        "day": day,
        "month": month_of(day),
        "region": cell.region,
        "prefecture": prefecture_of(cell.region),
        "province": province_of(cell.region),
        "scenario": cell.scenario,
        "medium": cell.medium,
        "channel": cell.channel,
        "result": cell.result,
        "cross_province": cell.cross,
    }
    return values[dimension]
