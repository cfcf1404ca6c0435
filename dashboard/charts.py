"""Server-rendered SVG line charts for the metrics screen.

Why SVG from the server rather than a charting package: the page already refreshes its panel with
htmx, so a chart is just more HTML in that fragment; there is no JavaScript to pin, vendor and
serve (the smallest maintained packages are 40-200 kB minified), nothing to run under the CSP, and
a 24 h chart (1 440 points per series) renders in a few milliseconds (tests check < 100 ms).
Colours are SVG attributes, not inline styles, so the CSP's style rules are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")
_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 48, 8, 22, 20
_AXIS = 'stroke="#9ca3af"'
_SMALL = 'font-size="10" fill="#4b5563"'


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend and (x = epoch seconds, y) points."""

    name: str
    points: Sequence[tuple[float, float]]


def _label(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}" if value < 1 else f"{value:.1f}"


def render_line_chart(
    title: str, series: Sequence[Series], since: float, until: float, width: int = 640, height: int = 170
) -> Markup:
    """An SVG chart of `series` between `since` and `until` (x) and 0 .. max (y), with a legend."""
    plot_w = width - _PAD_LEFT - _PAD_RIGHT
    plot_h = height - _PAD_TOP - _PAD_BOTTOM
    top = max((y for s in series for _, y in s.points), default=0.0) or 1.0
    span = max(until - since, 1.0)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' aria-label="{escape(title)}" data-chart="{escape(title)}">',
        f'<text x="{_PAD_LEFT}" y="14" font-size="12" font-weight="600" fill="#111827">'
        f"{escape(title)}</text>",
        f'<line x1="{_PAD_LEFT}" y1="{_PAD_TOP + plot_h}" x2="{width - _PAD_RIGHT}"'
        f' y2="{_PAD_TOP + plot_h}" {_AXIS}/>',
        f'<line x1="{_PAD_LEFT}" y1="{_PAD_TOP}" x2="{_PAD_LEFT}" y2="{_PAD_TOP + plot_h}" {_AXIS}/>',
        f'<text x="{_PAD_LEFT - 4}" y="{_PAD_TOP + 4}" text-anchor="end" {_SMALL}>{_label(top)}</text>',
        f'<text x="{_PAD_LEFT - 4}" y="{_PAD_TOP + plot_h}" text-anchor="end" {_SMALL}>0</text>',
    ]
    for x, anchor in ((since, "start"), (until, "end")):
        stamp = datetime.fromtimestamp(x, UTC).strftime("%H:%M" if span <= 86400 else "%m-%d %H:%M")
        position = _PAD_LEFT if anchor == "start" else width - _PAD_RIGHT
        parts.append(
            f'<text x="{position}" y="{height - 4}" text-anchor="{anchor}" {_SMALL}>{stamp} UTC</text>'
        )
    legend_x = width - _PAD_RIGHT
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        coordinates = " ".join(
            f"{_PAD_LEFT + (x - since) / span * plot_w:.1f},{_PAD_TOP + plot_h - y / top * plot_h:.1f}"
            for x, y in line.points
        )
        if coordinates:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coordinates}"/>'
            )
        total = sum(y for _, y in line.points)
        parts.append(
            f'<text x="{legend_x}" y="14" font-size="11" text-anchor="end" fill="{colour}"'
            f' data-series="{escape(line.name)}" data-total="{total:g}">{escape(line.name)}</text>'
        )
        legend_x -= 9 * len(line.name) + 14
    parts.append("</svg>")
    # every value interpolated above is a number or went through escape(): safe to mark as markup
    return Markup("".join(parts))  # noqa: S704
