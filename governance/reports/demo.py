"""Demo reports and bundles for `seed_demo`: a quarterly schedule, a stored report and a verified bundle.

Idempotent: each step runs only if its result is not there yet, so a second run writes nothing.
Runs after the governance, lineage and fairness demos, and reports on what they recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from audit.services import checkpoint_scheduled
from governance.models import RegisteredModel
from governance.reports import selectors, services
from governance.reports.models import BundleExport, GeneratedReport, ReportSchedule

MODEL_NAME = "credit-default-scorer"
RISK_OFFICER = "rita"
AUDITOR = "audrey"


def _user(username: str) -> Any:
    return get_user_model().objects.filter(username=username).first()


def seed(stdout: Any) -> str:
    model = RegisteredModel.objects.filter(name=MODEL_NAME).first()
    if model is None:
        return "skipped (no demo model)"
    # Sign the current head first, so the report names a checkpoint covering the demo's history.
    checkpoint_scheduled()
    risk_officer = _user(RISK_OFFICER) or "system:seed_demo"
    auditor = _user(AUDITOR) or "system:seed_demo"
    done = []
    if not ReportSchedule.objects.filter(model=model).exists():
        services.report_schedule_save(schedule=ReportSchedule(model=model, kind=ReportSchedule.Kind.BUNDLE,
                                                              cadence=ReportSchedule.Cadence.QUARTERLY),
                                      by=risk_officer)
        done.append("quarterly bundle schedule")
    deployed = model.deployments.filter(is_active=True, environment__is_production=True).select_related("version")
    version = deployed.first().version if deployed.exists() else model.versions.order_by("-created_at").first()
    if version is not None and not GeneratedReport.objects.filter(version=version).exists():
        report = services.report_generate(version=version, by=auditor)
        done.append(f"report of {version.label} ({report.pdf_file.name})")
    export = BundleExport.objects.filter(model_name=model.name, status=BundleExport.Status.DONE).first()
    if export is None:
        export = services.bundle_export_request(by=auditor, model_name=model.name, check_access=False)
        export = services.bundle_export_run(export_id=export.pk)
        done.append("audit bundle")
    bundle_path = Path(settings.MEDIA_ROOT) / export.file.name
    stdout.write(f"  reports: bundle #{export.pk} at {bundle_path}\n"
                 f"  reports: verify it offline: {selectors.verify_command(str(bundle_path))}\n"
                 "  reports: admin > Reports and bundles (bundle exports, generated reports, report schedules); "
                 f"API: POST /api/bundles/ {{\"model\": \"{model.name}\"}} as {AUDITOR}\n")
    return ", ".join(done) if done else "already seeded"
