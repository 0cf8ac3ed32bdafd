"""Periodic revalidation: the beat job raises one alert per production version overdue for
re-approval (idempotent: again and again it raises nothing more; acknowledged, not again for the
same due date), recorded in the ledger, and notified once by e-mail and the signed webhook."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import LedgerEntry
from governance.fairness import notifications as fairness_notifications
from governance.monitoring.models import Alert
from governance.monitoring.services.monitors import alert_acknowledge, monitor_create, monitor_thresholds_set
from governance.monitoring.services.revalidation import alert_notify, revalidation_alerts_raise
from governance.monitoring.tasks import revalidation_alerts_raise_task
from governance.registry.services.deployments import deployment_record
from tests.monitoring.test_notifications import SECRET, receiver  # noqa: F401 (fixture)
from tests.monitoring.test_promotion_block import approved  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def overdue(approved, scientist, risk_officer, environments):  # type: ignore[no-untyped-def]  # noqa: F811
    deployment_record(version=approved, environment=environments["production"], by=scientist)
    for _ in range(2):  # two monitors of one version: still one alert
        monitor = monitor_create(by=scientist, version=approved)
        monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={**monitor.thresholds, "revalidate_days": 30})
    return approved


def test_one_alert_per_overdue_version_raised_once_and_notified_once(overdue, scientist, receiver,  # noqa: F811
                                                                     django_capture_on_commit_callbacks):
    assert revalidation_alerts_raise() == []  # approved just now: not due
    later = timezone.now() + timedelta(days=35)
    with django_capture_on_commit_callbacks(execute=True):
        (alert,) = revalidation_alerts_raise(now=later)
    assert (alert.kind, alert.subject, alert.run_id, alert.status) == ("revalidation", overdue.label, None, "open")
    assert alert.detail["every_days"] == 30 and alert.detail["days_overdue"] == 5
    entry = LedgerEntry.objects.get(action="alert.raised")
    assert entry.actor == "system:revalidation_alerts_raise_task" and entry.payload["kind"] == "revalidation"
    # Idempotent: the next beats raise nothing more while it is open.
    assert revalidation_alerts_raise(now=later) == []
    assert revalidation_alerts_raise(now=later + timedelta(days=3)) == []
    assert Alert.objects.count() == 1 and LedgerEntry.objects.filter(action="alert.raised").count() == 1
    # Notified through the monitoring alert notifications: one signed webhook, one e-mail.
    assert len(receiver) == 1
    headers, body = receiver[0]
    assert fairness_notifications.verify(SECRET, headers=headers, body=body)
    event = json.loads(body)
    assert event["event"] == "monitoring_alert.raised" and event["alerts"][0]["kind"] == "revalidation"
    assert len(mail.outbox) == 1 and "revalidation overdue" in mail.outbox[0].body
    alert.refresh_from_db()
    assert alert.webhook_sent_at is not None and alert.emailed_at is not None
    alert_notify(alert_id=alert.pk)  # a redelivered task sends nothing more
    assert len(receiver) == 1 and len(mail.outbox) == 1
    # Acknowledged, it is not raised again for the same overdue period.
    alert_acknowledge(alert=alert, by=scientist, comment="re-approval requested")
    assert revalidation_alerts_raise(now=later + timedelta(days=1)) == []


def test_the_beat_task_is_scheduled_and_a_version_not_in_production_is_not_alerted(approved, scientist, risk_officer,  # noqa: F811
                                                                                   settings):
    assert any(entry["task"] == "governance.monitoring.tasks.revalidation_alerts_raise_task"
               for entry in settings.CELERY_BEAT_SCHEDULE.values())
    monitor = monitor_create(by=scientist, version=approved)
    monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={**monitor.thresholds, "revalidate_days": 1})
    assert revalidation_alerts_raise_task() == 0  # approved, not deployed
    assert not Alert.objects.exists()
