"""What an audit bundle carries of monitoring: the ledger subjects (profiles, monitors, threshold
changes, runs, alerts with their acknowledgements) and each run's result as a file whose SHA-256 is
the `result_sha256` its `monitor_run.completed` entry records, so `verify.py` can recompute PSI,
Jensen-Shannon and chi-square from the stored counts offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from django.db.models import Q

from governance.monitoring.models import Alert, Comparison, Monitor, MonitorRun, ReferenceProfile, ThresholdChange


def run_result_bytes(run: MonitorRun) -> bytes:
    """The canonical JSON the run's digest was computed over (sorted keys, no spaces)."""
    return json.dumps(run.result, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def bundle_subjects(versions: Iterable[Any]) -> set[tuple[str, str]]:
    versions = list(versions)
    monitors = list(Monitor.objects.filter(version__in=versions).values_list("pk", flat=True))
    subjects: set[tuple[str, str]] = {("monitoring.monitor", str(pk)) for pk in monitors}
    subjects.update(("monitoring.referenceprofile", str(pk))
                    for pk in ReferenceProfile.objects.filter(version__in=versions).values_list("pk", flat=True))
    subjects.update(("monitoring.thresholdchange", str(pk))
                    for pk in ThresholdChange.objects.filter(monitor__in=monitors).values_list("pk", flat=True))
    subjects.update(("monitoring.monitorrun", str(pk))
                    for pk in MonitorRun.objects.filter(monitor__in=monitors).values_list("pk", flat=True))
    subjects.update(("monitoring.alert", str(pk))
                    for pk in Alert.objects.filter(monitor__in=monitors).values_list("pk", flat=True))
    subjects.update(("monitoring.comparison", str(pk)) for pk in Comparison.objects.filter(
        Q(champion__in=versions) | Q(challenger__in=versions)).values_list("pk", flat=True))
    return subjects


def bundle_files(versions: Iterable[Any]) -> dict[str, bytes]:
    """monitoring/run-<id>.json per run of the versions' monitors; a run whose stored result no
    longer hashes to its recorded digest is carried anyway (the verifier then fails on it)."""
    files: dict[str, bytes] = {}
    for run in MonitorRun.objects.filter(monitor__version__in=list(versions)).order_by("pk").iterator(100):
        files[f"monitoring/run-{run.pk:06d}.json"] = run_result_bytes(run)
    return files


def result_digest_matches(run: MonitorRun) -> bool:
    return hashlib.sha256(run_result_bytes(run)).hexdigest() == run.result_sha256


def post_market_plan(model: Any) -> list[dict[str, Any]]:
    """The post-market monitoring plan (EU AI Act Art. 72) as the monitors define it, per monitor:
    what is watched, over which window and schedule, against which thresholds, how a breach is
    escalated, and the alert history with the acknowledgements' comments as corrective actions."""
    from django.conf import settings

    plan = []
    monitors = (Monitor.objects.filter(version__model=model).select_related("version").order_by("version__created_at", "pk"))
    for monitor in monitors:
        profile = ReferenceProfile.objects.filter(version=monitor.version).first()
        thresholds = monitor.thresholds or {}
        performance = thresholds.get("performance") or {}
        escalation = ["an alert on the model page and the dashboard, open until a person acknowledges it with a comment",
                      "an e-mail to the model's contacts" + (f" and {len(settings.MONITORING_NOTIFY_EMAILS)} more address(es)"
                                                             if settings.MONITORING_NOTIFY_EMAILS else "")]
        if settings.MONITORING_WEBHOOK_URL:
            escalation.append("a signed webhook" + (" (Slack format)" if settings.MONITORING_WEBHOOK_FORMAT == "slack" else ""))
        if thresholds.get("on_alert") == "block_promotion":
            escalation.append("the version cannot be promoted to production while an alert is open")
        alerts = list(Alert.objects.filter(monitor=monitor).select_related("acknowledged_by").order_by("pk"))
        runs = MonitorRun.objects.filter(monitor=monitor)
        last = runs.order_by("-window_end").values_list("window_end", flat=True).first()
        plan.append({
            "monitor": monitor.name, "version": monitor.version.label,
            "columns": [f"{c['name']} ({c['kind']})" for c in (profile.columns if profile else [])],
            "profile_sha256": profile.profile_sha256 if profile else None,
            "performance": [f"{name} {'≥' if name in ('accuracy', 'precision', 'recall', 'f1', 'roc_auc', 'r2') else '≤'} "
                            f"{bound:g}" for name, bound in performance.items()] if monitor.y_true else [],
            "window": f"the last {monitor.window_days} day(s) of prediction batches",
            "schedule": f"every {monitor.run_every_hours} h" if monitor.run_every_hours else "on request",
            "drift_rule": (f"adjusted p ({thresholds.get('correction')}) ≤ {thresholds.get('alpha')} and effect ≥ "
                           f"{thresholds.get('numeric_effect')} (Wasserstein/σ) or {thresholds.get('categorical_effect')} "
                           "(Cramér's V)"),
            "escalation": escalation,
            "runs": runs.count(), "last_window_end": last.isoformat() if last else None,
            "alerts_raised": len(alerts), "alerts_open": sum(a.status == Alert.Status.OPEN for a in alerts),
            "corrective_actions": [{"alert": a.pk, "kind": a.kind, "subject": a.subject,
                                    "by": a.acknowledged_by.get_username() if a.acknowledged_by else None,
                                    "at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
                                    "comment": a.comment} for a in alerts if a.status == Alert.Status.ACKNOWLEDGED],
        })
    return plan
