"""SVG charts: pure functions, no database."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from governance.reports import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 (our own output)


def test_rate_bars_draw_one_bar_and_whisker_per_defined_group_and_escape_labels():
    svg = charts.rate_bars([charts.RatePoint("<script>", 0.5, (0.4, 0.6)), charts.RatePoint("b", None),
                            charts.RatePoint("c", 0.25, None, flagged=True)], title="Rates & <CI>")
    root = _parse(svg)
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 2
    assert bars[1].get("fill") == charts.BAD  # the flagged (small) group
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<script>" in texts and "Rates & <CI>" in texts  # escaped in the markup, intact when parsed
    assert "<script>" not in svg
    assert "undefined (no cases)" in texts
    assert len(root.findall(f"{SVG}line")) == 5 + 3  # grid + one whisker with two caps (only "<script>" has a CI)


def test_bar_width_is_proportional_to_the_rate():
    root = _parse(charts.rate_bars([charts.RatePoint("a", 1.0), charts.RatePoint("b", 0.5)], title="t"))
    full, half = (float(rect.get("width")) for rect in root.findall(f"{SVG}rect"))
    assert abs(half * 2 - full) < 0.2


def test_impact_ratio_chart_marks_groups_below_the_threshold_and_draws_the_line_at_it():
    root = _parse(charts.impact_ratio_bars([charts.RatePoint("a", 1.0), charts.RatePoint("b", 0.6)], title="IR",
                                           threshold=0.8))
    fills = [rect.get("fill") for rect in root.findall(f"{SVG}rect")]
    assert fills == [charts.GOOD, charts.BAD]
    threshold_line = [line for line in root.findall(f"{SVG}line") if line.get("stroke") == charts.BAD][0]
    first_bar = root.findall(f"{SVG}rect")[0]
    x0, width = float(first_bar.get("x")), float(first_bar.get("width"))  # ratio 1.0
    assert abs(float(threshold_line.get("x1")) - (x0 + width * 0.8)) < 0.5


def test_trend_line_breaks_at_missing_values_and_says_when_there_is_no_data():
    points = [charts.TrendPoint("a", 0.9), charts.TrendPoint("b", 0.85), charts.TrendPoint("c", None),
              charts.TrendPoint("d", 0.7), charts.TrendPoint("e", 0.75)]
    root = _parse(charts.trend_line(points, title="trend"))
    assert len(root.findall(f"{SVG}polyline")) == 2
    assert len(root.findall(f"{SVG}circle")) == 4
    assert [c.get("fill") for c in root.findall(f"{SVG}circle")].count(charts.BAD) == 2
    empty = charts.trend_line([charts.TrendPoint("a", None)], title="trend")
    assert "no audits recorded yet" in empty
    assert "no data recorded" in charts.rate_bars([], title="x")
