"""Fairness admin: "Run now" goes through the service, runs and batches are read-only, and linking a
schedule is recorded in the ledger."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.models import LedgerEntry
from governance.fairness.models import AuditRun
from tests.fairness.helpers import credit_csv, make_spec

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(db) -> Client:  # type: ignore[no-untyped-def]
    root = get_user_model().objects.create_superuser("root", "root@example.org", "root-pass-123456")
    client = Client()
    client.force_login(root)
    return client


def test_run_now_queues_a_run_through_the_service(admin_browser, scientist, model, version, tmp_path,
                                                  django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv", rows=300))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_browser.post("/admin/fairness/auditspec/", {"action": "run_now", "_selected_action": [spec.pk]})
    assert response.status_code == 302
    run = AuditRun.objects.get()
    assert run.requested_by_label == "user:root" and run.status == AuditRun.Status.SUCCEEDED
    assert LedgerEntry.objects.filter(action="fairness_audit.requested", actor="user:root").count() == 1


def test_runs_are_read_only_in_the_admin(admin_browser, scientist, model, version, tmp_path,
                                         django_capture_on_commit_callbacks):
    from governance.fairness.services import runs

    with django_capture_on_commit_callbacks(execute=True):
        run = runs.audit_request(spec=make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv", rows=300)),
                                 by=scientist)
    page = admin_browser.get(f"/admin/fairness/auditrun/{run.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    digest = AuditRun.objects.get(pk=run.pk).result_sha256
    admin_browser.post(f"/admin/fairness/auditrun/{run.pk}/change/", {"passed": "on", "result_sha256": "0" * 64})
    assert AuditRun.objects.get(pk=run.pk).result_sha256 == digest
    assert admin_browser.get("/admin/fairness/auditrun/add/").status_code == 403


def test_linking_a_schedule_in_the_admin_is_recorded(admin_browser, scientist, model, version, tmp_path):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from governance.fairness.services.specs import SCHEDULED_TASK

    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv", rows=300))
    every_day = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    task = PeriodicTask.objects.create(name="daily fairness", task=SCHEDULED_TASK, interval=every_day)
    response = admin_browser.post(f"/admin/fairness/auditspec/{spec.pk}/change/", {"periodic_task": task.pk})
    assert response.status_code == 302, response.content[:2000]
    spec.refresh_from_db()
    task.refresh_from_db()
    assert spec.periodic_task_id == task.pk and task.kwargs == f'{{"spec_id": {spec.pk}}}'
    entry = LedgerEntry.objects.get(action="fairness_spec.schedule_changed")
    assert entry.actor == "user:root" and entry.payload["after"] == task.pk
