"""Generated audit bundles and reports: who asked, for what, where the file is, and its digest."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.capture.models import GovernedModel


class BundleExport(models.Model):
    """One audit bundle export; its completion is the ledger entry `bundle.exported`."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="bundle_exports")
    actor = models.CharField(max_length=200, help_text="Ledger actor label of who asked")
    model_name = models.CharField(max_length=200, blank=True, help_text="Model the bundle is about, if any")
    version_label = models.CharField(max_length=100, blank=True)
    subjects = models.JSONField(default=list, help_text="[[type, id], ...] whose ledger entries are included")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="0-100")
    stage = models.CharField(max_length=100, blank=True)
    file = models.FileField(upload_to="bundles/%Y/%m/", blank=True, max_length=300)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    entry_count = models.PositiveIntegerField(null=True, blank=True)
    checkpoint_tree_size = models.BigIntegerField(null=True, blank=True)
    ledger_seq = models.BigIntegerField(null=True, blank=True, help_text="seq of the bundle.exported entry")
    error_code = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("export_bundle", "Can export audit bundles")]

    def __str__(self) -> str:
        what = self.model_name or ", ".join(f"{t}:{i}" for t, i in self.subjects[:3])
        return f"bundle #{self.pk} {what} ({self.status})"


class ReportSchedule(GovernedModel):
    """A periodic report (or bundle) for one model, run by Celery beat; every change is in the ledger."""

    class Cadence(models.TextChoices):
        WEEKLY = "weekly", "Weekly (Mondays)"
        MONTHLY = "monthly", "Monthly (1st)"
        QUARTERLY = "quarterly", "Quarterly (1 Jan, Apr, Jul, Oct)"
        YEARLY = "yearly", "Yearly (1 Jan)"

    class Kind(models.TextChoices):
        REPORT = "report", "Report (PDF, HTML, JSON)"
        BUNDLE = "bundle", "Audit bundle (zip with the report)"

    model = models.ForeignKey("governance.RegisteredModel", on_delete=models.PROTECT, related_name="report_schedules")
    version_label = models.CharField(max_length=64, blank=True,
                                     help_text="Version to report on; empty: the newest version at run time")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REPORT)
    cadence = models.CharField(max_length=10, choices=Cadence.choices, default=Cadence.QUARTERLY)
    enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True, blank=True,
                                         on_delete=models.SET_NULL, related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["model__name", "pk"]

    def __str__(self) -> str:
        return f"{self.get_cadence_display()} {self.kind} for {self.model}"


class GeneratedReport(models.Model):
    """A rendered report of one model version (JSON, HTML, PDF), stored; recorded as `report.generated`."""

    version = models.ForeignKey("governance.ModelVersion", on_delete=models.PROTECT, related_name="reports")
    model_name = models.CharField(max_length=100)
    version_label = models.CharField(max_length=64)
    schedule = models.ForeignKey(ReportSchedule, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="reports")
    actor = models.CharField(max_length=200)
    audit_ref = models.CharField(max_length=200, blank=True, help_text="The audit this report is about, if any")
    json_file = models.FileField(upload_to="reports/%Y/%m/", max_length=300)
    html_file = models.FileField(upload_to="reports/%Y/%m/", max_length=300)
    pdf_file = models.FileField(upload_to="reports/%Y/%m/", max_length=300)
    digests = models.JSONField(default=dict, help_text="file name -> hex SHA-256")
    ledger_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"report {self.model_name} {self.version_label} ({self.created_at:%Y-%m-%d})"
