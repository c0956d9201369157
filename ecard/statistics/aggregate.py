"""The aggregation job: use records → facts per UTC hour and per CST day.

For each hour it reads every use recorded in it (``ecard.statistics.sources``), counts events per
cell, counts at most ``statistics_contribution_cap`` events per card-hour in ``capped`` (what
department noise is calibrated to), feeds each holder's keyed pseudonym to the cell's
HyperLogLog sketch, and *replaces* the hour's facts (delete, insert, one transaction; fact ids are
grain:bucket:cell, so a fact can never be there twice).  Then the day's facts are rebuilt from its
24 hours (counts summed, sketches merged).  Re-running an hour, a day or a year gives the same
facts: the job is idempotent, and backfilling is running it over the past.

The background pass (every ``statistics_aggregate_seconds``, first after one interval) takes the
hours from its last mark minus :data:`LOOKBACK_HOURS` up to now, and every hour in which a
terminal uploaded records since the last pass (offline records arrive late).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from piccolo.engine.postgres import PostgresEngine

from ecard.platform import Platform
from ecard.statistics import dimensions as dims
from ecard.statistics import sketch
from ecard.statistics.sources import Places, Use, terminal_hours_uploaded_after, uses_between
from ecard.statistics.tables import StatisticsFact, StatisticsState
from ecard.store.db import is_unique_violation

log = logging.getLogger(__name__)

LOOKBACK_HOURS = 3
FIRST_PASS_HOURS = 48  # without a mark, the background starts this far back (backfill: the CLI)
MAX_HOURS = 400 * 24  # one run covers at most this many hours
_LOCK = 0x5EC57A75  # PostgreSQL advisory lock: one writer of facts at a time
_INSERT_CHUNK = 200


@dataclass
class _Tally:
    events: int = 0
    capped: int = 0
    sketch: sketch.Sketch = field(default_factory=sketch.Sketch)


@dataclass(frozen=True)
class AggregateResult:
    hours: int
    days: int
    uses: int
    facts: int


def tally(uses: Iterable[Use], key: bytes, cap: int) -> dict[dims.Cell, _Tally]:
    """One hour's uses counted per cell, pure: at most ``cap`` events per holder in ``capped``."""
    cells: dict[dims.Cell, _Tally] = {}
    seen: Counter[str] = Counter()
    for use in sorted(uses, key=lambda u: u.at):
        entry = cells.setdefault(use.cell, _Tally())
        entry.events += 1
        if use.holder is None:
            entry.capped += 1
            continue
        seen[use.holder] += 1
        if seen[use.holder] <= cap:
            entry.capped += 1
        entry.sketch.add(sketch.holder_pseudonym(key, use.holder))
    return cells


def _row(
    grain: str,
    bucket: int,
    day: str,
    cell: dims.Cell,
    events: int,
    capped: int,
    blob: bytes,
    cards: int,
    now: int,
) -> StatisticsFact:
    return StatisticsFact(
        id=f"{grain}:{bucket}:{cell.key}",
        grain=grain,
        bucket=bucket,
        day=day,
        region=cell.region,
        scenario=cell.scenario,
        medium=cell.medium,
        channel=cell.channel,
        result=cell.result,
        cross_province=cell.cross,
        events=events,
        capped=capped,
        cards=cards,
        sketch=blob,
        built_at=now,
    )


async def _replace(platform: Platform, grain: str, bucket: int, rows: list[StatisticsFact]) -> None:
    async with platform.engine.transaction():
        if isinstance(platform.engine, PostgresEngine):
            await StatisticsFact.raw("SELECT pg_advisory_xact_lock({})", _LOCK)
        await StatisticsFact.delete().where(
            (StatisticsFact.grain == grain) & (StatisticsFact.bucket == bucket)
        )
        for start in range(0, len(rows), _INSERT_CHUNK):
            await StatisticsFact.insert(*rows[start : start + _INSERT_CHUNK]).run()


async def _replace_retrying(
    platform: Platform, grain: str, bucket: int, rows: list[StatisticsFact]
) -> None:
    """A racing writer of the same bucket (another worker's pass) makes the insert collide: the
    bucket is then simply written again, whole."""
    for attempt in range(3):
        try:
            await _replace(platform, grain, bucket, rows)
            return
        except Exception as exc:
            if not is_unique_violation(exc) or attempt == 2:
                raise


async def aggregate_hour(platform: Platform, places: Places, hour: int) -> tuple[int, int]:
    """Replace one hour's facts; returns (uses, facts)."""
    key = sketch.statistics_key(platform.pseudonym_key)
    uses = await uses_between(places, hour, hour + dims.HOUR)
    cells = tally(uses, key, platform.settings.statistics_contribution_cap)
    now = int(time.time())
    day = dims.local_day(hour)
    rows = [
        _row(
            "h", hour, day, cell, t.events, t.capped, t.sketch.serialize(), t.sketch.estimate(), now
        )
        for cell, t in sorted(cells.items())
    ]
    await _replace_retrying(platform, "h", hour, rows)
    return len(uses), len(rows)


async def rebuild_day(platform: Platform, day: str) -> int:
    """Replace one CST day's facts by the merge of its hours' facts; returns how many."""
    hours = await StatisticsFact.select().where(
        (StatisticsFact.grain == "h") & (StatisticsFact.day == day)
    )
    merged: dict[dims.Cell, tuple[int, int, list[bytes]]] = {}
    for row in hours:
        cell = dims.Cell(
            row["region"],
            row["scenario"],
            row["medium"],
            row["channel"],
            row["result"],
            row["cross_province"],
        )
        events, capped, blobs = merged.get(cell, (0, 0, []))
        merged[cell] = (
            events + int(row["events"]),
            capped + int(row["capped"]),
            [*blobs, bytes(row["sketch"])],
        )
    now = int(time.time())
    bucket = dims.day_start(day)
    rows = []
    for cell, (events, capped, blobs) in sorted(merged.items()):
        union = sketch.merge(blobs)
        rows.append(
            _row(
                "d",
                bucket,
                day,
                cell,
                events,
                capped,
                bytes(union.serialize_compact()),
                round(union.get_estimate()),
                now,
            )
        )
    await _replace_retrying(platform, "d", bucket, rows)
    return len(rows)


async def aggregate_hours(platform: Platform, hours: Iterable[int]) -> AggregateResult:
    """Aggregate these hours (UTC starts), then rebuild the days they lie in."""
    chosen = sorted({dims.hour_start(h) for h in hours})
    if len(chosen) > MAX_HOURS:
        raise ValueError(f"at most {MAX_HOURS} hours in one run")
    places = await Places(platform.settings.region_code).load()
    uses = facts = 0
    for hour in chosen:
        found, written = await aggregate_hour(platform, places, hour)
        uses, facts = uses + found, facts + written
    days = sorted({dims.local_day(h) for h in chosen})
    for day in days:
        facts += await rebuild_day(platform, day)
    return AggregateResult(hours=len(chosen), days=len(days), uses=uses, facts=facts)


def hours_between(since: int, until: int) -> list[int]:
    """The hours overlapping [since, until)."""
    if until <= since:
        return []
    return list(range(dims.hour_start(since), until, dims.HOUR))


async def _state(name: str) -> int | None:
    row = (
        await StatisticsState.select(StatisticsState.value)
        .where(StatisticsState.name == name)
        .first()
    )
    return int(row["value"]) if row else None


async def _set_state(name: str, value: int) -> None:
    if await _state(name) is None:
        try:
            await StatisticsState.insert(StatisticsState(name=name, value=value)).run()
            return
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
    await StatisticsState.update({StatisticsState.value: value}).where(StatisticsState.name == name)


async def run_pass(platform: Platform, now: float | None = None) -> AggregateResult:
    """One background pass: recent hours and the hours of late terminal uploads."""
    moment = int(time.time() if now is None else now)
    mark = await _state("through")
    start = (
        moment - FIRST_PASS_HOURS * dims.HOUR if mark is None else mark - LOOKBACK_HOURS * dims.HOUR
    )
    hours = set(hours_between(max(start, moment - MAX_HOURS * dims.HOUR // 2), moment + 1))
    late, last_record = await terminal_hours_uploaded_after(await _state("terminal_record") or 0)
    hours.update(h for h in late if h > moment - MAX_HOURS * dims.HOUR // 2)
    result = await aggregate_hours(platform, hours)
    await _set_state("through", dims.hour_start(moment))
    await _set_state("terminal_record", last_record)
    return result


@contextlib.asynccontextmanager
async def background(platform: Platform) -> AsyncIterator[None]:
    """Run :func:`run_pass` every ``statistics_aggregate_seconds`` (0: never; the CLI then)."""
    interval = platform.settings.statistics_aggregate_seconds
    if interval <= 0:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = await run_pass(platform)
                log.info(
                    "statistics pass: %d hours, %d uses, %d facts",
                    result.hours,
                    result.uses,
                    result.facts,
                )
            except Exception:  # a database hiccup must not end the task
                log.exception("statistics pass failed")

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
