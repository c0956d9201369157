"""The pure rules of the service zone: the 统一社会信用代码 check character (GB 32100-2015), GB/T
2260 region codes and prefixes, entry URLs, and the geometry of "near a point"."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.codes.trust import region_names
from ecard.directory import catalogue as cat

PROVINCES = frozenset(region_names())
body_chars = st.sampled_from(cat.USCC_ALPHABET)
uscc_bodies = st.builds(
    lambda head, region, org: head + region + org,
    st.text(body_chars, min_size=2, max_size=2),
    st.text(st.sampled_from("0123456789"), min_size=6, max_size=6),
    st.text(body_chars, min_size=9, max_size=9),
)


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y43",  # GB 32100-2015's own example
        "91110000600037341L",  # a published business licence
    ],
)
def test_published_codes_pass(code: str) -> None:
    assert cat.check_uscc(code) == code
    assert cat.check_uscc(code.lower()) == code


@given(uscc_bodies)
def test_exactly_one_check_character_fits(body: str) -> None:
    good = cat.uscc_check_character(body)
    assert cat.check_uscc(body + good) == body + good
    for other in cat.USCC_ALPHABET:
        if other != good:
            with pytest.raises(cat.CatalogueError) as refused:
                cat.check_uscc(body + other)
            assert refused.value.code == "invalid_uscc"


@given(uscc_bodies, st.integers(0, 16), body_chars)
def test_a_single_wrong_character_is_caught(body: str, position: int, char: str) -> None:
    """Weights 3^i mod 31 are units mod 31: every single substitution changes the check."""
    code = body + cat.uscc_check_character(body)
    changed = code[:position] + char + code[position + 1 :]
    if changed == code or not changed[2:8].isdigit():
        return
    with pytest.raises(cat.CatalogueError):
        cat.check_uscc(changed)


@pytest.mark.parametrize(
    "bad",
    ["", "91350100M000100Y4", "91350100M000100Y433", "91350100M000I00Y43", "9135O100M000100Y43"],
)
def test_malformed_codes_are_refused(bad: str) -> None:
    with pytest.raises(cat.CatalogueError):
        cat.check_uscc(bad)


provinces = st.sampled_from(sorted(PROVINCES))
counties = st.builds(
    lambda p, pref, county: p[:2] + f"{pref:02d}" + f"{county:02d}",
    provinces,
    st.integers(1, 99),
    st.integers(1, 99),
)


@given(counties)
def test_county_codes_and_their_prefixes(code: str) -> None:
    assert cat.check_region(code, PROVINCES, level="local") == code
    assert cat.region_prefix(code) == code
    assert cat.region_ancestors(code) == [code[:2] + "0000", code[:4] + "00", code]
    for prefix in (code[:2], code[:4], code, code[:2] + "0000", code[:4] + "00"):
        assert code.startswith(cat.parse_region_filter(prefix, PROVINCES))
    # a listing serving the province, the prefecture or the county is found from the county
    for served in cat.region_ancestors(code):
        assert cat.regions_overlap([served], code)
        assert cat.regions_overlap([code], cat.region_prefix(served))


@given(st.text(st.sampled_from("0123456789"), min_size=6, max_size=6))
def test_unknown_provinces_and_shapes_are_refused(code: str) -> None:
    ok = code[:2] + "0000" in PROVINCES and not (code[2:4] == "00" and code[4:] != "00")
    if ok:
        assert cat.check_region(code, PROVINCES) == code
    else:
        with pytest.raises(cat.CatalogueError) as refused:
            cat.check_region(code, PROVINCES)
        assert refused.value.code == "invalid_region_code"


def test_a_whole_province_is_not_a_place() -> None:
    with pytest.raises(cat.CatalogueError):
        cat.check_region("330000", PROVINCES, level="local")
    assert cat.check_region("441900", PROVINCES, level="local")  # 东莞: no counties


@pytest.mark.parametrize(
    "url",
    [
        "http://a.cn/",
        "https://user:pw@a.cn/",
        "https:///x",
        "javascript:alert(1)",
        "https://a.cn/ x",
        "ftp://a.cn",
    ],
)
def test_entry_urls_are_https_without_credentials(url: str) -> None:
    with pytest.raises(cat.CatalogueError):
        cat.check_entry_url(url)
    assert cat.check_entry_url("https://12333.example.cn/a?b=c")


def test_text_normalization() -> None:
    assert cat.normalize_text("  ＨＡＮＧＺＨＯＵ  第一 ") == "hangzhou 第一"


lats = st.floats(20, 50)
lons = st.floats(80, 130)


@given(lats, lons, st.floats(0, 2 * math.pi), st.floats(1, 50_000))
def test_bounding_box_holds_every_point_within_the_radius(
    lat: float, lon: float, angle: float, radius: float
) -> None:
    # a point at distance ≤ radius along a bearing (spherical destination formula)
    d = radius / cat.EARTH_RADIUS_M
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(angle))
    l2 = l1 + math.atan2(
        math.sin(angle) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    lat2, lon2 = math.degrees(p2), math.degrees(l2)
    assert cat.distance_m(lat, lon, lat2, lon2) == pytest.approx(radius, rel=1e-6, abs=1e-3)
    low_lat, high_lat, low_lon, high_lon = cat.bounding_box(lat, lon, radius * 1.0000001)
    assert low_lat <= lat2 <= high_lat and low_lon <= lon2 <= high_lon
    bearing = cat.bearing_deg(lat, lon, lat2, lon2)
    assert (
        min(
            abs(bearing - math.degrees(angle) % 360), 360 - abs(bearing - math.degrees(angle) % 360)
        )
        < 0.5
    )


def test_directions_and_grid() -> None:
    assert cat.direction_of(0).en == "N" and cat.direction_of(44).en == "NE"
    assert cat.direction_of(181).zh == "南" and cat.direction_of(350).en == "N"
    assert cat.grid_cell(0, 0, 1000) == (2, 2)
    assert cat.grid_cell(1000, 0, 1000) == (0, 2)  # north: the top row
    assert cat.grid_cell(1000, 90, 1000) == (2, 4)  # east: the right column
    assert cat.grid_cell(9000, 225, 1000) == (4, 0)  # far south-west: clamped to the corner


def test_locations_outside_china_are_refused() -> None:
    with pytest.raises(cat.CatalogueError) as refused:
        cat.check_location(120.17, 30.25)  # swapped
    assert refused.value.code == "directory_location_invalid"
