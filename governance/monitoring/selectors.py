"""Permission-filtered reads of monitoring. A model the user cannot see does not exist for them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.errors import NotFound
from governance import selectors as governance_selectors
from governance.monitoring.models import Alert, Comparison, Monitor, MonitorRun, ReferenceProfile, ThresholdChange


def reference_profile_list(*, user: Any, model_name: str | None = None, version_label: str | None = None
                           ) -> QuerySet[ReferenceProfile]:
    profiles = (ReferenceProfile.objects.select_related("version__model")
                .filter(version__model__in=governance_selectors.registered_model_list(user=user)))
    if model_name:
        profiles = profiles.filter(version__model__name=model_name)
    if version_label:
        profiles = profiles.filter(version__label=version_label)
    return profiles


def reference_profile_get(*, user: Any, profile_id: int) -> ReferenceProfile:
    profile = reference_profile_list(user=user).filter(pk=profile_id).first()
    if profile is None:
        raise NotFound(f"No reference profile {profile_id}.", code="monitoring_profile_not_found", extra={"id": profile_id})
    return profile


def monitor_list(*, user: Any, model_name: str | None = None) -> QuerySet[Monitor]:
    monitors = Monitor.objects.select_related("version__model").filter(
        version__model__in=governance_selectors.registered_model_list(user=user))
    return monitors.filter(version__model__name=model_name) if model_name else monitors


def monitor_get(*, user: Any, monitor_id: int) -> Monitor:
    monitor = monitor_list(user=user).filter(pk=monitor_id).first()
    if monitor is None:
        raise NotFound(f"No monitor {monitor_id}.", code="monitoring_monitor_not_found", extra={"id": monitor_id})
    return monitor


def threshold_change_get(*, user: Any, change_id: int) -> ThresholdChange:
    change = ThresholdChange.objects.select_related("monitor__version__model").filter(
        pk=change_id, monitor__in=monitor_list(user=user)).first()
    if change is None:
        raise NotFound(f"No threshold change {change_id}.", code="monitoring_monitor_not_found", extra={"id": change_id})
    return change


def monitor_run_list(*, user: Any, monitor_id: int | None = None) -> QuerySet[MonitorRun]:
    runs = MonitorRun.objects.select_related("monitor__version__model", "profile").filter(
        monitor__in=monitor_list(user=user))
    return runs.filter(monitor_id=monitor_id) if monitor_id else runs


def alert_list(*, user: Any, status: str | None = None, model_name: str | None = None) -> QuerySet[Alert]:
    alerts = Alert.objects.select_related("monitor__version__model").filter(monitor__in=monitor_list(user=user))
    if status:
        alerts = alerts.filter(status=status)
    return alerts.filter(monitor__version__model__name=model_name) if model_name else alerts


def alert_get(*, user: Any, alert_id: int) -> Alert:
    alert = alert_list(user=user).filter(pk=alert_id).first()
    if alert is None:
        raise NotFound(f"No alert {alert_id}.", code="monitoring_alert_not_found", extra={"id": alert_id})
    return alert


def prediction_batch_get(*, user: Any, batch_id: int) -> Any:
    """A prediction batch of a model the user may see (another team's: 404)."""
    from governance.fairness.models import PredictionBatch

    batch = (PredictionBatch.objects.select_related("model")
             .filter(pk=batch_id, model__in=governance_selectors.registered_model_list(user=user)).first())
    if batch is None:
        raise NotFound(f"No prediction batch {batch_id}.", code="monitoring_batch_not_found", extra={"id": batch_id})
    return batch


def comparison_list(*, user: Any, model_name: str | None = None) -> QuerySet[Comparison]:
    comparisons = Comparison.objects.select_related("champion__model", "challenger").filter(
        champion__model__in=governance_selectors.registered_model_list(user=user))
    return comparisons.filter(champion__model__name=model_name) if model_name else comparisons


def drift_trend(*, user: Any, monitor_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """Per run, oldest first: per column its adjusted p-value, effect size and drift flag; the performance."""
    runs = list(monitor_run_list(user=user, monitor_id=monitor_id).order_by("-pk")[:limit])
    return [{"run": run.pk, "window_end": run.window_end.isoformat(),
             "columns": {c["column"]: {"pvalue_adjusted": c["pvalue_adjusted"], "effect": c["effect_size"]["value"],
                                       "drift": c["drift"]} for c in run.result["drift"]["columns"]},
             "performance": {k: v for k, v in (run.result.get("performance") or {}).items() if k != "calibration"}}
            for run in reversed(runs)]


def monitor_run_input_erasure(run: MonitorRun) -> dict[str, Any] | None:
    """The erasure note of a run whose batches or reference profile were erased since (issue 18)."""
    from governance.fairness.models import PredictionBatch
    from governance.fairness.services.vault import erasure_note, sealed_file_name_at

    batch_ids = [item.get("id") for item in run.batches or [] if isinstance(item, dict)]
    names = list(PredictionBatch.objects.filter(pk__in=batch_ids).values_list("file", flat=True))
    # A batch rewritten by a row-level erasure after this run: the run read the original, erased since.
    names = [sealed_file_name_at(name, run.created_at) for name in names]
    return erasure_note([*names, run.profile.profile_file])


def revalidation_overdue(*, user: Any, model_name: str | None = None, now: Any = None) -> list[dict[str, Any]]:
    """Deployed versions whose monitor's policy wants re-approval every N days (`revalidate_days`)
    and whose latest approval is older than that: the version, its last approval, the days overdue.
    One query, whatever the number of monitors."""
    return overdue_among(monitor_list(user=user, model_name=model_name), now=now)


def overdue_among(monitors: QuerySet[Monitor], *, now: Any = None) -> list[dict[str, Any]]:
    """`revalidation_overdue` over the given monitors (the beat job passes every monitor)."""
    from datetime import timedelta

    from django.db.models import OuterRef, Subquery
    from django.utils import timezone

    from governance.models import ApprovalRequest, RequestStatus, VersionStatus

    moment = now or timezone.now()
    last_approval = (ApprovalRequest.objects.filter(version=OuterRef("version"), status=RequestStatus.APPROVED)
                     .order_by("-closed_at").values("closed_at")[:1])
    monitors = (monitors.select_related("version__model")
                .filter(version__status=VersionStatus.DEPLOYED, thresholds__revalidate_days__isnull=False)
                .annotate(last_approved=Subquery(last_approval)).order_by("version__model__name", "version__label", "pk"))
    found: list[dict[str, Any]] = []
    for monitor in monitors:
        days = (monitor.thresholds or {}).get("revalidate_days")
        if not days:
            continue
        last = monitor.last_approved
        due = (last + timedelta(days=days)) if last else None
        if due is None or due < moment:
            found.append({"model": monitor.version.model.name, "version": monitor.version.label, "monitor": monitor.pk,
                          "version_id": monitor.version_id,
                          "every_days": days, "last_approved": last, "due": due,
                          "days_overdue": (moment - due).days if due else None})
    return found
