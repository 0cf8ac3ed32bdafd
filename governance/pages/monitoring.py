"""The monitoring section of the model page: drift per column over time (a heatmap), performance
over time with its threshold lines, and the open alerts with an Acknowledge form.

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
