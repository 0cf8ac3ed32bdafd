"""Generated audit bundles and reports: who asked, for what, where the file is, and its digest."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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
