"""The service zone's catalogues and rules, pure (no I/O, no framework): the 一卡通 fields
and scenarios of 国办函〔2022〕38号, the media a card is used by, institution kinds, the
统一社会信用代码 check character (GB 32100-2015), GB/T 2260 region codes and
prefixes, https entry URLs, search text, and the geometry of "near a point" (distance,
bearing, a bounding box).

Every check raises :class:`CatalogueError` with a catalogue error code (``ecard/errors.py``) and
a detail naming the field; callers turn it into the API's problem response.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection, Iterable
from typing import NamedTuple
from urllib.parse import urlsplit


class CatalogueError(ValueError):
    """A value the directory does not accept; ``code`` is a key of the error catalogue."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


class Label(NamedTuple):
    zh: str
    en: str


#: 一卡通 fields (领域) of the guidance 国办函〔2022〕38号.
FIELDS: dict[str, Label] = {
    "hrss": Label("人社领域", "Human resources and social security"),
    "government": Label("政务服务领域", "Government services"),
    "livelihood": Label("民生服务领域", "Everyday services"),
    "finance": Label("惠民惠农与金融领域", "Benefit payments and finance"),
}

#: Scenarios (应用场景): code -> (label, the field it belongs to).
SCENARIOS: dict[str, tuple[Label, str]] = {
    "hrss": (Label("人社服务", "Social security and employment services"), "hrss"),
    "government": (Label("政务服务", "Government services"), "government"),
    "medical": (Label("就医购药", "Medical care and pharmacies"), "livelihood"),
    "transport": (Label("交通出行", "Transport"), "livelihood"),
    "culture": (Label("文化体验", "Libraries, museums and culture"), "livelihood"),
    "tourism": (Label("旅游观光", "Tourism and sightseeing"), "livelihood"),
    "subsidy": (Label("惠民惠农补贴发放", "Benefit and subsidy payments"), "finance"),
    "finance": (Label("金融服务", "Financial services"), "finance"),
}

#: How a holder uses the card: the first three are what a terminal accepts.
MEDIA: dict[str, Label] = {
    "chip_card": Label("实体社保卡", "Chip card"),
    "qr_code": Label("电子社保卡亮码", "E-card QR code shown by the holder"),
    "nfc_hce": Label("电子社保卡碰一碰", "E-card by NFC (HCE)"),
    "scan_login": Label("扫码登录", "Scan-to-login"),
    "consent": Label("授权数据", "Consented data sharing"),
}
TERMINAL_MEDIA: tuple[str, ...] = ("chip_card", "qr_code", "nfc_hce")

INSTITUTION_KINDS: dict[str, Label] = {
    "service_hall": Label("社保经办服务网点", "Social security service hall"),
    "government_hall": Label("政务服务中心", "Government service centre"),
    "hospital": Label("医院", "Hospital"),
    "clinic": Label("基层医疗卫生机构", "Community clinic"),
    "pharmacy": Label("定点药店", "Pharmacy"),
    "transport": Label("交通场站", "Transport station"),
    "library": Label("图书馆", "Library"),
    "museum": Label("博物馆", "Museum"),
    "scenic_spot": Label("景区", "Scenic spot"),
    "bank": Label("银行网点", "Bank branch"),
    "other": Label("其他", "Other"),
}

#: Filing statuses in which an application may be listed: ``active`` (the registry's clients
#: today) and ``live`` (the filing workflow's), and the same for a terminal's client.
LIVE_CLIENT_STATUSES: tuple[str, ...] = ("active", "live")


def fields_of(scenarios: Iterable[str]) -> list[str]:
    """The 一卡通 fields the scenarios belong to, in catalogue order."""
    wanted = {SCENARIOS[s][1] for s in scenarios}
    return [f for f in FIELDS if f in wanted]


def check_codes(name: str, values: Collection[str], catalogue: Collection[str], code: str) -> None:
    """Each value is a code of ``catalogue``, once, and there is at least one."""
    if not values:
        raise CatalogueError(code, f"{name}: at least one is needed")
    unknown = sorted(set(values) - set(catalogue))
    if unknown:
        raise CatalogueError(code, f"{name}: unknown {', '.join(unknown)}")
    if len(set(values)) != len(values):
        raise CatalogueError(code, f"{name}: listed twice")


# --- 统一社会信用代码 (GB 32100-2015) -----------------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


def uscc_check_character(body: str) -> str:
    """The 18th character of a 统一社会信用代码 whose first 17 are ``body``: the weights are
    3^i mod 31, and the check makes the weighted sum ≡ 0 (mod 31)."""
    if len(body) != 17 or any(c not in USCC_ALPHABET for c in body):
        raise CatalogueError("invalid_uscc", "a USCC body is 17 characters of its alphabet")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def check_uscc(value: str) -> str:
    """The code upper-cased if it is well formed (registration authority and kind, a 6-digit
    region, 9 characters of organisation code, the check character) and its check character is
    right; else :class:`CatalogueError` ``invalid_uscc``."""
    code = value.strip().upper()
    if not _USCC.match(code):
        raise CatalogueError("invalid_uscc", "uscc: 18 characters of the GB 32100 alphabet")
    if uscc_check_character(code[:17]) != code[17]:
        raise CatalogueError("invalid_uscc", "uscc: the check character is wrong")
    return code


# --- GB/T 2260 region codes --------------------------------------------------------------------

_REGION = re.compile(r"^[1-9]\d{5}$")


def region_prefix(code: str) -> str:
    """The prefix a code stands for: 330000 → 33 (the province), 330100 → 3301 (the prefecture),
    330106 → 330106 (the county)."""
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return code


def check_region(code: str, provinces: Collection[str], *, level: str = "any") -> str:
    """A GB/T 2260 code whose province is one of ``provinces`` (province codes, e.g. 330000).
    ``level``: ``any``, or ``local`` (a county, or a prefecture-level city without counties:
    where an institution stands, not a whole province)."""
    if not _REGION.match(code):
        raise CatalogueError("invalid_region_code", f"{code!r} is not a 6-digit region code")
    if code[:2] + "0000" not in provinces:
        raise CatalogueError("invalid_region_code", f"{code}: unknown province {code[:2]}0000")
    if code[2:4] == "00" and code[4:] != "00":
        raise CatalogueError("invalid_region_code", f"{code}: a county under no prefecture")
    if level == "local" and code.endswith("0000"):
        raise CatalogueError("invalid_region_code", f"{code}: a whole province is not a place")
    return code


def parse_region_filter(raw: str, provinces: Collection[str]) -> str:
    """The ``region`` filter: a 6-digit code, or a 2- or 4-digit prefix; returned as the prefix
    the code stands for (:func:`region_prefix`)."""
    value = raw.strip()
    if re.fullmatch(r"\d{2}|\d{4}", value):
        value = value.ljust(6, "0")
    return region_prefix(check_region(value, provinces))


def region_ancestors(code: str) -> list[str]:
    """The codes covering ``code``, itself included: 330106 → 330000, 330100, 330106."""
    found = [code[:2] + "0000"]
    if code[2:4] != "00":
        found.append(code[:4] + "00")
    if code[4:] != "00":
        found.append(code)
    return found


def regions_overlap(served: Iterable[str], prefix: str) -> bool:
    """Whether an application serving ``served`` codes serves somewhere in ``prefix``: a served
    code inside the prefix, or a served code covering the whole prefix (a province-wide app is
    found by a county search)."""
    covering = set(region_ancestors(prefix.ljust(6, "0")))
    return any(code.startswith(prefix) or code in covering for code in served)


# --- entry URLs and text -----------------------------------------------------------------------


def check_entry_url(url: str) -> str:
    """An online entry point: ``https://`` with a host, no credentials, at most 512 characters."""
    if len(url) > 512 or any(ord(c) < 0x21 for c in url):
        raise CatalogueError("directory_url_invalid", "entry_url: too long or with spaces")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise CatalogueError("directory_url_invalid", "entry_url: not a URL") from None
    if parts.scheme != "https" or not parts.hostname:
        raise CatalogueError("directory_url_invalid", "entry_url: https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise CatalogueError("directory_url_invalid", "entry_url: no credentials in the URL")
    return url


def normalize_text(text: str) -> str:
    """What free-text search compares: NFKC (full-width letters become ASCII), case-folded,
    runs of white space as one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def search_text(*parts: str) -> str:
    """The searchable text of an entry (its names, operator, address)."""
    return " | ".join(normalize_text(p) for p in parts if p)


# --- opening hours -----------------------------------------------------------------------------

_TIME = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


def check_hours(days: Collection[int], opens: str, closes: str) -> None:
    """One opening-hours rule: ISO weekdays 1–7 (each once), ``HH:MM`` times, opening first."""
    if not days or len(set(days)) != len(days) or any(not 1 <= d <= 7 for d in days):
        raise CatalogueError("directory_entry_invalid", "hours: days are ISO weekdays 1-7, once")
    if not (_TIME.match(opens) and _TIME.match(closes)) or opens >= closes:
        raise CatalogueError("directory_entry_invalid", "hours: HH:MM times, opens before closes")


# --- geometry ----------------------------------------------------------------------------------

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
#: Where an institution of the Chinese directory can stand: a generous box around the country,
#: which catches latitude and longitude given the wrong way round.
CHINA_LAT = (3.0, 54.0)
CHINA_LON = (73.0, 136.0)
MAX_RADIUS_M = 50_000
DIRECTIONS: tuple[Label, ...] = (
    Label("北", "N"),
    Label("东北", "NE"),
    Label("东", "E"),
    Label("东南", "SE"),
    Label("南", "S"),
    Label("西南", "SW"),
    Label("西", "W"),
    Label("西北", "NW"),
)


def check_location(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise CatalogueError("directory_location_invalid", "lat and lon must be numbers")
    if not (CHINA_LAT[0] <= lat <= CHINA_LAT[1] and CHINA_LON[0] <= lon <= CHINA_LON[1]):
        raise CatalogueError(
            "directory_location_invalid", "lat/lon: outside China (swapped latitude, longitude?)"
        )


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north, in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def direction_of(bearing: float) -> Label:
    """The 8-point compass direction of a bearing."""
    return DIRECTIONS[int(((bearing % 360.0) + 22.5) // 45.0) % 8]


def bounding_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min lat, max lat, min lon, max lon) containing every point within ``radius_m``: a cheap
    index filter before the exact distance."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = max(math.cos(math.radians(min(abs(lat) + dlat, 89.9))), 1e-6)
    dlon = math.degrees(radius_m / (EARTH_RADIUS_M * coslat))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


ARROWS = ("↑", "↗", "→", "↘", "↓", "↙", "←", "↖")  # by the 8 directions of DIRECTIONS


def arrow_of(bearing: float) -> str:
    return ARROWS[DIRECTIONS.index(direction_of(bearing))]


def grid_cell(distance: float, bearing: float, radius: float, size: int = 5) -> tuple[int, int]:
    """(row, column) of a place on a ``size`` × ``size`` grid centred on the searcher and
    spanning the search radius each way; north is up."""
    half = size // 2
    scale = half / radius if radius > 0 else 0.0
    dx = distance * math.sin(math.radians(bearing)) * scale
    dy = distance * math.cos(math.radians(bearing)) * scale
    col = min(size - 1, max(0, half + round(dx)))
    row = min(size - 1, max(0, half - round(dy)))
    return row, col
