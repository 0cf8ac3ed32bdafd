"""Every write of the decision domain. One transaction per service; the ledger gets one entry per
changed row, named by the semantic action (`model_version.approved`) and carrying the comment.

The capture itself is `audit.capture`: each governed row a service writes with
`row.save_recorded(action="model_version.approved", by=by, extra={...})` becomes one ledger entry
under that action, with the fields before and after; the action is named at the write.
Rules (separation of duties, quorum, evidence, production gate) live here and only here, so
the API and the admin, which both call these functions, enforce the same ones.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from audit.ledger import lock_for_update
from audit.refusals import refusal_recorded
from core.actor import acting_as
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from governance import accounts, evidence
from governance.models import (
    ALLOWED_TRANSITIONS,
    MODEL_CARD_FIELDS,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    Decision,
    Deployment,
    Environment,
    ModelVersion,
    RegisteredModel,
    RequestStatus,
    RiskTier,
    ServiceAccount,
    ServiceToken,
    Team,
    TokenScope,
    VersionStatus,
)
from governance.permissions import APPROVE_MODEL, can_decide, can_view_model, can_write_model, is_active_user
from governance.roles import APPROVER, ROLE_NAMES, permission_role
from governance.selectors import approval_policy_for, user_roles
from lineage import manifests
from lineage.services.model_versions import lineage_record_deployment, lineage_record_model_version

logger = logging.getLogger(__name__)
User = get_user_model()

TOKEN_PREFIX = "gov_"  # noqa: S105 (a format marker, not a secret)
TEAM_GROUP_PREFIX = "team:"
SERVICE_USERNAME_PREFIX = "svc-"
MIN_REASON_CHARS = 3
TEAM_OBJECT_PERMISSIONS = ("governance.view_registeredmodel", "governance.change_registeredmodel")


# --- Errors with stable codes ------------------------------------------------------------------

class SeparationOfDuties(Forbidden):
    code = "approval_separation_of_duties"


class ApprovalNotPending(Conflict):
    code = "approval_not_pending"


class ApprovalReasonRequired(InvalidInput):
    code = "approval_reason_required"


class ApprovalEvidenceMissing(Conflict):
    code = "approval_evidence_missing"


class ApprovalAlreadyDecided(Conflict):
    code = "approval_already_decided"


class ApprovalPermissionDenied(Forbidden):
    code = "approval_permission_denied"


class ApprovalPolicyMissing(Conflict):
    code = "approval_policy_missing"


class DeploymentNotApproved(Conflict):
    code = "deployment_not_approved"


class InvalidTransition(Conflict):
    code = "model_version_invalid_transition"


class PermissionDeniedError(Forbidden):
    code = "permission_denied"


# --- Helpers ------------------------------------------------------------------------------------

def _require(allowed: bool, message: str, *, code: str = "permission_denied") -> None:
    if not allowed:
        raise PermissionDeniedError(message, code=code)


def _insert(obj: Any, *, by: Any, action: str, conflict: ServiceError, **extra: Any) -> None:
    """Create a row whose uniqueness a concurrent writer may take first: that race is a 409, not a 500."""
    try:
        with transaction.atomic():
            obj.save_recorded(action=action, by=by, extra=extra)
    except IntegrityError:
        raise conflict


def _may(by: Any, permission: str) -> bool:
    """System tasks (`system:<name>`) act with full rights; people need the permission."""
    if isinstance(by, str):
        return by.startswith("system:")
    return is_active_user(by) and by.has_perm(permission)


def _require_visible(user: Any, model: RegisteredModel) -> None:
    # A model the user may not see is reported as absent, never as forbidden.
    if not can_view_model(user, model):
        raise NotFound(f"No model named '{model.name}'.", code="model_not_found", extra={"model": model.name})


def _clean_text(value: Any, field: str, *, max_chars: int = 20_000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a string.", code="invalid_input", extra={"field": field})
    if len(value) > max_chars:
        raise InvalidInput(f"'{field}' is longer than {max_chars} characters.", code="invalid_input",
                           extra={"field": field})
    return value.strip()


def _full_clean(instance: Any, *, exclude: Iterable[str] = ()) -> None:
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        fields = {name: [str(message) for message in messages] for name, messages in exc.message_dict.items()}
        raise InvalidInput("The input is not valid.", code="invalid_input", extra={"fields": fields})


def _transition(version: ModelVersion, target: str) -> str:
    """Check and apply a status change in memory; return the previous status."""
    previous = version.status
    if target not in ALLOWED_TRANSITIONS[previous]:
        raise InvalidTransition(
            f"Version {version} cannot go from {previous} to {target}.",
            extra={"from": previous, "to": target, "allowed": sorted(ALLOWED_TRANSITIONS[previous])})
    version.status = target
    return previous


# --- Teams --------------------------------------------------------------------------------------

def team_create(*, by: Any, name: str, display_name: str = "") -> Team:
    """A team and the group that holds its object permissions."""
    _require(_may(by, "governance.add_team"), "You may not create teams.")
    with transaction.atomic():
        if Team.objects.filter(name=name).exists():
            raise Conflict(f"A team named '{name}' exists.", code="team_name_taken", extra={"team": name})
        team = Team(name=name, display_name=_clean_text(display_name, "display_name", max_chars=200))
        _full_clean(team, exclude=["group"])
        group, _ = Group.objects.get_or_create(name=f"{TEAM_GROUP_PREFIX}{name}")
        team.group = group
        _insert(team, by=by, action="team.created",
                conflict=Conflict(f"A team named '{name}' exists.", code="team_name_taken", extra={"team": name}))
    return team


def team_member_add(*, team: Team, user: Any, by: Any) -> None:
    _require(_may(by, "governance.change_team"), "You may not change teams.")
    accounts.user_groups_add(user=user, groups=[team.group], by=by)


# --- Registry -----------------------------------------------------------------------------------

def _string_list(value: Any, field: str, *, max_items: int = 50) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > max_items or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"'{field}' must be a list of at most {max_items} strings.", code="invalid_input",
                           extra={"field": field})
    return [item.strip() for item in value if item.strip()]


def model_register(*, by: Any, name: str, team: Team, risk_tier: str, description: str = "",
                   intended_purpose: str = "", affected_groups: list[str] | None = None,
                   contacts: list[str] | None = None) -> RegisteredModel:
    """Register a model for a team; the team's group gets view and change permission on it."""
    allowed = is_active_user(by) and by.has_perm("governance.add_registeredmodel") and (
        by.is_superuser or by.has_perm("governance.manage_all_registeredmodels")
        or by.groups.filter(pk=team.group_id).exists())
    _require(allowed, f"You may not register models for team '{team.name}'.")
    if risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier",
                           extra={"allowed": list(RiskTier.values)})
    model = RegisteredModel(
        name=name, team=team, risk_tier=risk_tier, created_by=by,
        description=_clean_text(description, "description"),
        intended_purpose=_clean_text(intended_purpose, "intended_purpose"),
        affected_groups=_string_list(affected_groups, "affected_groups"),
        contacts=_string_list(contacts, "contacts"),
    )
    _full_clean(model)
    with transaction.atomic():
        if RegisteredModel.objects.filter(name=name).exists():
            raise Conflict(f"A model named '{name}' exists.", code="model_name_taken", extra={"model": name})
        _insert(model, by=by, action="model.registered",
                conflict=Conflict(f"A model named '{name}' exists.", code="model_name_taken", extra={"model": name}))
        for permission in TEAM_OBJECT_PERMISSIONS:
            permission_grant(permission=permission, to=team.group, obj=model, by=by)
    return model


def model_update(*, model: RegisteredModel, by: Any, comment: str = "", **changes: Any) -> RegisteredModel:
    """Change descriptive fields of a model (not its name or team)."""
    _require_visible(by, model)
    _require(can_write_model(by, model, "governance.change_registeredmodel"), "You may not change this model.")
    editable = {"description", "intended_purpose", "affected_groups", "contacts", "risk_tier"}
    unknown = set(changes) - editable
    if unknown:
        raise InvalidInput("These fields cannot be changed.", code="invalid_input", extra={"fields": sorted(unknown)})
    with transaction.atomic():
        model = lock_for_update(RegisteredModel.objects).get(pk=model.pk)
        for field, value in changes.items():
            if field in ("affected_groups", "contacts"):
                value = _string_list(value, field)
            elif field != "risk_tier":
                value = _clean_text(value, field)
            setattr(model, field, value)
        _full_clean(model)
        model.save_recorded(action="model.updated", by=by, extra={"comment": _clean_text(comment, "comment")})
    return model


def model_version_register(*, model: RegisteredModel, by: Any, label: str, artifact_uri: str,
                           manifest: Any, manifest_digest: str | None = None, framework: str = "",
                           training_metrics: Any = None, training_run: int | None = None, intended_use: str = "",
                           limitations: str = "", evaluation_data: str = "",
                           ethical_considerations: str = "") -> ModelVersion:
    """Register a draft version. The manifest digest is computed here; a supplied one must match."""
    _require_visible(by, model)
    _require(can_write_model(by, model, "governance.add_modelversion"),
             f"You may not register versions of '{model.name}'.")
    try:
        computed = manifests.manifest_digest(manifest)
    except manifests.ManifestError as exc:
        raise InvalidInput(str(exc), code="manifest_invalid")
    if manifest_digest not in (None, "") and manifest_digest != computed:
        raise InvalidInput("The supplied manifest digest differs from the SHA-256 of the JCS manifest.",
                           code="manifest_digest_mismatch", extra={"supplied": manifest_digest, "computed": computed})
    if training_run is not None and (isinstance(training_run, bool) or not isinstance(training_run, int)
                                     or training_run < 1):
        raise InvalidInput("'training_run' must be a lineage training-run id.", code="invalid_input",
                           extra={"field": "training_run"})
    if training_metrics is None:
        training_metrics = {}
    if not isinstance(training_metrics, dict):
        raise InvalidInput("'training_metrics' must be an object.", code="invalid_input",
                           extra={"field": "training_metrics"})
    version = ModelVersion(
        model=model, label=label, artifact_uri=_clean_text(artifact_uri, "artifact_uri", max_chars=1000),
        manifest=manifest, manifest_digest=computed, framework=_clean_text(framework, "framework", max_chars=100),
        training_metrics=training_metrics, training_run=training_run,
        intended_use=_clean_text(intended_use, "intended_use"), limitations=_clean_text(limitations, "limitations"),
        evaluation_data=_clean_text(evaluation_data, "evaluation_data"),
        ethical_considerations=_clean_text(ethical_considerations, "ethical_considerations"),
        status=VersionStatus.DRAFT, created_by=by,
    )
    _full_clean(version)
    with transaction.atomic():
        if ModelVersion.objects.filter(model=model, label=label).exists():
            raise Conflict(f"Model '{model.name}' already has a version '{label}'.", code="model_version_label_taken",
                           extra={"model": model.name, "version": label})
        _insert(version, by=by, action="model_version.registered",
                conflict=Conflict(f"Model '{model.name}' already has a version '{label}'.",
                                  code="model_version_label_taken", extra={"model": model.name, "version": label}))
        # Every version gets a lineage node (linked to its training run when known), so that
        # deployments can be linked to it as well.
        lineage_record_model_version(run_id=version.training_run, subject=("governance.modelversion", str(version.pk)),
                                     digest=version.manifest_digest, label=f"{model.name}:{version.label}", actor=by)
    return version


def model_version_update_card(*, version: ModelVersion, by: Any, comment: str = "", **card: Any) -> ModelVersion:
    """Fill in model-card fields while the version is a draft."""
    _require_visible(by, version.model)
    _require(can_write_model(by, version.model, "governance.change_modelversion"), "You may not change this version.")
    unknown = set(card) - set(MODEL_CARD_FIELDS) - {"framework"}
    if unknown:
        raise InvalidInput("Only model-card fields can be changed.", code="invalid_input",
                           extra={"fields": sorted(unknown)})
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        if version.status != VersionStatus.DRAFT:
            raise InvalidTransition("Only a draft's model card can change.", code="model_version_not_draft",
                                    extra={"status": version.status})
        for field, value in card.items():
            setattr(version, field, _clean_text(value, field))
        version.save_recorded(action="model_version.card_updated", by=by,
                              extra={"comment": _clean_text(comment, "comment")})
    return version


def _status_change(*, version: ModelVersion, by: Any, target: str, action: str, comment: str) -> ModelVersion:
    _require_visible(by, version.model)
    _require(can_write_model(by, version.model, "governance.change_modelversion"), "You may not change this version.")
    comment = _clean_text(comment, "comment")
    if not comment:
        raise InvalidInput("Say why.", code="reason_required")
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        if version.deployments.filter(is_active=True).exists():
            raise Conflict("The version is deployed; deploy another one first.", code="model_version_in_use")
        _transition(version, target)
        version.save_recorded(action=action, by=by, extra={"comment": comment})
    return version


def model_version_deprecate(*, version: ModelVersion, by: Any, comment: str) -> ModelVersion:
    return _status_change(version=version, by=by, target=VersionStatus.DEPRECATED,
                          action="model_version.deprecated", comment=comment)


def model_version_retire(*, version: ModelVersion, by: Any, comment: str) -> ModelVersion:
    return _status_change(version=version, by=by, target=VersionStatus.RETIRED,
                          action="model_version.retired", comment=comment)


# --- Approval policies --------------------------------------------------------------------------

def approval_policy_set(*, by: Any, model: RegisteredModel | None = None, risk_tier: str | None = None,
                        quorum: int, required_roles: list[str] | None = None,
                        fairness_audit_max_age_days: int | None = None,
                        required_card_fields: list[str] | None = None, expiry_hours: int = 72,
                        comment: str = "") -> ApprovalPolicy:
    """Create or replace the policy of one model, or the default of one risk tier."""
    _require(_may(by, "governance.change_approvalpolicy") and _may(by, "governance.add_approvalpolicy"),
             "You may not set approval policies.")
    if (model is None) == (risk_tier is None):
        raise InvalidInput("Give either a model or a risk tier.", code="invalid_input")
    if risk_tier is not None and risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier")
    roles = _string_list(required_roles, "required_roles")
    unknown_roles = sorted(set(roles) - set(ROLE_NAMES))
    if unknown_roles:
        raise InvalidInput("Unknown roles.", code="invalid_input", extra={"roles": unknown_roles})
    card_fields = _string_list(required_card_fields, "required_card_fields")
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
        _full_clean(policy)
        policy.save_recorded(action=action, by=by, extra={"comment": _clean_text(comment, "comment")})
    return policy


# --- Approvals ----------------------------------------------------------------------------------

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
    _require_visible(by, version.model)
    _require(can_write_model(by, version.model, "governance.add_approvalrequest"),
             f"You may not request approval for '{version.model.name}'.")
    comment = _clean_text(comment, "comment")
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
        _transition(version, VersionStatus.PENDING_REVIEW)
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
    _transition(version, version_status)
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
    comment = _clean_text(comment, "comment")
    if decision == Decision.REJECT and len(comment) < MIN_REASON_CHARS:
        raise ApprovalReasonRequired("A rejection needs a reason in the comment.")
    with transaction.atomic():
        request = _locked_pending(request)
        version = request.version
        _require_visible(by, version.model)
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
    comment = _clean_text(comment, "comment")
    with transaction.atomic():
        request = _locked_pending(request)
        model = request.version.model
        _require_visible(by, model)
        _require(by.pk == request.submitted_by_id or can_write_model(by, model, "governance.change_approvalrequest"),
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


# --- Environments and deployments ---------------------------------------------------------------

def environment_create(*, by: Any, name: str, is_production: bool, description: str = "") -> Environment:
    _require(_may(by, "governance.add_environment"), "You may not create environments.")
    environment = Environment(name=name, is_production=bool(is_production),
                              description=_clean_text(description, "description"))
    _full_clean(environment)
    with transaction.atomic():
        if Environment.objects.filter(name=name).exists():
            raise Conflict(f"An environment named '{name}' exists.", code="environment_name_taken")
        _insert(environment, by=by, action="environment.created",
                conflict=Conflict(f"An environment named '{name}' exists.", code="environment_name_taken"))
    return environment


DEPLOYABLE_ANYWHERE = {VersionStatus.DRAFT, VersionStatus.PENDING_REVIEW, VersionStatus.APPROVED,
                       VersionStatus.DEPLOYED, VersionStatus.DEPRECATED, VersionStatus.REJECTED}
DEPLOYABLE_TO_PRODUCTION = {VersionStatus.APPROVED, VersionStatus.DEPLOYED}


def _deploy(*, version: ModelVersion, environment: Environment, by: Any, comment: str,
            is_rollback: bool, action: str) -> Deployment:
    """Inside a transaction: replace the active deployment of the model in the environment."""
    if environment.is_production and version.status not in DEPLOYABLE_TO_PRODUCTION:
        raise DeploymentNotApproved(
            f"Only approved versions go to production; {version} is {version.status}.",
            extra={"version": version.label, "status": version.status, "environment": environment.name})
    if version.status not in DEPLOYABLE_ANYWHERE:
        raise DeploymentNotApproved(f"{version} is {version.status} and cannot be deployed.",
                                    code="deployment_version_unusable", extra={"status": version.status})
    current = (lock_for_update(Deployment.objects)
               .filter(model=version.model, environment=environment, is_active=True).first())
    extra: dict[str, Any] = {"comment": comment}
    if current is not None:
        extra["replaced_deployment"] = current.pk
        extra["replaced_version"] = current.version.label
        current.is_active = False
        current.save_recorded(action="deployment.replaced", by=by, extra={"comment": comment})
    deployment = Deployment(model=version.model, version=version, environment=environment, deployed_by=by,
                            deployed_at=timezone.now(), replaced=current, is_rollback=is_rollback, is_active=True,
                            comment=comment)
    _insert(deployment, by=by, action=action, **extra,
            conflict=Conflict("Another deployment of this model to this environment happened at the same time; "
                              "retry.", code="deployment_concurrent"))
    if environment.is_production:
        if version.status == VersionStatus.APPROVED:
            _transition(version, VersionStatus.DEPLOYED)
            version.save_recorded(action="model_version.deployed", by=by,
                                  extra={"deployment": deployment.pk, "environment": environment.name})
        if current is not None and current.version_id != version.pk:
            previous = lock_for_update(ModelVersion.objects).get(pk=current.version_id)
            still_live = previous.deployments.filter(is_active=True, environment__is_production=True).exists()
            if previous.status == VersionStatus.DEPLOYED and not still_live:
                _transition(previous, VersionStatus.APPROVED)
                previous.save_recorded(action="model_version.undeployed", by=by,
                                       extra={"deployment": deployment.pk, "environment": environment.name})
    lineage_record_deployment(model_version_subject=("governance.modelversion", str(version.pk)),
                              deployment_subject=("governance.deployment", str(deployment.pk)),
                              label=f"{version.model.name}:{version.label}@{environment.name}", actor=by)
    return deployment


def deployment_record(*, version: ModelVersion, environment: Environment, by: Any, comment: str = "") -> Deployment:
    """Deploy a version; records the deployment it replaced. Production takes approved versions only."""
    _require_visible(by, version.model)
    _require(can_write_model(by, version.model, "governance.add_deployment"),
             f"You may not deploy '{version.model.name}'.")
    comment = _clean_text(comment, "comment")
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        return _deploy(version=version, environment=environment, by=by, comment=comment, is_rollback=False,
                       action="deployment.recorded")


def deployment_rollback(*, deployment: Deployment, by: Any, comment: str = "") -> Deployment:
    """Redeploy the version that ran before this active deployment (the last one still deployable)."""
    _require_visible(by, deployment.model)
    _require(can_write_model(by, deployment.model, "governance.change_deployment"),
             f"You may not roll back '{deployment.model.name}'.")
    comment = _clean_text(comment, "comment")
    with transaction.atomic():
        deployment = lock_for_update(Deployment.objects).select_related("environment", "model").get(
            pk=deployment.pk)
        if not deployment.is_active:
            raise Conflict("Only the active deployment can be rolled back.", code="deployment_not_active",
                           extra={"id": deployment.pk})
        allowed = DEPLOYABLE_TO_PRODUCTION if deployment.environment.is_production else DEPLOYABLE_ANYWHERE
        target: ModelVersion | None = None
        earlier = deployment.replaced
        while earlier is not None:
            candidate = lock_for_update(ModelVersion.objects).select_related("model").get(pk=earlier.version_id)
            if candidate.pk != deployment.version_id and candidate.status in allowed:
                target = candidate
                break
            earlier = earlier.replaced
        if target is None:
            raise Conflict("No earlier deployable version to roll back to.", code="deployment_no_previous",
                           extra={"id": deployment.pk})
        return _deploy(version=target, environment=deployment.environment, by=by,
                       comment=comment or f"Rollback of deployment #{deployment.pk}", is_rollback=True,
                       action="deployment.rolled_back")


# --- Permissions (recorded in the ledger by governance.signals) ----------------------------------

def _scope_check(*, by: Any, to: Any, grant_request: Any) -> None:
    """An approver scope is the approver role: granted to a person only through an approved request,
    never to oneself, never to an admin (accounts.privileges_check); groups get scopes only from code."""
    with refusal_recorded(actor=by, action="permission.granted",
                          subject=("auth.group" if isinstance(to, Group) else "auth.user", str(to.pk)),
                          attempt={"to": _principal(to), "role": APPROVER}):
        if isinstance(to, Group):
            if not accounts.is_system_actor(by):
                raise Forbidden("Approver scopes go to people, through a grant request.",
                                code="privilege_request_required", extra={"group": to.name})
            return
        accounts.privileges_check(by=by, user=to, adding={APPROVER}, grant_request=grant_request)


def permission_grant(*, permission: str, to: Any, obj: Any, by: Any, grant_request: Any = None) -> None:
    """Grant an object permission (guardian) to a user or group; the signal handler records it."""
    if permission_role(permission) is not None:
        _scope_check(by=by, to=to, grant_request=grant_request)
    with transaction.atomic(), acting_as(by):
        assign_perm(permission, to, obj)


def permission_revoke(*, permission: str, frm: Any, obj: Any, by: Any) -> None:
    with transaction.atomic(), acting_as(by):
        remove_perm(permission, frm, obj)


def approver_scope_grant(*, by: Any, to: Any, model: RegisteredModel | None = None,
                         risk_tier: str | None = None, grant_request: Any = None) -> None:
    """Scope an approver to one model, or to a whole risk tier: for a person, the execution of an
    approved grant request (`governance.grants`); system actors (seed_demo, setup) grant directly."""
    _require(_may(by, "auth.change_group"), "You may not grant approver scopes.")
    if (model is None) == (risk_tier is None):
        raise InvalidInput("Give either a model or a risk tier.", code="invalid_input")
    if model is not None:
        permission_grant(permission=APPROVE_MODEL, to=to, obj=model, by=by, grant_request=grant_request)
        return
    if risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier")
    _scope_check(by=by, to=to, grant_request=grant_request)
    permission = Permission.objects.get(content_type__app_label="governance", codename=f"approve_tier_{risk_tier}")
    with transaction.atomic(), acting_as(by):
        if isinstance(to, Group):
            to.permissions.add(permission)
        else:
            to.user_permissions.add(permission)


def role_grant(*, user: Any, role: str, by: Any, grant_request: Any = None) -> None:
    """Put a user in a role group; recorded as `role.granted` by `accounts.user_groups_add`, which
    refuses a decision role or admin granted by a person without an approved `grant_request`."""
    if role not in ROLE_NAMES:
        raise InvalidInput(f"Unknown role '{role}'.", code="invalid_role", extra={"allowed": list(ROLE_NAMES)})
    _require(_may(by, "auth.change_user"), "You may not grant roles.")
    accounts.user_groups_add(user=user, groups=[Group.objects.get(name=role)], by=by, grant_request=grant_request)


def _principal(who: Any) -> str:
    return f"group:{who.name}" if isinstance(who, Group) else f"user:{who.get_username()}"


# --- Service accounts and tokens ----------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> tuple[str, str]:
    """(prefix, whole token). The prefix finds the row; only the hash of the whole token is stored."""
    prefix = secrets.token_hex(6)  # 48 bits: collisions between live tokens are negligible
    return prefix, f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def service_account_create(*, by: Any, name: str, role: str, models: list[RegisteredModel] | None = None,
                           description: str = "", scope: str = TokenScope.WRITE,
                           expires_at: datetime | None = None) -> tuple[ServiceAccount, str]:
    """A pipeline user `svc-<name>` in `role`, with view/change on `models`, and a first token (returned once)."""
    _require(_may(by, "auth.add_user"), "You may not create service accounts.")
    if role not in ROLE_NAMES:
        raise InvalidInput(f"Unknown role '{role}'.", code="invalid_role", extra={"allowed": list(ROLE_NAMES)})
    account = ServiceAccount(name=name, description=_clean_text(description, "description"),
                             created_by=_actor_text(by))
    _full_clean(account, exclude=["user"])
    with transaction.atomic():
        username = f"{SERVICE_USERNAME_PREFIX}{name}"
        if ServiceAccount.objects.filter(name=name).exists() or User.objects.filter(username=username).exists():
            raise Conflict(f"A service account named '{name}' exists.", code="service_account_name_taken")
        taken = Conflict(f"A service account named '{name}' exists.", code="service_account_name_taken")
        try:
            with transaction.atomic():
                user = accounts.user_create(by=by, username=username, password=None, is_active=True, is_staff=False)
        except IntegrityError:
            raise taken
        account.user = user
        _insert(account, by=by, action="service_account.created", conflict=taken, role=role,
                models=[model.name for model in models or []])
        accounts.user_groups_add(user=user, groups=[Group.objects.get(name=role)], by=by)
        for model in models or []:
            for permission in TEAM_OBJECT_PERMISSIONS:
                permission_grant(permission=permission, to=user, obj=model, by=by)
        _, token = service_token_create(account=account, by=by, scope=scope, models=models, expires_at=expires_at)
    return account, token


def service_token_create(*, account: ServiceAccount, by: Any, scope: str = TokenScope.READ,
                         models: list[RegisteredModel] | None = None,
                         expires_at: datetime | None = None) -> tuple[ServiceToken, str]:
    """A new token for the account; the returned secret is shown once and never stored."""
    _require(_may(by, "auth.add_user"), "You may not create tokens.")
    if scope not in TokenScope.values:
        raise InvalidInput(f"Unknown token scope '{scope}'.", code="invalid_token_scope",
                           extra={"allowed": list(TokenScope.values)})
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", code="invalid_input")
    prefix, token = _new_token()
    with transaction.atomic():
        row = ServiceToken(account=account, prefix=prefix, token_hash=hash_token(token), scope=scope,
                           expires_at=expires_at)
        row.save_recorded(action="service_token.created", by=by, extra={"account": account.name})
        if models:
            row.m2m_set_recorded("restricted_to", models, action="service_token.restricted", by=by,
                                 extra={"account": account.name})
    return row, token


def service_token_revoke(*, token: ServiceToken, by: Any, comment: str = "") -> ServiceToken:
    _require(_may(by, "auth.change_user"), "You may not revoke tokens.")
    with transaction.atomic():
        token = lock_for_update(ServiceToken.objects).get(pk=token.pk)
        if token.revoked_at is not None:
            raise Conflict("The token is already revoked.", code="service_token_already_revoked")
        token.revoked_at = timezone.now()
        token.save_recorded(action="service_token.revoked", by=by, extra={"comment": _clean_text(comment, "comment")})
    return token


def idempotency_records_purge(*, now: datetime | None = None) -> int:
    """Delete stored POST responses past their retention; a retry after that is a new request."""
    from django.conf import settings

    from governance.models import IdempotencyRecord

    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _actor_text(actor: Any) -> str:
    return actor if isinstance(actor, str) else f"user:{actor.get_username()}"

