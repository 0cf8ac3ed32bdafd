"""The fairness part of the pages: failing/overdue audits, results with charts, starting an audit.

Reads go through the fairness app's selectors and models, writes through its services; the charts
are the reports app's inline SVG (rates with CI whiskers, impact ratio against the threshold line,
trend over time), so a page and a report draw the same picture of the same result.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Exists, Max, OuterRef, Q, Subquery
from django.http import QueryDict
from django.utils import timezone
from django.utils.safestring import mark_safe

from core.errors import InvalidInput, NotFound
from core.ids import parse_id
from governance import selectors as governance_selectors
from governance.fairness.models import AuditRun, AuditSpec
from governance.fairness.selectors import audit_spec_list
from governance.fairness.services.access import can_manage_specs, can_run_audits
from governance.fairness.services.runs import audit_request
from governance.models import ApprovalPolicy, ModelVersion, RegisteredModel, VersionStatus

IMPACT_RATIO_THRESHOLD = 0.8
LIGHT_FIELDS = ("pk", "spec_id", "status", "passed", "finished_at", "error_code", "model_version__label",
                "spec__name", "spec__model__name")


# --- Dashboard -----------------------------------------------------------------------------------

def failing_audits(*, user: Any, limit: int = 10, visible: Any = None) -> list[dict[str, Any]]:
    """Each visible spec's latest finished run, where it failed its thresholds or errored (one query)."""
    finished = [AuditRun.Status.SUCCEEDED, AuditRun.Status.FAILED]
    latest = (AuditRun.objects.filter(spec=OuterRef("spec"), status__in=finished)
              .order_by("-finished_at", "-pk").values("pk")[:1])
    if visible is None:
        visible = governance_selectors.registered_model_list(user=user)
    runs = (AuditRun.objects.filter(spec__model__in=visible, status__in=finished, pk=Subquery(latest))
            .filter(Q(status=AuditRun.Status.FAILED) | Q(passed=False))
            .order_by("-finished_at", "-pk").values(*LIGHT_FIELDS)[:limit])
    return [{"label": f"{run['spec__model__name']} {run['model_version__label'] or ''} — {run['spec__name']}",
             "url": f"/models/{run['spec__model__name']}/?audit_result={run['pk']}#fairness",
             "detail": (f"error [{run['error_code']}]" if run["status"] == AuditRun.Status.FAILED
                        else "below a threshold") + f", {run['finished_at']:%Y-%m-%d %H:%M} UTC"}
            for run in runs]


def overdue_audits(*, user: Any, limit: int = 10, visible: Any = None) -> list[dict[str, Any]]:
    """Versions under review, approved or deployed whose policy wants a passing audit younger than N
    days, and that have none (one query per distinct age limit, usually one or two)."""
    now = timezone.now()
    policies = list(ApprovalPolicy.objects.values("model_id", "risk_tier", "fairness_audit_max_age_days"))
    own_policy_models = {row["model_id"] for row in policies if row["model_id"] is not None}
    by_age: dict[int, Q] = {}
    for row in policies:
        days = row["fairness_audit_max_age_days"]
        if days is None:
            continue
        scope = (Q(model_id=row["model_id"]) if row["model_id"] is not None
                 else Q(model__risk_tier=row["risk_tier"]) & ~Q(model_id__in=own_policy_models))
        by_age[days] = by_age.get(days, Q(pk__in=[])) | scope
    if not by_age:
        return []
    last_passed = (AuditRun.objects.filter(model_version=OuterRef("pk"), status=AuditRun.Status.SUCCEEDED,
                                           passed=True).order_by().values("model_version")
                   .annotate(last=Max("finished_at")).values("last"))
    found: list[dict[str, Any]] = []
    for days, scope in sorted(by_age.items()):
        fresh = AuditRun.objects.filter(model_version=OuterRef("pk"), status=AuditRun.Status.SUCCEEDED,
                                        passed=True, finished_at__gte=now - timedelta(days=days))
        if visible is None:
            visible = governance_selectors.registered_model_list(user=user)
        versions = (ModelVersion.objects.filter(model__in=visible)
                    .filter(scope, status__in=[VersionStatus.PENDING_REVIEW, VersionStatus.APPROVED,
                                                VersionStatus.DEPLOYED])
                    .filter(~Exists(fresh)).annotate(last_passed=Subquery(last_passed))
                    .order_by("model__name", "label").values("model__name", "label", "last_passed")[:limit])
        for row in versions:
            since = f"last passed {row['last_passed']:%Y-%m-%d}" if row["last_passed"] else "never audited"
            found.append({"label": f"{row['model__name']} {row['label']}",
                          "url": f"/models/{row['model__name']}/?version={row['label']}#fairness",
                          "detail": f"{since}; policy wants one within {days} days"})
    return found[:limit]


def dashboard_overview(*, user: Any, visible: Any = None) -> dict[str, Any]:
    return {"failing_audits": failing_audits(user=user, visible=visible),
            "overdue_audits": overdue_audits(user=user, visible=visible)}


# --- Model page ----------------------------------------------------------------------------------

def _group_name(attributes: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in attributes.items()) or "all"


def _rate(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def result_charts(result: dict[str, Any], *, threshold: float) -> list[dict[str, Any]]:
    """Per attribute set: the group table, rate bars with CI whiskers, impact-ratio bars against the threshold."""
    from governance.reports import charts

    impact: dict[str, dict[str, Any]] = {}
    for disparity in (result.get("disparities") or {}).values():
        for row in disparity.get("impact_ratios") or []:
            impact[_group_name(row.get("attributes") or {})] = row
    tables: dict[str, list[dict[str, Any]]] = {}
    for group in result.get("groups") or []:
        attributes = group.get("attributes") or {}
        name = _group_name(attributes)
        ci = (group.get("ci") or {}).get("selection_rate")
        tables.setdefault(" & ".join(attributes), []).append({
            "group": name, "count": group.get("count"), "selection_rate": _rate(group.get("selection_rate")),
            "ci": tuple(ci) if ci else None, "tpr": _rate(group.get("tpr")), "fpr": _rate(group.get("fpr")),
            "impact_ratio": _rate(impact.get(name, {}).get("impact_ratio_to_best")),
            "flags": group.get("flags") or []})
    rendered = []
    for key, rows in tables.items():
        with_ci = any(row["ci"] for row in rows)
        rendered.append({
            "attribute": key, "rows": rows,
            # Generated SVG: every label is escaped by the charts module.
            "rates_chart": mark_safe(charts.rate_bars(  # noqa: S308
                [charts.RatePoint(row["group"], row["selection_rate"], row["ci"], "small_group" in row["flags"])
                 for row in rows],
                title=f"Selection rate by {key}{' (95% CI)' if with_ci else ''}", axis_label="selection rate")),
            "impact_chart": mark_safe(charts.impact_ratio_bars(  # noqa: S308
                [charts.RatePoint(row["group"], row["impact_ratio"]) for row in rows
                 if "small_group" not in row["flags"]],
                title=f"Impact ratio by {key} (vs best group)", threshold=threshold)),
        })
    return rendered


def _lowest_impact_ratio(result: dict[str, Any] | None) -> float | None:
    ratios = [row["impact_ratio_to_best"] for disparity in ((result or {}).get("disparities") or {}).values()
              for row in disparity.get("impact_ratios") or []
              if isinstance(row.get("impact_ratio_to_best"), (int, float)) and not row.get("small_group")]
    return min(ratios) if ratios else None


def model_section(*, user: Any, model: RegisteredModel, versions: list[ModelVersion],
                  selected: ModelVersion | None, audit_id: int | None,
                  result_id: int | None = None) -> dict[str, Any]:
    from governance.reports import charts

    # The page has already checked that the user may see the model (a 404 otherwise).
    specs = list(AuditSpec.objects.filter(model=model).select_related("version").order_by("pk"))
    runs = AuditRun.objects.filter(spec__model=model).select_related("model_version")
    succeeded = runs.filter(status=AuditRun.Status.SUCCEEDED)
    shown = None
    if result_id is not None:
        shown = succeeded.filter(pk=result_id).first()
    if shown is None and selected is not None:
        shown = succeeded.filter(model_version=selected).order_by("-finished_at", "-pk").first()
    if shown is None:
        shown = succeeded.order_by("-finished_at", "-pk").first()
    threshold = IMPACT_RATIO_THRESHOLD
    charts_for_shown: list[dict[str, Any]] = []
    if shown is not None:
        threshold = float((shown.thresholds or {}).get("impact_ratio", IMPACT_RATIO_THRESHOLD))
        charts_for_shown = result_charts(shown.result or {}, threshold=threshold)
    history = list(succeeded.order_by("-finished_at", "-pk")
                   .values("pk", "finished_at", "passed", "result", "model_version__label")[:30])
    history.reverse()
    trend = [{"audit": row["pk"], "when": row["finished_at"], "version": row["model_version__label"],
              "passed": row["passed"], "lowest_impact_ratio": _lowest_impact_ratio(row["result"])} for row in history]
    trend_chart = mark_safe(charts.trend_line(  # noqa: S308 (generated SVG, labels escaped)
        [charts.TrendPoint(f"{item['version'] or 'prod'} {item['when']:%m-%d %H:%M}", item["lowest_impact_ratio"])
         for item in trend], title="Lowest impact ratio per audit, over time", threshold=threshold)) if trend else ""
    recent = list(runs.order_by("-pk").values("pk", "status", "passed", "created_at", "model_version__label",
                                              "spec__name", "error_code")[:10])
    return {
        "audit_specs": specs,
        "can_audit": bool(specs) and can_run_audits(user, model),
        "can_define_audits": can_manage_specs(user, model),
        "audit_id": audit_id,
        "audit_job_url": f"/api/fairness/audits/{audit_id}/status/" if audit_id else "",
        "shown_audit": shown,
        "shown_findings": (shown.findings if shown is not None else []),
        "audit_charts": charts_for_shown,
        "impact_threshold": threshold,
        "trend": trend,
        "trend_chart": trend_chart,
        "recent_audits": recent,
    }


def start_audit(*, user: Any, model: RegisteredModel, post: QueryDict) -> tuple[int, str]:
    """Queue a run of one of the model's specs (chosen in the form); returns (run id, version label)."""
    raw = post.get("spec", "")
    spec_id = parse_id(raw)
    if spec_id is None:
        raise InvalidInput("Choose an audit to run.", code="fairness_spec_required")
    spec = audit_spec_list(user=user, model=model).filter(pk=spec_id).first()
    if spec is None:
        raise NotFound(f"No fairness audit spec {raw} for '{model.name}'.", code="fairness_spec_not_found")
    run = audit_request(spec=spec, by=user)
    return run.pk, run.model_version.label if run.model_version else ""
