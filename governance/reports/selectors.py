"""Reads of the reports app: what goes into a model's bundle, and which exports a user may see.

A model's bundle covers the ledger subjects of the model, its versions, their approval requests
and decisions, the model's approval policy and every policy any of its requests was decided
under (tier defaults included) and the default policy of every tier the model has had, its
deployments, its fairness audits, and, through the lineage graph, everything upstream of its
versions and deployments (dataset versions and datasets, training runs, artifacts,
attestations). Besides, for each person who submitted or decided one of its requests: their
account, role, group and permission entries (and the permission entries of their groups) up to
their last submission or decision in the bundle (`BoundedSubject`), so that the approvals can be
re-evaluated offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q, QuerySet

from audit.models import LedgerEntry
from core.errors import NotFound
from governance import selectors as governance_selectors
from governance.fairness.models import AuditRun, AuditSpec, PredictionBatch, SealedFile
from governance.models import (
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    Deployment,
    ModelVersion,
    RegisteredModel,
)
from governance.permissions import is_active_user
from governance.reports.bundle import PEOPLE_ACTION_PREFIXES, BoundedSubject
from governance.reports.models import BundleExport
from governance.signatures.models import ApproverCredential
from lineage import graph
from lineage.models import Attestation, DatasetVersion, LineageNode, PipelineKey

EXPORT_PERMISSION = "reports.export_bundle"
MODEL_TYPE = "governance.registeredmodel"
VERSION_TYPE = "governance.modelversion"


@dataclass
class BundlePlan:
    """The ledger subjects of a bundle, and the records whose files it carries besides the ledger."""

    subjects: list[tuple[str, str]]
    model: RegisteredModel | None = None
    versions: list[ModelVersion] = field(default_factory=list)
    attestations: list[Attestation] = field(default_factory=list)
    audits: list[AuditRun] = field(default_factory=list)
    bounded: list[BoundedSubject] = field(default_factory=list)


def can_export(user: Any) -> bool:
    return is_active_user(user) and bool(user.has_perm(EXPORT_PERMISSION))


def model_for(*, name: str, user: Any = None) -> RegisteredModel:
    """The model by name; with a user, only if they may see it (404 otherwise), else unrestricted (system jobs)."""
    if user is not None:
        return governance_selectors.registered_model_get(user=user, name=name)
    model = RegisteredModel.objects.select_related("team").filter(name=name).first()
    if model is None:
        raise NotFound(f"No model named '{name}'.", code="model_not_found", extra={"model": name})
    return model


def fairness_audits_for(versions: list[ModelVersion]) -> list[AuditRun]:
    """Every fairness audit run of these versions (all outcomes: failed runs are evidence too), oldest first."""
    if not versions:
        return []
    return list(AuditRun.objects.filter(model_version__in=versions).select_related("spec").order_by("created_at", "pk"))


def fairness_specs_for(model: RegisteredModel) -> list[AuditSpec]:
    return list(AuditSpec.objects.filter(model=model).select_related("periodic_task__crontab",
                                                                     "periodic_task__interval").order_by("pk"))


def _upstream_nodes(start: list[LineageNode]) -> list[LineageNode]:
    node_ids: set[int] = set()
    for node in start:
        traversal = graph.traverse(start_id=node.pk, direction=graph.UPSTREAM, depth=graph.MAX_DEPTH,
                                   max_nodes=100_000)
        node_ids.update(traversal.depths)
    return list(LineageNode.objects.filter(pk__in=node_ids).order_by("pk"))


def bundle_plan_for_model(*, model_name: str, version_label: str = "", user: Any = None) -> BundlePlan:
    """Every subject of the model's bundle (or of one version's), plus its attestations and audits."""
    model = model_for(name=model_name, user=user)
    versions = list(model.versions.order_by("created_at", "pk"))
    if version_label:
        versions = [version for version in versions if version.label == version_label]
        if not versions:
            raise NotFound(f"Model '{model_name}' has no version '{version_label}'.", code="model_version_not_found",
                           extra={"model": model_name, "version": version_label})
    subjects: set[tuple[str, str]] = {(MODEL_TYPE, str(model.pk))}
    subjects.update((VERSION_TYPE, str(version.pk)) for version in versions)
    requests = list(ApprovalRequest.objects.filter(version__in=versions).values_list("pk", flat=True))
    subjects.update(("governance.approvalrequest", str(pk)) for pk in requests)
    subjects.update(("governance.approvaldecision", str(pk))
                    for pk in ApprovalDecision.objects.filter(request__in=requests).values_list("pk", flat=True))
    # The signing credentials of everyone who decided: their registration (and revocation) entries
    # show when each key became valid, so verify.py can refuse a signature by a back-dated key.
    approver_ids = ApprovalDecision.objects.filter(request__in=requests).values_list("approver_id", flat=True)
    subjects.update(("signatures.approvercredential", str(pk))
                    for pk in ApproverCredential.objects.filter(user_id__in=approver_ids).values_list("pk", flat=True))
    policy_ids = set(ApprovalPolicy.objects.filter(model=model).values_list("pk", flat=True))
    request_rows = list(ApprovalRequest.objects.filter(pk__in=requests).values_list("policy_id", "policy_snapshot"))
    for policy_id, snapshot in request_rows:
        policy_ids.add(policy_id)
        if isinstance(snapshot, dict):
            policy_ids.add(snapshot.get("policy_id"))
    # The default policy of every tier the model has had, so a decision taken after the tier was
    # changed back can be judged against the policy of the tier in force at the time.
    policy_ids.update(ApprovalPolicy.objects.filter(model__isnull=True, risk_tier__in=tiers_of(model))
                      .values_list("pk", flat=True))
    subjects.update(("governance.approvalpolicy", str(pk)) for pk in policy_ids if isinstance(pk, int))
    deployments = list(Deployment.objects.filter(version__in=versions).values_list("pk", flat=True))
    subjects.update(("governance.deployment", str(pk)) for pk in deployments)

    audits = fairness_audits_for(versions)
    subjects.update(("fairness.auditrun", str(audit.pk)) for audit in audits)
    specs = {audit.spec_id for audit in audits} | {spec.pk for spec in AuditSpec.objects.filter(model=model)}
    subjects.update(("fairness.auditspec", str(pk)) for pk in specs)
    subjects.update(("fairness.predictionbatch", str(pk))
                    for pk in PredictionBatch.objects.filter(model=model).values_list("pk", flat=True))
    # Sealed data files: their reads, retention changes and erasures (issue 18).
    subjects.update(("fairness.sealedfile", str(pk))
                    for pk in SealedFile.objects.filter(model=model).values_list("pk", flat=True))

    from governance.monitoring import evidence as monitoring_evidence

    subjects.update(monitoring_evidence.bundle_subjects(versions))

    refs = Q(ref_type=VERSION_TYPE, ref_id__in=[str(version.pk) for version in versions])
    refs |= Q(ref_type="governance.deployment", ref_id__in=[str(pk) for pk in deployments])
    start = list(LineageNode.objects.filter(refs))
    nodes = _upstream_nodes(start) if start else []
    for node in nodes:
        subjects.add(("lineage.lineagenode", str(node.pk)))
        if node.ref_type.startswith("lineage.") and not node.ref_id.startswith("pending:"):
            subjects.add((node.ref_type, node.ref_id))
    dataset_version_ids = [int(node.ref_id) for node in nodes
                           if node.ref_type == "lineage.datasetversion" and node.ref_id.isdigit()]
    subjects.update(("lineage.dataset", str(pk)) for pk in DatasetVersion.objects.filter(
        pk__in=dataset_version_ids).values_list("dataset_id", flat=True).distinct())
    node_ids = [node.pk for node in nodes]
    attestations = list(Attestation.objects.filter(
        Q(subjects__node_id__in=node_ids) | Q(edges__target_id__in=node_ids)).distinct().order_by("pk")) \
        if node_ids else []
    subjects.update(("lineage.attestation", str(attestation.pk)) for attestation in attestations)
    subjects.update(("lineage.pipelinekey", str(pk)) for pk in
                    {attestation.pipeline_key_id for attestation in attestations if attestation.pipeline_key_id})
    return BundlePlan(subjects=sorted(subjects), model=model, versions=versions, attestations=attestations,
                      audits=audits, bounded=people_entries_for(requests))


def tiers_of(model: RegisteredModel) -> set[str]:
    """Every risk tier the model has had, by its ledger entries (and its tier now)."""
    tiers = {model.risk_tier}
    rows = LedgerEntry.objects.filter(subject_type=MODEL_TYPE, subject_id=str(model.pk)).values_list("canonical",
                                                                                                    flat=True)
    for canonical in rows.iterator(1000):
        payload = json.loads(bytes(canonical)).get("payload")
        for part in ("before", "after", "state"):
            value = payload.get(part) if isinstance(payload, dict) else None
            if isinstance(value, dict) and isinstance(value.get("risk_tier"), str):
                tiers.add(value["risk_tier"])
    return tiers


def people_entries_for(request_ids: list[int]) -> list[BoundedSubject]:
    """The account, role, group and permission entries of each submitter and approver of the
    requests, up to their last submission or decision there; and the permission entries of the
    groups they belong to (or belonged to), up to the last such seq of their members."""
    if not request_ids:
        return []
    user_model = get_user_model()
    through: dict[int, int] = {}

    def note(user_id: int | None, seq: int | None) -> None:
        if user_id is not None and seq is not None:
            through[user_id] = max(through.get(user_id, -1), seq)

    submitted = dict(ApprovalRequest.objects.filter(pk__in=request_ids).values_list("pk", "submitted_by_id"))
    decided = dict(ApprovalDecision.objects.filter(request__in=request_ids).values_list("pk", "approver_id"))
    for subject_type, people in (("governance.approvalrequest", submitted), ("governance.approvaldecision", decided)):
        rows = LedgerEntry.objects.filter(subject_type=subject_type, subject_id__in=[str(pk) for pk in people])
        if subject_type == "governance.approvalrequest":
            rows = rows.filter(action="approval_request.submitted")
        for subject_id, seq in rows.values_list("subject_id", "seq"):
            if subject_id.isdigit():
                note(people.get(int(subject_id)), seq)
    bounded = [BoundedSubject("auth.user", str(pk), seq, PEOPLE_ACTION_PREFIXES) for pk, seq in through.items()]
    group_through: dict[int, int] = {}
    names: dict[int, set[str]] = {}
    member_entries = LedgerEntry.objects.filter(
        subject_type="auth.user", subject_id__in=[str(pk) for pk in through],
        action__in=["role.granted", "role.revoked", "group.member_added", "group.member_removed"])
    for subject_id, canonical in member_entries.values_list("subject_id", "canonical"):
        payload = json.loads(bytes(canonical)).get("payload")
        if isinstance(payload, dict):
            name = payload.get("role") or payload.get("group")
            if isinstance(name, str):
                names.setdefault(int(subject_id), set()).add(name)
    by_name = dict(Group.objects.filter(name__in={n for group in names.values() for n in group})
                   .values_list("name", "pk"))
    for user in user_model.objects.filter(pk__in=list(through)).prefetch_related("groups"):
        group_ids = {group.pk for group in user.groups.all()}
        group_ids.update(by_name[name] for name in names.get(user.pk, set()) if name in by_name)
        for group_id in group_ids:
            group_through[group_id] = max(group_through.get(group_id, -1), through[user.pk])
    bounded.extend(BoundedSubject("auth.group", str(pk), seq, ("permission.",)) for pk, seq in group_through.items())
    return sorted(bounded)


def pipeline_public_keys(attestations: list[Attestation]) -> dict[str, bytes]:
    """label -> raw key of the pipeline keys that signed any of the attestations."""
    ids = {attestation.pipeline_key_id for attestation in attestations if attestation.pipeline_key_id}
    return {f"pipeline-{key.keyid[:16]}": bytes(key.public_key) for key in PipelineKey.objects.filter(pk__in=ids)}


# --- Exports ---------------------------------------------------------------------------------

def bundle_export_list(*, user: Any) -> QuerySet[BundleExport]:
    """Exports the user may see: their own, and (with the export permission) those of models they can see."""
    exports = BundleExport.objects.select_related("requested_by").order_by("-created_at", "-pk")
    if not is_active_user(user):
        return exports.none()
    if user.is_superuser:
        return exports
    visible = Q(requested_by=user)
    if can_export(user):
        names = governance_selectors.registered_model_list(user=user).values_list("name", flat=True)
        visible |= Q(model_name__in=names)
    return exports.filter(visible)


def bundle_export_get(*, user: Any, export_id: int) -> BundleExport:
    export = bundle_export_list(user=user).filter(pk=export_id).first()
    if export is None:
        raise NotFound(f"No bundle export {export_id}.", code="bundle_export_not_found", extra={"id": export_id})
    return export


def verify_command(bundle_path: str) -> str:
    """How to check a bundle: the published verifier (by URL and SHA-256) with every server key pinned."""
    from audit.models import SigningKey
    from governance.reports.verifier import VERIFY_URL, verify_py_sha256

    keys = " ".join(f"--trusted-key '{vkey}'" for vkey in SigningKey.objects.order_by("pk").values_list("vkey", flat=True))
    return (f"get verify.py from the service's {VERIFY_URL} (sha256 {verify_py_sha256()}, also on /keys/ and in the "
            f"README), then: python3 verify.py {bundle_path} {keys}")


# --- Sensitive data: erasure notes and records of processing (issue 18) -------------------------

def input_erasure(audit: AuditRun) -> dict[str, Any] | None:
    """When an audit's input data has been erased since: when, why, and the digests that are gone.
    The result and its digests stay; the note says the input no longer exists, so a reader does not
    take a missing input for a failure."""
    from governance.fairness.services.vault import erasure_note

    return erasure_note(item.get("path") or "" for item in audit.input_files or [])


def processing_records(model: RegisteredModel) -> dict[str, Any]:
    """What the records of processing section shows: purposes (the audit specs), the stored files with
    their retention and erasures, the safeguards in force and how many reads were recorded."""
    from django.conf import settings

    from governance.fairness.services.vault import keyring_summary

    attributes = [{"spec": spec.name, "target": str(spec.target), "sensitive": list(spec.sensitive),
                   "purpose": f"bias detection and correction (EU AI Act Art. 10(5)) for '{model.name}'"
                              + (f" version {spec.version.label}" if spec.version_id else " in production"),
                   "created_by": spec.created_by.get_username() if spec.created_by_id else None}
                  for spec in AuditSpec.objects.filter(model=model).select_related("version", "created_by")
                  .order_by("pk")]
    records = list(SealedFile.objects.filter(model=model).order_by("pk"))
    files = [{"file_id": r.file_id, "kind": r.kind, "content_sha256": r.content_sha256,
              "source_sha256": r.source_sha256, "identifier_columns": list(r.identifier_columns),
              "sensitive_columns": list(r.sensitive_columns), "purpose": r.purpose,
              "stored_at": r.created_at.isoformat(),
              "retention_until": r.retention_until.isoformat() if r.retention_until else None,
              "retention_set_by": r.retention_set_by,
              "erased_at": r.erased_at.isoformat() if r.erased_at else None, "erasure_reason": r.erasure_reason}
             for r in records]
    reads = LedgerEntry.objects.filter(action="sealed_file.read", subject_type="fairness.sealedfile",
                                       subject_id__in=[str(r.pk) for r in records]).count() if records else 0
    return {"attributes": attributes, "files": files, "reads": reads,
            "retention_policy_days": dict(settings.DATA_RETENTION_DAYS),
            "safeguards": [
                "Encryption at rest: AES-256-GCM in authenticated 1 MiB chunks, one random data key per file, "
                "wrapped by a key-encryption key held outside the database" + keyring_summary(),
                "Pseudonymisation at upload: declared direct identifiers replaced by HMAC-SHA256 with a per-team key",
                "Documented access: every read is a ledger entry (who, why, which digest), in the transaction "
                "of the run or download that caused it; reads only through purpose-checked services",
                "Strict access control: team-scoped object permissions, deny by default",
                "No transmission to other parties: bundles and reports carry digests and aggregates, never rows",
                "Deletion by crypto-shredding when retention ends or on an erasure request; the ledger keeps "
                "only digests",
            ]}
