"""Permission-filtered reads. A model the user may not see does not exist for them: 404, not 403."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from core.errors import NotFound
from governance.models import (
    ApprovalPolicy,
    ApprovalPolicyChange,
    ApprovalRequest,
    Deployment,
    Environment,
    ModelVersion,
    RegisteredModel,
    RequestStatus,
    RiskTier,
    RiskTierChange,
)
from governance.permissions import (
    APPROVE_MODEL,
    VIEW_ALL,
    VIEW_MODEL,
    decidable_requests,
    is_active_user,
    token_model_ids,
)
from governance.roles import ROLE_NAMES


def user_roles(user: Any) -> list[str]:
    """The role groups the user belongs to, sorted."""
    if not is_active_user(user):
        return []
    return sorted(user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True))


def registered_model_list(*, user: Any) -> QuerySet[RegisteredModel]:
    """Every model the user may see (deny by default)."""
    models = RegisteredModel.objects.select_related("team").order_by("name")
    if not is_active_user(user):
        return models.none()
    limited = token_model_ids(user)
    if limited is not None:
        models = models.filter(pk__in=limited)
    if user.is_superuser or user.has_perm(VIEW_ALL):
        return models
    if not user.has_perm(VIEW_MODEL):
        return models.none()
    viewable = get_objects_for_user(user, VIEW_MODEL, klass=RegisteredModel, accept_global_perms=False)
    approvable = get_objects_for_user(user, APPROVE_MODEL, klass=RegisteredModel, accept_global_perms=False)
    tiers = [tier for tier in RiskTier.values if user.has_perm(f"governance.approve_tier_{tier}")]
    return models.filter(Q(pk__in=viewable.values("pk")) | Q(pk__in=approvable.values("pk")) | Q(risk_tier__in=tiers))


def registered_model_get(*, user: Any, name: str) -> RegisteredModel:
    model = registered_model_list(user=user).filter(name=name).first()
    if model is None:
        raise NotFound(f"No model named '{name}'.", code="model_not_found", extra={"model": name})
    return model


def model_version_list(*, user: Any, model: RegisteredModel | None = None,
                       status: str | None = None) -> QuerySet[ModelVersion]:
    versions = ModelVersion.objects.select_related("model").filter(
        model__in=registered_model_list(user=user)).order_by("-created_at", "-pk")
    if model is not None:
        versions = versions.filter(model=model)
    if status:
        versions = versions.filter(status=status)
    return versions


def model_version_get(*, user: Any, model_name: str, label: str) -> ModelVersion:
    model = registered_model_get(user=user, name=model_name)
    version = ModelVersion.objects.select_related("model").filter(model=model, label=label).first()
    if version is None:
        raise NotFound(f"Model '{model_name}' has no version '{label}'.", code="model_version_not_found",
                       extra={"model": model_name, "version": label})
    return version


def approval_request_list(*, user: Any, status: str | None = None,
                          model_name: str | None = None) -> QuerySet[ApprovalRequest]:
    requests = ApprovalRequest.objects.select_related("version__model", "submitted_by").prefetch_related(
        "decisions__approver", "monitoring_alerts").filter(
        version__model__in=registered_model_list(user=user)).order_by("-submitted_at", "-pk")
    if status:
        requests = requests.filter(status=status)
    if model_name:
        requests = requests.filter(version__model__name=model_name)
    return requests


def approval_request_get(*, user: Any, request_id: int) -> ApprovalRequest:
    request = approval_request_list(user=user).filter(pk=request_id).first()
    if request is None:
        raise NotFound(f"No approval request {request_id}.", code="approval_request_not_found",
                       extra={"id": request_id})
    return request


def approval_queue(*, user: Any) -> list[ApprovalRequest]:
    """Pending requests this user may decide now: not their own, not already decided by them."""
    pending = approval_request_list(user=user, status=RequestStatus.PENDING)
    return list(decidable_requests(user=user, pending=pending).order_by("expires_at", "pk"))


def deployment_list(*, user: Any, model_name: str | None = None, environment: str | None = None,
                    active: bool | None = None) -> QuerySet[Deployment]:
    deployments = Deployment.objects.select_related("model", "version", "environment", "deployed_by").filter(
        model__in=registered_model_list(user=user)).order_by("-deployed_at", "-pk")
    if model_name:
        deployments = deployments.filter(model__name=model_name)
    if environment:
        deployments = deployments.filter(environment__name=environment)
    if active is not None:
        deployments = deployments.filter(is_active=active)
    return deployments


def deployment_get(*, user: Any, deployment_id: int) -> Deployment:
    deployment = deployment_list(user=user).filter(pk=deployment_id).first()
    if deployment is None:
        raise NotFound(f"No deployment {deployment_id}.", code="deployment_not_found", extra={"id": deployment_id})
    return deployment


def environment_list() -> QuerySet[Environment]:
    return Environment.objects.order_by("name")


def environment_get(*, name: str) -> Environment:
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        raise NotFound(f"No environment named '{name}'.", code="environment_not_found", extra={"environment": name})
    return environment


def approval_policy_for(model: RegisteredModel) -> ApprovalPolicy | None:
    """The model's own policy, else the default of its risk tier."""
    policy = ApprovalPolicy.objects.filter(model=model).first()
    if policy is None:
        policy = ApprovalPolicy.objects.filter(model__isnull=True, risk_tier=model.risk_tier).first()
    return policy


def approval_policy_list(*, user: Any) -> QuerySet[ApprovalPolicy]:
    """Tier defaults and the policies of models the user may see (needs view_approvalpolicy)."""
    if not is_active_user(user) or not user.has_perm("governance.view_approvalpolicy"):
        return ApprovalPolicy.objects.none()
    return (ApprovalPolicy.objects.select_related("model")
            .filter(Q(model__isnull=True) | Q(model__in=registered_model_list(user=user)))
            .order_by("risk_tier", "model__name"))


def approval_policy_change_get(*, user: Any, change_id: int) -> ApprovalPolicyChange:
    change = None
    if is_active_user(user) and user.has_perm("governance.view_approvalpolicychange"):
        change = (ApprovalPolicyChange.objects.select_related("model", "requested_by")
                  .filter(Q(model__isnull=True) | Q(model__in=registered_model_list(user=user)))
                  .filter(pk=change_id).first())
    if change is None:
        raise NotFound(f"No policy change #{change_id}.", code="policy_change_not_found", extra={"id": change_id})
    return change


def risk_tier_change_get(*, user: Any, change_id: int) -> RiskTierChange:
    change = (RiskTierChange.objects.select_related("model", "requested_by")
              .filter(model__in=registered_model_list(user=user), pk=change_id).first())
    if change is None:
        raise NotFound(f"No risk tier change #{change_id}.", code="risk_tier_change_not_found",
                       extra={"id": change_id})
    return change
