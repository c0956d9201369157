"""Release rules: k at least 10; a cell of 9 never appears and cannot be derived, whatever the
grouping (hypothesis over groupings and data)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.settings import SettingsError, load_settings
from ecard.statistics import dimensions as dims
from ecard.statistics import release
from ecard.statistics.sketch import Sketch

K = 10


def _sketch(cards: int, salt: int) -> bytes:
    s = Sketch()
    for n in range(cards):
        s.add(f"{salt}-{n}")
    return s.serialize()


def _fact(
    day: str,
    region: str,
    scenario: str,
    medium: str,
    result: str,
    events: int,
    cards: int,
    salt: int,
) -> release.BaseFact:
    cell = dims.Cell(region, scenario, medium, "none", result, "same")
    return release.BaseFact(day, cell, events, events, cards, _sketch(cards, salt))


facts_strategy = st.lists(
    st.tuples(
        st.sampled_from(["2026-11-01", "2026-11-02", "2026-12-01"]),
        st.sampled_from(["330102", "330106", "330206"]),
        st.sampled_from(["medical", "transport"]),
        st.sampled_from(["qr_code", "chip_card"]),
        st.sampled_from(["success", "refused"]),
        st.integers(min_value=1, max_value=40),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda t: t[:5],
)
groupings = st.lists(st.sampled_from(dims.DIMENSIONS), max_size=3, unique=True)


@settings(max_examples=60, deadline=None)
@given(facts_strategy, groupings, st.integers(min_value=1, max_value=9))
def test_a_small_cell_never_appears_nor_moves_any_released_figure(
    rows: list[tuple], group_by: list[str], small: int
) -> None:
    facts = [
        _fact(*row, cards=row[5], salt=i) for i, row in enumerate(rows)
    ]  # each use a different card
    secret = _fact("2026-11-02", "330106", "culture", "nfc_hce", "success", 9, 9, salt=999)
    changed = _fact("2026-11-02", "330106", "culture", "nfc_hce", "success", small, small, 998)
    with_nine, nine_withheld = release.released_groups([*facts, secret], group_by, K)
    without, _ = release.released_groups(facts, group_by, K)
    other, _ = release.released_groups([*facts, changed], group_by, K)
    shown = [(g.key, g.events, g.cards) for g in with_nine]
    assert shown == [(g.key, g.events, g.cards) for g in without]  # the 9 changes nothing
    assert shown == [(g.key, g.events, g.cards) for g in other]  # nor does any value below k
    assert all(g.events >= K and g.cards >= K for g in with_nine)
    assert nine_withheld >= 1


def test_many_uses_by_few_cards_are_withheld_too() -> None:
    few = _fact("2026-11-01", "330102", "medical", "qr_code", "success", 50, 3, 1)
    assert release.released_groups([few], ["region"], K) == ([], 1)


def test_totals_of_any_grouping_agree_with_each_other() -> None:
    facts = [
        _fact("2026-11-01", r, s, "qr_code", "success", 10 + i, 10 + i, i)
        for i, (r, s) in enumerate(itertools.product(["330102", "330206"], ["medical", "hrss"]))
    ]
    totals = {
        tuple(g): sum(x.events for x in release.released_groups(facts, g, K)[0])
        for g in (["region"], ["scenario"], ["province"], ["month", "prefecture"], [])
    }
    assert set(totals.values()) == {10 + 11 + 12 + 13}


@pytest.mark.parametrize("k", [0, 5, 9])
def test_k_below_ten_is_refused(k: int, tmp_path) -> None:
    with pytest.raises(release.ReleaseRuleError):
        release.check_k_setting(k)
    with pytest.raises(SettingsError, match="ECARD_STATISTICS_K"):
        load_settings({"ECARD_STATISTICS_K": str(k), "ECARD_KEYS_DIR": str(tmp_path)})


def test_a_noisy_value_below_k_is_blanked() -> None:
    assert release.check_noisy_threshold(9, K) is None
    assert release.check_noisy_threshold(10, K) == 10
