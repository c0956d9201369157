"""HTTP surface of the service zone: the public, cacheable directory API and feed, the operators'
listings and institutions, and the page ``/zone/``.  Controllers parse, authenticate, call
:class:`DirectoryService` and shape the response."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from ecard.auth import OperatorPrincipal, require_permission
from ecard.codes.trust import region_names
from ecard.dependencies import operator_with, provide_operator
from ecard.directory import catalogue as cat
from ecard.directory import schemas
from ecard.directory.service import DirectoryService, Query, parse_query
from ecard.errors import CATALOGUE, AppError, preferred_language, rate_limited
from ecard.platform import Platform
from ecard.web import page

JOSE = "application/jose"
MAX_AGE = 60
#: public searches per client address: a burst of this many, refilled over the window (seconds)
SEARCHES_PER_IP = (60, 600)

Filter = Annotated[str | None, QueryParameter(max_length=64)]
Page = Annotated[int, QueryParameter(ge=1, le=10_000)]
Limit = Annotated[int, QueryParameter(ge=1, le=100)]
Coordinate = Annotated[float | None, QueryParameter(ge=-180, le=180)]
Radius = Annotated[int | None, QueryParameter(ge=1, le=cat.MAX_RADIUS_M)]
Since = Annotated[int, QueryParameter(ge=0, le=2**53)]


def _not_modified() -> dict[int, ResponseSpec]:
    return {
        304: ResponseSpec(
            None,
            description="Not modified (If-None-Match names the current ETag)",
            generate_examples=False,
        )
    }


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110 §13.1.2: ``*``, or any listed tag equal to ``tag`` by weak comparison."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = tag.removeprefix("W/")
    return any(item.strip().removeprefix("W/") == bare for item in if_none_match.split(","))


def cacheable(
    request: Request, body: bytes, *, media_type: str = MediaType.JSON, max_age: int = MAX_AGE
) -> Response:
    """A public response with a strong ETag (a digest of the body) and ``Cache-Control``; a
    matching ``If-None-Match`` gets 304 without a body."""
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={max_age}"}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


async def throttle(request: Request, platform: Platform) -> None:
    window, limit = SEARCHES_PER_IP
    client_ip = request.client.host if request.client else "-"
    decision = await platform.store.hit(f"directory:{client_ip}", window, limit)
    if not decision.allowed:
        raise rate_limited(decision.retry_after)


def all_provinces() -> frozenset[str]:
    """Every province of GB/T 2260 (``ecard/registry/regions.csv``): a search may name any;
    one no deployment publishes simply finds nothing."""
    return frozenset(region_names())


def provide_directory(platform: NamedDependency[Platform]) -> DirectoryService:
    return DirectoryService(platform)


DIRECTORY = {"directory": Provide(provide_directory, sync_to_thread=False)}


def catalogue_view() -> schemas.CatalogueView:
    def labels(items: dict[str, Any]) -> dict[str, dict[str, str]]:
        out = {}
        for code, value in items.items():
            label = value[0] if isinstance(value, tuple) and not hasattr(value, "zh") else value
            out[code] = {"zh": label.zh, "en": label.en}
        return out

    return schemas.CatalogueView(
        fields=labels(cat.FIELDS),
        scenarios=labels(cat.SCENARIOS),
        media=labels(cat.MEDIA),
        institution_kinds=labels(cat.INSTITUTION_KINDS),
    )


class DirectoryController(Controller):
    """The public directory: no credentials, cacheable, rate-limited per address."""

    path = "/directory/v1"
    tags = ["directory"]
    dependencies = DIRECTORY

    @get(
        "/applications",
        summary="Applications listed in the service zone, filtered and paged",
        responses={200: ResponseSpec(schemas.ApplicationPage), **_not_modified()},
    )
    async def applications(
        self,
        request: Request,
        platform: NamedDependency[Platform],
        directory: NamedDependency[DirectoryService],
        region: Filter = None,
        scenario: Filter = None,
        medium: Filter = None,
        q: Filter = None,
        page: Page = 1,
        limit: Limit = 20,
    ) -> Response:
        await throttle(request, platform)
        query = parse_query(
            all_provinces(),
            region=region,
            scenario=scenario,
            medium=medium,
            q=q,
            page=page,
            limit=limit,
        )
        result = await directory.search_applications(query)
        return cacheable(request, msgspec.json.encode(result))

    @get(
        "/institutions",
        summary="Where the card is used: by region, scenario, medium, text, near a point",
        responses={200: ResponseSpec(schemas.InstitutionPage), **_not_modified()},
    )
    async def institutions(
        self,
        request: Request,
        platform: NamedDependency[Platform],
        directory: NamedDependency[DirectoryService],
        region: Filter = None,
        scenario: Filter = None,
        medium: Filter = None,
        kind: Filter = None,
        q: Filter = None,
        lat: Coordinate = None,
        lon: Coordinate = None,
        radius: Radius = None,
        page: Page = 1,
        limit: Limit = 20,
    ) -> Response:
        await throttle(request, platform)
        query = parse_query(
            all_provinces(),
            region=region,
            scenario=scenario,
            medium=medium,
            kind=kind,
            q=q,
            lat=lat,
            lon=lon,
            radius=radius,
            page=page,
            limit=limit,
        )
        result = await directory.search_institutions(query)
        return cacheable(request, msgspec.json.encode(result))

    @get(
        "/institutions/{institution_id:str}",
        summary="One institution of the service zone",
        responses={200: ResponseSpec(schemas.InstitutionView), **_not_modified()},
    )
    async def institution(
        self,
        request: Request,
        institution_id: FromPath[str],
        platform: NamedDependency[Platform],
        directory: NamedDependency[DirectoryService],
    ) -> Response:
        await throttle(request, platform)
        if len(institution_id) > 56:
            raise AppError("directory_institution_not_found")
        view = await directory.institution(institution_id)
        return cacheable(request, msgspec.json.encode(view))

    @get(
        "/catalogue",
        summary="The codes the filters take (fields, scenarios, media, institution kinds)",
        responses={200: ResponseSpec(schemas.CatalogueView), **_not_modified()},
    )
    async def catalogue(self, request: Request) -> Response:
        return cacheable(request, msgspec.json.encode(catalogue_view()), max_age=3600)

    @get(
        "/feed",
        media_type=JOSE,
        summary="The directory feed, signed by the platform root key (since: a delta)",
        responses={
            200: ResponseSpec(
                str, media_type=JOSE, description="compact JWS", generate_examples=False
            ),
            **_not_modified(),
        },
    )
    async def feed(
        self,
        request: Request,
        platform: NamedDependency[Platform],
        directory: NamedDependency[DirectoryService],
        since: Since = 0,
    ) -> Response:
        await throttle(request, platform)
        token = await directory.feed_token(since)
        return cacheable(request, token.encode(), media_type=JOSE)


class OperatorDirectoryController(Controller):
    """Operators keep their provinces' listings (``clients:manage``) and institutions
    (``registry:write``); every change is audited and makes a new directory version."""

    path = "/operator/v1/directory"
    tags = ["operator", "directory"]
    dependencies = {"operator": Provide(provide_operator), **DIRECTORY}

    @put(
        "/applications/{client_id:str}",
        dependencies=operator_with("clients:manage"),
        summary="List (201) or update (200) a filed application in the service zone",
    )
    async def put_application(
        self,
        client_id: FromPath[str],
        data: JSONBody[schemas.ApplicationIn],
        directory: NamedDependency[DirectoryService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> Response[schemas.ApplicationEntry]:
        require_permission(operator, "clients:manage")
        entry, created = await directory.put_application(client_id, data, operator.actor)
        return Response(entry, status_code=201 if created else 200)

    @delete(
        "/applications/{client_id:str}",
        dependencies=operator_with("clients:manage"),
        status_code=204,
        summary="Withdraw an application's listing (peers receive a tombstone)",
    )
    async def withdraw_application(
        self,
        client_id: FromPath[str],
        directory: NamedDependency[DirectoryService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> None:
        require_permission(operator, "clients:manage")
        await directory.withdraw_application(client_id, operator.actor)

    @post(
        "/institutions",
        dependencies=operator_with("registry:write"),
        summary="Add an institution, with the terminals installed there",
    )
    async def create_institution(
        self,
        data: JSONBody[schemas.InstitutionIn],
        directory: NamedDependency[DirectoryService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.InstitutionView:
        require_permission(operator, "registry:write")
        return await directory.create_institution(data, operator.actor)

    @put(
        "/institutions/{institution_id:str}",
        dependencies=operator_with("registry:write"),
        summary="Replace an institution's details and terminals",
    )
    async def update_institution(
        self,
        institution_id: FromPath[str],
        data: JSONBody[schemas.InstitutionIn],
        directory: NamedDependency[DirectoryService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.InstitutionView:
        require_permission(operator, "registry:write")
        return await directory.update_institution(institution_id, data, operator.actor)

    @delete(
        "/institutions/{institution_id:str}",
        dependencies=operator_with("registry:write"),
        status_code=204,
        summary="Withdraw an institution (peers receive a tombstone)",
    )
    async def withdraw_institution(
        self,
        institution_id: FromPath[str],
        directory: NamedDependency[DirectoryService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> None:
        require_permission(operator, "registry:write")
        await directory.withdraw_institution(institution_id, operator.actor)


def _zone_lang(request: Request) -> str:
    asked = request.query_params.get("lang", "")
    if asked in ("en", "zh-CN"):
        return asked
    return preferred_language(request.headers.get("accept-language"))


def _number(raw: str | None, kind: type) -> Any:
    if raw in (None, ""):
        return None
    try:
        return kind(raw)
    except ValueError:
        raise AppError("directory_location_invalid", "not a number") from None


GRID = 5


def location_grid(found: schemas.InstitutionPage, radius: int) -> list[list[list[int]]]:
    """The map-free location view: a GRID × GRID table around the searcher (north up, the
    radius to each edge); each cell lists the numbers (1-based, as in the result list) of the
    institutions in it."""
    cells: list[list[list[int]]] = [[[] for _ in range(GRID)] for _ in range(GRID)]
    for number, view in enumerate(found.items, start=1):
        if view.nearby is not None:
            row, col = cat.grid_cell(view.nearby.distance_m, view.nearby.bearing_deg, radius, GRID)
            cells[row][col].append(number)
    return cells


class ZonePageController(Controller):
    """The page ``/zone/``: search by region and scenario, results as a list and, from a point,
    by distance and direction.  Server-rendered; its script only toggles the language and fills
    in the phone's location."""

    path = "/zone"
    include_in_schema = False
    dependencies = DIRECTORY

    @get("/", summary="The service zone page (服务专区)")
    async def zone(
        self,
        request: Request,
        platform: NamedDependency[Platform],
        directory: NamedDependency[DirectoryService],
    ) -> Response[str]:
        params = request.query_params
        lang = _zone_lang(request)
        form = {
            k: str(params.get(k, ""))[:64]
            for k in ("region", "scenario", "medium", "q", "lat", "lon", "radius")
        }
        context: dict[str, Any] = {
            "lang": lang,
            "form": form,
            "scenarios": cat.SCENARIOS,
            "media": cat.MEDIA,
            "kinds": cat.INSTITUTION_KINDS,
            "provinces": sorted(region_names().items()),
            "applications": None,
            "institutions": None,
            "error": None,
            "grid": None,
            "arrow": cat.arrow_of,
            "kind_label": lambda code: cat.INSTITUTION_KINDS.get(
                code, cat.INSTITUTION_KINDS["other"]
            ),
        }
        # the radius field always holds a value; it means something only with a point
        located = bool(form["lat"] or form["lon"])
        searched = located or any(form[k] for k in ("region", "scenario", "medium", "q"))
        status = 200
        if searched:
            await throttle(request, platform)
            try:
                query: Query = parse_query(
                    all_provinces(),
                    region=form["region"] or None,
                    scenario=form["scenario"] or None,
                    medium=form["medium"] or None,
                    q=form["q"] or None,
                    lat=_number(form["lat"], float),
                    lon=_number(form["lon"], float),
                    radius=_number(form["radius"], int) if located else None,
                    limit=50,
                )
                context["applications"] = await directory.search_applications(
                    Query(query.region, query.scenario, query.medium, None, query.text, None, 1, 50)
                )
                found = await directory.search_institutions(query)
                context["institutions"] = found
                if query.near:
                    context["grid"] = location_grid(found, query.near[2])
            except AppError as error:
                spec = CATALOGUE[error.code]
                context["error"] = {"code": error.code, "zh": spec.zh, "en": spec.en}
                status = spec.status
        return page("zone.html", status, **context)


CONTROLLERS: list = [DirectoryController, OperatorDirectoryController, ZonePageController]
