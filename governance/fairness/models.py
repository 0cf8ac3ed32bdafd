"""Fairness audits in the service: what to audit (AuditSpec), each run of it (AuditRun), and the
production predictions that monitoring audits read (PredictionBatch).

These are plain models, not governed ones: a run's progress changes many times a second and is
not a decision. Every change that matters (spec created, run requested, completed or failed,
batch uploaded) is written by a service (`services/`) with its own ledger entry in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from governance.models import ModelVersion, RegisteredModel

# Threshold names: a ratio is a minimum, a difference a maximum. The names are the disparity
# keys of the engine's report (what governance/reports reads); `impact_ratio` is the smallest
# impact ratio of any compared group to the best group (the four-fifths test at 0.8).
MIN_THRESHOLDS = ("impact_ratio", "demographic_parity_ratio", "equalized_odds_ratio", "equal_opportunity_ratio")
MAX_THRESHOLDS = ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference")
DEFAULT_THRESHOLDS: dict[str, float] = {"impact_ratio": 0.8, "equalized_odds_difference": 0.1}


class AuditSpec(models.Model):
    """What to audit and how: target, data, columns, thresholds, and an optional beat schedule."""

    class Target(models.TextChoices):
        VERSION = "version", "A model version, on an evaluation dataset"
        PRODUCTION = "production", "Whatever is deployed in production, on recent prediction batches"

    name = models.CharField(max_length=200)
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="fairness_specs")
    target = models.CharField(max_length=12, choices=Target.choices, default=Target.VERSION)
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="fairness_specs", help_text="Required for target 'version'")
    dataset_version = models.ForeignKey("lineage.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="fairness_specs",
                                        help_text="Lineage reference of the evaluation data (optional)")
    dataset_file = models.FileField(upload_to="fairness/datasets/%Y/%m/", max_length=500, blank=True,
                                    help_text="Evaluation data: a CSV or Parquet file")
    dataset_sha256 = models.CharField(max_length=64, blank=True)
    y_true = models.CharField(max_length=200)
    y_pred = models.CharField(max_length=200, blank=True)
    score = models.CharField(max_length=200, blank=True)
    threshold = models.FloatField(null=True, blank=True, help_text="A score at or above it is a positive prediction")
    sensitive = models.JSONField(help_text='Sensitive columns, e.g. ["sex", "age_group"]')
    pos_label = models.CharField(max_length=200, blank=True, help_text="Empty: 1")
    metrics = models.JSONField(default=list, blank=True, help_text="Disparities to report; empty: all")
    thresholds = models.JSONField(default=dict, blank=True,
                                  help_text='e.g. {"impact_ratio": 0.8, "equalized_odds_difference": 0.1}')
    min_group_size = models.PositiveIntegerField(default=30)
    include_small_groups = models.BooleanField(default=False)
    reference_group = models.JSONField(null=True, blank=True, help_text='e.g. {"sex": "male"}')
    bootstrap = models.PositiveIntegerField(default=0)
    seed = models.BigIntegerField(null=True, blank=True)
    window_days = models.PositiveIntegerField(default=30, help_text="Production monitoring: batches of the last N days")
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True, blank=True,
                                         on_delete=models.SET_NULL, related_name="fairness_spec",
                                         help_text="Schedule (edit it under Periodic tasks)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # For high-risk models a spec counts as evidence only if someone other than the submitter made or confirmed it.
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(target="version") | Q(version__isnull=False),
                                   name="fairness_spec_version_target_has_version"),
            models.CheckConstraint(condition=(Q(y_pred="") & ~Q(score="") & Q(threshold__isnull=False))
                                   | (~Q(y_pred="") & Q(score="")),
                                   name="fairness_spec_pred_xor_score"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model.name})"

    def config(self) -> dict[str, Any]:
        """The parameters a run freezes: columns, labels, thresholds, group rules, bootstrap."""
        return {
            "target": self.target,
            "y_true": self.y_true, "y_pred": self.y_pred or None, "score": self.score or None,
            "threshold": self.threshold, "sensitive": list(self.sensitive), "pos_label": self.pos_label or None,
            "metrics": list(self.metrics), "thresholds": dict(self.thresholds),
            "min_group_size": self.min_group_size, "include_small_groups": self.include_small_groups,
            "reference_group": self.reference_group or None, "bootstrap": self.bootstrap, "seed": self.seed,
            "window_days": self.window_days,
        }


class AuditRun(models.Model):
    """One execution of a spec. It holds exactly one result, however often its task is delivered."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "On demand"
        SCHEDULE = "schedule", "Schedule"

    spec = models.ForeignKey(AuditSpec, on_delete=models.PROTECT, related_name="runs")
    # The one link to a model version: governance/reports finds this model by it and `result`.
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="fairness_audits")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    requested_by_label = models.CharField(max_length=200, help_text="Ledger actor label of the requester")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=100, blank=True)
    parameters = models.JSONField(help_text="The spec's configuration, frozen at request")
    thresholds = models.JSONField(default=dict, blank=True)
    dataset_label = models.CharField(max_length=1000, blank=True)
    input_files = models.JSONField(default=list, blank=True,
                                   help_text="[{path (under MEDIA_ROOT), sha256, batch?}] audited, in order")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0, help_text="Bumped each time a worker takes the run over")
    task_id = models.CharField(max_length=200, blank=True, help_text="Celery id of the message that holds the run")
    result = models.JSONField(null=True, blank=True)
    passed = models.BooleanField(null=True, blank=True)
    findings = models.JSONField(default=list, blank=True)
    input_sha256 = models.CharField(max_length=64, blank=True)
    result_sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the JCS of `result`")
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    ledger_seq = models.BigIntegerField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True, help_text="When every failing-audit notice was sent")

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["model_version", "status", "finished_at"], name="fairness_run_version_idx"),
                   models.Index(fields=["status", "heartbeat_at"], name="fairness_run_status_idx")]
        constraints = [
            # A finished run has its outcome: a result with both digests, or an error code.
            models.CheckConstraint(condition=~Q(status="succeeded") | (Q(result__isnull=False) & ~Q(result_sha256="")
                                                                        & Q(passed__isnull=False)),
                                   name="fairness_run_succeeded_has_result"),
            models.CheckConstraint(condition=~Q(status="failed") | (Q(result__isnull=True) & ~Q(error_code="")),
                                   name="fairness_run_failed_has_error"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="fairness_run_progress_max_100"),
        ]

    def __str__(self) -> str:
        return f"fairness audit #{self.pk} ({self.status})"


class AuditWaiver(models.Model):
    """A risk officer's recorded decision that a failing audit does not block approval, and why."""

    run = models.OneToOneField(AuditRun, on_delete=models.PROTECT, related_name="waiver")
    reason = models.TextField()
    waived_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    waived_at = models.DateTimeField()
    ledger_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-waived_at", "-pk"]

    def __str__(self) -> str:
        return f"waiver of fairness audit #{self.run_id}"


def prediction_upload_to(instance: PredictionBatch, filename: str) -> str:
    return f"fairness/predictions/{instance.model.name}/{instance.sha256}.{instance.file_format}"


class PredictionBatch(models.Model):
    """Production predictions uploaded by a pipeline, with outcomes where they are known."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        PARQUET = "parquet", "Parquet"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="prediction_batches")
    served_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+", help_text="The version that made the predictions")
    file = models.FileField(upload_to=prediction_upload_to, max_length=500)
    file_format = models.CharField(max_length=10, choices=Format.choices)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    rows = models.PositiveBigIntegerField()
    columns = models.JSONField(default=list)
    uploaded_by_label = models.CharField(max_length=200)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["model", "sha256"], name="fairness_batch_model_sha256_unique")]

    def __str__(self) -> str:
        return f"{self.model.name} predictions {self.sha256[:12]}"


class SealedFile(models.Model):
    """A stored data file holding personal data, sealed (core.sealed) under its own data key.

    The wrapped data key lives here, never in the file; erasing empties it and removes the file
    (crypto-shredding), and the row stays as the record of what was erased, when and why.
    """

    class Kind(models.TextChoices):
        DATASET = "dataset", "Evaluation data set"
        BATCH = "batch", "Production prediction batch"
        PROFILE = "profile", "Reference profile body (holds the reference values)"

    file_id = models.CharField(max_length=32, unique=True, help_text="Hex of the 16-byte id in the file header")
    name = models.CharField(max_length=500, unique=True, help_text="Storage name under MEDIA_ROOT")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    team = models.ForeignKey("governance.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    model = models.ForeignKey(RegisteredModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    file_format = models.CharField(max_length=10)
    kek_id = models.CharField(max_length=32, blank=True)
    wrapped_key = models.BinaryField(blank=True, default=b"", editable=False)
    source_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the bytes as uploaded")
    content_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the stored (pseudonymised) plaintext")
    size_bytes = models.PositiveBigIntegerField(default=0)
    identifier_columns = models.JSONField(default=list, blank=True, help_text="Replaced by keyed hashes before storage")
    sensitive_columns = models.JSONField(default=list, blank=True, help_text="Special-category attributes it holds")
    purpose = models.CharField(max_length=500, blank=True, help_text="Why the data is processed")
    retention_until = models.DateTimeField(null=True, blank=True)
    retention_set_by = models.CharField(max_length=200, blank=True, help_text="'policy' or the risk officer's label")
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)
    erasure_reason = models.CharField(max_length=40, blank=True)
    replaced_by = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaces",
                                       help_text="A row-level erasure's rewrite of this file")

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["erased_at", "retention_until"], name="fairness_sealed_retention_idx")]
        constraints = [models.CheckConstraint(condition=Q(erased_at__isnull=True) | Q(wrapped_key=b""),
                                              name="fairness_sealed_erased_has_no_key")]

    def __str__(self) -> str:
        return f"sealed {self.kind} {self.content_sha256[:12]}"


class TeamPseudonymKey(models.Model):
    """A team's HMAC key for pseudonyms, wrapped by the KEK like a data key (rotation re-wraps it)."""

    team = models.OneToOneField("governance.Team", on_delete=models.PROTECT, related_name="+")
    key_id = models.CharField(max_length=32, unique=True)
    kek_id = models.CharField(max_length=32)
    wrapped_key = models.BinaryField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pseudonym key of {self.team_id}"
