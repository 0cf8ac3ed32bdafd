"""Approval policies and requests: submit, decide, withdraw, expire. Separation of duties, quorum
and the evidence gate live here and only here; the API, the admin and the pages call these."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.ledger import lock_for_update
from core.errors import InvalidInput
from governance import evidence
from governance.models import (
    MODEL_CARD_FIELDS,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    Decision,
    ModelVersion,
    RegisteredModel,
    RequestStatus,
    RiskTier,
    VersionStatus,
)
from governance.permissions import can_decide, can_write_model
from governance.registry.services.common import (
    MIN_REASON_CHARS,
    ApprovalAlreadyDecided,
    ApprovalEvidenceMissing,
    ApprovalNotPending,
    ApprovalPermissionDenied,
    ApprovalPolicyMissing,
    ApprovalReasonRequired,
    InvalidTransition,
    SeparationOfDuties,
    clean_text,
    full_clean,
    may,
    require,
    require_visible,
    string_list,
    transition,
)
from governance.roles import ROLE_NAMES
from governance.selectors import approval_policy_for, user_roles


def approval_policy_set(*, by: Any, model: RegisteredModel | None = None, risk_tier: str | None = None,
                        quorum: int, required_roles: list[str] | None = None,
                        fairness_audit_max_age_days: int | None = None,
                        required_card_fields: list[str] | None = None, expiry_hours: int = 72,
                        comment: str = "") -> ApprovalPolicy:
    """Create or replace the policy of one model, or the default of one risk tier."""
    require(may(by, "governance.change_approvalpolicy") and may(by, "governance.add_approvalpolicy"),
             "You may not set approval policies.")
    if (model is None) == (risk_tier is None):
        raise InvalidInput("Give either a model or a risk tier.", code="invalid_input")
    if risk_tier is not None and risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier")
    roles = string_list(required_roles, "required_roles")
    unknown_roles = sorted(set(roles) - set(ROLE_NAMES))
    if unknown_roles:
        raise InvalidInput("Unknown roles.", code="invalid_input", extra={"roles": unknown_roles})
    card_fields = string_list(required_card_fields, "required_card_fields")
    if set(card_fields) - set(MODEL_CARD_FIELDS):
        raise InvalidInput("Unknown model-card fields.", code="invalid_input",
                           extra={"fields": sorted(set(card_fields) - set(MODEL_CARD_FIELDS))})
    if isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1 or quorum > 20:
        raise InvalidInput("The quorum must be an integer from 1 to 20.", code="invalid_input")
    if len(roles) > quorum:
        raise InvalidInput("The quorum must be at least the number of required roles.", code="invalid_input")
    with transaction.atomic():
        lookup = {"model": model} if model is not None else {"model__isnull": True, "risk_tier": risk_tier}
        policy = lock_for_update(ApprovalPolicy.objects).filter(**lookup).first()
        action = "approval_policy.updated" if policy else "approval_policy.created"
        policy = policy or ApprovalPolicy(model=model, risk_tier=risk_tier)
        policy.quorum = quorum
        policy.required_roles = sorted(set(roles))
        policy.fairness_audit_max_age_days = fairness_audit_max_age_days
        policy.required_card_fields = sorted(set(card_fields))
        policy.expiry_hours = expiry_hours
        full_clean(policy)
        policy.save_recorded(action=action, by=by, extra={"comment": clean_text(comment, "comment")})
    return policy


def _card_gaps(version: ModelVersion, snapshot: dict[str, Any]) -> list[dict[str, str]]:
    return [{"evidence": "model_card", "field": name, "message": f"The model card has no '{name}'."}
            for name in version.missing_card_fields(snapshot.get("required_card_fields") or [])]


Evidence = list[dict[str, Any]]


def _evidence_gaps(version: ModelVersion, snapshot: dict[str, Any]) -> tuple[Evidence, Evidence]:
    """(missing, found) evidence for the request's policy snapshot."""
    missing = _card_gaps(version, snapshot)
    found: list[dict[str, Any]] = []
    max_age_days = snapshot.get("fairness_audit_max_age_days")
    if max_age_days is not None:
        result = evidence.run_evidence_check(evidence.FAIRNESS_AUDIT_PASSED, version=version,
                                             max_age_days=max_age_days)
        item = {"evidence": evidence.FAIRNESS_AUDIT_PASSED, "message": result.message,
                "references": result.references}
        (found if result.ok else missing).append(item)
    return missing, found


def model_version_submit(*, version: ModelVersion, by: Any, comment: str = "") -> ApprovalRequest:
    """Ask for approval under the policy that applies now; the policy is frozen into the request."""
    require_visible(by, version.model)
    require(can_write_model(by, version.model, "governance.add_approvalrequest"),
             f"You may not request approval for '{version.model.name}'.")
    comment = clean_text(comment, "comment")
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        if version.status != VersionStatus.DRAFT:
            raise InvalidTransition(f"Only drafts can be submitted; this version is {version.status}.",
                                    extra={"from": version.status, "to": VersionStatus.PENDING_REVIEW})
        policy = approval_policy_for(version.model)
        if policy is None:
            raise ApprovalPolicyMissing(
                f"No approval policy applies to '{version.model.name}' (risk tier {version.model.risk_tier}).",
                extra={"model": version.model.name, "risk_tier": version.model.risk_tier})
        snapshot = policy.snapshot()
        gaps = _card_gaps(version, snapshot)
        if gaps:
            raise ApprovalEvidenceMissing("The model card is incomplete.", extra={"missing": gaps})
        now = timezone.now()
        request = ApprovalRequest(version=version, submitted_by=by, submitted_at=now, comment=comment,
                                  status=RequestStatus.PENDING, policy=policy, policy_snapshot=snapshot,
                                  expires_at=now + timedelta(hours=policy.expiry_hours))
        request.save_recorded(action="approval_request.submitted", by=by, extra={"comment": comment})
        transition(version, VersionStatus.PENDING_REVIEW)
        version.save_recorded(action="model_version.submitted", by=by,
                              extra={"comment": comment, "approval_request": request.pk})
    return request


def _locked_pending(request: ApprovalRequest) -> ApprovalRequest:
    locked = (lock_for_update(ApprovalRequest.objects).select_related("version__model", "submitted_by")
              .get(pk=request.pk))
    if locked.status != RequestStatus.PENDING:
        raise ApprovalNotPending(f"Request #{locked.pk} is {locked.status}, not pending.",
                                 extra={"id": locked.pk, "status": locked.status})
    if locked.expires_at <= timezone.now():
        raise ApprovalNotPending(f"Request #{locked.pk} expired at {locked.expires_at.isoformat()}.",
                                 extra={"id": locked.pk, "status": "expired"})
    return locked


def _close(request: ApprovalRequest, *, status: str, by: Any, action: str, comment: str,
           version_status: str, version_action: str, **extra: Any) -> None:
    request.status = status
    request.closed_at = timezone.now()
    request.closing_comment = comment
    request.save_recorded(action=action, by=by, extra={"comment": comment, **extra})
    version = lock_for_update(ModelVersion.objects).get(pk=request.version_id)
    transition(version, version_status)
    version.save_recorded(action=version_action, by=by,
                          extra={"comment": comment, "approval_request": request.pk, **extra})
    request.version = version


def quorum_state(decisions: Iterable[ApprovalDecision], snapshot: dict[str, Any]) -> dict[str, Any]:
    """How far the approvals are from the policy: distinct approvers and the roles still missing."""
    approvers = {decision.approver_id for decision in decisions if decision.decision == Decision.APPROVE}
    roles_covered = {role for decision in decisions if decision.decision == Decision.APPROVE
                     for role in decision.approver_roles}
    missing_roles = sorted(set(snapshot.get("required_roles") or []) - roles_covered)
    quorum = int(snapshot.get("quorum") or 1)
    return {"approvals": len(approvers), "quorum": quorum, "missing_roles": missing_roles,
            "satisfied": len(approvers) >= quorum and not missing_roles}


def approval_decide(*, request: ApprovalRequest, by: Any, decision: str, comment: str = "") -> ApprovalDecision:
    """Record one approver's decision; a rejection closes the request, the approval that completes
    the quorum and the required roles approves the request and the version."""
    if decision not in Decision.values:
        raise InvalidInput("The decision must be 'approve' or 'reject'.", code="invalid_decision",
                           extra={"allowed": list(Decision.values)})
    comment = clean_text(comment, "comment")
    if decision == Decision.REJECT and len(comment) < MIN_REASON_CHARS:
        raise ApprovalReasonRequired("A rejection needs a reason in the comment.")
    with transaction.atomic():
        request = _locked_pending(request)
        version = request.version
        require_visible(by, version.model)
        if by.pk == request.submitted_by_id:
            raise SeparationOfDuties("You submitted this request; someone else must decide it.",
                                     extra={"rule": "submitter_cannot_decide"})
        if by.pk == version.created_by_id:
            raise SeparationOfDuties("You registered this version; someone else must decide it.",
                                     extra={"rule": "author_cannot_decide"})
        if not can_decide(by, version.model):
            raise ApprovalPermissionDenied(f"You may not decide approvals for '{version.model.name}'.")
        if request.decisions.filter(approver=by).exists():
            raise ApprovalAlreadyDecided("You already decided this request; one person counts once.",
                                         extra={"rule": "one_person_counts_once"})
        snapshot = request.policy_snapshot
        found: list[dict[str, Any]] = []
        if decision == Decision.APPROVE:
            # Evidence is checked for every approval, so no one approves without it, and again
            # right before the final one (an audit can age out while the request is pending).
            missing, found = _evidence_gaps(version, snapshot)
            if missing:
                raise ApprovalEvidenceMissing("Required evidence is missing; the version cannot be approved.",
                                              extra={"missing": missing})
        row = ApprovalDecision(request=request, approver=by, decision=decision, comment=comment,
                               approver_roles=user_roles(by), decided_at=timezone.now())
        try:
            with transaction.atomic():
                row.save_recorded(action=f"approval_request.{decision}_recorded", by=by,
                                  extra={"comment": comment, "evidence": found})
        except IntegrityError:
            raise ApprovalAlreadyDecided("You already decided this request; one person counts once.",
                                         extra={"rule": "one_person_counts_once"})
        if decision == Decision.REJECT:
            _close(request, status=RequestStatus.REJECTED, by=by, action="approval_request.rejected",
                   comment=comment, version_status=VersionStatus.REJECTED, version_action="model_version.rejected")
            return row
        state = quorum_state(request.decisions.all(), snapshot)
        if state["satisfied"]:
            _close(request, status=RequestStatus.APPROVED, by=by, action="approval_request.approved",
                   comment=comment, version_status=VersionStatus.APPROVED, version_action="model_version.approved",
                   approvers=sorted(request.decisions.filter(decision=Decision.APPROVE)
                                    .values_list("approver__username", flat=True)),
                   evidence=found)
    return row


def approval_withdraw(*, request: ApprovalRequest, by: Any, comment: str = "") -> ApprovalRequest:
    """The submitter (or another writer of the model) takes a pending request back; the version is a draft again."""
    comment = clean_text(comment, "comment")
    with transaction.atomic():
        request = _locked_pending(request)
        model = request.version.model
        require_visible(by, model)
        require(by.pk == request.submitted_by_id or can_write_model(by, model, "governance.change_approvalrequest"),
                 "You may not withdraw this request.")
        _close(request, status=RequestStatus.WITHDRAWN, by=by, action="approval_request.withdrawn", comment=comment,
               version_status=VersionStatus.DRAFT, version_action="model_version.withdrawn")
    return request


EXPIRY_ACTOR = "system:approval_expire_due"


def approval_expire_due(*, now: datetime | None = None) -> list[int]:
    """Expire every pending request past its deadline, each in its own transaction; return their ids."""
    now = now or timezone.now()
    expired: list[int] = []
    due = list(ApprovalRequest.objects.filter(status=RequestStatus.PENDING, expires_at__lte=now)
               .order_by("expires_at", "pk").values_list("pk", flat=True))
    for request_id in due:
        with transaction.atomic():
            request = lock_for_update(ApprovalRequest.objects).filter(
                pk=request_id, status=RequestStatus.PENDING, expires_at__lte=now).first()
            if request is None:
                continue  # decided or withdrawn meanwhile
            comment = f"Expired: no decision within {request.policy_snapshot.get('expiry_hours')} hours."
            _close(request, status=RequestStatus.EXPIRED, by=EXPIRY_ACTOR, action="approval_request.expired",
                   comment=comment, version_status=VersionStatus.DRAFT, version_action="model_version.review_expired")
        expired.append(request_id)
    return expired
