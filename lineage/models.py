"""Lineage records: datasets and their versions, training runs, the generic node/edge graph,
pipeline keys and DSSE attestations.

The graph is generic (`LineageNode` + `LineageEdge`) so that governance can hang model versions
and deployments on it by reference (`ref_type`, `ref_id`) without lineage importing governance.
Only `lineage.services` writes these tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

# `LineageNode.ref_type` of the records lineage itself keeps; any other ref_type names another app's record.
DATASET_VERSION_REF = "lineage.datasetversion"
RUN_REF = "lineage.trainingrun"
ARTIFACT_REF = "lineage.artifact"
LINEAGE_REF_TYPES = frozenset({DATASET_VERSION_REF, RUN_REF, ARTIFACT_REF})
# The team a record belongs to, as the app above names owners ("team:<name>"); "" is shared: recorded by the
# system (or before records had owners), readable by every lineage reader and written by system actors only.
SHARED = ""


def owner_team_field() -> models.CharField:
    return models.CharField(max_length=200, blank=True, default=SHARED, db_index=True,
                            help_text='The owning team ("team:<name>"); empty: shared, written by the system only')


class LineageNode(models.Model):
    """One vertex of the lineage graph; `(ref_type, ref_id)` names the record it stands for."""

    class Kind(models.TextChoices):
        DATASET_VERSION = "dataset_version", "Dataset version"
        RUN = "run", "Training run"
        MODEL_VERSION = "model_version", "Model version"
        DEPLOYMENT = "deployment", "Deployment"
        ARTIFACT = "artifact", "Artifact"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    ref_type = models.CharField(max_length=100)
    ref_id = models.CharField(max_length=200)
    digest = models.CharField(max_length=64, db_index=True, help_text="lowercase hex SHA-256")
    label = models.CharField(max_length=300, blank=True)
    owner_team = owner_team_field()  # lineage's own records; governed nodes follow their record's owner
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "ref_type", "ref_id"], name="lineage_node_ref_unique")]
        indexes = [models.Index(fields=["ref_type", "ref_id"], name="lineage_node_ref_idx")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.pk} {self.label}"


class LineageEdge(models.Model):
    """`source` was used to make `target`. The graph is kept acyclic by `lineage.graph`."""

    source = models.ForeignKey(LineageNode, on_delete=models.PROTECT, related_name="out_edges")
    target = models.ForeignKey(LineageNode, on_delete=models.PROTECT, related_name="in_edges")
    attestation = models.ForeignKey("Attestation", on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="edges")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "target"], name="lineage_edge_unique"),
            models.CheckConstraint(condition=~models.Q(source=models.F("target")), name="lineage_edge_no_self_loop"),
        ]
        indexes = [models.Index(fields=["target", "source"], name="lineage_edge_target_idx")]

    def __str__(self) -> str:
        return f"{self.source_id} -> {self.target_id}"


class Dataset(models.Model):
    """A named dataset (`namespace`/`name`, as OpenLineage names them)."""

    namespace = models.CharField(max_length=300)
    name = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    owner_team = owner_team_field()
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Each team names its datasets in its own space: another team's "s3://bucket/table" is another record
        # (so creating one reveals nothing about theirs).
        constraints = [models.UniqueConstraint(fields=["owner_team", "namespace", "name"],
                                               name="lineage_dataset_owner_unique")]
        ordering = ["namespace", "name"]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class DatasetVersion(models.Model):
    """Immutable content of a dataset, identified by its digest."""

    class DigestKind(models.TextChoices):
        CONTENT = "content", "SHA-256 of the bytes"
        MANIFEST = "manifest", "SHA-256 of the JCS manifest of per-file digests"
        OPENLINEAGE_IDENTITY = "openlineage_identity", "SHA-256 of the JCS OpenLineage identity (no content seen)"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=200, blank=True)
    location_uri = models.CharField(max_length=2000)
    digest = models.CharField(max_length=64, help_text="lowercase hex SHA-256")
    digest_kind = models.CharField(max_length=30, choices=DigestKind.choices, default=DigestKind.CONTENT)
    manifest = models.JSONField(null=True, blank=True, help_text="{relative path: sha256 hex} for folders")
    schema = models.JSONField(default=list, blank=True, help_text="[{name, type}]")
    row_count = models.BigIntegerField(null=True, blank=True)
    time_range_start = models.DateTimeField(null=True, blank=True)
    time_range_end = models.DateTimeField(null=True, blank=True)
    sensitive_data_notes = models.TextField(blank=True)
    node = models.OneToOneField(LineageNode, on_delete=models.PROTECT, related_name="dataset_version")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "digest"], name="lineage_dsv_digest_unique")]
        indexes = [models.Index(fields=["digest"], name="lineage_dsv_digest_idx")]
        ordering = ["dataset_id", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.dataset} @{self.version or self.digest[:12]}"


class TrainingRun(models.Model):
    """A run of a job: code, parameters, environment, time window and who ran it."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        ABORTED = "aborted", "Aborted"
        UNKNOWN = "unknown", "Unknown"

    job_namespace = models.CharField(max_length=300, blank=True)
    job_name = models.CharField(max_length=500)
    external_run_id = models.CharField(max_length=100, null=True, blank=True, unique=True,
                                       help_text="OpenLineage runId, if the run came from OpenLineage")
    code_repository = models.CharField(max_length=1000, blank=True)
    code_commit = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    environment = models.JSONField(default=dict, blank=True, help_text="package -> version")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNKNOWN)
    actor = models.CharField(max_length=200)
    owner_team = owner_team_field()
    node = models.OneToOneField(LineageNode, on_delete=models.PROTECT, related_name="training_run")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} {self.job_name}"


class PipelineKey(models.Model):
    """An Ed25519 public key a service account registered to sign its own attestations."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="lineage_keys")
    name = models.CharField(max_length=200, blank=True)
    public_key = models.BinaryField(max_length=32, unique=True)
    keyid = models.CharField(max_length=64, unique=True, help_text="DSSE keyid: hex SHA-256 of the raw public key")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=200, blank=True)
    owner_team = owner_team_field()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"pipeline key {self.keyid[:16]}"


class Attestation(models.Model):
    """A DSSE envelope around an in-toto Statement, kept byte for byte as produced or received."""

    class Origin(models.TextChoices):
        SERVER = "server", "Signed by the server"
        PIPELINE = "pipeline", "Submitted by a pipeline"

    envelope = models.BinaryField(help_text="The exact JSON bytes of the envelope")
    envelope_sha256 = models.CharField(max_length=64, db_index=True)
    payload_type = models.CharField(max_length=100)
    predicate_type = models.CharField(max_length=300)
    statement = models.JSONField(help_text="The parsed Statement (a convenience copy; the envelope is authoritative)")
    keyid = models.CharField(max_length=64)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    server_key = models.ForeignKey("audit.SigningKey", on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    pipeline_key = models.ForeignKey(PipelineKey, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="attestations")
    submitted_by = models.CharField(max_length=200)
    owner_team = owner_team_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attestation {self.pk}"


class AttestationSubject(models.Model):
    """One subject of an attestation's Statement, resolved to the node it names."""

    attestation = models.ForeignKey(Attestation, on_delete=models.PROTECT, related_name="subjects")
    node = models.ForeignKey(LineageNode, on_delete=models.PROTECT, related_name="attestation_subjects")
    name = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["attestation", "node"], name="lineage_att_subject_unique")]

    def __str__(self) -> str:
        return f"{self.name} sha256:{self.sha256[:12]}"


class OpenLineageEvent(models.Model):
    """One accepted OpenLineage delivery; `dedup_key` makes client retries idempotent."""

    dedup_key = models.CharField(max_length=64, unique=True)
    event_kind = models.CharField(max_length=20)
    event_type = models.CharField(max_length=20, blank=True)
    event_time = models.CharField(max_length=64)
    openlineage_run_id = models.CharField(max_length=100, blank=True)
    body_sha256 = models.CharField(max_length=64)
    run = models.ForeignKey(TrainingRun, on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    result = models.JSONField(default=dict)
    received_by = models.CharField(max_length=200)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"openlineage {self.event_kind} {self.event_type} {self.event_time}"
