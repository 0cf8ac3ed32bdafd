"""Scheduled reports through Celery beat, and the admin: schedules, exports, reports, actions."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from audit.models import LedgerEntry
from governance.reports import services
from governance.reports.models import BundleExport, GeneratedReport, ReportSchedule

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def test_saving_a_schedule_creates_its_beat_task_and_a_ledger_entry(model, risk_officer):
    schedule = services.report_schedule_save(schedule=ReportSchedule(model=model, cadence="quarterly"),
                                             by=risk_officer)
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert task.task == "governance.reports.tasks.scheduled_report_task"
    assert json.loads(task.kwargs) == {"schedule_id": schedule.pk}
    assert task.crontab.month_of_year == "1,4,7,10" and task.crontab.day_of_month == "1" and task.enabled
    created = LedgerEntry.objects.filter(subject_type="reports.reportschedule", subject_id=str(schedule.pk))
    assert created.exists() and created.first().actor == f"user:{risk_officer.username}"

    schedule.cadence, schedule.enabled = "monthly", False
    services.report_schedule_save(schedule=schedule, by=risk_officer)
    task.refresh_from_db()
    assert task.crontab.month_of_year == "*" and not task.enabled
    assert PeriodicTask.objects.filter(name__startswith="reports:").count() == 1

    services.report_schedule_delete(schedule=schedule, by=risk_officer)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_a_scheduled_run_stores_a_report_and_a_bundle_and_records_both(model, version, risk_officer):
    from governance.reports.tasks import scheduled_report_task

    schedule = services.report_schedule_save(schedule=ReportSchedule(model=model, kind="bundle"), by=risk_officer)
    assert scheduled_report_task.delay(schedule.pk).get() == "done"
    report = GeneratedReport.objects.get()
    assert report.schedule_id == schedule.pk and report.version_id == version.pk
    assert report.actor == f"system:report_schedule:{schedule.pk}"
    export = BundleExport.objects.get()
    assert export.status == BundleExport.Status.DONE and export.model_name == model.name
    actions = set(LedgerEntry.objects.filter(actor=f"system:report_schedule:{schedule.pk}")
                  .values_list("action", flat=True))
    assert {"report.generated", "bundle.exported"} <= actions
    schedule.refresh_from_db()
    assert schedule.last_run_at is not None


def test_a_disabled_schedule_does_nothing(model, version, risk_officer):
    from governance.reports.tasks import scheduled_report_task

    schedule = services.report_schedule_save(schedule=ReportSchedule(model=model, enabled=False), by=risk_officer)
    assert scheduled_report_task.delay(schedule.pk).get() == "skipped"
    assert not GeneratedReport.objects.exists()


def test_admin_export_action_queues_a_bundle_for_an_auditor(client, auditor, model, version,
                                                            django_capture_on_commit_callbacks):
    client.force_login(auditor)
    url = reverse("admin:governance_registeredmodel_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "export_bundle", "_selected_action": [model.pk]}, follow=True)
    assert response.status_code == 200
    export = BundleExport.objects.get()
    assert export.status == BundleExport.Status.DONE and export.actor == f"user:{auditor.username}"
    listing = client.get(reverse("admin:reports_bundleexport_changelist"))
    assert listing.status_code == 200 and reverse("bundle-download", args=[export.pk]) in listing.content.decode()


def test_admin_export_action_is_refused_for_a_data_scientist(client, scientist, model):
    client.force_login(scientist)
    url = reverse("admin:governance_registeredmodel_changelist")
    client.post(url, {"action": "export_bundle", "_selected_action": [model.pk]}, follow=True)
    assert not BundleExport.objects.exists()


def test_admin_generate_report_action_and_file_download(client, auditor, version):
    client.force_login(auditor)
    url = reverse("admin:governance_modelversion_changelist")
    response = client.post(url, {"action": "generate_report", "_selected_action": [version.pk]}, follow=True)
    assert response.status_code == 200
    report = GeneratedReport.objects.get()
    pdf = client.get(reverse("admin:reports_generatedreport_file", args=[report.pk, "pdf"]))
    assert pdf.status_code == 200 and b"".join(pdf.streaming_content).startswith(b"%PDF-")
    assert client.get(reverse("admin:reports_generatedreport_file", args=[report.pk, "exe"])).status_code == 404
    listing = client.get(reverse("admin:reports_generatedreport_changelist"))
    assert listing.status_code == 200 and version.model.name in listing.content.decode()


def test_risk_officer_edits_schedules_in_the_admin(client, risk_officer, model):
    client.force_login(risk_officer)
    response = client.post(reverse("admin:reports_reportschedule_add"),
                           {"model": model.pk, "version_label": "", "kind": "report", "cadence": "quarterly",
                            "enabled": "on"})
    assert response.status_code == 302, response.content[:2000]
    schedule = ReportSchedule.objects.get()
    assert schedule.periodic_task is not None


def test_admin_generate_audit_report_action_on_a_fairness_audit(client, settings):
    from io import StringIO

    from django.contrib.auth import get_user_model

    from governance import demo as governance_demo
    from governance.fairness import demo as fairness_demo
    from governance.fairness.models import AuditRun
    from lineage import demo as lineage_demo

    governance_demo.seed(stdout=StringIO())
    lineage_demo.seed(stdout=StringIO())
    fairness_demo.seed(stdout=StringIO())
    run = AuditRun.objects.filter(status="succeeded", model_version__isnull=False).order_by("pk").first()
    client.force_login(get_user_model().objects.get(username="audrey"))
    response = client.post(reverse("admin:fairness_auditrun_changelist"),
                           {"action": "generate_audit_report", "_selected_action": [run.pk]}, follow=True)
    assert response.status_code == 200
    report = GeneratedReport.objects.get()
    assert report.audit_ref == f"fairness.auditrun:{run.pk}" and report.version_id == run.model_version_id
    document = json.loads((settings.MEDIA_ROOT / report.json_file.name).read_bytes())
    assert document["audit"] == run.pk
