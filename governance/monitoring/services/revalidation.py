"""Periodic revalidation: a production version overdue for re-approval (its monitor's policy
`revalidate_days`) raises an alert, once per overdue period, and notifies through the monitoring
alert notifications (e-mail and the signed webhook).

Idempotent: at most one open revalidation alert per version (the version row lock serialises two
beat deliveries; a partial unique constraint backs it per monitor), and an acknowledged alert is
not raised again for the same due date, only once a new approval falls due again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.ledger import ledger_append, lock_for_update
from core.outbox.services import task_enqueue_on_commit
from governance.models import ModelVersion
from governance.monitoring import selectors
from governance.monitoring.models import Alert, Monitor
from governance.monitoring.services.reapproval import reapproval_for_alert

SYSTEM_ACTOR = "system:revalidation_alerts_raise_task"
NOTIFY_TASK = "governance.monitoring.tasks.alert_notify_task"
KIND = "revalidation"


def revalidation_alerts_raise(*, now: datetime | None = None) -> list[Alert]:
    """Beat job: one `alert.raised` (kind revalidation) per overdue version without one for its due date."""
    moment = now or timezone.now()
    raised: list[Alert] = []
    seen: set[int] = set()
    for item in selectors.overdue_among(Monitor.objects.all(), now=moment):
        if item["version_id"] in seen:
            continue  # several monitors of one version: one alert, on the first
        seen.add(item["version_id"])
        due = item["due"].isoformat() if item["due"] else None
        with transaction.atomic():
            lock_for_update(ModelVersion.objects.filter(pk=item["version_id"])).get()
            earlier = Alert.objects.filter(monitor__version_id=item["version_id"], kind=KIND)
            if earlier.filter(status=Alert.Status.OPEN).exists() or earlier.filter(detail__due=due).exists():
                continue
            detail: dict[str, Any] = {
                "every_days": item["every_days"], "due": due, "days_overdue": item["days_overdue"],
                "last_approved": item["last_approved"].isoformat() if item["last_approved"] else None}
            alert = Alert.objects.create(run=None, monitor_id=item["monitor"], kind=KIND, subject=item["version"],
                                         detail=detail)
            reapproval = reapproval_for_alert(alert=alert, by=SYSTEM_ACTOR)
            entry = ledger_append(actor=SYSTEM_ACTOR, action="alert.raised", subject=alert, payload={
                "monitor": item["monitor"], "run": None, "kind": KIND, "subject": item["version"],
                "model": item["model"], "detail": detail, **({"reapproval": reapproval.pk} if reapproval else {})})
            alert.detail = {**detail, "ledger_seq": entry.seq}
            alert.save(update_fields=["detail"])
            task_enqueue_on_commit(NOTIFY_TASK, alert.pk)
        raised.append(alert)
    return raised


def alert_notify(*, alert_id: int) -> bool:
    """The signed webhook and the e-mail of an alert without a run, each once; True once both are sent."""
    from governance.monitoring import notifications

    steps = (("webhook_sent_at", notifications.send_alert_webhook), ("emailed_at", notifications.send_alert_email))
    for field, send in steps:
        with transaction.atomic():
            alert = (lock_for_update(Alert.objects, of=("self",)).select_related("monitor__version__model")
                     .get(pk=alert_id))
            if alert.run_id is not None:
                return False  # a run's alerts are sent with their run
            if getattr(alert, field) is None:
                send(alert)  # raises on failure: the task retries; nothing is marked
                setattr(alert, field, timezone.now())
                alert.save(update_fields=[field])
    return True
