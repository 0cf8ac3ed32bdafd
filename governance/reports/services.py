"""Writes of the reports app: bundle exports (request, run), each completion recorded in the ledger."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.ledger import actor_label, ledger_append, lock_for_update
from core.errors import Forbidden, InvalidInput, NotFound, ServiceError
from core.outbox.services import task_enqueue_on_commit
from governance.reports import selectors
from governance.reports.bundle import BundleSummary, build_bundle
from governance.reports.models import BundleExport

logger = logging.getLogger(__name__)

MAX_SUBJECTS = 10_000
BUNDLE_DIR = "bundles"


def _clean_subjects(subjects: list[tuple[str, str]] | list[list[str]]) -> list[list[str]]:
    cleaned = sorted({(str(subject_type).strip(), str(subject_id).strip()) for subject_type, subject_id in subjects})
    if not cleaned:
        raise InvalidInput("A bundle needs at least one subject.", code="bundle_no_subjects")
    if len(cleaned) > MAX_SUBJECTS:
        raise InvalidInput(f"A bundle holds at most {MAX_SUBJECTS} subjects.", code="bundle_too_many_subjects")
    for subject_type, subject_id in cleaned:
        if not subject_type or not subject_id or len(subject_type) > 100 or len(subject_id) > 200:
            raise InvalidInput("Each subject is a non-empty type (≤100 chars) and id (≤200 chars).",
                               code="bundle_bad_subject", extra={"subject": [subject_type[:100], subject_id[:200]]})
    return [[subject_type, subject_id] for subject_type, subject_id in cleaned]


def bundle_export_request(*, by: Any, subjects: list[tuple[str, str]] | list[list[str]] | None = None,
                          model_name: str = "", version_label: str = "", check_access: bool = True) -> BundleExport:
    """Create a queued export (no ledger entry yet: the export is recorded when the bundle exists).

    For a model, a user needs the export permission and must be able to see the model (a model
    they cannot see is a 404, as everywhere). `check_access=False` is for system jobs.
    """
    label = actor_label(by)
    user = by if getattr(by, "is_authenticated", False) and hasattr(by, "pk") else None
    wanted = list(subjects or [])
    if check_access and user is not None and not selectors.can_export(user):
        raise Forbidden("Exporting bundles needs the auditor role.", code="bundle_export_forbidden")
    if model_name:
        plan = selectors.bundle_plan_for_model(model_name=model_name, version_label=version_label,
                                               user=user if check_access else None)
        wanted.extend(plan.subjects)
    return BundleExport.objects.create(
        requested_by=user, actor=label, subjects=_clean_subjects(wanted), model_name=model_name,
        version_label=version_label,
    )


EXPORT_TASK = "governance.reports.tasks.bundle_export_task"


def bundle_export_queue(*, by: Any, model_name: str, version_label: str = "") -> BundleExport:
    """Request an export of a model (or one version) and queue it for a worker, in one transaction.

    The one path the API, the admin and the pages take; the task is enqueued by name through the
    outbox, so it is published only if the export row commits.
    """
    with transaction.atomic():
        export = bundle_export_request(by=by, model_name=model_name, version_label=version_label)
        task_enqueue_on_commit(EXPORT_TASK, export.pk)
    return export


def bundle_contents_for(export: BundleExport, *, progress: Any = None) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The subjects (as requested, plus anything recorded since for the model) and the files to carry."""
    subjects = {(str(t), str(i)) for t, i in export.subjects}
    if not export.model_name:
        return sorted(subjects), {}
    plan = selectors.bundle_plan_for_model(model_name=export.model_name, version_label=export.version_label)
    subjects.update(plan.subjects)
    contents: dict[str, Any] = {
        "attestations": {f"{attestation.pk:06d}-{attestation.origin}.dsse.json": bytes(attestation.envelope)
                         for attestation in plan.attestations},
        "attestation_public_keys": selectors.pipeline_public_keys(plan.attestations),
        "bounded_subjects": plan.bounded,
    }
    from governance.reports import render

    contents["audits"] = render.audit_files(plan.audits)
    from governance.monitoring import evidence as monitoring_evidence

    contents["extra_files"] = monitoring_evidence.bundle_files(plan.versions)
    contents["report"] = render.report_files(plan, progress=progress)
    return sorted(subjects), contents


def _set_progress(export_id: int, percent: int, stage: str) -> None:
    BundleExport.objects.filter(pk=export_id).update(progress=percent, stage=stage[:100])


def bundle_export_run(*, export_id: int, bundle_contents: dict[str, Any] | None = None) -> BundleExport:
    """Build the bundle file, then record `bundle.exported` and mark the export done, in one transaction.

    Idempotent: an export that is already done is returned as it is. `bundle_contents` holds the
    optional `attestations`, `audits`, `report` and `attestation_public_keys` for `build_bundle`.
    """
    export = BundleExport.objects.filter(pk=export_id).first()
    if export is None:
        raise NotFound("No such bundle export.", code="bundle_export_not_found")
    if export.status == BundleExport.Status.DONE:
        return export
    BundleExport.objects.filter(pk=export_id).update(status=BundleExport.Status.RUNNING, progress=1,
                                                     stage="starting", error_code="")
    folder = Path(settings.MEDIA_ROOT) / BUNDLE_DIR / timezone.now().strftime("%Y/%m")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".bundle-{export_id}-", suffix=".zip.part")
    tmp_path = Path(tmp_name)
    final_path: Path | None = None
    try:
        subjects, contents = bundle_contents_for(
            export, progress=lambda index, total, label: _set_progress(
                export_id, 2 + int(18 * index / max(total, 1)), f"rendering the report of {label}"))
        if bundle_contents:
            contents = {**contents, **bundle_contents}
        _set_progress(export_id, 20, "reports ready")
        with os.fdopen(fd, "wb") as handle:
            summary = build_bundle(
                subjects=subjects, out=handle,
                # The bundle's own 0-100 maps onto 20-95; 100 is set with the ledger entry.
                progress=lambda percent, stage: _set_progress(export_id, 20 + min(percent, 100) * 75 // 100, stage),
                **contents,
            )
            handle.flush()
            os.fsync(handle.fileno())
        final_path = folder / f"bundle-{export_id}-{summary.manifest_sha256[:12]}.zip"
        os.replace(tmp_path, final_path)
        return _bundle_export_finish(export=export, summary=summary, path=final_path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if final_path is not None:
            final_path.unlink(missing_ok=True)
        code = exc.code if isinstance(exc, ServiceError) else type(exc).__name__
        BundleExport.objects.filter(pk=export_id).update(status=BundleExport.Status.FAILED, error_code=code[:100],
                                                         stage="failed", finished_at=timezone.now())
        logger.warning("bundle export %s failed: %s", export_id, code)
        raise


def _bundle_export_finish(*, export: BundleExport, summary: BundleSummary, path: Path) -> BundleExport:
    relative = path.relative_to(Path(settings.MEDIA_ROOT)).as_posix()
    with transaction.atomic():
        export = lock_for_update(BundleExport.objects).get(pk=export.pk)
        entry = ledger_append(
            actor=export.actor, action="bundle.exported", subject=export,
            payload={
                "manifest_sha256": summary.manifest_sha256,
                "subjects": export.subjects,
                "model": export.model_name,
                "version": export.version_label,
                "entry_count": summary.entry_count,
                "checkpoint_tree_size": summary.checkpoint_tree_size,
                "latest_tree_size": summary.latest_tree_size,
                "file_count": summary.file_count,
                "size_bytes": path.stat().st_size,
            },
        )
        export.status = BundleExport.Status.DONE
        export.progress = 100
        export.stage = "done"
        export.file.name = relative
        export.size_bytes = path.stat().st_size
        export.manifest_sha256 = summary.manifest_sha256
        export.entry_count = summary.entry_count
        export.checkpoint_tree_size = summary.checkpoint_tree_size
        export.ledger_seq = entry.seq
        export.finished_at = timezone.now()
        export.save()
    return export


# --- Reports ---------------------------------------------------------------------------------

def report_generate(*, version: Any, by: Any, schedule: Any = None, audit: Any = None) -> Any:
    """Render the version's report (or one audit's), store the files and record `report.generated`."""
    from governance.reports import render
    from governance.reports.models import GeneratedReport

    label = actor_label(by)
    audit_ref = f"{audit._meta.app_label}.{audit._meta.model_name}:{audit.pk}" if audit is not None else ""
    files = render.report_files_for_version(version, primary_audit=audit)
    folder = Path(settings.MEDIA_ROOT) / "reports" / timezone.now().strftime("%Y/%m")
    folder.mkdir(parents=True, exist_ok=True)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    written: list[Path] = []
    try:
        stored: dict[str, str] = {}
        for name, data in files.items():
            stem, _, extension = name.rpartition(".")
            path = folder / f"{stem}-{digests[name][:12]}.{extension}"
            path.write_bytes(data)
            written.append(path)
            stored[extension] = path.relative_to(Path(settings.MEDIA_ROOT)).as_posix()
        with transaction.atomic():
            generated = GeneratedReport.objects.create(
                version=version, model_name=version.model.name, version_label=version.label, schedule=schedule,
                actor=label, json_file=stored["json"], html_file=stored["html"], pdf_file=stored["pdf"],
                digests=digests, audit_ref=audit_ref)
            entry = ledger_append(actor=label, action="report.generated", subject=generated, payload={
                "model": version.model.name, "version": version.label,
                "version_subject": ["governance.modelversion", str(version.pk)],
                "schedule": schedule.pk if schedule is not None else None, "audit": audit_ref or None,
                "files": digests,
            })
            GeneratedReport.objects.filter(pk=generated.pk).update(ledger_seq=entry.seq)
            generated.ledger_seq = entry.seq
        return generated
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


# --- Schedules -------------------------------------------------------------------------------

CADENCE_CRONTABS = {
    "weekly": {"minute": "0", "hour": "3", "day_of_week": "1", "day_of_month": "*", "month_of_year": "*"},
    "monthly": {"minute": "0", "hour": "3", "day_of_week": "*", "day_of_month": "1", "month_of_year": "*"},
    "quarterly": {"minute": "0", "hour": "3", "day_of_week": "*", "day_of_month": "1", "month_of_year": "1,4,7,10"},
    "yearly": {"minute": "0", "hour": "3", "day_of_week": "*", "day_of_month": "1", "month_of_year": "1"},
}
SCHEDULE_TASK = "governance.reports.tasks.scheduled_report_task"


def report_schedule_save(*, schedule: Any, by: Any) -> Any:
    """Create or update a schedule and its Celery beat entry, in one transaction (the save is a ledger entry)."""
    import json

    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    from core.actor import acting_as

    if schedule.cadence not in CADENCE_CRONTABS:
        raise InvalidInput("Unknown cadence.", code="report_schedule_bad_cadence", extra={"cadence": schedule.cadence})
    with transaction.atomic(), acting_as(by):
        schedule.save()
        crontab, _ = CrontabSchedule.objects.get_or_create(timezone="UTC", **CADENCE_CRONTABS[schedule.cadence])
        name = f"reports: {schedule.kind} for {schedule.model.name} (schedule {schedule.pk})"
        task = schedule.periodic_task
        if task is None:
            task = PeriodicTask(name=name, task=SCHEDULE_TASK)
        task.name = name
        task.crontab = crontab
        task.interval = None
        task.kwargs = json.dumps({"schedule_id": schedule.pk})
        task.enabled = schedule.enabled
        task.save()
        if schedule.periodic_task_id != task.pk:
            schedule.periodic_task = task
            schedule.save(update_fields=["periodic_task"])
    return schedule


def report_schedule_delete(*, schedule: Any, by: Any) -> None:
    from core.actor import acting_as

    with transaction.atomic(), acting_as(by):
        task = schedule.periodic_task
        schedule.delete()
        if task is not None:
            task.delete()


def report_schedule_run(*, schedule_id: int) -> Any:
    """One scheduled run: a report (and, for bundle schedules, a bundle) of the chosen or newest version."""
    from governance.reports.models import ReportSchedule

    schedule = ReportSchedule.objects.select_related("model").filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled:
        return None
    versions = schedule.model.versions.order_by("-created_at", "-pk")
    version = versions.filter(label=schedule.version_label).first() if schedule.version_label else versions.first()
    if version is None:
        raise NotFound("The scheduled model has no such version.", code="model_version_not_found",
                       extra={"model": schedule.model.name, "version": schedule.version_label})
    actor = f"system:report_schedule:{schedule.pk}"
    result: Any = report_generate(version=version, by=actor, schedule=schedule)
    if schedule.kind == ReportSchedule.Kind.BUNDLE:
        export = bundle_export_request(by=actor, model_name=schedule.model.name, version_label=version.label,
                                       check_access=False)
        result = bundle_export_run(export_id=export.pk)
    from core.actor import acting_as

    with transaction.atomic(), acting_as(actor):
        ReportSchedule.objects.filter(pk=schedule.pk).update(last_run_at=timezone.now())
    return result
