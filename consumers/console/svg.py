"""Charts as inline SVG, drawn on the server (no chart library, no script): a horizontal bar chart and a small
time series of two counts. Each chart has a `<title>` and a `<desc>` that say in words what the bars show, and
each bar a `<title>` of its own, so a screen reader (or a reader without the picture) loses nothing. Colours come
from classes in console.css: the CSP allows no inline style."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

_ids = itertools.count(1)

WIDTH = 400  # viewBox units: the chart scales to its box, so it fits a phone
ROW = 34  # one bar: its label above it
VALUE_COLUMN = 118  # room at the right of each bar for "100.0% n=12,345"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # 0..1; None: nothing to draw (no denominator)
    text: str  # what is written beside the bar
    thin: bool = False  # drawn greyed out: too few messages to mean much


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def bar_chart(title: str, bars: Sequence[Bar]) -> Markup:
    """One horizontal bar per item, its length the value (0 to 100%), its label above, its text at its end."""
    ident = _id("bars")
    height = 8 + ROW * max(1, len(bars))
    span = WIDTH - VALUE_COLUMN
    desc = "; ".join(f"{b.label}: {b.text}" + (" (few messages)" if b.thin else "") for b in bars) or "no data"
    parts = [f'<svg class="chart bars" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-labelledby="{ident}-t" aria-describedby="{ident}-d" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>']
    for i, b in enumerate(bars):
        y = 4 + i * ROW
        width = 0.0 if b.value is None else max(0.0, min(1.0, b.value)) * span
        klass = "bar thin" if b.thin else "bar"
        parts.append(f'<g><title>{escape(b.label)}: {escape(b.text)}</title>'
                     f'<text class="label" x="0" y="{y + 11}">{escape(b.label)}</text>'
                     f'<rect class="track" x="0" y="{y + 15}" width="{span}" height="12"/>'
                     f'<rect class="{klass}" x="0" y="{y + 15}" width="{width:.1f}" height="12"/>'
                     f'<text class="value{" thin" if b.thin else ""}" x="{WIDTH}" y="{y + 25}" '
                     f'text-anchor="end">{escape(b.text)}</text></g>')
    if not bars:
        parts.append('<text class="label" x="0" y="24">no messages in this window</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def series_chart(title: str, points: Sequence[tuple[datetime, int, int]], names: tuple[str, str],
                 bucket: str) -> Markup:
    """Two counts per time bucket (`points`: start, first, second) as pairs of columns on one scale."""
    ident = _id("series")
    height, top, bottom, left = 150, 14, 20, 34
    plot_w, plot_h = WIDTH - left, height - top - bottom
    peak = max([max(a, b) for _, a, b in points] or [0]) or 1
    step = plot_w / max(1, len(points))
    first, second = sum(a for _, a, _ in points), sum(b for _, _, b in points)
    busiest = max(points, key=lambda p: p[1], default=None)
    desc = (f"{first:,} {names[0]} and {second:,} {names[1]} in {len(points)} {bucket}s"
            + (f"; most {names[0]} at {busiest[0]:%Y-%m-%d %H:%M} ({busiest[1]:,})" if busiest and busiest[1] else ""))
    parts = [f'<svg class="chart series" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-labelledby="{ident}-t" aria-describedby="{ident}-d" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>',
             f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{WIDTH}" y2="{top + plot_h}"/>',
             f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{peak:,}</text>',
             f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>']
    column = max(1.0, step * 0.4)
    for i, (start, a, b) in enumerate(points):
        x = left + i * step + step * 0.1
        ha, hb = plot_h * a / peak, plot_h * b / peak
        parts.append(f'<g><title>{start:%Y-%m-%d %H:%M}: {a:,} {escape(names[0])}, {b:,} {escape(names[1])}</title>'
                     f'<rect class="col first" x="{x:.1f}" y="{top + plot_h - ha:.1f}" width="{column:.1f}" '
                     f'height="{ha:.1f}"/>'
                     f'<rect class="col second" x="{x + column:.1f}" y="{top + plot_h - hb:.1f}" '
                     f'width="{column:.1f}" height="{hb:.1f}"/></g>')
    if points:
        parts.append(f'<text class="tick" x="{left}" y="{height - 4}">{points[0][0]:%m-%d %H:%M}</text>'
                     f'<text class="tick" x="{WIDTH}" y="{height - 4}" text-anchor="end">'
                     f'{points[-1][0]:%m-%d %H:%M}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
