"""Alert notifications: a run that raises alerts sends one e-mail and one webhook signed like the
fairness notifications (a Slack-compatible body on request), each once, even across a retry; a
run without alerts sends nothing; the secret never leaves the server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.fairness import notifications as fairness_notifications
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.models import MonitorRun
from governance.monitoring.services.monitors import monitor_create, monitor_run, monitor_run_notify
from governance.monitoring.services.profiles import reference_profile_create
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db
SECRET = "monitoring-webhook-secret-for-tests"


@pytest.fixture
def receiver(settings, http_receiver):  # type: ignore[no-untyped-def]
    """The webhook URL points at a real local HTTP server; returns the list of what it receives."""
    url, received = http_receiver
    settings.MONITORING_WEBHOOK_URL = url
    settings.MONITORING_WEBHOOK_SECRET = SECRET
    settings.MONITORING_NOTIFY_EMAILS = ["oncall@example.org"]
    return received


@pytest.fixture
def monitored(scientist, version):  # type: ignore[no-untyped-def]
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("ref.csv", _csv(3_000)),
                             columns=["age"], categorical=["region"])
    return monitor_create(by=scientist, version=version, y_true="label", y_pred="predicted", window_days=7)


def _run(scientist: Any, version: Any, monitor: Any, content: bytes, capture: Any) -> MonitorRun:
    prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile("b.csv", content),
                            served_version=version)
    with capture(execute=True):
        run = monitor_run(monitor=monitor, by=scientist)
    return MonitorRun.objects.get(pk=run.pk)


def test_alerts_send_one_signed_webhook_and_one_email(monitored, scientist, version, receiver,
                                                      django_capture_on_commit_callbacks):
    run = _run(scientist, version, monitored, _csv(800, shift=9.0, accuracy=0.5, seed=5), django_capture_on_commit_callbacks)
    assert run.breached and run.notified_at is not None
    assert len(receiver) == 1
    headers, body = receiver[0]
    assert fairness_notifications.verify(SECRET, headers=headers, body=body)
    assert not fairness_notifications.verify(SECRET, headers=headers, body=body + b" ")
    assert headers["X-Governance-Event"] == "monitoring_alert.raised" and SECRET not in body.decode()
    event = json.loads(body)
    assert event["run"] == run.pk and event["result_sha256"] == run.result_sha256
    assert {(a["kind"], a["subject"]) for a in event["alerts"]} == {(a.kind, a.subject) for a in run.alerts.all()}
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert set(message.to) == {"risk@example.org", "oncall@example.org"}
    assert "drift in age" in message.body and SECRET not in message.body
    # Once: a redelivered task sends nothing more.
    assert monitor_run_notify(run_id=run.pk) is False
    assert len(receiver) == 1 and len(mail.outbox) == 1


def test_slack_format(monitored, scientist, version, receiver, settings, django_capture_on_commit_callbacks):
    settings.MONITORING_WEBHOOK_FORMAT = "slack"
    run = _run(scientist, version, monitored, _csv(800, shift=9.0, seed=6), django_capture_on_commit_callbacks)
    headers, body = receiver[0]
    assert fairness_notifications.verify(SECRET, headers=headers, body=body)
    message = json.loads(body)
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith(f"{run.alerts.count()} monitoring alert(s) on {version.model.name}")
    assert all(block["type"] in ("section", "context") for block in message["blocks"])
    assert "drift in age" in message["blocks"][1]["text"]["text"]


def test_a_run_without_alerts_notifies_nobody(monitored, scientist, version, receiver,
                                              django_capture_on_commit_callbacks):
    run = _run(scientist, version, monitored, _csv(800, seed=3), django_capture_on_commit_callbacks)
    assert not run.breached, list(run.alerts.values("kind", "subject", "detail"))
    assert run.notified_at is None
    assert receiver == [] and mail.outbox == []
    assert monitor_run_notify(run_id=run.pk) is False


def test_a_retry_after_the_email_failed_does_not_post_the_webhook_again(monitored, scientist, version, receiver,
                                                                       monkeypatch):
    prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile("b.csv", _csv(800, shift=9.0)),
                            served_version=version)
    run = monitor_run(monitor=monitored, by=scientist)  # the on-commit task is not run here

    def broken(*args: Any, **kwargs: Any) -> int:
        raise ConnectionError("smtp down")

    monkeypatch.setattr("governance.monitoring.notifications.send_mail", broken)
    with pytest.raises(ConnectionError):
        monitor_run_notify(run_id=run.pk)
    run.refresh_from_db()
    assert len(receiver) == 1 and run.webhook_sent_at is not None and run.emailed_at is None
    monkeypatch.undo()
    assert monitor_run_notify(run_id=run.pk) is True
    run.refresh_from_db()
    assert len(receiver) == 1 and len(mail.outbox) == 1 and run.notified_at is not None
