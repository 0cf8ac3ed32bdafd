"""Teams, models, versions and model cards: the registry's writes, each one ledger entry named
where it is written."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from audit.ledger import lock_for_update
from core.errors import Conflict, InvalidInput
from governance import accounts
from governance.models import (
    MODEL_CARD_FIELDS,
    ModelVersion,
    RegisteredModel,
    RiskTier,
    Team,
    VersionStatus,
)
from governance.permissions import can_write_model, is_active_user
from governance.registry.services.access import permission_grant
from governance.registry.services.common import (
    TEAM_GROUP_PREFIX,
    TEAM_OBJECT_PERMISSIONS,
    InvalidTransition,
    clean_text,
    full_clean,
    insert_unique,
    may,
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
    """Register a model for a team; the team's group gets view and change permission on it."""
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
    require(can_write_model(by, model, "governance.change_registeredmodel"), "You may not change this model.")
    editable = {"description", "intended_purpose", "affected_groups", "contacts", "risk_tier"}
    unknown = set(changes) - editable
    if unknown:
        raise InvalidInput("These fields cannot be changed.", code="invalid_input", extra={"fields": sorted(unknown)})
    with transaction.atomic():
        model = lock_for_update(RegisteredModel.objects).get(pk=model.pk)
        for field, value in changes.items():
            if field in ("affected_groups", "contacts"):
                value = string_list(value, field)
            elif field != "risk_tier":
                value = clean_text(value, field)
            setattr(model, field, value)
        full_clean(model)
        model.save_recorded(action="model.updated", by=by, extra={"comment": clean_text(comment, "comment")})
    return model


def model_version_register(*, model: RegisteredModel, by: Any, label: str, artifact_uri: str,
                           manifest: Any, manifest_digest: str | None = None, framework: str = "",
                           training_metrics: Any = None, training_run: int | None = None, intended_use: str = "",
                           limitations: str = "", evaluation_data: str = "",
                           ethical_considerations: str = "") -> ModelVersion:
    """Register a draft version. The manifest digest is computed here; a supplied one must match."""
    require_visible(by, model)
    require(can_write_model(by, model, "governance.add_modelversion"),
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
        model=model, label=label, artifact_uri=clean_text(artifact_uri, "artifact_uri", max_chars=1000),
        manifest=manifest, manifest_digest=computed, framework=clean_text(framework, "framework", max_chars=100),
        training_metrics=training_metrics, training_run=training_run,
        intended_use=clean_text(intended_use, "intended_use"), limitations=clean_text(limitations, "limitations"),
        evaluation_data=clean_text(evaluation_data, "evaluation_data"),
        ethical_considerations=clean_text(ethical_considerations, "ethical_considerations"),
        status=VersionStatus.DRAFT, created_by=by,
    )
    full_clean(version)
    with transaction.atomic():
        if ModelVersion.objects.filter(model=model, label=label).exists():
            raise Conflict(f"Model '{model.name}' already has a version '{label}'.", code="model_version_label_taken",
                           extra={"model": model.name, "version": label})
        insert_unique(version, by=by, action="model_version.registered",
                conflict=Conflict(f"Model '{model.name}' already has a version '{label}'.",
                                  code="model_version_label_taken", extra={"model": model.name, "version": label}))
        # Every version gets a lineage node (linked to its training run when known), so that
        # deployments can be linked to it as well.
        lineage_record_model_version(run_id=version.training_run, subject=("governance.modelversion", str(version.pk)),
                                     digest=version.manifest_digest, label=f"{model.name}:{version.label}", actor=by)
    return version


def model_version_update_card(*, version: ModelVersion, by: Any, comment: str = "", **card: Any) -> ModelVersion:
    """Fill in model-card fields while the version is a draft."""
    require_visible(by, version.model)
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


def _status_change(*, version: ModelVersion, by: Any, target: str, action: str, comment: str) -> ModelVersion:
    require_visible(by, version.model)
    require(can_write_model(by, version.model, "governance.change_modelversion"), "You may not change this version.")
    comment = clean_text(comment, "comment")
    if not comment:
        raise InvalidInput("Say why.", code="reason_required")
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        if version.deployments.filter(is_active=True).exists():
            raise Conflict("The version is deployed; deploy another one first.", code="model_version_in_use")
        transition(version, target)
        version.save_recorded(action=action, by=by, extra={"comment": comment})
    return version


def model_version_deprecate(*, version: ModelVersion, by: Any, comment: str) -> ModelVersion:
    return _status_change(version=version, by=by, target=VersionStatus.DEPRECATED,
                          action="model_version.deprecated", comment=comment)


def model_version_retire(*, version: ModelVersion, by: Any, comment: str) -> ModelVersion:
    return _status_change(version=version, by=by, target=VersionStatus.RETIRED,
                          action="model_version.retired", comment=comment)
