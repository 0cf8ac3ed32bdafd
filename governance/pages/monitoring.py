"""The monitoring section of the model page: drift per column over time (a heatmap), performance
over time with its threshold lines, and the open alerts with an Acknowledge form; and the model's
champion/challenger comparisons page (a forest plot of the differences with their CIs).

Reads go through governance.monitoring.selectors (team-scoped); the acknowledgement goes through
the monitoring service, which checks the permission and records the ledger entry.
"""

from __future__ import annotations

from typing import Any

from django.utils.safestring import mark_safe

from governance.fairness.services.access import can_manage_specs
from governance.models import ModelVersion, RegisteredModel
from governance.monitoring import charts
from governance.monitoring import selectors as monitoring_selectors
from governance.monitoring.performance import HIGHER_IS_BETTER
from governance.monitoring.services.monitors import alert_acknowledge

RUNS_SHOWN = 30
METRICS_SHOWN = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier", "mae", "rmse", "r2")


def _monitor_view(monitor: Any, runs: list[Any]) -> dict[str, Any]:
    labels = [f"{run.window_end:%Y-%m-%d}" for run in runs]
    columns: list[str] = []
    cells_per_run = []
    for run in runs:
        cells: dict[str, charts.DriftCell] = {}
        for column in (run.result.get("drift") or {}).get("columns") or []:
            name = column["column"]
            if name not in columns:
                columns.append(name)
            effect = column.get("effect_size") or {}
            cells[name] = charts.DriftCell(effect=effect.get("value"), threshold=float(effect.get("threshold") or 0.0),
                                           drift=bool(column.get("drift")))
        cells_per_run.append(cells)
    bounds = (monitor.thresholds or {}).get("performance") or {}
    performances = [run.result.get("performance") or {} for run in runs]
    present = [m for m in METRICS_SHOWN if any(isinstance(p.get(m), (int, float)) for p in performances)]
    # The thresholded metrics first, then the rest, at most five lines.
    shown = ([m for m in present if m in bounds] + [m for m in present if m not in bounds])[:5]
    series = {m: [p.get(m) if isinstance(p.get(m), (int, float)) else None for p in performances] for m in shown}
    return {
        "monitor": monitor,
        "runs": list(reversed(runs))[:5],
        "heatmap": mark_safe(charts.drift_heatmap(  # noqa: S308 (generated SVG, labels escaped)
            columns, list(zip(labels, cells_per_run, strict=True)),
            title=f"Drift per column over time ({monitor.window_days}-day windows)")),
        "performance_chart": mark_safe(charts.metric_lines(  # noqa: S308 (generated SVG, labels escaped)
            labels, series, title="Performance over time", thresholds={m: b for m, b in bounds.items() if m in series}))
        if monitor.y_true else "",
    }


def model_section(*, user: Any, model: RegisteredModel, selected: ModelVersion | None) -> dict[str, Any]:
    """Monitors of the shown version (or of the model, when no version is shown) and the model's open alerts."""
    monitors = monitoring_selectors.monitor_list(user=user, model_name=model.name)
    if selected is not None and monitors.filter(version=selected).exists():
        monitors = monitors.filter(version=selected)
    views = []
    for monitor in monitors.order_by("pk")[:5]:
        runs = list(monitoring_selectors.monitor_run_list(user=user, monitor_id=monitor.pk).order_by("-pk")[:RUNS_SHOWN])
        runs.reverse()
        views.append(_monitor_view(monitor, runs))
    alerts = list(monitoring_selectors.alert_list(user=user, status="open", model_name=model.name)
                  .select_related("run").order_by("-pk")[:50])
    return {"monitoring": views, "monitoring_alerts": alerts, "can_acknowledge": can_manage_specs(user, model),
            "revalidation_overdue": monitoring_selectors.revalidation_overdue(user=user, model_name=model.name)}


def acknowledge(*, user: Any, model: RegisteredModel, alert_id: int, comment: str) -> Any:
    """The alert of this model, read team-scoped (404 otherwise), acknowledged through the service."""
    alert = monitoring_selectors.alert_get(user=user, alert_id=alert_id)
    if alert.monitor.version.model_id != model.pk:
        from core.errors import NotFound

        raise NotFound(f"No alert {alert_id}.", code="monitoring_alert_not_found", extra={"id": alert_id})
    return alert_acknowledge(alert=alert, by=user, comment=comment)


COMPARISONS_SHOWN = 50


def _comparison_view(comparison: Any) -> dict[str, Any]:
    result = comparison.result or {}
    bootstrap = result.get("bootstrap") or {}
    rows = []
    for name, metric in (result.get("metrics") or {}).items():
        ci = metric.get("ci")
        row = charts.Difference(metric=name, difference=metric.get("difference"),
                                ci=(float(ci[0]), float(ci[1])) if ci else None,
                                lower_is_better=name not in HIGHER_IS_BETTER)
        rows.append({**metric, "name": name, "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                     "verdict": charts.difference_verdict(row), "better": "lower" if row.lower_is_better else "higher",
                     "chart_row": row})
    batches = {side: [b for b in comparison.batches or [] if b.get("version") == label]
               for side, label in (("champion", comparison.champion.label), ("challenger", comparison.challenger.label))}
    return {
        "comparison": comparison, "metrics": rows, "bootstrap": bootstrap, "rows": result.get("rows") or {},
        "columns": result.get("columns") or {}, "n": result.get("n"), "task": result.get("task"), "batches": batches,
        "forest": mark_safe(charts.difference_forest(  # noqa: S308 (generated SVG, labels escaped)
            [row["chart_row"] for row in rows], confidence=float(bootstrap.get("confidence") or 0.95),
            title=f"{comparison.challenger.label} (challenger) − {comparison.champion.label} (champion), per metric")),
    }


def comparisons_page(*, user: Any, model: RegisteredModel, comparison_id: int | None) -> dict[str, Any]:
    """The model's comparisons (newest first) and one shown in full: the one asked for, else the newest.
    Read team-scoped; a comparison of another model or team is a 404 (`NotFound`)."""
    from core.errors import NotFound

    visible = (monitoring_selectors.comparison_list(user=user, model_name=model.name)
               .select_related("created_by").order_by("-pk"))
    comparisons = list(visible[:COMPARISONS_SHOWN])
    shown = comparisons[0] if comparisons and comparison_id is None else next(
        (c for c in comparisons if c.pk == comparison_id), None)
    if comparison_id is not None and shown is None:
        shown = visible.filter(pk=comparison_id).first()  # older than the list shows
        if shown is None:
            raise NotFound(f"No comparison {comparison_id}.", code="monitoring_comparison_not_found",
                           extra={"id": comparison_id})
    return {"comparisons": comparisons, "shown": _comparison_view(shown) if shown is not None else None}
