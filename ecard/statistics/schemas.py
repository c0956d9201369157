"""Requests and answers of the statistics API, and the signed monthly report."""

from __future__ import annotations

import msgspec


class UsageCell(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One released figure: the group-by coordinates named by the query, its events and (for
    operators and reports) its distinct cards, a HyperLogLog estimate."""

    day: str | None = None
    month: str | None = None
    region: str | None = None
    prefecture: str | None = None
    province: str | None = None
    scenario: str | None = None
    medium: str | None = None
    channel: str | None = None
    result: str | None = None
    cross_province: str | None = None
    events: int
    cards: int | None = None


class Noise(msgspec.Struct, kw_only=True):
    mechanism: str  # "discrete_laplace" (OpenDP opendp.measurements.make_laplace on integers)
    epsilon: float
    scale: float
    contribution_cap: int  # events per card-hour counted
    charged_epsilon: float  # OpenDP's privacy map at the cap


class BudgetMonth(msgspec.Struct, kw_only=True):
    month: str
    spent_epsilon: float
    limit_epsilon: float


class UsageReport(msgspec.Struct, kw_only=True, omit_defaults=True):
    since: str
    until: str
    group_by: list[str]
    k: int
    cells: list[UsageCell]
    #: operators: base cells withheld (fewer than k events or cards); departments: cells of the
    #: domain whose noisy count fell below k
    suppressed: int
    noise: Noise | None = None
    budget: list[BudgetMonth] = []


class GrantIn(msgspec.Struct, forbid_unknown_fields=True):
    """The 一卡通 fields (领域: hrss, government, livelihood, finance) a department may query;
    empty revokes."""

    fields: list[str]


class GrantView(msgspec.Struct):
    department: str
    fields: list[str]
    regions: list[str]
    budget_epsilon_per_month: float


class ReportTable(msgspec.Struct, kw_only=True):
    group_by: list[str]
    cells: list[UsageCell]
    suppressed: int


class MonthlyReport(msgspec.Struct, kw_only=True):
    """数据回流: one province's month for the national tier, k-suppressed, signed by the platform
    root key (``ecard statistics report``)."""

    format: str = "ecard-statistics-report/1"
    publisher: str  # the deployment's region code
    province: str
    month: str  # YYYY-MM, CST
    issued_at: int
    k: int
    tables: list[ReportTable]
