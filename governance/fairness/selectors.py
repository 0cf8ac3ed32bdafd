"""Permission-filtered reads of the fairness app. A model the user cannot see does not exist for them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from core.errors import NotFound
from governance import selectors as governance_selectors
from governance.fairness.models import AuditRun, AuditSpec, PredictionBatch, SealedFile
from governance.models import ApprovalPolicy, RegisteredModel, VersionStatus

# What a trend point reports for each attribute set.
TREND_METRICS = ("demographic_parity_ratio", "demographic_parity_difference", "equalized_odds_difference",
                 "equal_opportunity_difference")


def audit_run_list(*, user: Any, model_name: str | None = None, version_label: str | None = None,
                   status: str | None = None) -> QuerySet[AuditRun]:
    runs = (AuditRun.objects.select_related("spec__model", "model_version")
            .filter(spec__model__in=governance_selectors.registered_model_list(user=user)).order_by("-pk"))
    if model_name:
        runs = runs.filter(spec__model__name=model_name)
    if version_label:
        runs = runs.filter(model_version__label=version_label)
    if status:
        runs = runs.filter(status=status)
    return runs


def audit_run_get(*, user: Any, run_id: int) -> AuditRun:
    run = audit_run_list(user=user).filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"No fairness audit {run_id}.", code="fairness_audit_not_found", extra={"id": run_id})
    return run


def audit_spec_list(*, user: Any, model: RegisteredModel | None = None) -> QuerySet[AuditSpec]:
    specs = (AuditSpec.objects.select_related("model", "version", "periodic_task")
             .filter(model__in=governance_selectors.registered_model_list(user=user)).order_by("pk"))
    return specs.filter(model=model) if model is not None else specs


def audit_spec_get(*, user: Any, spec_id: int) -> AuditSpec:
    spec = audit_spec_list(user=user).filter(pk=spec_id).first()
    if spec is None:
        raise NotFound(f"No fairness audit spec {spec_id}.", code="fairness_spec_not_found", extra={"id": spec_id})
    return spec


def sealed_file_list(*, user: Any, model: RegisteredModel | None = None, kind: str | None = None,
                     erased: bool | None = None) -> QuerySet[SealedFile]:
    """Sealed data files of the models the user can see, newest first (a file with no model is nobody's to see).

    A file belongs to its model's team, so this is the team scope: another team's files are shown
    only to those who see every model (risk officers, auditors, admins).
    """
    files = (SealedFile.objects.select_related("model", "team", "replaced_by")
             .filter(model__in=governance_selectors.registered_model_list(user=user)).order_by("-pk"))
    if model is not None:
        files = files.filter(model=model)
    if kind is not None:
        files = files.filter(kind=kind)
    if erased is not None:
        files = files.filter(erased_at__isnull=not erased)
    return files


def sealed_file_get(*, user: Any, file_id: str) -> SealedFile:
    record = sealed_file_list(user=user).filter(file_id=file_id.lower()).first() if len(file_id) == 32 else None
    if record is None:
        raise NotFound("No such data file.", code="sealed_file_not_found", extra={"file_id": file_id[:64]})
    return record


def prediction_batch_list(*, user: Any, model: RegisteredModel) -> QuerySet[PredictionBatch]:
    governance_selectors.registered_model_get(user=user, name=model.name)
    return PredictionBatch.objects.filter(model=model).order_by("-uploaded_at", "-pk")


def trend_point(run: AuditRun) -> dict[str, Any]:
    result = run.result or {}
    attributes = {}
    for key, disparity in (result.get("disparities") or {}).items():
        ratios = [row["impact_ratio_to_best"] for row in disparity.get("impact_ratios") or []
                  if row.get("impact_ratio_to_best") is not None and not row.get("small_group")]
        attributes[key] = {**{name: disparity.get(name) for name in TREND_METRICS},
                           "min_impact_ratio": min(ratios) if ratios else None}
    return {"audit": run.pk, "finished_at": run.finished_at, "window_start": run.window_start,
            "window_end": run.window_end, "version": run.model_version.label if run.model_version else None,
            "rows": result.get("rows"), "passed": run.passed, "selection_rate": (result.get("overall") or {}).get(
                "selection_rate"), "attributes": attributes}


def fairness_trend(*, user: Any, model_name: str, limit: int = 200) -> list[dict[str, Any]]:
    """Completed production-monitoring audits of the model, oldest first: the trend over time."""
    model = governance_selectors.registered_model_get(user=user, name=model_name)
    runs = (AuditRun.objects.select_related("model_version")
            .filter(spec__model=model, spec__target=AuditSpec.Target.PRODUCTION, status=AuditRun.Status.SUCCEEDED)
            .order_by("-finished_at", "-pk")[:limit])
    return [trend_point(run) for run in reversed(list(runs))]


def failing_audits(*, user: Any, limit: int = 20) -> list[AuditRun]:
    """Each visible spec's latest finished run, where it failed (thresholds or an error)."""
    latest: dict[int, AuditRun] = {}
    runs = audit_run_list(user=user).filter(status__in=[AuditRun.Status.SUCCEEDED, AuditRun.Status.FAILED])
    for run in runs.order_by("-finished_at", "-pk")[:2000]:
        latest.setdefault(run.spec_id, run)
    failing = [run for run in latest.values() if run.status == AuditRun.Status.FAILED or run.passed is False]
    return failing[:limit]


def overdue_audits(*, user: Any, limit: int = 20) -> list[dict[str, Any]]:
    """Deployed or pending versions whose policy requires an audit that is missing or older than allowed."""
    overdue = []
    now = timezone.now()
    versions = governance_selectors.model_version_list(user=user).filter(
        status__in=[VersionStatus.PENDING_REVIEW, VersionStatus.APPROVED, VersionStatus.DEPLOYED])
    for version in versions[:500]:
        policy: ApprovalPolicy | None = governance_selectors.approval_policy_for(version.model)
        if policy is None or policy.fairness_audit_max_age_days is None:
            continue
        last = (AuditRun.objects.filter(model_version=version, status=AuditRun.Status.SUCCEEDED, passed=True)
                .order_by("-finished_at").values_list("finished_at", flat=True).first())
        due = policy.fairness_audit_max_age_days
        if last is None or now - last > timedelta(days=due):
            overdue.append({"version": version, "last_passed": last, "max_age_days": due})
        if len(overdue) >= limit:
            break
    return overdue
