"""Beat runs monitors once per slot: the due job queues a slot's run through the outbox, and the run
task is exactly-once under redelivery and duplicates (a worker killed mid-run leaves nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audit.models import LedgerEntry
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.models import MonitorRun
from governance.monitoring.services import monitors as monitor_services
from governance.monitoring.services.monitors import current_slot, monitor_create, monitor_run_scheduled, monitor_runs_due
from governance.monitoring.services.profiles import reference_profile_create
from governance.monitoring.tasks import monitor_run_scheduled_task
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(scientist, version):  # type: ignore[no-untyped-def]
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv(2_000)),
                             columns=["age"], categorical=["region"])
    monitor = monitor_create(by=scientist, version=version, y_true="label", y_pred="predicted")
    prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile("b.csv", _csv(500, shift=9.0)),
                            served_version=version)
    return monitor


def test_slots_are_multiples_of_the_period(scheduled):
    moment = datetime(2026, 12, 6, 15, 42, tzinfo=UTC)
    assert current_slot(scheduled, moment) == datetime(2026, 12, 6, tzinfo=UTC)
    scheduled.run_every_hours = 0
    assert current_slot(scheduled, moment) is None


def test_the_due_job_queues_a_slot_once_it_has_no_run(scheduled, django_capture_on_commit_callbacks):
    later = timezone.now() + timedelta(days=1)
    slot = current_slot(scheduled, later)
    assert slot is not None
    # Unit tests run Celery eagerly: the queued task runs when the due job's transaction commits.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        queued = monitor_runs_due(now=later)
    assert queued == [(scheduled.pk, slot.isoformat())]
    run = MonitorRun.objects.get()
    assert run.scheduled_for == slot
    # The run's task, then (when the run raised alerts) its notification task.
    assert len(callbacks) == (2 if run.breached else 1)
    assert monitor_runs_due(now=later) == []


def test_a_redelivered_task_returns_the_slots_one_run(scheduled):
    slot = current_slot(scheduled, timezone.now() + timedelta(days=1))
    assert slot is not None
    first = monitor_run_scheduled_task(scheduled.pk, slot.isoformat())
    second = monitor_run_scheduled_task(scheduled.pk, slot.isoformat())
    assert first == second
    assert MonitorRun.objects.filter(scheduled_for=slot).count() == 1
    assert LedgerEntry.objects.filter(action="monitor_run.completed").count() == 1
    entry = LedgerEntry.objects.get(action="monitor_run.completed")
    assert entry.actor == "system:monitor_run_scheduled_task"


def test_a_worker_killed_mid_run_leaves_nothing_and_the_redelivery_runs_once(scheduled, monkeypatch):
    slot = current_slot(scheduled, timezone.now() + timedelta(days=1))
    assert slot is not None
    real_append = monitor_services.ledger_append

    def dies_at_the_alert(**kwargs):  # type: ignore[no-untyped-def]
        if kwargs["action"] == "alert.raised":
            raise SystemExit("worker killed")
        return real_append(**kwargs)

    monkeypatch.setattr(monitor_services, "ledger_append", dies_at_the_alert)
    with pytest.raises(SystemExit):
        monitor_run_scheduled(monitor_id=scheduled.pk, slot=slot)
    assert not MonitorRun.objects.exists()
    assert not LedgerEntry.objects.filter(action="monitor_run.completed").exists()
    monkeypatch.setattr(monitor_services, "ledger_append", real_append)
    run = monitor_run_scheduled(monitor_id=scheduled.pk, slot=slot)
    assert run is not None and run.breached is True
    assert MonitorRun.objects.count() == 1
    assert LedgerEntry.objects.filter(action="alert.raised").count() == 1


def test_a_slot_without_batches_writes_nothing(scientist, version):
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv(2_000)),
                             columns=["age"])
    monitor = monitor_create(by=scientist, version=version)
    slot = current_slot(monitor, timezone.now())
    assert slot is not None
    assert monitor_run_scheduled(monitor_id=monitor.pk, slot=slot) is None
    assert not MonitorRun.objects.exists()
