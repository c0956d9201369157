"""The dashboard fragment: its figures are the released facts, it is escaped, has no script or
style attribute (the pages' CSP), and a small cell is in no chart or table."""

from __future__ import annotations

import datetime as dt
import re

import httpx

from ecard.statistics import aggregate
from ecard.statistics import dimensions as dims
from ecard.statistics.dashboard import render_dashboard
from ecard.statistics.service import StatisticsService, UsageQuery
from tests.helpers import World, platform_of
from tests.statistics.conftest import placed_verifier, verifications


async def test_the_dashboard_shows_the_released_figures(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    today = dims.hour_start(dt.datetime.now(dt.UTC).timestamp()) - 2 * 3600
    big = await placed_verifier(world, "330102")
    small = await placed_verifier(world, "330206")
    await verifications(big, [n % 30 for n in range(123)], at=today)
    await verifications(small, range(500, 509), at=today)
    await aggregate.aggregate_hours(platform, [today])
    html = await render_dashboard(platform, regions=None, lang="zh-CN", days=7)
    assert "<script" not in html and "style=" not in html and "<style" not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count("<svg") == 4
    first = dt.datetime.now(dims.CST).date() - dt.timedelta(days=6)
    last = dt.datetime.now(dims.CST).date()
    cells, withheld = await StatisticsService(platform).released(
        UsageQuery(first, last, ("prefecture",))
    )
    assert [(c.prefecture, c.events, c.cards) for c in cells] == [("330100", 123, 30)]
    rows = re.findall(r'<td>([^<]*)</td><td class="num">(\d+)</td><td class="num">(\d+)</td>', html)
    assert ("杭州市 330100" in {r[0] for r in rows}) or any(r[0].endswith("330100") for r in rows)
    assert all(int(events) == 123 and int(cards) == 30 for _, events, cards in rows)
    assert "1 个小单元未计入" in html and withheld == 1
    assert ">9<" not in html
    english = await render_dashboard(platform, regions=["330200"], lang="en", days=7)
    assert "Nothing to release yet" in english and "123" not in english
