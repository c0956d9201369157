"""Release rules, pure: what of the facts may leave the platform, one named check per rule.

Rules (``docs/statistics.md`` explains each and what it protects):

1. ``check_k_setting``: the threshold k is at least :data:`MIN_K` (10); a smaller setting is
   refused at start-up.
2. ``check_enough_events``: a base cell (one day × region × scenario × medium × channel × result
   × cross-province) with fewer than k events is withheld.
3. ``check_enough_cards``: so is one with fewer than k distinct cards (ten uses by one person is
   still one person).
4. ``released_groups``: every figure released without noise — any grouping, any range, any
   coarsening (month, prefecture, province) — is a sum of *released* base cells only.  A withheld
   cell is in no total, so no difference of released figures (across groupings, ranges or
   filters) can reveal it: all released figures are functions of released base cells alone.
5. Department figures come only from the noisy mechanism (``ecard.statistics.privacy``), over
   every cell of a data-independent domain; ``check_noisy_threshold`` then blanks noisy values
   below k (post-processing, which costs no privacy).

Per-person export is impossible by construction: facts hold counts and sketches of keyed
pseudonyms, and every grouping dimension is a place, a catalogue code or a filing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ecard.statistics import sketch
from ecard.statistics.dimensions import Cell, coordinate

MIN_K = 10


class ReleaseRuleError(ValueError):
    """A release setting breaks a rule."""


@dataclass(frozen=True)
class BaseFact:
    """One day fact as read from the table."""

    day: str
    cell: Cell
    events: int
    capped: int
    cards: int
    sketch: bytes


@dataclass
class Group:
    """A released figure: the sum of released base cells sharing a key."""

    key: tuple[str, ...]
    events: int = 0
    sketches: list[bytes] = field(default_factory=list)

    @property
    def cards(self) -> int:
        return sketch.estimate(self.sketches)


def check_k_setting(k: int) -> int:
    """Rule 1."""
    if k < MIN_K:
        raise ReleaseRuleError(f"k must be at least {MIN_K}, not {k}")
    return k


def check_enough_events(fact: BaseFact, k: int) -> bool:
    """Rule 2: at least k events."""
    return fact.events >= k


def check_enough_cards(fact: BaseFact, k: int) -> bool:
    """Rule 3: at least k distinct cards."""
    return fact.cards >= k


BASE_RULES = (check_enough_events, check_enough_cards)


def releasable(fact: BaseFact, k: int) -> bool:
    return all(rule(fact, k) for rule in BASE_RULES)


def released_groups(
    facts: Iterable[BaseFact], group_by: Sequence[str], k: int
) -> tuple[list[Group], int]:
    """Rule 4: the groups of ``group_by`` summed over released base cells, in key order, and how
    many base cells were withheld."""
    check_k_setting(k)
    groups: dict[tuple[str, ...], Group] = {}
    withheld = 0
    for fact in facts:
        if not releasable(fact, k):
            withheld += 1
            continue
        key = tuple(coordinate(d, fact.day, fact.cell) for d in group_by)
        group = groups.setdefault(key, Group(key))
        group.events += fact.events
        group.sketches.append(fact.sketch)
    return [groups[key] for key in sorted(groups)], withheld


def check_noisy_threshold(value: int, k: int) -> int | None:
    """Rule 5: a noisy value below k is blanked (None)."""
    return value if value >= k else None
