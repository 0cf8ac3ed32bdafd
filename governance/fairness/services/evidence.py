"""Fairness audits as approval evidence: the check the approval gate asks, the confirmation of a
spec by someone other than the submitter, and the waiver of a failing audit by a risk officer.

An audit run counts only if its frozen parameters are at least as strict as the policy
(`governance.policies.spec_gaps`) and, for high-risk models, its spec was made or confirmed by a
risk officer or approver who neither submitted nor wrote the version. A failing counted run blocks
approval until a risk officer waives it with a reason; a newer passing run never hides it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.ledger import ledger_append, lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict, Forbidden, InvalidInput
from governance.evidence import EvidenceResult
from governance.fairness.models import AuditRun, AuditSpec, AuditWaiver
from governance.fairness.services.access import require_visible
from governance.models import ApprovalRequest, ModelVersion, RequestStatus
from governance.permissions import can_decide, is_risk_officer
from governance.policies import spec_gaps
from governance.registry.services.common import reason_required

MIN_WAIVER_REASON_CHARS = 10
REVIEWER_ROLES = ("risk_officer", "approver")


def _is_reviewer(user: Any) -> bool:
    return user is not None and user.is_active and user.groups.filter(name__in=REVIEWER_ROLES).exists()


def spec_independent(spec: AuditSpec, *, excluded: set[int]) -> bool:
    """Made or confirmed by a risk officer or approver outside `excluded` (the submitter, the author)."""
    if spec.confirmed_by_id is not None and spec.confirmed_by_id not in excluded:
        return True
    return spec.created_by_id is not None and spec.created_by_id not in excluded and _is_reviewer(spec.created_by)


def registered_dataset(run: AuditRun) -> bool:
    """The run read the bytes of a registered lineage dataset version (content digest, same SHA-256)."""
    dataset = run.spec.dataset_version
    return (dataset is not None and dataset.digest_kind == "content" and bool(run.spec.dataset_sha256)
            and dataset.digest == run.spec.dataset_sha256 == run.input_sha256)


def run_gaps(run: AuditRun, policy: dict[str, Any], *, excluded: set[int], independent: bool) -> list[dict[str, Any]]:
    parameters = run.parameters or {}
    gaps = spec_gaps(policy, thresholds=dict(run.thresholds or {}),
                     min_group_size=int(parameters.get("min_group_size") or 0),
                     include_small_groups=bool(parameters.get("include_small_groups")),
                     registered_dataset=registered_dataset(run))
    if independent and not spec_independent(run.spec, excluded=excluded):
        gaps.append({"gap": "spec_not_independent"})
    return gaps


def fairness_audit_passed(*, version: ModelVersion, max_age_days: int | None = None,
                          policy: dict[str, Any] | None = None, submitter_id: int | None = None,
                          independent_spec: bool = False, **_: Any) -> EvidenceResult:
    """Evidence check: a conforming audit of the version passed (or was waived) within `max_age_days`,
    and no conforming audit of it failed without a waiver."""
    policy = policy or {}
    excluded = {pk for pk in (submitter_id, version.created_by_id) if pk is not None}
    runs = list(AuditRun.objects.filter(model_version=version, status=AuditRun.Status.SUCCEEDED)
                .select_related("spec__dataset_version", "spec__created_by", "waiver")
                .order_by("-finished_at", "-pk"))
    if not runs:
        return EvidenceResult(False, "No completed fairness audit of this version.")
    conforming: list[AuditRun] = []
    rejected: list[dict[str, Any]] = []
    for run in runs:
        gaps = run_gaps(run, policy, excluded=excluded, independent=independent_spec)
        if gaps:
            rejected.append({"audit_run": run.pk, "gaps": gaps})
        else:
            conforming.append(run)
    waived = {run.pk for run in conforming if hasattr(run, "waiver")}
    failing = [run for run in conforming if not run.passed and run.pk not in waived]
    if failing:
        names = [f"{f['attributes']} {f['metric']}" for f in failing[0].findings if not f.get("passed")]
        return EvidenceResult(
            False, f"Fairness audit #{failing[0].pk} of this version failed ({', '.join(names[:5])}) and no risk "
                   "officer waived it.",
            {"failing_runs": [run.pk for run in failing]}, code="approval_evidence_audit_failed")
    cutoff = timezone.now() - timedelta(days=int(max_age_days)) if max_age_days is not None else None
    usable = [run for run in conforming if cutoff is None or (run.finished_at and run.finished_at >= cutoff)]
    if usable:
        run = usable[0]
        return EvidenceResult(True, f"Fairness audit #{run.pk} {'passed' if run.passed else 'was waived'}.", {
            "audit_run": run.pk, "result_sha256": run.result_sha256, "input_sha256": run.input_sha256,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None, "ledger_seq": run.ledger_seq,
            "waived_runs": sorted(waived)})
    age = f" in the last {max_age_days} days" if max_age_days is not None else ""
    if not rejected or conforming:
        return EvidenceResult(False, f"No completed fairness audit of this version{age}.")
    gap_kinds = {gap["gap"] for item in rejected for gap in item["gaps"]}
    metrics = sorted({gap["metric"] for item in rejected for gap in item["gaps"] if "metric" in gap})
    code = "approval_evidence_spec_unconfirmed" if gap_kinds == {"spec_not_independent"} else \
        "approval_evidence_spec_weaker"
    detail = f" (metrics: {', '.join(metrics)})" if metrics else ""
    return EvidenceResult(False, f"No fairness audit of this version is as strict as the policy{detail}.",
                          {"metrics": metrics, "runs": rejected[:10]}, code=code)


class SpecConfirmDenied(Forbidden):
    code = "fairness_spec_confirm_denied"


class WaiverDenied(Forbidden):
    code = "fairness_waiver_denied"


def audit_spec_confirm(*, by: Any, spec: AuditSpec, comment: str = "") -> AuditSpec:
    """A risk officer or approver of the model who wrote neither the spec nor the version confirms it."""
    require_visible(by, spec.model)
    with refusal_recorded(actor=by, action="fairness_spec.confirm", subject=spec, attempt={"spec": spec.pk}):
        with transaction.atomic():
            spec = lock_for_update(AuditSpec.objects, of=("self",)).select_related("model", "version").get(pk=spec.pk)
            if not (is_risk_officer(by) or can_decide(by, spec.model)):
                raise SpecConfirmDenied("Only a risk officer or an approver of the model confirms an audit spec.")
            authors = {spec.created_by_id, spec.version.created_by_id if spec.version else None}
            pending = ApprovalRequest.objects.filter(version__model=spec.model, status=RequestStatus.PENDING)
            if spec.version is not None:
                pending = pending.filter(version=spec.version)
            authors |= set(pending.values_list("submitted_by_id", flat=True))
            if by.pk in authors:
                raise SpecConfirmDenied("You wrote this spec or its version, or submitted it; someone else confirms.",
                                        extra={"rule": "submitter_cannot_confirm"})
            if spec.confirmed_by_id is not None:
                raise Conflict("The spec is confirmed already.", code="fairness_spec_already_confirmed",
                               extra={"confirmed_by": spec.confirmed_by_id})
            spec.confirmed_by, spec.confirmed_at = by, timezone.now()
            spec.save(update_fields=["confirmed_by", "confirmed_at"])
            ledger_append(actor=by, action="fairness_spec.confirmed", subject=spec, payload={
                "model": spec.model.name, "version": spec.version.label if spec.version else None,
                "config": spec.config(), "dataset_sha256": spec.dataset_sha256 or None,
                "comment": (comment or "").strip()[:2000]})
    return spec


def audit_waive(*, by: Any, run: AuditRun, reason: str) -> AuditWaiver:
    """A risk officer records that a failing audit of a version does not block its approval, and why."""
    reason = reason_required(reason, action="fairness_audit.waive")
    if len(reason) < MIN_WAIVER_REASON_CHARS or len(reason) > 5000:
        raise InvalidInput(f"A waiver needs a reason of {MIN_WAIVER_REASON_CHARS} to 5000 characters.",
                           code="reason_required")
    require_visible(by, run.spec.model)
    with refusal_recorded(actor=by, action="fairness_audit.waive", subject=run,
                          attempt={"audit_run": run.pk, "reason": reason}):
        with transaction.atomic():
            run = lock_for_update(AuditRun.objects, of=("self",)).select_related(
                "spec__model", "model_version").get(pk=run.pk)
            if not is_risk_officer(by):
                raise WaiverDenied("Only a risk officer waives a failing fairness audit.")
            version = run.model_version
            if version is None or run.status != AuditRun.Status.SUCCEEDED or run.passed is not False \
                    or AuditWaiver.objects.filter(run=run).exists():
                raise Conflict("Only a completed, failing audit of a version can be waived, once.",
                               code="fairness_waiver_not_applicable", extra={"audit_run": run.pk})
            submitters = set(ApprovalRequest.objects.filter(version=version).values_list("submitted_by_id", flat=True))
            if by.pk in submitters | {version.created_by_id, run.spec.created_by_id}:
                raise WaiverDenied("You submitted or wrote this version or its audit; another risk officer waives.",
                                   extra={"rule": "submitter_cannot_waive"})
            waiver = AuditWaiver.objects.create(run=run, reason=reason, waived_by=by, waived_at=timezone.now())
            entry = ledger_append(actor=by, action="fairness_audit.waived", subject=run, payload={
                "audit_run": run.pk, "model": run.spec.model.name, "version": version.label,
                "version_id": version.pk, "result_sha256": run.result_sha256, "reason": reason,
                "failed_findings": [f for f in run.findings if not f.get("passed")][:20]})
            waiver.ledger_seq = entry.seq
            waiver.save(update_fields=["ledger_seq"])
    return waiver
