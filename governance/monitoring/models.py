"""Production monitoring: the reference profile each model version is compared against.

A profile is governed (every write is a ledger entry, the action named by its service). Its
body (per column: kind, bins, counts and, for numeric columns, the sorted reference sample)
is a file in storage named by its SHA-256; the row keeps the digest, the summary without the
sample (what an offline verifier needs to recompute PSI, JS and chi-square from counts), the
digest of the source data and the engine version. It is frozen once the version is approved.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.capture.models import GovernedModel
from governance.models import ModelVersion


class ReferenceProfile(GovernedModel):
    """What every later window of a model version is compared with, frozen at approval."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="reference_profiles")
    dataset_version = models.ForeignKey("lineage.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="reference_profiles")
    source_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the reference data's bytes")
    profile_file = models.CharField(max_length=500, help_text="Storage name of the profile body (JSON)")
    profile_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the profile body's bytes")
    columns = models.JSONField(help_text='[{"name": ..., "kind": "numeric" | "categorical"}, ...]')
    summary = models.JSONField(help_text="Per column: bins and counts (no sample)")
    bins = models.PositiveSmallIntegerField(default=10)
    row_count = models.PositiveBigIntegerField()
    engine_version = models.CharField(max_length=40)
    frozen_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    governed_exclude = ("summary",)  # the digest of the body is recorded; the summary is derived from it

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["version", "-created_at"], name="monitoring_profile_latest")]

    def __str__(self) -> str:
        return f"reference profile {self.pk} of {self.version}"
