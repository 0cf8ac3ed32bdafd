"""Approval policies and requests: submit, decide, withdraw, expire. Separation of duties, quorum
and the evidence gate live here and only here; the API, the admin and the pages call these."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.ledger import actor_label, ledger_append, lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict, InvalidInput
from governance import evidence, policies
from governance.models import (
    MODEL_CARD_FIELDS,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalPolicyChange,
    ApprovalRequest,
    ChangeStatus,
    Decision,
    ModelVersion,
    RegisteredModel,
    RequestKind,
    RequestStatus,
    RiskTier,
    SignedApproval,
    VersionStatus,
)
from governance.monitoring.services.profiles import reference_profile_freeze
from governance.permissions import can_decide, can_write_model, is_risk_officer
from governance.registry.services.common import (
    ApprovalAlreadyDecided,
    ApprovalEvidenceMissing,
    ApprovalNotPending,
    ApprovalPermissionDenied,
    ApprovalPolicyMissing,
    InvalidTransition,
    PermissionDeniedError,
    SeparationOfDuties,
    actor_text,
    clean_text,
    full_clean,
    may,
    reason_required,
    refuse_admin,
    require,
    require_visible,
    string_list,
    transition,
)
from governance.roles import ROLE_NAMES
from governance.selectors import approval_policy_for, user_roles
from governance.signatures.models import SigningChallenge
from governance.signatures.services import approval_statement_issue, decision_signature_verify


class ApprovalSignatureRequired(Conflict):
    code = "approval_signature_required"


class ApprovalSignatureMethod(Conflict):
    code = "approval_signature_method"


class ReapprovalNotWithdrawable(Conflict):
    code = "approval_reapproval_not_withdrawable"

POLICY_FIELDS = ("quorum", "required_roles", "fairness_audit_max_age_days", "required_card_fields", "expiry_hours",
                 "fairness_metric_floors", "fairness_min_group_size", "fairness_dataset_registered", "signed_approval")


def _require_risk_officer(by: Any, message: str) -> None:
    """Policies belong to risk officers (system tasks act with full rights)."""
    if isinstance(by, str) and by.startswith("system:"):
        return
    if not (is_risk_officer(by) and may(by, "governance.change_approvalpolicy")
            and may(by, "governance.add_approvalpolicy")):
        raise PermissionDeniedError(message, code="policy_owned_by_risk_officers")


def _optional_count(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 1_000_000_000:
        raise InvalidInput(f"'{field}' must be empty or a whole number.", code="invalid_input", extra={"field": field})
    return value


def _policy_fields(*, quorum: Any, required_roles: Any, fairness_audit_max_age_days: Any, required_card_fields: Any,
                   expiry_hours: Any, fairness_metric_floors: Any, fairness_min_group_size: Any,
                   fairness_dataset_registered: Any, signed_approval: Any = "none") -> dict[str, Any]:
    """The checked policy fields, in the form `ApprovalPolicy.snapshot()` gives them."""
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
    if isinstance(expiry_hours, bool) or not isinstance(expiry_hours, int) or not 1 <= expiry_hours <= 24 * 366:
        raise InvalidInput("'expiry_hours' must be a whole number of hours from 1 to 8784.", code="invalid_input",
                           extra={"field": "expiry_hours"})
    if not isinstance(fairness_dataset_registered, bool):
        raise InvalidInput("'fairness_dataset_registered' must be true or false.", code="invalid_input",
                           extra={"field": "fairness_dataset_registered"})
    if signed_approval not in SignedApproval.values:
        raise InvalidInput(f"'signed_approval' must be one of {', '.join(SignedApproval.values)}.",
                           code="invalid_input", extra={"field": "signed_approval", "allowed": list(SignedApproval.values)})
    return {"quorum": quorum, "required_roles": sorted(set(roles)), "signed_approval": signed_approval,
            "fairness_audit_max_age_days": _optional_count(fairness_audit_max_age_days, "fairness_audit_max_age_days"),
            "required_card_fields": sorted(set(card_fields)), "expiry_hours": expiry_hours,
            "fairness_metric_floors": policies.metric_floors_clean(fairness_metric_floors),
            "fairness_min_group_size": _optional_count(fairness_min_group_size, "fairness_min_group_size"),
            "fairness_dataset_registered": fairness_dataset_registered}


def _policy_in_force(model: RegisteredModel | None, risk_tier: str | None) -> tuple[ApprovalPolicy | None,
                                                                                      ApprovalPolicy | None]:
    """(the scope's own policy, the policy a change to the scope replaces): a model without a policy
    of its own is judged by its tier's default, so a model policy weaker than that default is a weakening."""
    lookup = {"model": model} if model is not None else {"model__isnull": True, "risk_tier": risk_tier}
    own = lock_for_update(ApprovalPolicy.objects).filter(**lookup).first()
    if own is not None or model is None:
        return own, own
    return None, ApprovalPolicy.objects.filter(model__isnull=True, risk_tier=model.risk_tier).first()


def _policy_write(*, by: Any, model: RegisteredModel | None, risk_tier: str | None, fields: dict[str, Any],
                  comment: str, extra: dict[str, Any] | None = None) -> ApprovalPolicy:
    own, _ = _policy_in_force(model, risk_tier)
    action = "approval_policy.updated" if own else "approval_policy.created"
    policy = own or ApprovalPolicy(model=model, risk_tier=risk_tier)
    for name, value in fields.items():
        setattr(policy, name, value)
    full_clean(policy)
    policy.save_recorded(action=action, by=by, extra={"comment": comment, **(extra or {})})
    return policy


def approval_policy_set(*, by: Any, model: RegisteredModel | None = None, risk_tier: str | None = None,
                        quorum: int, required_roles: list[str] | None = None,
                        fairness_audit_max_age_days: int | None = None,
                        required_card_fields: list[str] | None = None, expiry_hours: int = 72,
                        fairness_metric_floors: dict[str, Any] | None = None,
                        fairness_min_group_size: int | None = None, fairness_dataset_registered: bool = False,
                        signed_approval: str = "none", comment: str = "") -> ApprovalPolicy | ApprovalPolicyChange:
    """Create or replace the policy of one model, or the default of one risk tier.

    Only risk officers set policies. A change that keeps or strengthens every requirement applies at
    once (the policy is returned); a weakening is kept as a pending `ApprovalPolicyChange` (returned)
    that a second risk officer approves."""
    if (model is None) == (risk_tier is None):
        raise InvalidInput("Give either a model or a risk tier.", code="invalid_input")
    if risk_tier is not None and risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier")
    fields = _policy_fields(quorum=quorum, required_roles=required_roles,
                            fairness_audit_max_age_days=fairness_audit_max_age_days,
                            required_card_fields=required_card_fields, expiry_hours=expiry_hours,
                            fairness_metric_floors=fairness_metric_floors,
                            fairness_min_group_size=fairness_min_group_size,
                            fairness_dataset_registered=fairness_dataset_registered,
                            signed_approval=signed_approval)
    comment = clean_text(comment, "comment")
    subject = (model if model is not None
               else ApprovalPolicy.objects.filter(model__isnull=True, risk_tier=risk_tier).first()
               or ("governance.approvalpolicy", f"tier:{risk_tier}"))
    with refusal_recorded(actor=by, action="approval_policy.set", subject=subject,
                          attempt={"scope": f"model:{model.name}" if model else f"tier:{risk_tier}", **fields}):
        _require_risk_officer(by, "Only risk officers set approval policies.")
        with transaction.atomic():
            _, replaced = _policy_in_force(model, risk_tier)
            based_on = replaced.snapshot() if replaced else None
            weaker = policies.weakenings(based_on, fields)
            if not weaker or (isinstance(by, str) and by.startswith("system:")):
                return _policy_write(by=by, model=model, risk_tier=risk_tier, fields=fields, comment=comment)
            change = ApprovalPolicyChange(model=model, risk_tier=risk_tier, proposed=fields, based_on=based_on,
                                          weakened=weaker, requested_by=by, requested_at=timezone.now(),
                                          comment=comment)
            change.save_recorded(action="approval_policy.change_requested", by=by,
                                 extra={"weakened": weaker, "comment": comment})
    return change


def _locked_pending_change(change: ApprovalPolicyChange) -> ApprovalPolicyChange:
    locked = lock_for_update(ApprovalPolicyChange.objects, of=("self",)).select_related("model").get(pk=change.pk)
    if locked.status != ChangeStatus.PENDING:
        raise Conflict(f"Policy change #{locked.pk} is {locked.status}, not pending.",
                       code="policy_change_not_pending", extra={"id": locked.pk, "status": locked.status})
    return locked


def approval_policy_change_approve(*, change: ApprovalPolicyChange, by: Any, comment: str = "") -> ApprovalPolicy:
    """A second risk officer applies a pending weakening; the one who asked cannot."""
    comment = clean_text(comment, "comment")
    with refusal_recorded(actor=by, action="approval_policy.change_approve", subject=change,
                          attempt={"change": change.pk, "weakened": change.weakened}):
        _require_risk_officer(by, "Only risk officers approve policy changes.")
        with transaction.atomic():
            change = _locked_pending_change(change)
            if not isinstance(by, str) and by.pk == change.requested_by_id:
                raise PermissionDeniedError("You asked for this weakening; a second risk officer must approve it.",
                                            code="policy_change_same_officer")
            _, replaced = _policy_in_force(change.model, change.risk_tier)
            if (replaced.snapshot() if replaced else None) != change.based_on:
                raise Conflict("The policy changed since this weakening was asked; ask again.",
                               code="policy_change_stale", extra={"id": change.pk})
            change.status, change.decided_by, change.decided_at = ChangeStatus.APPLIED, by, timezone.now()
            change.decision_comment = comment
            change.save_recorded(action="approval_policy.change_approved", by=by, extra={"comment": comment})
            policy = _policy_write(by=by, model=change.model, risk_tier=change.risk_tier, fields=change.proposed,
                                   comment=comment, extra={"policy_change": change.pk,
                                                           "requested_by": actor_text(change.requested_by)})
    return policy


def approval_policy_change_reject(*, change: ApprovalPolicyChange, by: Any, comment: str = "") -> ApprovalPolicyChange:
    """A risk officer (the one who asked, withdrawing it, or another) turns a pending weakening down."""
    comment = clean_text(comment, "comment")
    _require_risk_officer(by, "Only risk officers decide policy changes.")
    with transaction.atomic():
        change = _locked_pending_change(change)
        change.status, change.decided_by, change.decided_at = ChangeStatus.REJECTED, by, timezone.now()
        change.decision_comment = comment
        change.save_recorded(action="approval_policy.change_rejected", by=by, extra={"comment": comment})
    return change


def effective_policy(request: ApprovalRequest) -> dict[str, Any]:
    """What a decision on `request` applies: the stricter of its snapshot and the policy that applies now."""
    model = request.version.model
    current = approval_policy_for(model)
    now = current.snapshot() | {"risk_tier": model.risk_tier} if current else {"risk_tier": model.risk_tier}
    return policies.stricter(request.policy_snapshot, now)


def _card_gaps(version: ModelVersion, snapshot: dict[str, Any]) -> list[dict[str, str]]:
    return [{"evidence": "model_card", "field": name, "message": f"The model card has no '{name}'."}
            for name in version.missing_card_fields(snapshot.get("required_card_fields") or [])]


Evidence = list[dict[str, Any]]


def _evidence_gaps(version: ModelVersion, snapshot: dict[str, Any], *,
                   submitter_id: int | None = None) -> tuple[Evidence, Evidence]:
    """(missing, found) evidence for the policy snapshot; a fairness gap carries the code to refuse with."""
    missing: Evidence = list(_card_gaps(version, snapshot))
    found: Evidence = []
    if policies.requires_fairness_audit(snapshot):
        result = evidence.run_evidence_check(
            evidence.FAIRNESS_AUDIT_PASSED, version=version, max_age_days=snapshot.get("fairness_audit_max_age_days"),
            policy=snapshot, submitter_id=submitter_id,
            independent_spec=policies.tier_rank(snapshot.get("risk_tier")) >= policies.TIER_RANK[RiskTier.HIGH])
        item = {"evidence": evidence.FAIRNESS_AUDIT_PASSED, "message": result.message,
                "references": result.references}
        if result.ok:
            found.append(item)
        else:
            missing.append(item | {"code": result.code})
    return missing, found


def _refuse_missing(missing: Evidence) -> None:
    codes = [item["code"] for item in missing if item.get("code")]
    code = next((c for c in codes if c != "approval_evidence_missing"), "approval_evidence_missing")
    metrics = sorted({metric for item in missing for metric in item.get("references", {}).get("metrics", [])})
    raise ApprovalEvidenceMissing("Required evidence is missing; the version cannot be approved.", code=code,
                                  extra={"missing": missing, **({"metrics": metrics} if metrics else {})})


def model_version_submit(*, version: ModelVersion, by: Any, comment: str = "") -> ApprovalRequest:
    """Ask for approval under the policy that applies now; the policy is frozen into the request."""
    require_visible(by, version.model)
    refuse_admin(by, capability="governance.add_approvalrequest", action="model_version.submit", subject=version)
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
        snapshot = policy.snapshot() | {"risk_tier": version.model.risk_tier}
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


REAPPROVAL_ACTION = "approval_request.reapproval_opened"


def model_version_reapproval_open(*, version: ModelVersion, by: Any, reason: dict[str, Any],
                                  excluded: Iterable[Any] = ()) -> tuple[ApprovalRequest | None, bool]:
    """Open a re-approval of a production version under the policy that applies now, or find the one
    already pending: (the request, whether it was opened now). One pending request per version,
    however many alerts ask (the version row lock and `approvalrequest_one_pending_per_version`).

    Runs in the caller's transaction (a monitoring alert and its re-approval commit together). No
    request (None) for a version not in production or a model without a policy. `by` is whoever
    raised the alert (a person running the monitor, or the scheduled job: then nobody submitted it);
    `excluded` adds the actors whose data raised it. Neither may decide it; the deciders, quorum,
    roles and evidence are those of any approval."""
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        pending = ApprovalRequest.objects.filter(version=version, status=RequestStatus.PENDING).first()
        if pending is not None:
            return pending, False
        if version.status != VersionStatus.DEPLOYED:
            return None, False
        policy = approval_policy_for(version.model)
        if policy is None:
            return None, False
        person = None if isinstance(by, str) else by
        excluded_labels = sorted({actor_label(by), *(actor_label(actor) for actor in excluded)})
        comment = clean_text(str(reason.get("comment") or ""), "comment")
        now = timezone.now()
        request = ApprovalRequest(version=version, kind=RequestKind.REAPPROVAL, submitted_by=person, submitted_at=now,
                                  comment=comment, status=RequestStatus.PENDING, policy=policy,
                                  policy_snapshot=policy.snapshot() | {"risk_tier": version.model.risk_tier},
                                  excluded_deciders=excluded_labels,
                                  expires_at=now + timedelta(hours=policy.expiry_hours))
        request.save_recorded(action=REAPPROVAL_ACTION, by=by, extra={"reason": reason})
    return request, True


def _locked_pending(request: ApprovalRequest) -> ApprovalRequest:
    # Not `of` the submitter: it is the nullable side of an outer join (a re-approval a job opened).
    locked = (lock_for_update(ApprovalRequest.objects, of=("self", "version", "version__model"))
              .select_related("version__model", "submitted_by").get(pk=request.pk))
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
    if request.kind == RequestKind.REAPPROVAL:
        # The version stays where it is (in production, or wherever it went meanwhile); what follows a
        # rejected re-approval (a rollback) is a deployment decision of its own. The outcome is recorded.
        ledger_append(actor=by, action=f"model_version.reapproval_{status}", subject=version,
                      payload={"comment": comment, "approval_request": request.pk, "status": version.status, **extra})
    else:
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


# Called inside the transaction that approves a version (integrations queue their work on commit:
# e.g. governance.integrations.mlflow sets an MLflow alias). Registered by the apps' ready().
APPROVED_HOOKS: list[Callable[[ModelVersion], None]] = []


def _may_decide(request: ApprovalRequest, by: Any) -> None:
    """Who may decide a pending request: not its submitter or the version's author, a decider of
    the model, once."""
    version = request.version
    require_visible(by, version.model)
    if by.pk == request.submitted_by_id:
        raise SeparationOfDuties("You submitted this request; someone else must decide it.",
                                 extra={"rule": "submitter_cannot_decide"})
    if by.pk == version.created_by_id:
        raise SeparationOfDuties("You registered this version; someone else must decide it.",
                                 extra={"rule": "author_cannot_decide"})
    if actor_label(by) in (request.excluded_deciders or []):
        raise SeparationOfDuties("Your monitor run or prediction data raised the alert that opened this re-approval; "
                                 "someone else must decide it.", extra={"rule": "alert_raiser_cannot_decide"})
    if not can_decide(by, version.model):
        raise ApprovalPermissionDenied(f"You may not decide approvals for '{version.model.name}'.")
    if request.decisions.filter(approver=by).exists():
        raise ApprovalAlreadyDecided("You already decided this request; one person counts once.",
                                     extra={"rule": "one_person_counts_once"})


def _decision_checked(decision: str, comment: str) -> str:
    if decision not in Decision.values:
        raise InvalidInput("The decision must be 'approve' or 'reject'.", code="invalid_decision",
                           extra={"allowed": list(Decision.values)})
    return reason_required(comment, action=f"approval_request.{decision}")


def approval_challenge_issue(*, request: ApprovalRequest, by: Any, decision: str, comment: str = "") -> SigningChallenge:
    """The statement `by` signs to decide `request` (with passkey or DSSE), with a single-use, expiring nonce.
    Not a ledger entry: a challenge changes nothing until a decision uses it, and that decision records it."""
    comment = _decision_checked(decision, comment)
    with transaction.atomic():
        request = _locked_pending(request)
        _may_decide(request, by)
        return approval_statement_issue(by=by, request=request, decision=decision, comment=comment,
                                        policy=effective_policy(request))


def _signature_checked(*, request: ApprovalRequest, by: Any, decision: str, comment: str, policy: dict[str, Any],
                       signature: dict[str, Any] | None) -> dict[str, Any]:
    """The signature material the decision keeps; refused when the policy wants a signature it lacks."""
    required = policy.get("signed_approval") or SignedApproval.NONE
    accepted = policies.signed_approval_accepts(required)
    if signature is None:
        if "unsigned" not in accepted:
            raise ApprovalSignatureRequired(
                "The policy requires a decision signed by you: ask for the approval statement, sign it with your "
                "passkey or your registered Ed25519 key, and send the signature with the decision.",
                extra={"signed_approval": required})
        return {}
    method = signature.get("method") if isinstance(signature, dict) else None
    if method in ("passkey", "dsse") and method not in accepted:
        raise ApprovalSignatureMethod(f"The policy accepts a decision signed with: {required}, not {method}.",
                                      extra={"signed_approval": required, "method": method})
    return decision_signature_verify(by=by, request=request, decision=decision, comment=comment, policy=policy,
                                     signature=signature)


def approval_decide(*, request: ApprovalRequest, by: Any, decision: str, comment: str = "",
                    signature: dict[str, Any] | None = None) -> ApprovalDecision:
    """Record one approver's decision; a rejection closes the request, the approval that completes
    the quorum and the required roles approves the request and the version.

    `signature` (see `decision_signature_verify`) signs the statement of `approval_challenge_issue`;
    the policy's `signed_approval` says whether one is required, and with which method."""
    comment = _decision_checked(decision, comment)
    with transaction.atomic():
        request = _locked_pending(request)
        version = request.version
        _may_decide(request, by)
        # The stricter of the request's snapshot and the policy that applies now: lowering a tier or
        # weakening a policy after submitting does not lower the bar of a pending request.
        snapshot = effective_policy(request)
        with refusal_recorded(actor=by, action=f"approval_request.{decision}", subject=request,
                              attempt={"signed": signature is not None}):
            signed = _signature_checked(request=request, by=by, decision=decision, comment=comment,
                                        policy=snapshot, signature=signature)
        found: list[dict[str, Any]] = []
        if decision == Decision.APPROVE:
            # Evidence is checked for every approval, so no one approves without it, and again
            # right before the final one (an audit can age out while the request is pending).
            missing, found = _evidence_gaps(version, snapshot, submitter_id=request.submitted_by_id)
            if missing:
                _refuse_missing(missing)
        row = ApprovalDecision(request=request, approver=by, decision=decision, comment=comment,
                               approver_roles=user_roles(by), decided_at=timezone.now(), signature=signed)
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
                   evidence=found, policy=snapshot)
            if request.kind == RequestKind.APPROVAL:
                # Every later monitoring window of the version is compared on the bins frozen now.
                reference_profile_freeze(version=request.version, by=by)
                for hook in APPROVED_HOOKS:
                    hook(request.version)
    return row


def approval_withdraw(*, request: ApprovalRequest, by: Any, comment: str = "") -> ApprovalRequest:
    """The submitter (or another writer of the model) takes a pending request back; the version is a draft again."""
    require_visible(by, request.version.model)
    refuse_admin(by, capability="governance.change_approvalrequest", action="approval_request.withdraw",
                 subject=request)
    comment = reason_required(comment, action="approval_request.withdraw")
    with transaction.atomic():
        request = _locked_pending(request)
        model = request.version.model
        require_visible(by, model)
        require(by.pk == request.submitted_by_id or can_write_model(by, model, "governance.change_approvalrequest"),
                 "You may not withdraw this request.")
        if request.kind == RequestKind.REAPPROVAL:
            raise ReapprovalNotWithdrawable("A re-approval opened by a monitoring alert is decided by the approvers; "
                                            "it cannot be withdrawn.", extra={"id": request.pk})
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
