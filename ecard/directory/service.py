"""The service zone's logic: operators' listings and institutions (audited, each change a new
directory version), the public search, the signed feed this deployment publishes for its own
provinces, and applying a peer's verified feed for theirs.

Where the card can really be used is decided at read time for this deployment's institutions:
an institution is listed under a terminal medium (chip card, QR code, NFC) only while a linked
terminal whose ``api_client`` is live accepts it there.  Peers' entries carry what their province
decided.  An application is listed while its filing is live.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ecard.directory import catalogue as cat
from ecard.directory.feed import check_application, check_feed, check_institution, sign_feed
from ecard.directory.schemas import (
    ApplicationEntry,
    ApplicationIn,
    ApplicationPage,
    DirectoryFeed,
    ImportFile,
    ImportResult,
    InstitutionEntry,
    InstitutionIn,
    InstitutionPage,
    InstitutionView,
    Nearby,
    OpeningHours,
    Tombstone,
)
from ecard.directory.tables import (
    DirectoryApplication,
    DirectoryHead,
    DirectoryInstitution,
    DirectoryPeerState,
    DirectoryTerminal,
)
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry.audit import audit
from ecard.registry.tables import ApiClient
from ecard.store.db import is_unique_violation
from ecard.terminal.tables import Terminal

log = logging.getLogger(__name__)

MAX_LIMIT = 100
MAX_RESULTS = 10_000  # page * limit never reaches past this
FEED_BUCKET_SECONDS = 60  # a feed's issued_at moves this often, so its bytes (and ETag) stay put
_HEAD_ID = 1
_LIVE = cat.LIVE_CLIENT_STATUSES


def _codes(values: Sequence[str]) -> str:
    return "," + "".join(f"{v}," for v in values)


def _split(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _app_error(error: cat.CatalogueError) -> AppError:
    return AppError(error.code, error.detail)


@dataclass(frozen=True)
class Query:
    """A public search, parsed and checked (:func:`parse_query`)."""

    region: str | None = None  # a prefix: 33, 3301, 330106
    scenario: str | None = None
    medium: str | None = None
    kind: str | None = None
    text: str | None = None
    near: tuple[float, float, int] | None = None  # lat, lon, radius (m)
    page: int = 1
    limit: int = 20


def parse_query(
    provinces: Collection[str],
    *,
    region: str | None = None,
    scenario: str | None = None,
    medium: str | None = None,
    kind: str | None = None,
    q: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    radius: int | None = None,
    page: int = 1,
    limit: int = 20,
) -> Query:
    """Every filter checked against the catalogues: a bad one is a 400 with its own code."""
    try:
        prefix = cat.parse_region_filter(region, provinces) if region else None
    except cat.CatalogueError as error:
        raise _app_error(error) from None
    if scenario is not None and scenario not in cat.SCENARIOS:
        raise AppError("directory_scenario_unknown", f"scenario: {scenario[:32]!r}")
    if medium is not None and medium not in cat.MEDIA:
        raise AppError("directory_medium_unknown", f"medium: {medium[:32]!r}")
    if kind is not None and kind not in cat.INSTITUTION_KINDS:
        raise AppError("directory_query_invalid", "kind: not an institution kind")
    text = cat.normalize_text(q) if q else None
    if q is not None and (len(q) > 64 or "\x00" in q):
        raise AppError("directory_query_invalid", "q: at most 64 characters of text")
    near = None
    if (lat, lon, radius) != (None, None, None):
        if lat is None or lon is None:
            raise AppError("directory_location_invalid", "lat and lon go together")
        try:
            cat.check_location(lat, lon)
        except cat.CatalogueError as error:
            raise _app_error(error) from None
        radius = 5_000 if radius is None else radius
        if not 1 <= radius <= cat.MAX_RADIUS_M:
            raise AppError("directory_location_invalid", "radius: 1 to 50000 metres")
        near = (lat, lon, radius)
    if not 1 <= limit <= MAX_LIMIT or page < 1 or page * limit > MAX_RESULTS:
        raise AppError(
            "directory_query_invalid", f"limit 1-{MAX_LIMIT}, page from 1, page*limit ≤ 10000"
        )
    return Query(prefix, scenario, medium, kind, text or None, near, page, limit)


class _Where:
    """A WHERE clause built from fixed SQL fragments and bound values only."""

    def __init__(self, *clauses: str) -> None:
        self.clauses: list[str] = list(clauses)
        self.values: list[Any] = []

    def add(self, clause: str, *values: Any) -> None:
        self.clauses.append(clause)
        self.values.extend(values)

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


_LIVE_IN = "(" + ", ".join("{}" for _ in _LIVE) + ")"


def _hours(text: str) -> list[OpeningHours]:
    return msgspec.json.decode(text, type=list[OpeningHours])


def _application_entry(row: dict[str, Any]) -> ApplicationEntry:
    scenarios = _split(row["scenarios"])
    return ApplicationEntry(
        id=row["id"],
        province=row["province"],
        name_zh=row["name_zh"],
        name_en=row["name_en"],
        operator_zh=row["operator_zh"],
        operator_en=row["operator_en"],
        fields=cat.fields_of(scenarios),
        scenarios=scenarios,
        media=_split(row["media"]),
        regions=_split(row["regions"]),
        entry_url=row["entry_url"],
        description_zh=row["description_zh"],
        description_en=row["description_en"],
        version=int(row["version"]),
    )


def _institution_entry(row: dict[str, Any], media: list[str], terminals: int) -> InstitutionEntry:
    return InstitutionEntry(
        id=row["id"],
        province=row["province"],
        uscc=row["uscc"],
        name_zh=row["name_zh"],
        name_en=row["name_en"],
        kind=row["kind"],
        address_zh=row["address_zh"],
        address_en=row["address_en"],
        region=row["region"],
        lat=float(row["lat"]),
        lon=float(row["lon"]),
        hours=_hours(row["hours"]),
        scenarios=_split(row["scenarios"]),
        media=media,
        terminals=terminals,
        version=int(row["version"]),
    )


def _nearby(lat: float, lon: float, row: dict[str, Any]) -> Nearby:
    bearing = cat.bearing_deg(lat, lon, float(row["lat"]), float(row["lon"]))
    direction = cat.direction_of(bearing)
    return Nearby(
        distance_m=round(cat.distance_m(lat, lon, float(row["lat"]), float(row["lon"]))),
        bearing_deg=round(bearing) % 360,
        direction_zh=direction.zh,
        direction_en=direction.en,
    )


async def _live_links(institutions: Sequence[str]) -> dict[str, list[set[str]]]:
    """For each local institution, the media of each linked terminal whose client is live."""
    found: dict[str, list[set[str]]] = {}
    for start in range(0, len(institutions), 500):
        chunk = list(institutions[start : start + 500])
        marks = ", ".join("{}" for _ in chunk)
        rows = await DirectoryTerminal.raw(
            "SELECT l.institution, l.media FROM directory_terminal l"  # noqa: S608 (fixed SQL)
            " JOIN api_client c ON c.id = l.terminal"
            f" WHERE c.status IN {_LIVE_IN} AND l.institution IN ({marks})",
            *_LIVE,
            *chunk,
        )
        for row in rows:
            found.setdefault(row["institution"], []).append(set(_split(row["media"])))
    return found


def _effective(declared: str, links: list[set[str]]) -> tuple[list[str], int]:
    """The media a local institution is listed under, and how many live terminals it has."""
    wanted = set(_split(declared))
    media = [m for m in cat.TERMINAL_MEDIA if m in wanted and any(m in link for link in links)]
    return media, len(links)


class DirectoryService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    # --- whose entries are whose ------------------------------------------------------------

    @property
    def peer_provinces(self) -> frozenset[str]:
        return frozenset(
            p for peer in self.platform.settings.directory_peers for p in peer.provinces
        )

    @property
    def own_provinces(self) -> frozenset[str]:
        """The provinces this deployment is the source for: its region and its issuers'."""
        own = {self.platform.settings.region_code, *self.platform.keys.ring.regions()}
        return frozenset(own) - self.peer_provinces

    @property
    def known_provinces(self) -> frozenset[str]:
        return self.own_provinces | self.peer_provinces

    # --- versions ----------------------------------------------------------------------------

    async def version(self) -> int:
        row = (
            await DirectoryHead.select(DirectoryHead.version)
            .where(DirectoryHead.id == _HEAD_ID)
            .first()
        )
        return int(row["version"]) if row else 0

    async def _ensure_head(self) -> None:
        if await DirectoryHead.exists().where(DirectoryHead.id == _HEAD_ID):
            return
        try:
            await DirectoryHead.insert(DirectoryHead(id=_HEAD_ID, version=0)).run()
        except Exception as exc:
            if not is_unique_violation(exc):
                raise

    async def _next_version(self) -> int:
        """Inside the caller's transaction: the row lock held until commit orders versions as
        they commit (PostgreSQL), and SQLite writers are serialized anyway."""
        rows = (
            await DirectoryHead.update({DirectoryHead.version: DirectoryHead.version + 1})
            .where(DirectoryHead.id == _HEAD_ID)
            .returning(DirectoryHead.version)
        )
        return int(rows[0]["version"])

    # --- operators: applications --------------------------------------------------------------

    async def put_application(
        self, client_id: str, data: ApplicationIn, actor: str
    ) -> tuple[ApplicationEntry, bool]:
        """Create or update the listing of the filing ``client_id``; True when it is new."""
        if not await ApiClient.exists().where(ApiClient.id == client_id):
            raise AppError("directory_filing_not_found")
        try:
            province = check_application(data, self.own_provinces)
        except cat.CatalogueError as error:
            raise _app_error(error) from None
        entry_id = f"{province}-{client_id}"
        values = {
            DirectoryApplication.province: province,
            DirectoryApplication.client_id: client_id,
            DirectoryApplication.source: "local",
            DirectoryApplication.status: "listed",
            DirectoryApplication.name_zh: data.name_zh,
            DirectoryApplication.name_en: data.name_en,
            DirectoryApplication.operator_zh: data.operator_zh,
            DirectoryApplication.operator_en: data.operator_en,
            DirectoryApplication.scenarios: _codes(data.scenarios),
            DirectoryApplication.media: _codes(data.media),
            DirectoryApplication.regions: _codes(data.regions),
            DirectoryApplication.entry_url: data.entry_url,
            DirectoryApplication.description_zh: data.description_zh,
            DirectoryApplication.description_en: data.description_en,
            DirectoryApplication.search_text: cat.search_text(
                data.name_zh, data.name_en, data.operator_zh, data.operator_en
            ),
        }
        await self._ensure_head()
        async with self.platform.engine.transaction():
            version = await self._next_version()
            # a listing moved to another of our provinces: the old id is withdrawn
            await DirectoryApplication.update(
                {DirectoryApplication.status: "withdrawn", DirectoryApplication.version: version}
            ).where(
                (DirectoryApplication.client_id == client_id)
                & (DirectoryApplication.source == "local")
                & (DirectoryApplication.id != entry_id)
                & (DirectoryApplication.status == "listed")
            )
            existing = await DirectoryApplication.exists().where(
                DirectoryApplication.id == entry_id
            )
            values[DirectoryApplication.version] = version
            if existing:
                await DirectoryApplication.update(values).where(DirectoryApplication.id == entry_id)
            else:
                row = DirectoryApplication(id=entry_id)
                for column, value in values.items():
                    setattr(row, column._meta.name, value)
                await DirectoryApplication.insert(row).run()
            await audit(
                actor,
                "directory.application.put",
                "listing",
                entry_id,
                version=version,
            )
        row = await DirectoryApplication.select().where(DirectoryApplication.id == entry_id).first()
        return _application_entry(row), not existing

    async def withdraw_application(self, client_id: str, actor: str) -> None:
        await self._ensure_head()
        async with self.platform.engine.transaction():
            rows = await DirectoryApplication.select(DirectoryApplication.id).where(
                (DirectoryApplication.client_id == client_id)
                & (DirectoryApplication.source == "local")
                & (DirectoryApplication.status == "listed")
            )
            if not rows:
                raise AppError("directory_application_not_found")
            version = await self._next_version()
            for row in rows:
                await DirectoryApplication.update(
                    {
                        DirectoryApplication.status: "withdrawn",
                        DirectoryApplication.version: version,
                    }
                ).where(DirectoryApplication.id == row["id"])
                await audit(
                    actor,
                    "directory.application.withdraw",
                    "listing",
                    row["id"],
                    version=version,
                )

    # --- operators: institutions --------------------------------------------------------------

    async def _check_terminals(self, province: str, data: InstitutionIn) -> None:
        ids = [link.id for link in data.terminals]
        if len(set(ids)) != len(ids):
            raise AppError("directory_terminal_invalid", "a terminal is linked twice")
        for link in data.terminals:
            try:
                cat.check_codes("media", link.media, cat.TERMINAL_MEDIA, "directory_medium_unknown")
            except cat.CatalogueError as error:
                raise _app_error(error) from None
        if not ids:
            return
        rows = await Terminal.select(Terminal.id, Terminal.region).where(Terminal.id.is_in(ids))
        regions = {row["id"]: row["region"] for row in rows}
        for terminal in ids:
            if terminal not in regions:
                raise AppError("directory_terminal_invalid", f"no terminal {terminal[:40]}")
            if regions[terminal][:2] != province[:2]:
                raise AppError("directory_terminal_invalid", f"{terminal[:40]}: another province")

    async def _write_institution(
        self, entry_id: str, province: str, data: InstitutionIn, actor: str, action: str
    ) -> InstitutionView:
        values = {
            DirectoryInstitution.province: province,
            DirectoryInstitution.source: "local",
            DirectoryInstitution.status: "listed",
            DirectoryInstitution.uscc: cat.check_uscc(data.uscc),
            DirectoryInstitution.name_zh: data.name_zh,
            DirectoryInstitution.name_en: data.name_en,
            DirectoryInstitution.kind: data.kind,
            DirectoryInstitution.address_zh: data.address_zh,
            DirectoryInstitution.address_en: data.address_en,
            DirectoryInstitution.region: data.region,
            DirectoryInstitution.lat: data.lat,
            DirectoryInstitution.lon: data.lon,
            DirectoryInstitution.hours: msgspec.json.encode(data.hours).decode(),
            DirectoryInstitution.scenarios: _codes(data.scenarios),
            DirectoryInstitution.declared: _codes(data.media),
            DirectoryInstitution.search_text: cat.search_text(
                data.name_zh, data.name_en, data.address_zh, data.address_en
            ),
        }
        await self._ensure_head()
        async with self.platform.engine.transaction():
            version = await self._next_version()
            values[DirectoryInstitution.version] = version
            if await DirectoryInstitution.exists().where(DirectoryInstitution.id == entry_id):
                await DirectoryInstitution.update(values).where(DirectoryInstitution.id == entry_id)
            else:
                row = DirectoryInstitution(id=entry_id)
                for column, value in values.items():
                    setattr(row, column._meta.name, value)
                await DirectoryInstitution.insert(row).run()
            await DirectoryTerminal.delete().where(DirectoryTerminal.institution == entry_id)
            if data.terminals:
                await DirectoryTerminal.insert(
                    *(
                        DirectoryTerminal(
                            id=f"{entry_id}/{link.id}",
                            institution=entry_id,
                            terminal=link.id,
                            media=_codes(link.media),
                        )
                        for link in data.terminals
                    )
                ).run()
            await audit(
                actor,
                action,
                "institution",
                entry_id,
                version=version,
                terminals=len(data.terminals),
            )
        return await self.institution(entry_id)

    def _checked_institution(self, data: InstitutionIn) -> str:
        try:
            return check_institution(data, self.own_provinces)
        except cat.CatalogueError as error:
            raise _app_error(error) from None

    async def create_institution(self, data: InstitutionIn, actor: str) -> InstitutionView:
        province = self._checked_institution(data)
        await self._check_terminals(province, data)
        entry_id = f"{province}-{data.key or secrets.token_hex(8)}"
        return await self._write_institution(
            entry_id, province, data, actor, "directory.institution.create"
        )

    async def update_institution(
        self, entry_id: str, data: InstitutionIn, actor: str
    ) -> InstitutionView:
        row = (
            await DirectoryInstitution.select(
                DirectoryInstitution.province, DirectoryInstitution.source
            )
            .where(DirectoryInstitution.id == entry_id)
            .first()
        )
        if row is None or row["source"] != "local":
            raise AppError("directory_institution_not_found")
        province = self._checked_institution(data)
        if province != row["province"]:
            raise AppError("directory_foreign_province", "an institution keeps its province")
        await self._check_terminals(province, data)
        return await self._write_institution(
            entry_id, province, data, actor, "directory.institution.update"
        )

    async def withdraw_institution(self, entry_id: str, actor: str) -> None:
        await self._ensure_head()
        async with self.platform.engine.transaction():
            row = (
                await DirectoryInstitution.select(DirectoryInstitution.status)
                .where(
                    (DirectoryInstitution.id == entry_id) & (DirectoryInstitution.source == "local")
                )
                .first()
            )
            if row is None or row["status"] != "listed":
                raise AppError("directory_institution_not_found")
            version = await self._next_version()
            await DirectoryInstitution.update(
                {DirectoryInstitution.status: "withdrawn", DirectoryInstitution.version: version}
            ).where(DirectoryInstitution.id == entry_id)
            await DirectoryTerminal.delete().where(DirectoryTerminal.institution == entry_id)
            await audit(
                actor,
                "directory.institution.withdraw",
                "institution",
                entry_id,
                version=version,
            )

    async def import_file(self, data: ImportFile, actor: str) -> ImportResult:
        """Every entry of the file, in order; institutions need a ``key`` (so that importing the
        same file again updates rather than duplicates).  Stops at the first bad entry."""
        for client_id, listing in data.applications.items():
            await self.put_application(client_id, listing, actor)
        for item in data.institutions:
            if item.key is None:
                raise AppError("directory_entry_invalid", "an imported institution needs a key")
            province = self._checked_institution(item)
            entry_id = f"{province}-{item.key}"
            if await DirectoryInstitution.exists().where(DirectoryInstitution.id == entry_id):
                await self.update_institution(entry_id, item, actor)
            else:
                await self.create_institution(item, actor)
        return ImportResult(len(data.applications), len(data.institutions), await self.version())

    # --- the public search -------------------------------------------------------------------

    async def search_applications(self, query: Query) -> ApplicationPage:
        where = _Where("a.status = 'listed'")
        where.add(
            "(a.source = 'peer' OR EXISTS (SELECT 1 FROM api_client c WHERE c.id = a.client_id"  # noqa: S608 (fixed SQL)
            f" AND c.status IN {_LIVE_IN}))",
            *_LIVE,
        )
        if query.region:
            covering = cat.region_ancestors(query.region.ljust(6, "0"))
            where.add(
                "(a.regions LIKE {}" + " OR a.regions LIKE {}" * len(covering) + ")",
                f"%,{query.region}%",
                *(f"%,{code},%" for code in covering),
            )
        if query.scenario:
            where.add("a.scenarios LIKE {}", f"%,{query.scenario},%")
        if query.medium:
            where.add("a.media LIKE {}", f"%,{query.medium},%")
        if query.text:
            where.add("a.search_text LIKE {} ESCAPE '\\'", f"%{_escape_like(query.text)}%")
        count = await DirectoryApplication.raw(
            f"SELECT COUNT(*) AS n FROM directory_application a WHERE {where.sql}",  # noqa: S608
            *where.values,
        )
        rows = await DirectoryApplication.raw(
            f"SELECT a.* FROM directory_application a WHERE {where.sql}"  # noqa: S608 (fixed SQL)
            " ORDER BY a.province, a.id LIMIT {} OFFSET {}",
            *where.values,
            query.limit,
            (query.page - 1) * query.limit,
        )
        return ApplicationPage(
            items=[_application_entry(row) for row in rows],
            total=int(count[0]["n"]),
            page=query.page,
            limit=query.limit,
        )

    async def search_institutions(self, query: Query) -> InstitutionPage:
        where = _Where("i.status = 'listed'")
        if query.region:
            where.add("i.region LIKE {}", f"{query.region}%")
        if query.scenario:
            where.add("i.scenarios LIKE {}", f"%,{query.scenario},%")
        if query.kind:
            where.add("i.kind = {}", query.kind)
        if query.text:
            where.add("i.search_text LIKE {} ESCAPE '\\'", f"%{_escape_like(query.text)}%")
        if query.medium:
            like = f"%,{query.medium},%"
            where.add(
                "((i.source = 'peer' AND i.media LIKE {}) OR (i.source = 'local'"  # noqa: S608 (fixed SQL)
                " AND i.declared LIKE {} AND EXISTS (SELECT 1 FROM directory_terminal l"
                " JOIN api_client c ON c.id = l.terminal WHERE l.institution = i.id"
                f" AND l.media LIKE {{}} AND c.status IN {_LIVE_IN})))",
                like,
                like,
                like,
                *_LIVE,
            )
        offset = (query.page - 1) * query.limit
        if query.near:
            lat, lon, radius = query.near
            low_lat, high_lat, low_lon, high_lon = cat.bounding_box(lat, lon, radius)
            where.add(
                "i.lat BETWEEN {} AND {} AND i.lon BETWEEN {} AND {}",
                low_lat,
                high_lat,
                low_lon,
                high_lon,
            )
            candidates = await DirectoryInstitution.raw(
                f"SELECT i.* FROM directory_institution i WHERE {where.sql}",  # noqa: S608
                *where.values,
            )
            placed = sorted(
                (
                    (cat.distance_m(lat, lon, float(r["lat"]), float(r["lon"])), r["id"], r)
                    for r in candidates
                ),
                key=lambda item: (item[0], item[1]),
            )
            inside = [r for d, _, r in placed if d <= radius]
            total, rows = len(inside), inside[offset : offset + query.limit]
        else:
            count = await DirectoryInstitution.raw(
                f"SELECT COUNT(*) AS n FROM directory_institution i WHERE {where.sql}",  # noqa: S608 (fixed SQL)
                *where.values,
            )
            total = int(count[0]["n"])
            rows = await DirectoryInstitution.raw(
                f"SELECT i.* FROM directory_institution i WHERE {where.sql}"  # noqa: S608 (fixed SQL)
                " ORDER BY i.region, i.id LIMIT {} OFFSET {}",
                *where.values,
                query.limit,
                offset,
            )
        views = await self._institution_views(rows)
        if query.near:
            lat, lon, _ = query.near
            for view, row in zip(views, rows, strict=True):
                view.nearby = _nearby(lat, lon, row)
        return InstitutionPage(items=views, total=total, page=query.page, limit=query.limit)

    async def _institution_views(self, rows: Sequence[dict[str, Any]]) -> list[InstitutionView]:
        links = await _live_links([r["id"] for r in rows if r["source"] == "local"])
        views = []
        for row in rows:
            if row["source"] == "local":
                media, terminals = _effective(row["declared"], links.get(row["id"], []))
            else:
                media, terminals = _split(row["media"]), int(row["terminals"])
            views.append(InstitutionView(entry=_institution_entry(row, media, terminals)))
        return views

    async def institution(self, entry_id: str) -> InstitutionView:
        row = (
            await DirectoryInstitution.select()
            .where(
                (DirectoryInstitution.id == entry_id) & (DirectoryInstitution.status == "listed")
            )
            .first()
        )
        if row is None:
            raise AppError("directory_institution_not_found")
        return (await self._institution_views([row]))[0]

    # --- the feed this deployment publishes ---------------------------------------------------

    async def reconcile(self) -> int:
        """Bring what the feed publishes in step with the filings and terminals: a listing whose
        filing went live or stopped, an institution whose live terminals' media changed, gets a
        new version.  Returns how many entries changed."""
        apps = await DirectoryApplication.select(
            DirectoryApplication.id, DirectoryApplication.client_id, DirectoryApplication.published
        ).where(
            (DirectoryApplication.source == "local") & (DirectoryApplication.status == "listed")
        )
        live: set[str] = set()
        ids = [a["client_id"] for a in apps]
        for start in range(0, len(ids), 500):
            rows = await ApiClient.select(ApiClient.id).where(
                ApiClient.id.is_in(ids[start : start + 500]) & ApiClient.status.is_in(list(_LIVE))
            )
            live.update(r["id"] for r in rows)
        app_changes = {
            a["id"]: int(a["client_id"] in live)
            for a in apps
            if int(a["client_id"] in live) != int(a["published"])
        }
        insts = await DirectoryInstitution.select(
            DirectoryInstitution.id,
            DirectoryInstitution.declared,
            DirectoryInstitution.media,
            DirectoryInstitution.terminals,
        ).where(
            (DirectoryInstitution.source == "local") & (DirectoryInstitution.status == "listed")
        )
        links = await _live_links([i["id"] for i in insts])
        inst_changes: dict[str, tuple[list[str], int]] = {}
        for inst in insts:
            media, terminals = _effective(inst["declared"], links.get(inst["id"], []))
            if (_codes(media), terminals) != (inst["media"], int(inst["terminals"])):
                inst_changes[inst["id"]] = (media, terminals)
        if not app_changes and not inst_changes:
            return 0
        await self._ensure_head()
        async with self.platform.engine.transaction():
            version = await self._next_version()
            for entry_id, published in app_changes.items():
                await DirectoryApplication.update(
                    {
                        DirectoryApplication.published: published,
                        DirectoryApplication.version: version,
                    }
                ).where(DirectoryApplication.id == entry_id)
            for entry_id, (media, terminals) in inst_changes.items():
                await DirectoryInstitution.update(
                    {
                        DirectoryInstitution.media: _codes(media),
                        DirectoryInstitution.terminals: terminals,
                        DirectoryInstitution.version: version,
                    }
                ).where(DirectoryInstitution.id == entry_id)
        return len(app_changes) + len(inst_changes)

    async def build_feed(self, since: int = 0, now: float | None = None) -> DirectoryFeed:
        """The feed of this deployment's own provinces: everything (``since`` 0) or the changes
        after ``since``."""
        await self.reconcile()
        version = await self.version()
        if not 0 <= since <= version:
            raise AppError("directory_feed_since_invalid", f"the latest version is {version}")
        apps = (
            await DirectoryApplication.select()
            .where(
                (DirectoryApplication.source == "local") & (DirectoryApplication.version > since)
            )
            .order_by(DirectoryApplication.id)
        )
        insts = (
            await DirectoryInstitution.select()
            .where(
                (DirectoryInstitution.source == "local") & (DirectoryInstitution.version > since)
            )
            .order_by(DirectoryInstitution.id)
        )
        tombstones: list[Tombstone] = []
        applications: list[ApplicationEntry] = []
        for row in apps:
            if row["status"] == "listed" and row["published"]:
                applications.append(_application_entry(row))
            elif since:
                tombstones.append(Tombstone("application", row["id"], int(row["version"])))
        institutions: list[InstitutionEntry] = []
        for row in insts:
            if row["status"] == "listed":
                institutions.append(
                    _institution_entry(row, _split(row["media"]), int(row["terminals"]))
                )
            elif since:
                tombstones.append(Tombstone("institution", row["id"], int(row["version"])))
        moment = int(time.time() if now is None else now)
        return DirectoryFeed(
            publisher=self.platform.settings.region_code,
            provinces=sorted(self.own_provinces),
            version=version,
            since=since,
            issued_at=moment - moment % FEED_BUCKET_SECONDS,
            applications=applications,
            institutions=institutions,
            tombstones=tombstones,
        )

    async def feed_token(self, since: int = 0) -> str:
        """The feed, signed by the platform root key (the key that signs the trust list)."""
        feed = await self.build_feed(since)
        keys = self.platform.keys
        return sign_feed(feed, keys.private_key(keys.ring.root))

    # --- peers' feeds -------------------------------------------------------------------------

    async def peer_state(self, url: str) -> dict[str, Any] | None:
        return await DirectoryPeerState.select().where(DirectoryPeerState.url == url).first()

    async def note_peer_failure(self, url: str, error: str) -> None:
        now = int(time.time())
        if await self.peer_state(url) is None:
            try:
                await DirectoryPeerState.insert(
                    DirectoryPeerState(url=url, checked_at=now, last_error=error[:256])
                ).run()
                return
            except Exception as exc:
                if not is_unique_violation(exc):
                    raise
        await DirectoryPeerState.update(
            {DirectoryPeerState.checked_at: now, DirectoryPeerState.last_error: error[:256]}
        ).where(DirectoryPeerState.url == url)

    async def apply_feed(
        self, url: str, provinces: Collection[str], feed: DirectoryFeed, asked_since: int
    ) -> int:
        """Store a peer's signature-checked feed, after :func:`check_feed`, in one transaction;
        returns how many entries and tombstones it applied.  ``FeedRefused`` leaves all as was."""
        state = await self.peer_state(url)
        held = int(state["version"]) if state else 0
        check_feed(
            feed,
            provinces=set(provinces) - self.own_provinces,
            held_version=held,
            asked_since=asked_since,
            now=int(time.time()),
        )
        claimed = list(feed.provinces)
        async with self.platform.engine.transaction():
            if feed.since == 0:  # a snapshot: what it lacks is gone
                keep_apps = [a.id for a in feed.applications]
                keep_insts = [i.id for i in feed.institutions]
                await _drop_missing(DirectoryApplication, claimed, keep_apps)
                await _drop_missing(DirectoryInstitution, claimed, keep_insts)
            for tomb in feed.tombstones:
                table = DirectoryApplication if tomb.kind == "application" else DirectoryInstitution
                await table.delete().where((table.id == tomb.id) & (table.source == "peer"))
            for app in feed.applications:
                await _upsert_peer(DirectoryApplication, app.id, _peer_application(app))
            for inst in feed.institutions:
                await _upsert_peer(DirectoryInstitution, inst.id, _peer_institution(inst))
            now = int(time.time())
            values = {
                DirectoryPeerState.publisher: feed.publisher,
                DirectoryPeerState.version: feed.version,
                DirectoryPeerState.fetched_at: now,
                DirectoryPeerState.checked_at: now,
                DirectoryPeerState.last_error: "",
            }
            if state is None:
                await DirectoryPeerState.insert(
                    DirectoryPeerState(
                        url=url,
                        publisher=feed.publisher,
                        version=feed.version,
                        fetched_at=now,
                        checked_at=now,
                    )
                ).run()
            else:
                await DirectoryPeerState.update(values).where(DirectoryPeerState.url == url)
        return len(feed.applications) + len(feed.institutions) + len(feed.tombstones)


async def _drop_missing(table: Any, provinces: list[str], keep: list[str]) -> None:
    rows = await table.select(table.id).where(
        (table.source == "peer") & table.province.is_in(provinces)
    )
    gone = [r["id"] for r in rows if r["id"] not in set(keep)]
    for start in range(0, len(gone), 500):
        await table.delete().where(table.id.is_in(gone[start : start + 500]))


async def _upsert_peer(table: Any, entry_id: str, values: dict[str, Any]) -> None:
    """A peer's entry replaces ours of the same id only if that one is a peer's too: an id of
    our provinces is never written from a feed (``check_feed`` refuses them first)."""
    existing = await table.select(table.source).where(table.id == entry_id).first()
    if existing is not None and existing["source"] != "peer":
        return
    columns = {getattr(table, name): value for name, value in values.items()}
    if existing is not None:
        await table.update(columns).where(table.id == entry_id)
    else:
        await table.insert(table(id=entry_id, **values)).run()


def _peer_application(app: ApplicationEntry) -> dict[str, Any]:
    return {
        "province": app.province,
        "client_id": app.id.split("-", 1)[1],
        "source": "peer",
        "status": "listed",
        "name_zh": app.name_zh,
        "name_en": app.name_en,
        "operator_zh": app.operator_zh,
        "operator_en": app.operator_en,
        "scenarios": _codes(app.scenarios),
        "media": _codes(app.media),
        "regions": _codes(app.regions),
        "entry_url": app.entry_url,
        "description_zh": app.description_zh,
        "description_en": app.description_en,
        "search_text": cat.search_text(app.name_zh, app.name_en, app.operator_zh, app.operator_en),
        "published": 1,
        "version": app.version,
    }


def _peer_institution(inst: InstitutionEntry) -> dict[str, Any]:
    return {
        "province": inst.province,
        "source": "peer",
        "status": "listed",
        "uscc": inst.uscc,
        "name_zh": inst.name_zh,
        "name_en": inst.name_en,
        "kind": inst.kind,
        "address_zh": inst.address_zh,
        "address_en": inst.address_en,
        "region": inst.region,
        "lat": inst.lat,
        "lon": inst.lon,
        "hours": json.dumps([msgspec.to_builtins(h) for h in inst.hours]),
        "scenarios": _codes(inst.scenarios),
        "declared": _codes(inst.media),
        "media": _codes(inst.media),
        "terminals": inst.terminals,
        "search_text": cat.search_text(
            inst.name_zh, inst.name_en, inst.address_zh, inst.address_en
        ),
        "version": inst.version,
    }
