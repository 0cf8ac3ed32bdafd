"""Environments and deployments: record, replace, roll back and end; production takes approved
versions only."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.ledger import lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict
from governance.models import (
    Deployment,
    Environment,
    ModelVersion,
    VersionStatus,
)
from governance.permissions import can_write_model
from governance.registry.services.common import (
    DeploymentNotApproved,
    clean_text,
    full_clean,
    insert_unique,
    may,
    reason_required,
    refuse_admin,
    require,
    require_visible,
    transition,
)
from lineage.services.model_versions import lineage_record_deployment


def environment_create(*, by: Any, name: str, is_production: bool, description: str = "") -> Environment:
    require(may(by, "governance.add_environment"), "You may not create environments.")
    environment = Environment(name=name, is_production=bool(is_production),
                              description=clean_text(description, "description"))
    full_clean(environment)
    with transaction.atomic():
        if Environment.objects.filter(name=name).exists():
            raise Conflict(f"An environment named '{name}' exists.", code="environment_name_taken")
        insert_unique(environment, by=by, action="environment.created",
                conflict=Conflict(f"An environment named '{name}' exists.", code="environment_name_taken"))
    return environment


# A rejected version is deployable nowhere; a retired one neither.
DEPLOYABLE_ANYWHERE = {VersionStatus.DRAFT, VersionStatus.PENDING_REVIEW, VersionStatus.APPROVED,
                       VersionStatus.DEPLOYED, VersionStatus.DEPRECATED}


DEPLOYABLE_TO_PRODUCTION = {VersionStatus.APPROVED, VersionStatus.DEPLOYED}


# A rollback never brings back a version pulled for cause (deprecated, retired) or rejected.
NEVER_ROLLED_BACK_TO = {VersionStatus.DEPRECATED, VersionStatus.RETIRED, VersionStatus.REJECTED}


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
    insert_unique(deployment, by=by, action=action, **extra,
            conflict=Conflict("Another deployment of this model to this environment happened at the same time; "
                              "retry.", code="deployment_concurrent"))
    if environment.is_production:
        if version.status == VersionStatus.APPROVED:
            transition(version, VersionStatus.DEPLOYED)
            version.save_recorded(action="model_version.deployed", by=by,
                                  extra={"deployment": deployment.pk, "environment": environment.name})
        if current is not None and current.version_id != version.pk:
            _release_version(version_id=current.version_id, by=by, deployment=deployment, environment=environment)
    lineage_record_deployment(model_version_subject=("governance.modelversion", str(version.pk)),
                              deployment_subject=("governance.deployment", str(deployment.pk)),
                              label=f"{version.model.name}:{version.label}@{environment.name}", actor=by)
    return deployment


def _release_version(*, version_id: int, by: Any, deployment: Deployment, environment: Environment) -> None:
    """Inside a transaction: a deployed version that runs in no production environment any more is
    approved again (`model_version.undeployed`, naming the deployment that took it out)."""
    version = lock_for_update(ModelVersion.objects).get(pk=version_id)
    still_live = version.deployments.filter(is_active=True, environment__is_production=True).exists()
    if version.status == VersionStatus.DEPLOYED and not still_live:
        transition(version, VersionStatus.APPROVED)
        version.save_recorded(action="model_version.undeployed", by=by,
                              extra={"deployment": deployment.pk, "environment": environment.name})


def deployment_record(*, version: ModelVersion, environment: Environment, by: Any, comment: str = "") -> Deployment:
    """Deploy a version; records the deployment it replaced. Production takes approved versions only."""
    require_visible(by, version.model)
    refuse_admin(by, capability="governance.add_deployment", action="deployment.record", subject=version,
                 attempt={"environment": environment.name})
    require(can_write_model(by, version.model, "governance.add_deployment"),
             f"You may not deploy '{version.model.name}'.")
    comment = clean_text(comment, "comment")
    if environment.is_production:
        # A monitor's policy may block promotion while its alerts are open (kept as a refusal).
        from governance.monitoring.services.monitors import require_promotion_allowed

        with refusal_recorded(actor=by, action="deployment.record", subject=version,
                              attempt={"environment": environment.name}):
            require_promotion_allowed(version)
    with transaction.atomic():
        version = lock_for_update(ModelVersion.objects).select_related("model").get(pk=version.pk)
        return _deploy(version=version, environment=environment, by=by, comment=comment, is_rollback=False,
                       action="deployment.recorded")


def deployment_rollback(*, deployment: Deployment, by: Any, comment: str = "") -> Deployment:
    """Redeploy the latest version that ran before this active deployment and may run again: never
    one pulled for cause or rejected (those are skipped; with nothing left, a 409). Needs a reason."""
    require_visible(by, deployment.model)
    refuse_admin(by, capability="governance.change_deployment", action="deployment.rollback", subject=deployment)
    require(can_write_model(by, deployment.model, "governance.change_deployment"),
             f"You may not roll back '{deployment.model.name}'.")
    comment = reason_required(comment, action="deployment.rollback")
    # A refused rollback (nothing that may run again, not the active one) is kept in the ledger.
    with refusal_recorded(actor=by, action="deployment.rollback", subject=deployment), transaction.atomic():
        deployment = lock_for_update(Deployment.objects).select_related("environment", "model").get(
            pk=deployment.pk)
        if not deployment.is_active:
            raise Conflict("Only the active deployment can be rolled back.", code="deployment_not_active",
                           extra={"id": deployment.pk})
        allowed = ((DEPLOYABLE_TO_PRODUCTION if deployment.environment.is_production else DEPLOYABLE_ANYWHERE)
                   - NEVER_ROLLED_BACK_TO)
        target: ModelVersion | None = None
        skipped: list[dict[str, str]] = []
        earlier = deployment.replaced
        while earlier is not None:
            candidate = lock_for_update(ModelVersion.objects).select_related("model").get(pk=earlier.version_id)
            if candidate.pk != deployment.version_id:
                if candidate.status in allowed:
                    target = candidate
                    break
                if not any(item["version"] == candidate.label for item in skipped):
                    skipped.append({"version": candidate.label, "status": candidate.status})
            earlier = earlier.replaced
        if target is None:
            if skipped:
                raise Conflict("Every earlier version was pulled for cause or rejected; none may be redeployed.",
                               code="deployment_rollback_target_pulled", extra={"id": deployment.pk,
                                                                                 "skipped": skipped})
            raise Conflict("No earlier deployable version to roll back to.", code="deployment_no_previous",
                           extra={"id": deployment.pk})
        return _deploy(version=target, environment=deployment.environment, by=by, comment=comment,
                       is_rollback=True, action="deployment.rolled_back")


def deployment_end(*, deployment: Deployment, by: Any, comment: str = "") -> Deployment:
    """Undeploy: the active deployment ends and nothing replaces it (`deployment.ended`). A production
    version that then runs in no production environment goes back to approved. The checks are
    deployment_record's: whoever may deploy the model may take it out of an environment."""
    require_visible(by, deployment.model)
    refuse_admin(by, capability="governance.add_deployment", action="deployment.end", subject=deployment,
                 attempt={"environment": deployment.environment.name})
    require(can_write_model(by, deployment.model, "governance.add_deployment"),
             f"You may not deploy '{deployment.model.name}'.")
    comment = clean_text(comment, "comment")
    with transaction.atomic():
        deployment = lock_for_update(Deployment.objects).select_related("environment", "model", "version").get(
            pk=deployment.pk)
        if not deployment.is_active:
            raise Conflict("Only an active deployment can end.", code="deployment_not_active",
                           extra={"id": deployment.pk})
        deployment.is_active = False
        deployment.save_recorded(action="deployment.ended", by=by, extra={"comment": comment})
        if deployment.environment.is_production:
            _release_version(version_id=deployment.version_id, by=by, deployment=deployment,
                             environment=deployment.environment)
    return deployment
