"""Each department's privacy budget, per month of data, durable and enforced.

A query is charged *before* it is answered, for every month its range touches, in one
transaction: each month's row is raised by a conditional ``UPDATE … WHERE spent + cost ≤ limit``,
so two racing queries (on any worker) can never both take the last of a budget.  If any month
cannot pay, nothing is charged and the query is refused with ``statistics_budget_exhausted``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ecard.errors import AppError
from ecard.platform import Platform
from ecard.statistics.privacy import MICRO
from ecard.statistics.tables import StatisticsBudget
from ecard.store.db import is_unique_violation


def limit_micro(platform: Platform) -> int:
    return round(platform.settings.statistics_department_epsilon * MICRO)


async def _ensure(department: str, month: str) -> None:
    row_id = f"{department}:{month}"
    if await StatisticsBudget.exists().where(StatisticsBudget.id == row_id):
        return
    try:
        await StatisticsBudget.insert(
            StatisticsBudget(id=row_id, department=department, month=month, spent_micro=0)
        ).run()
    except Exception as exc:
        if not is_unique_violation(exc):
            raise


async def charge(platform: Platform, department: str, months: Sequence[str], cost: int) -> None:
    """Take ``cost`` (millionths of ε) from each month's budget, all or nothing."""
    limit = limit_micro(platform)
    for month in months:
        await _ensure(department, month)
    async with platform.engine.transaction():
        for month in months:
            rows = (
                await StatisticsBudget.update(
                    {
                        StatisticsBudget.spent_micro: StatisticsBudget.spent_micro + cost,
                        StatisticsBudget.queries: StatisticsBudget.queries + 1,
                        StatisticsBudget.updated_at: int(time.time()),
                    }
                )
                .where(
                    (StatisticsBudget.id == f"{department}:{month}")
                    & (StatisticsBudget.spent_micro <= limit - cost)
                )
                .returning(StatisticsBudget.id)
            )
            if not rows:
                raise AppError(
                    "statistics_budget_exhausted", f"month {month}: not enough budget left"
                )


async def spent(department: str, months: Sequence[str]) -> dict[str, int]:
    rows = await StatisticsBudget.select(
        StatisticsBudget.month, StatisticsBudget.spent_micro
    ).where(
        (StatisticsBudget.department == department) & StatisticsBudget.month.is_in(list(months))
    )
    found = {r["month"]: int(r["spent_micro"]) for r in rows}
    return {month: found.get(month, 0) for month in months}
