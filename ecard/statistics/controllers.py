"""HTTP surface of the usage statistics: departments' noisy figures (``/department/v1``), the
operators' k-suppressed figures and departments' grants (``/operator/v1``).  Controllers parse,
authenticate, call :class:`StatisticsService` and shape the answer."""

from __future__ import annotations

import math
from typing import Annotated

from litestar import Controller, get, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from ecard.auth import ClientPrincipal, OperatorPrincipal, require_permission
from ecard.dependencies import client_of, operator_with, provide_operator
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.statistics import schemas
from ecard.statistics.service import DEPARTMENT_MAX_DAYS, StatisticsService, parse_query

Text = Annotated[str | None, QueryParameter(max_length=200)]


def parse_epsilon(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw[:32])
    except ValueError:
        raise AppError("statistics_epsilon_invalid", "epsilon: a number") from None
    if not math.isfinite(value):
        raise AppError("statistics_epsilon_invalid", "epsilon: a finite number")
    return value


class DepartmentStatisticsController(Controller):
    path = "/department/v1/statistics"
    tags = ["department", "statistics"]
    dependencies = {"department": client_of("department")}

    @get(
        "/usage",
        summary="Usage figures of the department's regions and fields, with calibrated noise",
    )
    async def usage(
        self,
        platform: NamedDependency[Platform],
        department: NamedDependency[ClientPrincipal],
        since: Text = None,
        until: Text = None,
        group_by: Text = None,
        region: Text = None,
        epsilon: Text = None,
    ) -> schemas.UsageReport:
        query = parse_query(since, until, group_by, region, max_days=DEPARTMENT_MAX_DAYS)
        return await StatisticsService(platform).department_usage(
            department, query, parse_epsilon(epsilon)
        )


class OperatorStatisticsController(Controller):
    path = "/operator/v1/statistics"
    tags = ["operator", "statistics"]
    dependencies = {"operator": Provide(provide_operator)}

    @get(
        "/usage",
        dependencies=operator_with("statistics:read"),
        summary="The province's usage figures: exact, k-suppressed",
    )
    async def usage(
        self,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        since: Text = None,
        until: Text = None,
        group_by: Text = None,
        region: Text = None,
    ) -> schemas.UsageReport:
        require_permission(operator, "statistics:read")
        query = parse_query(since, until, group_by, region)
        return await StatisticsService(platform).operator_usage(query)

    @put(
        "/departments/{client_id:str}",
        dependencies=operator_with("clients:manage"),
        status_code=200,
        summary="Grant a department filing usage statistics of some 一卡通 fields (empty: revoke)",
    )
    async def grant(
        self,
        client_id: FromPath[str],
        data: JSONBody[schemas.GrantIn],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.GrantView:
        require_permission(operator, "clients:manage")
        return await StatisticsService(platform).grant(client_id, data.fields, operator.actor)


CONTROLLERS = [DepartmentStatisticsController, OperatorStatisticsController]
