"""Inline SVG charts for reports: pure functions from numbers to SVG text (no ORM, no settings).

Every chart is vector (legible at any zoom, in HTML and in the PDF), escapes its labels, says
"no data" instead of drawing nothing, and draws undefined values (None) as an explicit gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family:'DejaVu Sans',Arial,sans-serif"
INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
BAR = "#3e7cb1"
BAD = "#c0392b"
GOOD = "#2e8540"


@dataclass(frozen=True)
class RatePoint:
    label: str
    rate: float | None
    ci: tuple[float, float] | None = None
    flagged: bool = False


@dataclass(frozen=True)
class TrendPoint:
    label: str
    value: float | None


def _text(x: float, y: float, text: str, *, size: float = 10, anchor: str = "start", fill: str = INK,
          weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}" style="{FONT}">{escape(text)}</text>')


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _empty(width: int, title: str, message: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" viewBox="0 0 {width} 60" '
            f'role="img" aria-label="{escape(title)}">{_text(8, 18, title, size=11, weight="bold")}'
            f'{_text(8, 42, message, fill=MUTED)}</svg>')


def rate_bars(points: Sequence[RatePoint], *, title: str, width: int = 640, axis_label: str = "rate") -> str:
    """Horizontal bars of a rate per group in [0, 1], with confidence-interval whiskers."""
    if not points:
        return _empty(width, title, "no data recorded")
    label_width, right_pad, row = 190, 70, 20
    plot = width - label_width - right_pad
    top = 30
    height = top + row * len(points) + 34
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             _text(8, 16, title, size=11, weight="bold")]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_width + plot * tick
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + row * len(points)}" '
                     f'stroke="{GRID}" stroke-width="1"/>')
        parts.append(_text(x, top + row * len(points) + 14, f"{tick:.2f}", size=8, anchor="middle", fill=MUTED))
    parts.append(_text(label_width + plot / 2, top + row * len(points) + 28, axis_label, size=9, anchor="middle",
                       fill=MUTED))
    for index, point in enumerate(points):
        y = top + row * index
        parts.append(_text(label_width - 6, y + 13, _shorten(point.label, 30), size=9, anchor="end"))
        if point.rate is None:
            parts.append(_text(label_width + 4, y + 13, "undefined (no cases)", size=8, fill=MUTED))
            continue
        color = BAD if point.flagged else BAR
        bar = max(plot * min(max(point.rate, 0.0), 1.0), 0.5)
        parts.append(f'<rect x="{label_width}" y="{y + 3}" width="{bar:.1f}" height="{row - 7}" fill="{color}" '
                     f'fill-opacity="0.8"/>')
        value_x = label_width + bar + 4
        if point.ci is not None:
            low = label_width + plot * min(max(point.ci[0], 0.0), 1.0)
            high = label_width + plot * min(max(point.ci[1], 0.0), 1.0)
            mid = y + row / 2 - 0.5
            parts.append(f'<line x1="{low:.1f}" y1="{mid:.1f}" x2="{high:.1f}" y2="{mid:.1f}" stroke="{INK}" '
                         f'stroke-width="1.2"/>')
            for end in (low, high):
                parts.append(f'<line x1="{end:.1f}" y1="{mid - 4:.1f}" x2="{end:.1f}" y2="{mid + 4:.1f}" '
                             f'stroke="{INK}" stroke-width="1.2"/>')
            value_x = max(value_x, high + 4)
        parts.append(_text(min(value_x, width - right_pad + 4), y + 13, f"{point.rate:.3f}", size=8))
    parts.append("</svg>")
    return "".join(parts)


def impact_ratio_bars(points: Sequence[RatePoint], *, title: str, threshold: float = 0.8, width: int = 640) -> str:
    """Impact ratio per group on [0, max(1.2, largest)], with the threshold (four-fifths) line."""
    if not points:
        return _empty(width, title, "no data recorded")
    label_width, right_pad, row, top = 190, 70, 20, 30
    plot = width - label_width - right_pad
    scale_max = max([1.2] + [p.rate for p in points if p.rate is not None])
    height = top + row * len(points) + 34
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             _text(8, 16, title, size=11, weight="bold")]
    bottom = top + row * len(points)
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2):
        if tick > scale_max:
            continue
        x = label_width + plot * tick / scale_max
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" stroke="{GRID}"/>')
        parts.append(_text(x, bottom + 14, f"{tick:.1f}", size=8, anchor="middle", fill=MUTED))
    for index, point in enumerate(points):
        y = top + row * index
        parts.append(_text(label_width - 6, y + 13, _shorten(point.label, 30), size=9, anchor="end"))
        if point.rate is None:
            parts.append(_text(label_width + 4, y + 13, "undefined", size=8, fill=MUTED))
            continue
        below = point.rate < threshold
        bar = max(plot * point.rate / scale_max, 0.5)
        parts.append(f'<rect x="{label_width}" y="{y + 3}" width="{bar:.1f}" height="{row - 7}" '
                     f'fill="{BAD if below else GOOD}" fill-opacity="0.8"/>')
        parts.append(_text(label_width + bar + 4, y + 13, f"{point.rate:.3f}" + (" below" if below else ""), size=8,
                           fill=BAD if below else INK))
    x = label_width + plot * threshold / scale_max
    parts.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{bottom + 2}" stroke="{BAD}" '
                 f'stroke-width="1.5" stroke-dasharray="5,3"/>')
    parts.append(_text(x + 3, top - 8, f"threshold {threshold:g}", size=8, fill=BAD))
    parts.append(_text(label_width + plot / 2, bottom + 28, "impact ratio (selection rate / best group's)", size=9,
                       anchor="middle", fill=MUTED))
    parts.append("</svg>")
    return "".join(parts)


def trend_line(points: Sequence[TrendPoint], *, title: str, threshold: float | None = 0.8, width: int = 640,
               y_label: str = "lowest impact ratio") -> str:
    """A line over time (audits in order), with the threshold line; None values break the line."""
    defined = [p.value for p in points if p.value is not None]
    if not defined:
        return _empty(width, title, "no audits recorded yet")
    left, right, top, bottom_pad, height = 90, 20, 28, 58, 220
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    y_max = max([1.0] + defined + ([threshold] if threshold else []))
    y_max = math.ceil(y_max * 5 + 0.5) / 5  # a multiple of 0.2 above the data

    def y_of(value: float) -> float:
        return top + plot_h * (1 - value / y_max)

    def x_of(index: int) -> float:
        return left + (plot_w / 2 if len(points) == 1 else plot_w * index / (len(points) - 1))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             _text(8, 16, title, size=11, weight="bold")]
    steps = round(y_max / 0.2)
    for step in range(steps + 1):
        value = 0.2 * step
        y = y_of(value)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_text(left - 4, y + 3, f"{value:.2f}", size=8, anchor="end", fill=MUTED))
    if threshold is not None:
        y = y_of(threshold)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{BAD}" '
                     f'stroke-width="1.5" stroke-dasharray="5,3"/>')
        parts.append(_text(left + 4, y - 3, f"threshold {threshold:g}", size=8, fill=BAD))
    segment: list[str] = []
    for index, point in enumerate(points):
        if point.value is None:
            if len(segment) > 1:
                parts.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{BAR}" stroke-width="2"/>')
            segment = []
            continue
        segment.append(f"{x_of(index):.1f},{y_of(point.value):.1f}")
    if len(segment) > 1:
        parts.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{BAR}" stroke-width="2"/>')
    label_every = max(1, len(points) // 8)
    for index, point in enumerate(points):
        x = x_of(index)
        if point.value is not None:
            below = threshold is not None and point.value < threshold
            parts.append(f'<circle cx="{x:.1f}" cy="{y_of(point.value):.1f}" r="3.5" fill="{BAD if below else BAR}"/>')
        if index % label_every == 0 or index == len(points) - 1:
            parts.append(f'<g transform="translate({x:.1f},{height - bottom_pad + 12}) rotate(-25)">'
                         f'{_text(0, 0, _shorten(point.label, 22), size=8, anchor="end", fill=MUTED)}</g>')
    parts.append(f'<g transform="translate(40,{top + plot_h / 2:.1f}) rotate(-90)">'
                 f'{_text(0, 0, y_label, size=9, anchor="middle", fill=MUTED)}</g>')
    parts.append("</svg>")
    return "".join(parts)
