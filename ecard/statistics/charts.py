"""Server-side SVG charts, hand-built and pure.

Why not a charting library: pygal (the small, well-kept choice) writes a ``<style>`` element and
``<script>`` tags (by default from a CDN) into every chart, which the pages' CSP (``style-src
'self'; script-src 'self'``) blocks, and its tooltips need that script.  The two charts needed
here — bars and a line — are about a hundred lines with presentation attributes only: no
``style``, no script, no external reference, and every text passes through one escape.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

BAR_COLOUR = "#2f6db5"
LINE_COLOUR = "#c0392b"
GRID_COLOUR = "#d0d7de"
TEXT_COLOUR = "#1f2328"


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def bar_chart(
    items: Sequence[tuple[str, int | None]], *, title: str, suppressed_label: str, width: int = 560
) -> str:
    """Horizontal bars, one per (label, value); a None value is drawn as ``suppressed_label``."""
    row, left, right = 26, 190, 70
    height = row * max(len(items), 1) + 36
    peak = max((v for _, v in items if v is not None), default=0) or 1
    span = width - left - right
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bar" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'aria-label="{_t(title)}"><title>{_t(title)}</title>'
        )
    ]
    for i, (label, value) in enumerate(items):
        y = 18 + i * row
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="12" '
            f'fill="{TEXT_COLOUR}">{_t(label)}</text>'
        )
        if value is None:
            parts.append(
                f'<text x="{left + 4}" y="{y + 14}" font-size="12" fill="{TEXT_COLOUR}">'
                f"{_t(suppressed_label)}</text>"
            )
            continue
        length = max(1, round(span * value / peak))
        parts.append(
            f'<rect x="{left}" y="{y}" width="{length}" height="{row - 8}" fill="{BAR_COLOUR}">'
            f"<title>{_t(label)}: {value}</title></rect>"
            f'<text x="{left + length + 6}" y="{y + 14}" font-size="12" '
            f'fill="{TEXT_COLOUR}" class="value">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    points: Sequence[tuple[str, int]], *, title: str, width: int = 560, height: int = 220
) -> str:
    """A line over time: (label, value) in order; labels of the first and last point shown."""
    left, right, top, bottom = 56, 16, 16, 36
    peak = max((v for _, v in points), default=0) or 1
    inner_w, inner_h = width - left - right, height - top - bottom
    step = inner_w / max(len(points) - 1, 1)
    coords = [
        (left + i * step, top + inner_h - inner_h * value / peak)
        for i, (_, value) in enumerate(points)
    ]
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-line" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'aria-label="{_t(title)}"><title>{_t(title)}</title>'
        ),
        (
            f'<line x1="{left}" y1="{top + inner_h}" x2="{width - right}" y2="{top + inner_h}" '
            f'stroke="{GRID_COLOUR}"/>'
        ),
        (
            f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11" '
            f'fill="{TEXT_COLOUR}">{peak}</text>'
        ),
        (
            f'<text x="{left - 6}" y="{top + inner_h}" text-anchor="end" font-size="11" '
            f'fill="{TEXT_COLOUR}">0</text>'
        ),
    ]
    if coords:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2"/>'
        )
        for (x, y), (label, value) in zip(coords, points, strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{LINE_COLOUR}">'
                f"<title>{_t(label)}: {value}</title></circle>"
            )
        parts.append(
            f'<text x="{left}" y="{height - 12}" font-size="11" fill="{TEXT_COLOUR}">'
            f"{_t(points[0][0])}</text>"
            f'<text x="{width - right}" y="{height - 12}" text-anchor="end" font-size="11" '
            f'fill="{TEXT_COLOUR}">{_t(points[-1][0])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
