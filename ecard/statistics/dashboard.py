"""The statistics dashboard the operator console mounts: an HTML fragment (everything escaped,
SVG charts inline, no script, no style attribute), built only from k-suppressed figures
(``StatisticsService.released``: sums of released base cells)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from ecard.codes.trust import region_names
from ecard.directory import catalogue as cat
from ecard.platform import Platform
from ecard.statistics import charts
from ecard.statistics import dimensions as dims
from ecard.statistics.schemas import UsageCell
from ecard.statistics.service import StatisticsService, UsageQuery

MAX_DAYS = 366

TEXT = {
    "zh-CN": {
        "title": "用卡统计",
        "period": "统计期间 {first} 至 {last}（北京时间），少于 {k} 次或 {k} 张卡的单元不予显示",
        "over_time": "每日用卡次数",
        "by_scenario": "按应用场景",
        "by_medium": "按用卡介质",
        "by_region": "按地区",
        "events": "用卡次数",
        "cards": "卡数（估计）",
        "day": "日期",
        "label": "类别",
        "withheld": "{n} 个小单元未计入",
        "empty": "暂无可发布的数据",
        "unspecified": "未注明场景",
        "suppressed": "<{k}",
    },
    "en": {
        "title": "Card use statistics",
        "period": "{first} to {last} (China Standard Time); cells of fewer than {k} uses or "
        "{k} cards are withheld",
        "over_time": "Uses per day",
        "by_scenario": "By scenario",
        "by_medium": "By medium",
        "by_region": "By region",
        "events": "Uses",
        "cards": "Cards (estimate)",
        "day": "Day",
        "label": "Category",
        "withheld": "{n} small cells withheld",
        "empty": "Nothing to release yet",
        "unspecified": "No scenario named",
        "suppressed": "<{k}",
    },
}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _label(dimension: str, code: str, lang: str) -> str:
    en = lang == "en"
    if dimension == "scenario":
        found = cat.SCENARIOS.get(code)
        if found:
            return found[0].en if en else found[0].zh
        return TEXT[lang]["unspecified"]
    if dimension == "medium":
        label = cat.MEDIA.get(code)
        return (label.en if en else label.zh) if label else code
    if dimension == "prefecture":
        name = region_names().get(code)
        return f"{name} {code}" if name and not en else code
    return code


def _table(cells: Sequence[UsageCell], dimension: str, heading: str, lang: str) -> str:
    words = TEXT[lang]
    rows = "".join(
        f"<tr><td>{_e(_label(dimension, getattr(c, dimension) or '', lang))}</td>"
        f'<td class="num">{c.events}</td><td class="num">{c.cards}</td></tr>'
        for c in cells
    )
    return (
        f'<table class="statistics-table"><caption>{_e(heading)}</caption><thead><tr>'
        f"<th>{_e(words['label'] if dimension != 'day' else words['day'])}</th>"
        f"<th>{_e(words['events'])}</th><th>{_e(words['cards'])}</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


async def render_dashboard(
    platform: Platform, *, regions: Sequence[str] | None, lang: str, days: int = 30
) -> str:
    """The last ``days`` days (CST, today included) of ``regions`` (None: the whole province's
    figures), in ``lang`` (``zh-CN`` or ``en``)."""
    lang = "en" if lang.lower().startswith("en") else "zh-CN"
    words = TEXT[lang]
    days = min(max(days, 1), MAX_DAYS)
    last = dt.datetime.now(dims.CST).date()
    first = last - dt.timedelta(days=days - 1)
    service = StatisticsService(platform)
    k = service.k
    scope = list(regions) if regions is not None else None

    async def grouped(dimension: str) -> tuple[list[UsageCell], int]:
        return await service.released(UsageQuery(first, last, (dimension,)), scope)

    daily, withheld = await grouped("day")
    by_day = {c.day: c.events for c in daily}
    points = [(day, by_day.get(day, 0)) for day in dims.days_between(first, last)]
    sections = [
        f'<section class="statistics-dashboard" lang="{_e(lang)}">',
        f"<h2>{_e(words['title'])}</h2>",
        f'<p class="period">{_e(words["period"].format(first=first, last=last, k=k))}</p>',
    ]
    if withheld:
        sections.append(f'<p class="withheld">{_e(words["withheld"].format(n=withheld))}</p>')
    if not daily:
        sections.append(f'<p class="empty">{_e(words["empty"])}</p>')
    sections.append(
        f'<figure class="statistics-chart"><figcaption>{_e(words["over_time"])}</figcaption>'
        f"{charts.line_chart(points, title=words['over_time'])}</figure>"
    )
    for dimension, key in (
        ("scenario", "by_scenario"),
        ("medium", "by_medium"),
        ("prefecture", "by_region"),
    ):
        cells, _ = await grouped(dimension)
        cells.sort(key=lambda c: -c.events)
        items = [(_label(dimension, getattr(c, dimension) or "", lang), c.events) for c in cells]
        svg = charts.bar_chart(
            items, title=words[key], suppressed_label=words["suppressed"].format(k=k)
        )
        sections.append(
            f'<figure class="statistics-chart"><figcaption>{_e(words[key])}</figcaption>'
            f"{svg}</figure>{_table(cells, dimension, words[key], lang)}"
        )
    sections.append("</section>")
    return "".join(sections)
