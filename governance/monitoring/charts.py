"""Inline SVG charts of monitoring runs: pure functions from numbers to SVG text (no ORM, no settings).

Drift per column over time is a heatmap (one row per column, one cell per run, the shade the
effect size relative to its threshold, a drifted cell outlined in red); performance over time is
one line per metric with its threshold as a dashed line of the same colour; a champion/challenger
comparison is a forest plot (per metric the difference with its confidence interval, and a zero
line). Labels are escaped; an undefined value is a grey cell, a gap in the line or a row marked
undefined.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from governance.reports.charts import BAD, GOOD, GRID, INK, MUTED, _empty, _shorten, _text

PALETTE = ("#3e7cb1", "#e07b00", "#2e8540", "#8e44ad", "#b8860b", "#16a085", "#7f8c8d")


@dataclass(frozen=True)
class DriftCell:
    effect: float | None
    threshold: float
    drift: bool


def _shade(ratio: float) -> str:
    """White at 0, deep orange at twice the threshold and above."""
    t = max(0.0, min(ratio / 2.0, 1.0))
    start, end = (247, 249, 250), (214, 96, 0)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(start, end, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def drift_heatmap(columns: Sequence[str], runs: Sequence[tuple[str, Mapping[str, DriftCell]]], *, title: str,
                  width: int = 760) -> str:
    """Columns (rows) × runs (cells, oldest left): effect size shaded against its threshold."""
    if not columns or not runs:
        return _empty(width, title, "no monitoring runs recorded yet")
    label_w, right, top, row, bottom = 150, 12, 34, 22, 64
    cell_w = max(6.0, (width - label_w - right) / len(runs))
    width = int(label_w + right + cell_w * len(runs))
    height = top + row * len(columns) + bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}" class="drift-heatmap">', _text(8, 16, title, size=11, weight="bold")]
    for r, column in enumerate(columns):
        y = top + row * r
        parts.append(_text(label_w - 6, y + 15, _shorten(column, 22), size=9, anchor="end"))
        for c, (label, cells) in enumerate(runs):
            x = label_w + cell_w * c
            cell = cells.get(column)
            if cell is None or cell.effect is None:
                fill, tip = GRID, f"{column}, {label}: undefined"
            else:
                fill = _shade(cell.effect / cell.threshold if cell.threshold > 0 else 2.0)
                tip = (f"{column}, {label}: effect {cell.effect:.3f} (threshold {cell.threshold:g})"
                       f"{' drift' if cell.drift else ''}")
            stroke = f'stroke="{BAD}" stroke-width="2"' if cell is not None and cell.drift else 'stroke="#ffffff"'
            parts.append(f'<rect x="{x + 1:.1f}" y="{y + 1}" width="{cell_w - 2:.1f}" height="{row - 2}" fill="{fill}" '
                         f'{stroke}><title>{escape(tip)}</title></rect>')
            if cell is not None and cell.effect is not None and cell_w >= 34:
                dark = cell.threshold <= 0 or cell.effect / cell.threshold >= 1.2
                parts.append(_text(x + cell_w / 2, y + 15, f"{cell.effect:.2f}{' drift' if cell.drift else ''}", size=8,
                                   anchor="middle", fill="#ffffff" if dark else INK,
                                   weight="bold" if cell.drift else "normal"))
    bottom_y = top + row * len(columns)
    label_every = max(1, round(len(runs) / max(1, (width - label_w) // 70)))
    for c, (label, _) in enumerate(runs):
        if c % label_every == 0 or c == len(runs) - 1:
            x = label_w + cell_w * (c + 0.5)
            parts.append(f'<g transform="translate({x:.1f},{bottom_y + 12}) rotate(-25)">'
                         f'{_text(0, 0, _shorten(label, 18), size=8, anchor="end", fill=MUTED)}</g>')
    legend_y = height - 12
    parts.append(_text(8, legend_y, "effect / threshold:", size=8, fill=MUTED))
    for i, ratio in enumerate((0.0, 0.5, 1.0, 1.5, 2.0)):
        x = 100 + i * 46
        parts.append(f'<rect x="{x}" y="{legend_y - 9}" width="12" height="10" fill="{_shade(ratio)}" stroke="{GRID}"/>')
        parts.append(_text(x + 15, legend_y, f"{ratio:g}{'+' if ratio == 2.0 else ''}", size=8, fill=MUTED))
    parts.append(f'<rect x="{100 + 5 * 46}" y="{legend_y - 9}" width="12" height="10" fill="#ffffff" stroke="{BAD}" '
                 f'stroke-width="2"/>')
    parts.append(_text(100 + 5 * 46 + 16, legend_y, "drift (significant and over threshold)", size=8, fill=BAD))
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def metric_lines(labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str,
                 thresholds: Mapping[str, float] | None = None, width: int = 760) -> str:
    """One line per metric over runs (oldest left); each threshold a dashed line in its metric's colour."""
    thresholds = thresholds or {}
    values = [v for line in series.values() for v in line if v is not None]
    if not labels or not values:
        return _empty(width, title, "no performance recorded yet (no outcomes in the windows)")
    bounds = [b for name, b in thresholds.items() if name in series]
    low, high = min(values + bounds), max(values + bounds)
    step = _nice_step(max(high - low, 1e-9) / 4)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    if high - low < step:
        high = low + step
    left, right, top, bottom, height = 60, 150, 28, 58, 240
    plot_w, plot_h = width - left - right, height - top - bottom

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    def x_of(index: int) -> float:
        return left + (plot_w / 2 if len(labels) == 1 else plot_w * index / (len(labels) - 1))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}" class="metric-lines">', _text(8, 16, title, size=11, weight="bold")]
    decimals = max(0, -math.floor(math.log10(step)))
    for tick in range(round((high - low) / step) + 1):
        value = low + step * tick
        y = y_of(value)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_text(left - 4, y + 3, f"{value:.{decimals}f}", size=8, anchor="end", fill=MUTED))
    # Metrics with a threshold are drawn last (on top) and thicker.
    order = sorted(enumerate(series.items()), key=lambda item: item[1][0] in thresholds)
    for i, (name, line) in order:
        width_line = 3 if name in thresholds else 1.5
        color = PALETTE[i % len(PALETTE)]
        if name in thresholds:
            y = y_of(thresholds[name])
            parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{color}" '
                         f'stroke-width="1.5" stroke-dasharray="6,4" class="threshold"/>')
        segment: list[str] = []
        for index, value in enumerate([*line, None]):
            if value is None:
                if len(segment) > 1:
                    parts.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{color}" '
                                 f'stroke-width="{width_line}"/>')
                segment = []
                continue
            segment.append(f"{x_of(index):.1f},{y_of(value):.1f}")
        for index, value in enumerate(line):
            if value is None:
                continue
            bound = thresholds.get(name)
            breach = bound is not None and (value > bound if name in ("brier", "mae", "rmse") else value < bound)
            parts.append(f'<circle cx="{x_of(index):.1f}" cy="{y_of(value):.1f}" r="{4.5 if breach else 3}" '
                         f'fill="{BAD if breach else color}"><title>{escape(f"{name} {labels[index]}: {value:.4f}")}'
                         f'</title></circle>')
        legend_y = top + 6 + 16 * i
        parts.append(f'<line x1="{left + plot_w + 12}" y1="{legend_y}" x2="{left + plot_w + 30}" y2="{legend_y}" '
                     f'stroke="{color}" stroke-width="2"/>')
        suffix = f" (min {thresholds[name]:g})" if name in thresholds and name not in ("brier", "mae", "rmse") else (
            f" (max {thresholds[name]:g})" if name in thresholds else "")
        parts.append(_text(left + plot_w + 34, legend_y + 3, f"{name}{suffix}", size=8))
    if thresholds:
        parts.append(_text(left + plot_w + 12, top + 14 + 16 * len(series), "dashed: threshold", size=8, fill=MUTED))
        parts.append(_text(left + plot_w + 12, top + 26 + 16 * len(series), "red dot: breach", size=8, fill=BAD))
    label_every = max(1, len(labels) // 8)
    for index, label in enumerate(labels):
        if index % label_every == 0 or index == len(labels) - 1:
            parts.append(f'<g transform="translate({x_of(index):.1f},{height - bottom + 12}) rotate(-25)">'
                         f'{_text(0, 0, _shorten(label, 18), size=8, anchor="end", fill=MUTED)}</g>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Difference:
    """One metric of a comparison: challenger - champion, its CI, and which direction is better."""

    metric: str
    difference: float | None
    ci: tuple[float, float] | None
    lower_is_better: bool


def difference_verdict(row: Difference) -> str:
    """`challenger` or `champion` when the whole CI favours one of them, else `unclear`."""
    if row.difference is None or row.ci is None:
        return "unclear"
    if row.ci[0] > 0:
        return "champion" if row.lower_is_better else "challenger"
    if row.ci[1] < 0:
        return "challenger" if row.lower_is_better else "champion"
    return "unclear"


def difference_forest(rows: Sequence[Difference], *, title: str, confidence: float, width: int = 760) -> str:
    """A forest plot: per metric (one row each) the difference as a dot with its CI as whiskers, on one
    axis with a zero line; green where the CI favours the challenger, red where it favours the champion."""
    values = [v for row in rows for v in ([row.difference] if row.difference is not None else []) + list(row.ci or ())]
    if not rows or not values:
        return _empty(width, title, "no metric was defined on this window")
    low, high = min([*values, 0.0]), max([*values, 0.0])
    pad = max(high - low, 1e-9) * 0.08
    low, high = low - pad, high + pad
    step = _nice_step((high - low) / 4)
    label_w, value_w, top, row_h, bottom = 90, 200, 34, 26, 58
    plot_w = width - label_w - value_w
    height = top + row_h * len(rows) + bottom

    def x_of(value: float) -> float:
        return label_w + plot_w * (value - low) / (high - low)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}" class="difference-forest">',
             _text(8, 16, title, size=11, weight="bold")]
    plot_bottom = top + row_h * len(rows)
    decimals = max(0, -math.floor(math.log10(step)))
    for tick in range(math.ceil(low / step), math.floor(high / step) + 1):
        x = x_of(tick * step)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{plot_bottom}" stroke="{GRID}"/>')
        parts.append(_text(x, plot_bottom + 12, f"{tick * step:+.{decimals}f}" if tick else "0", size=8,
                           anchor="middle", fill=MUTED))
    zero = x_of(0.0)
    parts.append(f'<line x1="{zero:.1f}" y1="{top - 6}" x2="{zero:.1f}" y2="{plot_bottom}" stroke="{INK}" '
                 f'stroke-width="1.5" class="zero-line"/>')
    colours = {"challenger": GOOD, "champion": BAD, "unclear": MUTED}
    for index, row in enumerate(rows):
        y = top + row_h * index + row_h / 2
        parts.append(_text(label_w - 8, y + 3, _shorten(row.metric, 14), size=9, anchor="end"))
        if row.difference is None:
            parts.append(_text(label_w + 6, y + 3, "undefined on this window", size=8, fill=MUTED))
            continue
        colour = colours[difference_verdict(row)]
        ci_text = f" [{row.ci[0]:+.4f}, {row.ci[1]:+.4f}]" if row.ci else " [no CI]"
        tip = f"{row.metric}: {row.difference:+.4f}{ci_text}"
        parts.append(f'<g class="forest-row"><title>{escape(tip)}</title>')
        if row.ci is not None:
            left, right = x_of(row.ci[0]), x_of(row.ci[1])
            parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="{colour}" '
                         f'stroke-width="2"/>')
            for x in (left, right):
                parts.append(f'<line x1="{x:.1f}" y1="{y - 5:.1f}" x2="{x:.1f}" y2="{y + 5:.1f}" stroke="{colour}" '
                             f'stroke-width="2"/>')
        parts.append(f'<circle cx="{x_of(row.difference):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/></g>')
        parts.append(_text(label_w + plot_w + 10, y + 3, f"{row.difference:+.4f}{ci_text}", size=8, fill=colour))
    parts.append(_text(label_w + plot_w / 2, plot_bottom + 26,
                       f"challenger − champion, {confidence * 100:g}% paired bootstrap CI", size=8, anchor="middle",
                       fill=MUTED))
    legend_y = height - 10
    for i, (verdict, text) in enumerate((("challenger", "CI favours the challenger"),
                                         ("champion", "CI favours the champion"), ("unclear", "CI includes 0"))):
        x = 8 + i * 190
        parts.append(f'<circle cx="{x + 5}" cy="{legend_y - 3}" r="4" fill="{colours[verdict]}"/>')
        parts.append(_text(x + 14, legend_y, text, size=8, fill=MUTED))
    parts.append("</svg>")
    return "".join(parts)
