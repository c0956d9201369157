"""The statistics service: parsing a query, the operators' figures (k-suppressed, no noise), the
departments' figures (OpenDP noise under a tracked budget, scoped by their filing's regions and
their granted fields), grants, and the monthly report.  Release rules: ``ecard.statistics.release``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import product

from ecard.auth import ClientPrincipal
from ecard.codes.trust import private_key_of  # type: ignore[attr-defined]
from ecard.directory import catalogue as cat
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry.audit import audit
from ecard.registry.tables import ApiClient
from ecard.statistics import budget, privacy, release
from ecard.statistics import dimensions as dims
from ecard.statistics.report import sign_report
from ecard.statistics.schemas import (
    BudgetMonth,
    GrantView,
    MonthlyReport,
    Noise,
    ReportTable,
    UsageCell,
    UsageReport,
)
from ecard.statistics.sources import Places
from ecard.statistics.tables import StatisticsFact, StatisticsGrant

OPERATOR_MAX_DAYS = 366
DEPARTMENT_MAX_DAYS = 92
MAX_GROUP_BY = 4
MAX_CELLS = 5_000  # of a department query's domain
DEFAULT_EPSILON = 0.5
#: the groupings of the monthly report for the national tier
REPORT_GROUPINGS: tuple[tuple[str, ...], ...] = (
    ("day",),
    ("region", "scenario"),
    ("medium", "result"),
    ("cross_province", "medium"),
)


@dataclass(frozen=True)
class UsageQuery:
    first: dt.date
    last: dt.date
    group_by: tuple[str, ...]
    region: str | None = None

    @property
    def days(self) -> list[str]:
        return dims.days_between(self.first, self.last)

    @property
    def months(self) -> list[str]:
        return sorted({dims.month_of(d) for d in self.days})


def parse_query(
    since: str | None,
    until: str | None,
    group_by: str | None,
    region: str | None = None,
    *,
    max_days: int = OPERATOR_MAX_DAYS,
) -> UsageQuery:
    """Dates ``YYYY-MM-DD`` (CST, both included), a comma-separated group-by of
    :data:`dims.DIMENSIONS`, an optional region code; each bad part a 400 with its own code."""
    if not since or not until:
        raise AppError("statistics_query_invalid", "since and until are required")
    try:
        first, last = dims.parse_day(since[:16]), dims.parse_day(until[:16])
    except ValueError:
        raise AppError("statistics_query_invalid", "since, until: YYYY-MM-DD") from None
    if first > last:
        raise AppError("statistics_query_invalid", "since is after until")
    if (last - first).days + 1 > max_days:
        raise AppError("statistics_range_too_large", f"at most {max_days} days")
    names = [n.strip() for n in (group_by or "").split(",") if n.strip()]
    if len(names) > MAX_GROUP_BY or len(set(names)) != len(names):
        raise AppError("statistics_dimension_unknown", f"at most {MAX_GROUP_BY}, each once")
    for name in names:
        if name not in dims.DIMENSIONS:
            raise AppError(
                "statistics_dimension_unknown",
                f"{name[:32]!r}; known: {', '.join(dims.DIMENSIONS)}",
            )
    if region is not None and not dims.is_region(region):
        raise AppError("statistics_query_invalid", "region: a 6-digit GB/T 2260 code")
    return UsageQuery(first, last, tuple(names), region)


def _cell(group_by: Sequence[str], key: Sequence[str], events: int, cards: int | None) -> UsageCell:
    coordinates = dict(zip(group_by, key, strict=True))
    return UsageCell(
        day=coordinates.get("day"),
        month=coordinates.get("month"),
        region=coordinates.get("region"),
        prefecture=coordinates.get("prefecture"),
        province=coordinates.get("province"),
        scenario=coordinates.get("scenario"),
        medium=coordinates.get("medium"),
        channel=coordinates.get("channel"),
        result=coordinates.get("result"),
        cross_province=coordinates.get("cross_province"),
        events=events,
        cards=cards,
    )


def _split(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


class StatisticsService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    @property
    def k(self) -> int:
        return release.check_k_setting(self.platform.settings.statistics_k)

    async def base_facts(
        self, first: dt.date, last: dt.date, scope: Sequence[str] | None
    ) -> list[release.BaseFact]:
        """The day facts of [first, last] whose region lies in ``scope`` (None: all)."""
        rows = await StatisticsFact.select(
            StatisticsFact.day,
            StatisticsFact.region,
            StatisticsFact.scenario,
            StatisticsFact.medium,
            StatisticsFact.channel,
            StatisticsFact.result,
            StatisticsFact.cross_province,
            StatisticsFact.events,
            StatisticsFact.capped,
            StatisticsFact.cards,
            StatisticsFact.sketch,
        ).where(
            (StatisticsFact.grain == "d")
            & (StatisticsFact.day >= first.isoformat())
            & (StatisticsFact.day <= last.isoformat())
        )
        facts = []
        for r in rows:
            if scope is not None and not dims.region_in(r["region"], scope):
                continue
            cell = dims.Cell(
                r["region"],
                r["scenario"],
                r["medium"],
                r["channel"],
                r["result"],
                r["cross_province"],
            )
            facts.append(
                release.BaseFact(
                    r["day"],
                    cell,
                    int(r["events"]),
                    int(r["capped"]),
                    int(r["cards"]),
                    bytes(r["sketch"]),
                )
            )
        return facts

    # --- operators: the province's figures, k-suppressed ---------------------------------------

    async def released(
        self, query: UsageQuery, regions: Sequence[str] | None = None
    ) -> tuple[list[UsageCell], int]:
        scope = [query.region] if query.region else (list(regions) if regions else None)
        if query.region and regions and not dims.region_in(query.region, regions):
            raise AppError("statistics_region_not_entitled")
        facts = await self.base_facts(query.first, query.last, scope)
        groups, withheld = release.released_groups(facts, query.group_by, self.k)
        cells = [_cell(query.group_by, g.key, g.events, g.cards) for g in groups]
        return cells, withheld

    async def operator_usage(
        self, query: UsageQuery, regions: Sequence[str] | None = None
    ) -> UsageReport:
        cells, withheld = await self.released(query, regions)
        return UsageReport(
            since=query.first.isoformat(),
            until=query.last.isoformat(),
            group_by=list(query.group_by),
            k=self.k,
            cells=cells,
            suppressed=withheld,
        )

    # --- departments: noisy figures under a budget ---------------------------------------------

    async def grant_of(self, department: str) -> list[str]:
        row = (
            await StatisticsGrant.select(StatisticsGrant.fields)
            .where(StatisticsGrant.department == department)
            .first()
        )
        return _split(row["fields"]) if row else []

    async def grant(self, department: str, fields: Sequence[str], actor: str) -> GrantView:
        unknown = sorted(set(fields) - set(cat.FIELDS))
        if unknown or len(set(fields)) != len(fields):
            raise AppError("statistics_field_unknown", f"known: {', '.join(cat.FIELDS)}")
        row = (
            await ApiClient.select(ApiClient.kind, ApiClient.capabilities, ApiClient.regions)
            .where(ApiClient.id == department)
            .first()
        )
        capabilities = row["capabilities"] if row else {}
        if isinstance(capabilities, str):
            capabilities = json.loads(capabilities or "{}")
        if row is None or not (row["kind"] == "department" or "department" in capabilities):
            raise AppError("statistics_department_not_found")
        text = "," + "".join(f"{f}," for f in fields)
        async with self.platform.engine.transaction():
            await StatisticsGrant.delete().where(StatisticsGrant.department == department)
            if fields:
                await StatisticsGrant.insert(
                    StatisticsGrant(
                        department=department,
                        fields=text,
                        granted_by=actor[:64],
                        granted_at=int(time.time()),
                    )
                ).run()
            await audit(actor, "statistics.grant", "client", department, fields=list(fields))
        regions = row["regions"]
        if isinstance(regions, str):
            regions = json.loads(regions or "[]")
        return GrantView(
            department,
            list(fields),
            list(regions),
            self.platform.settings.statistics_department_epsilon,
        )

    async def department_usage(
        self, department: ClientPrincipal, query: UsageQuery, epsilon: float | None
    ) -> UsageReport:
        """Rule order: the grant, the region, ε, the domain's size, the budget; then the answer."""
        settings = self.platform.settings
        fields = await self.grant_of(department.id)
        if not fields:
            raise AppError("statistics_not_granted")
        if query.region is not None and not dims.region_in(query.region, department.regions):
            raise AppError("statistics_region_not_entitled")
        epsilon = DEFAULT_EPSILON if epsilon is None else epsilon
        if not (0 < epsilon <= settings.statistics_max_query_epsilon) or not math.isfinite(epsilon):
            raise AppError(
                "statistics_epsilon_invalid",
                f"0 < epsilon ≤ {settings.statistics_max_query_epsilon}",
            )
        scope = (
            [query.region]
            if query.region
            else [r for r in department.regions if r == "*" or dims.is_region(r)]
        )
        places = await Places(settings.region_code).load()
        domain, bucket_of = self._domain(query, scope, fields, places)
        size = math.prod(len(values) for values in domain)
        if size > MAX_CELLS:
            raise AppError("statistics_too_many_cells", f"{size} cells; at most {MAX_CELLS}")
        noise = privacy.plan(epsilon, settings.statistics_contribution_cap)
        await budget.charge(self.platform, department.id, query.months, noise.charged_micro)
        await audit(
            department.actor,
            "statistics.query",
            "statistics",
            query.first.isoformat(),
            until=query.last.isoformat(),
            group_by=list(query.group_by),
            epsilon=noise.charged,
        )
        totals: dict[tuple[str, ...], int] = {}
        allowed = {s for s in dims.SCENARIOS if dims.scenario_field(s) in fields}
        for fact in await self.base_facts(query.first, query.last, scope):
            if fact.cell.scenario not in allowed:
                continue
            cell = fact.cell._replace(
                region=bucket_of(fact.cell.region),
                channel=fact.cell.channel
                if fact.cell.channel in places.channels | {dims.NO_CHANNEL}
                else dims.UNKNOWN_CHANNEL,
            )
            key = tuple(dims.coordinate(d, fact.day, cell) for d in query.group_by)
            totals[key] = totals.get(key, 0) + fact.capped
        keys = list(product(*domain))
        noisy = privacy.noisy_counts([totals.get(key, 0) for key in keys], noise)
        cells, blanked = [], 0
        for key, value in zip(keys, noisy, strict=True):
            shown = release.check_noisy_threshold(value, self.k)
            if shown is None:
                blanked += 1
            else:
                cells.append(_cell(query.group_by, key, shown, None))
        left = await budget.spent(department.id, query.months)
        limit = settings.statistics_department_epsilon
        return UsageReport(
            since=query.first.isoformat(),
            until=query.last.isoformat(),
            group_by=list(query.group_by),
            k=self.k,
            cells=cells,
            suppressed=blanked,
            noise=Noise(
                mechanism="discrete_laplace",
                epsilon=epsilon,
                scale=noise.scale,
                contribution_cap=noise.cap,
                charged_epsilon=noise.charged,
            ),
            budget=[
                BudgetMonth(month=m, spent_epsilon=s / privacy.MICRO, limit_epsilon=limit)
                for m, s in left.items()
            ],
        )

    def _domain(
        self, query: UsageQuery, scope: Sequence[str], fields: Sequence[str], places: Places
    ) -> tuple[list[list[str]], Callable[[str], str]]:
        return department_domain(query, scope, fields, places.regions(), places.channels)

    # --- the monthly report ---------------------------------------------------------------------

    async def monthly_report(
        self, province: str, month: str, now: int | None = None
    ) -> MonthlyReport:
        """One province's month, each of :data:`REPORT_GROUPINGS` k-suppressed."""
        try:
            first, last = dims.parse_month(month)
        except ValueError:
            raise AppError("statistics_query_invalid", "month: YYYY-MM") from None
        if not dims.is_region(province) or not province.endswith("0000"):
            raise AppError("statistics_query_invalid", "province: a province code such as 330000")
        facts = await self.base_facts(first, last, [province])
        tables = []
        for grouping in REPORT_GROUPINGS:
            groups, withheld = release.released_groups(facts, grouping, self.k)
            tables.append(
                ReportTable(
                    group_by=list(grouping),
                    cells=[_cell(grouping, g.key, g.events, g.cards) for g in groups],
                    suppressed=withheld,
                )
            )
        return MonthlyReport(
            publisher=self.platform.settings.region_code,
            province=province,
            month=month,
            issued_at=int(time.time()) if now is None else now,
            k=self.k,
            tables=tables,
        )

    async def signed_report(self, province: str, month: str) -> str:
        report = await self.monthly_report(province, month)
        return sign_report(report, private_key_of(self.platform.keys.ring.root.private_pem))


def department_domain(
    query: UsageQuery,
    scope: Sequence[str],
    fields: Sequence[str],
    places: Sequence[str],
    channels: Collection[str],
) -> tuple[list[list[str]], Callable[[str], str]]:
    """Every value each group-by dimension can take for a department, from catalogues and public
    registrations only (never from the data, which would leak which cells are non-empty), and
    the bucket a fact's region is counted under: a known place in scope, else the scope code
    covering it ("elsewhere in 330100")."""
    known = sorted({r for r in places if dims.region_in(r, scope)})
    scope_codes = sorted({c for c in scope if c != "*"} or {r[:2] + "0000" for r in known})

    def bucket_of(region: str) -> str:
        if region in known:
            return region
        return next(
            (c for c in scope_codes if dims.region_in(region, [c])),
            region[:2] + "0000",
        )

    regions = sorted(set(known) | set(scope_codes))
    values: dict[str, list[str]] = {
        "day": query.days,
        "month": query.months,
        "region": regions,
        "prefecture": sorted({dims.prefecture_of(r) for r in regions}),
        "province": sorted({dims.province_of(r) for r in regions}),
        "scenario": [s for s in dims.SCENARIOS if dims.scenario_field(s) in fields],
        "medium": list(dims.MEDIA),
        "channel": [*sorted(channels), dims.NO_CHANNEL, dims.UNKNOWN_CHANNEL],
        "result": list(dims.RESULTS),
        "cross_province": list(dims.CROSS),
    }
    return [values[d] for d in query.group_by], bucket_of
