"""The aggregation job on both backends: facts per hour and day, distinct cards by sketch,
idempotent re-runs, backfill, late rows; no identifier in a fact."""

from __future__ import annotations

import httpx

from ecard.statistics import aggregate
from ecard.statistics import dimensions as dims
from ecard.statistics.tables import StatisticsFact
from tests.helpers import World, platform_of
from tests.statistics.conftest import DAY, HOUR, pseudonym, verifications


async def _facts(grain: str) -> list[dict]:
    return await StatisticsFact.select().where(StatisticsFact.grain == grain)


async def test_an_hour_becomes_facts_and_a_rerun_replaces_them(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    verifier = await world.new_client("verifier", regions=["330000"])
    # 12 cards, one of them 4 times more (16 uses), and 3 refusals of another province's cards
    await verifications(verifier["client_id"], [*range(12), 0, 0, 0, 0])
    await verifications(
        verifier["client_id"], [100, 101, 102], at=HOUR + 60, region="310000", result="expired"
    )
    for _ in range(2):
        result = await aggregate.aggregate_hours(platform, [HOUR])
        assert result.uses == 19
        hours = await _facts("h")
        days = await _facts("d")
        assert sum(f["events"] for f in hours) == 19  # never doubled by the re-run
        assert {f["day"] for f in days} == {DAY}
        assert sorted(
            (f["result"], f["cross_province"], f["events"], f["cards"]) for f in days
        ) == [
            ("refused", "cross", 3, 3),
            ("success", "same", 16, 12),
        ]
    success = next(f for f in hours if f["result"] == "success")
    # at most 4 (the cap) of the repeated card's 5 uses count towards department figures
    assert success["capped"] == 15 and success["medium"] == "qr_code"
    assert success["region"] == "330000" and success["scenario"] == dims.UNSPECIFIED
    blob = bytes(success["sketch"])
    for n in range(12):  # no pseudonym, in any form, is in the stored sketch
        assert pseudonym(n).encode() not in blob and bytes.fromhex(pseudonym(n)) not in blob


async def test_backfill_over_days_and_rows_arriving_late(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    verifier = await world.new_client("verifier", regions=["330000"])
    await verifications(verifier["client_id"], range(10))
    await verifications(verifier["client_id"], range(5), at=HOUR + dims.DAY)
    hours = aggregate.hours_between(HOUR - dims.DAY, HOUR + 2 * dims.DAY)
    result = await aggregate.aggregate_hours(platform, hours)
    assert result.hours == 72 and result.uses == 15
    by_day = {f["day"]: f["events"] for f in await _facts("d")}
    assert by_day == {DAY: 10, "2026-11-11": 5}
    # a late row in an hour already done: re-running that hour takes it in, once
    await verifications(verifier["client_id"], [50], at=HOUR + 30)
    await aggregate.aggregate_hours(platform, [HOUR])
    await aggregate.aggregate_hours(platform, [HOUR])
    by_day = {f["day"]: f["events"] for f in await _facts("d")}
    assert by_day == {DAY: 11, "2026-11-11": 5}


async def test_the_background_pass_marks_its_progress(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    verifier = await world.new_client("verifier", regions=["330000"])
    await verifications(verifier["client_id"], range(3))
    first = await aggregate.run_pass(platform, now=HOUR + 1800)
    assert first.uses == 3 and first.hours == aggregate.FIRST_PASS_HOURS + 1
    second = await aggregate.run_pass(platform, now=HOUR + 3 * 3600)
    assert second.hours == aggregate.LOOKBACK_HOURS + 4  # from the mark minus the lookback
    assert sum(f["events"] for f in await _facts("d")) == 3
