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


class Monitor(GovernedModel):
    """Which model version to watch, over which window of prediction batches, against which thresholds.

    ``thresholds`` are policy (see ``services.monitors.weakens``): alpha, the correction across
    columns, the drift effect sizes, and bounds on performance metrics.
    """

    name = models.CharField(max_length=200)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="monitors")
    window_days = models.PositiveIntegerField(default=7)
    y_true = models.CharField(max_length=200, blank=True, help_text="Outcome column; empty: no performance")
    y_pred = models.CharField(max_length=200, blank=True)
    score = models.CharField(max_length=200, blank=True)
    task = models.CharField(max_length=20, default="classification",
                            choices=[("classification", "Classification"), ("regression", "Regression")])
    thresholds = models.JSONField(default=dict)
    run_every_hours = models.PositiveIntegerField(default=24, help_text="Beat runs it at each multiple of this "
                                                  "many hours since the epoch (UTC); 0: on request only")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.version})"


class ThresholdChange(GovernedModel):
    """A weakening of a monitor's thresholds, waiting for a second risk officer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPLIED = "applied", "Applied"

    monitor = models.ForeignKey(Monitor, on_delete=models.PROTECT, related_name="threshold_changes")
    old = models.JSONField()
    new = models.JSONField()
    comment = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"threshold change {self.pk} of monitor {self.monitor_id} ({self.status})"


class MonitorRun(models.Model):
    """One evaluation of a monitor's window; its ledger entry carries the digests of profile, batches and result."""

    monitor = models.ForeignKey(Monitor, on_delete=models.PROTECT, related_name="runs")
    profile = models.ForeignKey(ReferenceProfile, on_delete=models.PROTECT, related_name="runs")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="The beat slot this run is (one run per slot)")
    batches = models.JSONField(help_text='[{"id": ..., "sha256": ...}, ...]')
    result = models.JSONField()
    result_sha256 = models.CharField(max_length=64)
    breached = models.BooleanField(default=False)
    ledger_seq = models.BigIntegerField(null=True, blank=True)
    # A run with alerts notifies once: each channel is marked when it succeeded (a retry skips it).
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True, help_text="When every alert notice of the run was sent")
    # A restatement (late outcomes arrived) is a new run over the same batches; the run it replaces is kept.
    restates = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="restatements")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [models.UniqueConstraint(fields=["monitor", "scheduled_for"],
                                               condition=models.Q(scheduled_for__isnull=False),
                                               name="monitoring_run_one_per_slot")]

    def __str__(self) -> str:
        return f"run {self.pk} of monitor {self.monitor_id}"


class Alert(models.Model):
    """A breach found by a run, open until a person acknowledges it with a comment."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"

    run = models.ForeignKey(MonitorRun, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts",
                            help_text="The run that found the breach; none for an overdue revalidation")
    monitor = models.ForeignKey(Monitor, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=20, help_text="drift or performance")
    subject = models.CharField(max_length=200, help_text="The column or metric")
    detail = models.JSONField()
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    reapproval = models.ForeignKey("governance.ApprovalRequest", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="monitoring_alerts",
                                   help_text="The re-approval of the version this alert opened or joined (policy "
                                             "`reapprove_on_alert`)")
    # An alert without a run (an overdue revalidation) notifies on its own, each channel once.
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["status", "monitor"], name="monitoring_alert_open")]
        constraints = [models.UniqueConstraint(fields=["monitor", "kind"], name="monitoring_one_open_revalidation",
                                               condition=models.Q(kind="revalidation", status="open"))]

    def __str__(self) -> str:
        return f"{self.kind} alert on {self.subject} ({self.status})"


class LateOutcome(models.Model):
    """An outcome that arrived after its prediction, joined to the batch row by its prediction id."""

    batch = models.ForeignKey("fairness.PredictionBatch", on_delete=models.PROTECT, related_name="late_outcomes")
    id_column = models.CharField(max_length=200, help_text="The batch column holding the prediction id")
    prediction_id = models.CharField(max_length=200)
    outcome = models.FloatField()
    ledger_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["batch", "prediction_id"], name="monitoring_outcome_once")]

    def __str__(self) -> str:
        return f"outcome of {self.prediction_id} in batch {self.batch_id}"


class Comparison(models.Model):
    """Champion and challenger scored on the same window: per metric the difference and its bootstrap CI."""

    champion = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    challenger = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    batches = models.JSONField(help_text='[{"id": ..., "sha256": ..., "version": ...}, ...]')
    result = models.JSONField()
    result_sha256 = models.CharField(max_length=64)
    ledger_seq = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"comparison {self.pk}: {self.challenger} vs {self.champion}"
