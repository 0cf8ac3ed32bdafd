"""Teams, models, versions and model cards: the registry's writes, each one ledger entry named
where it is written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from audit.ledger import lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict, InvalidInput
from governance import accounts, policies
from governance.models import (
    MODEL_CARD_FIELDS,
    ApprovalRequest,
    ChangeStatus,
    ModelVersion,
    RegisteredModel,
    RequestStatus,
    RiskTier,
    RiskTierChange,
    Team,
    VersionStatus,
)
from governance.permissions import (
    can_decide,
    can_write_model,
    is_active_user,
    is_risk_officer,
    require_token_allows_team,
)
from governance.registry.services.access import permission_grant
from governance.registry.services.common import (
    TEAM_GROUP_PREFIX,
    TEAM_OBJECT_PERMISSIONS,
    InvalidTransition,
    PermissionDeniedError,
    actor_text,
    clean_text,
    full_clean,
    insert_unique,
    may,
    reason_required,
    refuse_admin,
    require,
    require_visible,
    string_list,
    transition,
)
from lineage import manifests
from lineage.services.model_versions import lineage_record_model_version


def team_create(*, by: Any, name: str, display_name: str = "") -> Team:
    """A team and the group that holds its object permissions."""
    require(may(by, "governance.add_team"), "You may not create teams.")
    with transaction.atomic():
        if Team.objects.filter(name=name).exists():
            raise Conflict(f"A team named '{name}' exists.", code="team_name_taken", extra={"team": name})
        team = Team(name=name, display_name=clean_text(display_name, "display_name", max_chars=200))
        full_clean(team, exclude=["group"])
        group, _ = Group.objects.get_or_create(name=f"{TEAM_GROUP_PREFIX}{name}")
        team.group = group
        insert_unique(team, by=by, action="team.created",
                conflict=Conflict(f"A team named '{name}' exists.", code="team_name_taken", extra={"team": name}))
    return team


def team_member_add(*, team: Team, user: Any, by: Any) -> None:
    require(may(by, "governance.change_team"), "You may not change teams.")
    accounts.user_groups_add(user=user, groups=[team.group], by=by)


def model_register(*, by: Any, name: str, team: Team, risk_tier: str, description: str = "",
                   intended_purpose: str = "", affected_groups: list[str] | None = None,
                   contacts: list[str] | None = None) -> RegisteredModel:
    """Register a model for a team; the team's group gets view and change permission on it.

    A service token restricted to some models registers only for the teams of those models.
    """
    refuse_admin(by, capability="governance.add_registeredmodel", action="model.register", subject=team,
                 attempt={"name": name})
    require_token_allows_team(by, team)
    allowed = is_active_user(by) and by.has_perm("governance.add_registeredmodel") and (
        by.is_superuser or by.has_perm("governance.manage_all_registeredmodels")
        or by.groups.filter(pk=team.group_id).exists())
    require(allowed, f"You may not register models for team '{team.name}'.")
    if risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier",
                           extra={"allowed": list(RiskTier.values)})
    model = RegisteredModel(
        name=name, team=team, risk_tier=risk_tier, created_by=by,
        description=clean_text(description, "description"),
        intended_purpose=clean_text(intended_purpose, "intended_purpose"),
        affected_groups=string_list(affected_groups, "affected_groups"),
        contacts=string_list(contacts, "contacts"),
    )
    full_clean(model)
    with transaction.atomic():
        if RegisteredModel.objects.filter(name=name).exists():
            raise Conflict(f"A model named '{name}' exists.", code="model_name_taken", extra={"model": name})
        insert_unique(model, by=by, action="model.registered",
                conflict=Conflict(f"A model named '{name}' exists.", code="model_name_taken", extra={"model": name}))
        for permission in TEAM_OBJECT_PERMISSIONS:
            permission_grant(permission=permission, to=team.group, obj=model, by=by)
    return model


def model_update(*, model: RegisteredModel, by: Any, comment: str = "", **changes: Any) -> RegisteredModel:
    """Change descriptive fields of a model (not its name or team)."""
    require_visible(by, model)
    refuse_admin(by, capability="governance.change_registeredmodel", action="model.update", subject=model)
    require(can_write_model(by, model, "governance.change_registeredmodel"), "You may not change this model.")
    editable = {"description", "intended_purpose", "affected_groups", "contacts", "risk_tier"}
    unknown = set(changes) - editable
    if unknown:
        raise InvalidInput("These fields cannot be changed.", code="invalid_input", extra={"fields": sorted(unknown)})
    with refusal_recorded(actor=by, action="model.update", subject=model,
                          attempt={"risk_tier": changes["risk_tier"]} if "risk_tier" in changes else {}):
        with transaction.atomic():
            model = lock_for_update(RegisteredModel.objects).get(pk=model.pk)
            if "risk_tier" in changes and policies.tier_rank(changes["risk_tier"]) < policies.tier_rank(model.risk_tier):
                # Raising a tier is a writer's call; lowering it goes through risk_tier_lower_request/confirm.
                raise PermissionDeniedError(
                    f"Lowering '{model.name}' from {model.risk_tier} takes a risk officer's request and a second "
                    "person's confirmation.", code="risk_tier_lowering_two_person",
                    extra={"from": model.risk_tier, "to": changes["risk_tier"]})
            for field, value in changes.items():
                if field in ("affected_groups", "contacts"):
                    value = string_list(value, field)
                elif field != "risk_tier":
                    value = clean_text(value, field)
                setattr(model, field, value)
            full_clean(model)
            model.save_recorded(action="model.updated", by=by, extra={"comment": clean_text(comment, "comment")})
    return model


def _no_pending_request(model: RegisteredModel) -> None:
    pending = list(ApprovalRequest.objects.filter(version__model=model, status=RequestStatus.PENDING)
                   .values_list("pk", flat=True))
    if pending:
        raise Conflict(f"'{model.name}' has a pending approval request; its tier cannot be lowered now.",
                       code="risk_tier_approval_pending", extra={"approval_requests": pending})


def risk_tier_lower_request(*, model: RegisteredModel, by: Any, risk_tier: str, reason: str) -> RiskTierChange:
    """A risk officer asks to lower a model's tier; a second person confirms (`risk_tier_lower_confirm`)."""
    require_visible(by, model)
    if risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier")
    reason = reason_required(reason, action="risk_tier_change.request")
    with refusal_recorded(actor=by, action="risk_tier_change.request", subject=model,
                          attempt={"from": model.risk_tier, "to": risk_tier, "reason": reason}):
        with transaction.atomic():
            model = lock_for_update(RegisteredModel.objects).get(pk=model.pk)
            if policies.tier_rank(risk_tier) >= policies.tier_rank(model.risk_tier):
                raise InvalidInput(f"'{risk_tier}' is not lower than {model.risk_tier}; raise a tier with an update.",
                                   code="risk_tier_not_lower")
            if not is_risk_officer(by):
                raise PermissionDeniedError("Only a risk officer asks to lower a risk tier.",
                                            code="risk_tier_lowering_two_person")
            _no_pending_request(model)
            change = RiskTierChange(model=model, from_tier=model.risk_tier, to_tier=risk_tier, reason=reason,
                                    requested_by=by, requested_at=timezone.now())
            insert_unique(change, by=by, action="risk_tier_change.requested", reason=reason,
                          conflict=Conflict("A lowering of this model's tier is pending already.",
                                            code="risk_tier_change_not_pending", extra={"model": model.name}))
    return change


def risk_tier_lower_confirm(*, change: RiskTierChange, by: Any, comment: str = "") -> RiskTierChange:
    """A second person (another risk officer, or an approver of the model) applies a requested lowering."""
    comment = clean_text(comment, "comment")
    require_visible(by, change.model)
    with refusal_recorded(actor=by, action="risk_tier_change.confirm", subject=change,
                          attempt={"change": change.pk, "to": change.to_tier}):
        with transaction.atomic():
            model = lock_for_update(RegisteredModel.objects).get(pk=change.model_id)
            change = lock_for_update(RiskTierChange.objects).get(pk=change.pk)
            if change.status != ChangeStatus.PENDING or model.risk_tier != change.from_tier:
                raise Conflict(f"Tier change #{change.pk} is {change.status}, or the tier changed since.",
                               code="risk_tier_change_not_pending", extra={"id": change.pk, "status": change.status})
            if by.pk == change.requested_by_id:
                raise PermissionDeniedError("You asked for this lowering; a second person must confirm it.",
                                            code="risk_tier_change_same_person")
            if not (is_risk_officer(by) or can_decide(by, model)):
                raise PermissionDeniedError("Only a risk officer or an approver of the model confirms a lowering.",
                                            code="risk_tier_lowering_two_person")
            if model.team.group.user_set.filter(pk=by.pk).exists():
                raise PermissionDeniedError("Members of the model's team do not confirm the lowering of its tier.",
                                            code="risk_tier_lowering_two_person")
            _no_pending_request(model)
            change.status, change.decided_by, change.decided_at = ChangeStatus.APPLIED, by, timezone.now()
            change.decision_comment = comment
            change.save_recorded(action="risk_tier_change.confirmed", by=by, extra={"comment": comment})
            model.risk_tier = change.to_tier
            model.save_recorded(action="model.risk_tier_lowered", by=by, extra={
                "from": change.from_tier, "to": change.to_tier, "risk_tier_change": change.pk,
                "requested_by": actor_text(change.requested_by), "reason": change.reason})
    return change


@dataclass(frozen=True)
class NewVersion:
    """One version to register: the fields of `model_version_register` after `model` and `by`."""

    label: str
    artifact_uri: str
    manifest: Any
    manifest_digest: str | None = None
    framework: str = ""
    training_metrics: Any = None
    training_run: int | None = None
    intended_use: str = ""
    limitations: str = ""
    evaluation_data: str = ""
    ethical_considerations: str = ""


def model_version_register(*, model: RegisteredModel, by: Any, label: str, artifact_uri: str,
                           manifest: Any, manifest_digest: str | None = None, framework: str = "",
                           training_metrics: Any = None, training_run: int | None = None, intended_use: str = "",
                           limitations: str = "", evaluation_data: str = "",
                           ethical_considerations: str = "") -> ModelVersion:
    """Register a draft version. The manifest digest is computed here; a supplied one must match."""
    return model_versions_register(model=model, by=by, versions=[NewVersion(
        label=label, artifact_uri=artifact_uri, manifest=manifest, manifest_digest=manifest_digest,
        framework=framework, training_metrics=training_metrics, training_run=training_run,
        intended_use=intended_use, limitations=limitations, evaluation_data=evaluation_data,
        ethical_considerations=ethical_considerations)])[0]


def model_versions_register(*, model: RegisteredModel, by: Any, versions: Sequence[NewVersion]) -> list[ModelVersion]:
    """Register draft versions of one model in one transaction, all or none (an import's batch).

    The rules and the ledger entries are those of `model_version_register`, which is this with one
    version: the permission checks are made once for the model, each version gets its
    `model_version.registered` entry and its lineage node, attestation and entry, in order.
    """
    labels = [item.label for item in versions]
    require_visible(by, model)
    refuse_admin(by, capability="governance.add_modelversion", action="model_version.register", subject=model,
                 attempt={"label": labels[0]} if len(labels) == 1 else {"labels": labels})
    require(can_write_model(by, model, "governance.add_modelversion"),
             f"You may not register versions of '{model.name}'.")
    built = [_version_build(model=model, by=by, item=item) for item in versions]
    with transaction.atomic():
        taken = set(ModelVersion.objects.filter(model=model, label__in=labels).values_list("label", flat=True))
        seen: set[str] = set()
        for version in built:
            conflict = Conflict(f"Model '{model.name}' already has a version '{version.label}'.",
                                code="model_version_label_taken", extra={"model": model.name, "version": version.label})
            if version.label in taken or version.label in seen:
                raise conflict
            seen.add(version.label)
            insert_unique(version, by=by, action="model_version.registered", conflict=conflict)
            # Every version gets a lineage node (linked to its training run when known), so that
            # deployments can be linked to it as well.
            lineage_record_model_version(run_id=version.training_run,
                                         subject=("governance.modelversion", str(version.pk)),
                                         digest=version.manifest_digest, label=f"{model.name}:{version.label}",
                                         actor=by)
    return built


def _version_build(*, model: RegisteredModel, by: Any, item: NewVersion) -> ModelVersion:
    """The unsaved draft for `item`, validated (manifest digest, training run, metrics, fields)."""
    try:
        computed = manifests.manifest_digest(item.manifest)
    except manifests.ManifestError as exc:
        raise InvalidInput(str(exc), code="manifest_invalid")
    if item.manifest_digest not in (None, "") and item.manifest_digest != computed:
        raise InvalidInput("The supplied manifest digest differs from the SHA-256 of the JCS manifest.",
                           code="manifest_digest_mismatch",
                           extra={"supplied": item.manifest_digest, "computed": computed})
    training_run = item.training_run
    if training_run is not None and (isinstance(training_run, bool) or not isinstance(training_run, int)
                                     or training_run < 1):
        raise InvalidInput("'training_run' must be a lineage training-run id.", code="invalid_input",
                           extra={"field": "training_run"})
    training_metrics = {} if item.training_metrics is None else item.training_metrics
    if not isinstance(training_metrics, dict):
        raise InvalidInput("'training_metrics' must be an object.", code="invalid_input",
                           extra={"field": "training_metrics"})
    version = ModelVersion(
        model=model, label=item.label, artifact_uri=clean_text(item.artifact_uri, "artifact_uri", max_chars=1000),
        manifest=item.manifest, manifest_digest=computed,
        framework=clean_text(item.framework, "framework", max_chars=100),
        training_metrics=training_metrics, training_run=training_run,
        intended_use=clean_text(item.intended_use, "intended_use"),
        limitations=clean_text(item.limitations, "limitations"),
        evaluation_data=clean_text(item.evaluation_data, "evaluation_data"),
        ethical_considerations=clean_text(item.ethical_considerations, "ethical_considerations"),
        status=VersionStatus.DRAFT, created_by=by,
    )
    # The model and the author are the objects the checks were made on: no query to see that they exist.
    full_clean(version, exclude=["model", "created_by"])
    return version


def model_version_update_card(*, version: ModelVersion, by: Any, comment: str = "", **card: Any) -> ModelVersion:
    """Fill in model-card fields while the version is a draft."""
    require_visible(by, version.model)
    refuse_admin(by, capability="governance.change_modelversion", action="model_version.update_card", subject=version)
    require(can_write_model(by, version.model, "governance.change_modelversion"), "You may not change this version.")
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
            setattr(version, field, clean_text(value, field))
        version.save_recorded(action="model_version.card_updated", by=by,
                              extra={"comment": clean_text(comment, "comment")})
    return version


def _status_change(*, version: ModelVersion, by: Any, target: str, action: str, verb: str,
                   comment: str) -> ModelVersion:
    require_visible(by, version.model)
    refuse_admin(by, capability="governance.change_modelversion", action=verb, subject=version)
    require(can_write_model(by, version.model, "governance.change_modelversion"), "You may not change this version.")
    comment = reason_required(comment, action=verb)
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        if version.deployments.filter(is_active=True).exists():
            raise Conflict("The version is deployed; deploy another one first.", code="model_version_in_use")
        transition(version, target)
        version.save_recorded(action=action, by=by, extra={"comment": comment})
    return version


def model_version_deprecate(*, version: ModelVersion, by: Any, comment: str) -> ModelVersion:
    return _status_change(version=version, by=by, target=VersionStatus.DEPRECATED,
                          action="model_version.deprecated",
                          verb="model_version.deprecate", comment=comment)


def model_version_retire(*, version: ModelVersion, by: Any, comment: str) -> ModelVersion:
    return _status_change(version=version, by=by, target=VersionStatus.RETIRED,
                          action="model_version.retired",
                          verb="model_version.retire", comment=comment)
