"""Request and response bodies of the service zone (msgspec Structs).

The same entry structs are what the public API answers and what a province's signed feed
carries, so a peer's entry is shown exactly as its province published it.  No personal data: the
directory lists partners and places, never people.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f<>]+$")]
LongText = Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[^\x00-\x1f<>]*$")]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
RegionCode = Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")]
#: a local key chosen by the operator (import files) making the entry's id stable
Key = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
EntryId = Annotated[str, msgspec.Meta(pattern=r"^\d{6}-[A-Za-z0-9_-]{1,48}$")]
Version = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class OpeningHours(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Open on ``days`` (ISO weekdays, 1 = Monday) from ``opens`` to ``closes`` (local time)."""

    days: Annotated[list[int], msgspec.Meta(min_length=1, max_length=7)]
    opens: Annotated[str, msgspec.Meta(pattern=r"^\d\d:\d\d$")]
    closes: Annotated[str, msgspec.Meta(pattern=r"^\d\d:\d\d$")]


class TerminalLink(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A registered terminal installed at the institution, and the media it accepts there."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    media: Annotated[list[Code], msgspec.Meta(min_length=1, max_length=3)] = msgspec.field(
        default_factory=lambda: ["chip_card", "qr_code", "nfc_hce"]
    )


class ApplicationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The public listing of a filing (``api_client``): what the zone shows about it."""

    name_zh: Text
    name_en: Text
    operator_zh: Text  # who runs it (运营单位)
    operator_en: Text
    scenarios: Annotated[list[Code], msgspec.Meta(min_length=1, max_length=16)]
    media: Annotated[list[Code], msgspec.Meta(min_length=1, max_length=8)]
    #: GB/T 2260 codes served; a province or prefecture code stands for all of it
    regions: Annotated[list[RegionCode], msgspec.Meta(min_length=1, max_length=200)]
    entry_url: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    description_zh: LongText = ""
    description_en: LongText = ""


class InstitutionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A place where the card is used (场景机构)."""

    key: Key | None = None  # with it the id is ``<province>-<key>``; without, a random one
    uscc: Annotated[str, msgspec.Meta(min_length=18, max_length=18)]
    name_zh: Text
    name_en: Text
    kind: Code
    address_zh: LongText
    address_en: LongText = ""
    region: RegionCode  # a county (or a prefecture-level city without counties)
    lat: float
    lon: float
    hours: Annotated[list[OpeningHours], msgspec.Meta(max_length=14)] = []
    scenarios: Annotated[list[Code], msgspec.Meta(min_length=1, max_length=16)]
    #: the media the institution says it accepts; listed only where a live linked terminal does
    media: Annotated[list[Code], msgspec.Meta(min_length=1, max_length=3)]
    terminals: Annotated[list[TerminalLink], msgspec.Meta(max_length=500)] = []


class ApplicationEntry(msgspec.Struct, kw_only=True):
    """An application as the directory lists it (and the feed carries it)."""

    id: EntryId  # ``<province>-<filing id>``
    province: RegionCode
    name_zh: str
    name_en: str
    operator_zh: str
    operator_en: str
    fields: list[str]
    scenarios: list[str]
    media: list[str]
    regions: list[str]
    entry_url: str | None = None
    description_zh: str = ""
    description_en: str = ""
    version: Version = 0


class InstitutionEntry(msgspec.Struct, kw_only=True):
    """An institution as the directory lists it; ``media`` are those a live terminal there
    accepts (and the institution declared), ``terminals`` how many such terminals it has."""

    id: EntryId
    province: RegionCode
    uscc: str
    name_zh: str
    name_en: str
    kind: str
    address_zh: str
    address_en: str
    region: str
    lat: float
    lon: float
    hours: list[OpeningHours]
    scenarios: list[str]
    media: list[str]
    terminals: int
    version: Version = 0


class Nearby(msgspec.Struct):
    """Where an institution is from the point searched from."""

    distance_m: int
    bearing_deg: int
    direction_zh: str
    direction_en: str


class InstitutionView(msgspec.Struct, kw_only=True):
    entry: InstitutionEntry
    nearby: Nearby | None = None


class ApplicationPage(msgspec.Struct):
    items: list[ApplicationEntry]
    total: int
    page: int
    limit: int


class InstitutionPage(msgspec.Struct):
    items: list[InstitutionView]
    total: int
    page: int
    limit: int


class Tombstone(msgspec.Struct, frozen=True):
    """An entry withdrawn at ``version``: receivers drop it."""

    kind: Literal["application", "institution"]
    id: EntryId
    version: Version


class DirectoryFeed(msgspec.Struct, kw_only=True):
    """A province's signed directory (``typ`` ``ecard-directory-feed+json``, signed by its root).

    ``since`` 0 is a full snapshot (every listed entry; the receiver drops what it lacks);
    otherwise the changes after ``since`` up to ``version``: entries changed, tombstones of
    entries withdrawn."""

    publisher: RegionCode  # the deployment's own region code
    provinces: list[RegionCode]  # the provinces it is the source for
    version: Version
    since: Version
    issued_at: int
    applications: list[ApplicationEntry]
    institutions: list[InstitutionEntry]
    tombstones: list[Tombstone]


class ImportFile(msgspec.Struct, forbid_unknown_fields=True):
    """``ecard directory import FILE.json``: listings by filing id, and institutions."""

    applications: dict[str, ApplicationIn] = {}
    institutions: list[InstitutionIn] = []


class ImportResult(msgspec.Struct):
    applications: int
    institutions: int
    version: int


class PeerStatus(msgspec.Struct):
    """What a pull of one peer's feed did."""

    url: str
    ok: bool
    version: int
    applied: int = 0
    error: str | None = None


class CatalogueView(msgspec.Struct):
    """The codes the filters accept, with their names (for pages and clients)."""

    fields: dict[str, dict[str, str]]
    scenarios: dict[str, dict[str, str]]
    media: dict[str, dict[str, str]]
    institution_kinds: dict[str, dict[str, str]]
