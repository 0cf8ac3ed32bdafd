"""Who may do what to which model: the access predicates that services, selectors and the API share.

Each right is a role capability (a global permission held through a role group) AND a scope
(an object permission on the model through guardian, a risk-tier permission, or the
`*_all_registeredmodels` permission of auditors and admins). Deny by default: a user without
both gets nothing. A request authenticated by a service token is further limited by the
token's scope (read or write) and, if set, its list of models.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from core.errors import Forbidden
from governance.models import ApprovalRequest, RegisteredModel, RiskTier, TokenScope
from governance.roles import ADMIN

VIEW_ALL = "governance.view_all_registeredmodels"
MANAGE_ALL = "governance.manage_all_registeredmodels"
VIEW_MODEL = "governance.view_registeredmodel"
CHANGE_MODEL = "governance.change_registeredmodel"
APPROVE_MODEL = "governance.approve_registeredmodel"


def is_active_user(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def is_admin(user: Any) -> bool:
    """Superusers (admins by nature) and holders of the admin role, people or service accounts."""
    return is_active_user(user) and (user.is_superuser or user.groups.filter(name=ADMIN).exists())


def is_service_account(user: Any) -> bool:
    return is_active_user(user) and hasattr(user, "service_account")


def request_token(user: Any) -> Any:
    """The ServiceToken this request was authenticated with (set by ServiceTokenAuthentication), if any."""
    return getattr(user, "service_token", None)


def token_model_ids(user: Any) -> set[int] | None:
    """The model ids a token is limited to, or None when it is not limited."""
    token = request_token(user)
    if token is None:
        return None
    cached = getattr(token, "_restricted_ids", None)
    if cached is None:
        cached = set(token.restricted_to.values_list("pk", flat=True))
        token._restricted_ids = cached
    return cached or None


def token_allows(user: Any, model: RegisteredModel, *, write: bool) -> bool:
    token = request_token(user)
    if token is None:
        return True
    if write and token.scope != TokenScope.WRITE:
        return False
    limited = token_model_ids(user)
    return limited is None or model.pk in limited


def token_allows_team(user: Any, team: Any) -> bool:
    """A token restricted to some models acts only on them: a new model only for a team that owns one of them."""
    limited = token_model_ids(user)
    return limited is None or RegisteredModel.objects.filter(pk__in=limited, team=team).exists()


def require_token_allows_team(user: Any, team: Any) -> None:
    if not token_allows_team(user, team):
        raise Forbidden("This token is restricted to some models and acts only for their teams.",
                        code="token_model_restricted", extra={"team": getattr(team, "name", str(team))})


def can_view_model(user: Any, model: RegisteredModel) -> bool:
    if not is_active_user(user) or not token_allows(user, model, write=False):
        return False
    if user.is_superuser or user.has_perm(VIEW_ALL):
        return True
    if not user.has_perm(VIEW_MODEL):
        return False
    return (user.has_perm(VIEW_MODEL, model) or user.has_perm(APPROVE_MODEL, model)
            or user.has_perm(f"governance.approve_tier_{model.risk_tier}"))


def can_write_model(user: Any, model: RegisteredModel, capability: str) -> bool:
    """`capability` is the role permission the write needs, e.g. `governance.add_modelversion`."""
    if not is_active_user(user) or not token_allows(user, model, write=True):
        return False
    if not user.has_perm(capability):
        return False
    return user.is_superuser or user.has_perm(MANAGE_ALL) or user.has_perm(CHANGE_MODEL, model)


# --- Who may decide: one rule, as a predicate on a model and as a filter on requests ----------------
# The service (`approval_decide`) asks `can_decide` after refusing the submitter, the version's
# author and a second decision by the same person with their own codes; the approval queue (admin,
# API) and the pages list `decidable_requests`, the same rule as one query. A test checks that the
# two forms agree for every role.

def _decides(user: Any) -> bool:
    return (is_active_user(user) and not is_service_account(user)
            and user.has_perm("governance.add_approvaldecision"))


def is_risk_officer(user: Any) -> bool:
    """A person in the risk_officer role (policies, waivers and tier lowering belong to them)."""
    return (is_active_user(user) and not is_service_account(user)
            and user.groups.filter(name="risk_officer").exists())


def can_decide(user: Any, model: RegisteredModel) -> bool:
    """Approvers decide for models or risk tiers they are scoped to; pipelines never decide."""
    if not _decides(user):
        return False
    return (user.is_superuser or user.has_perm(APPROVE_MODEL, model)
            or user.has_perm(f"governance.approve_tier_{model.risk_tier}"))


def decidable_requests(*, user: Any, pending: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """The requests of `pending` this user may decide now: in their scope, not their own
    submission or version, not already decided by them."""
    if not _decides(user):
        return pending.none()
    pending = (pending.exclude(submitted_by=user).exclude(version__created_by=user)
               .exclude(decisions__approver=user))
    if user.is_superuser:
        return pending
    tiers = [tier for tier in RiskTier.values if user.has_perm(f"governance.approve_tier_{tier}")]
    approvable = get_objects_for_user(user, APPROVE_MODEL, klass=RegisteredModel, accept_global_perms=False)
    return pending.filter(Q(version__model__risk_tier__in=tiers) | Q(version__model__in=approvable.values("pk")))


class TokenScopePermission(BasePermission):
    """Read-only tokens may only use safe methods; everything else needs an active user."""

    message = "This token may only read."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not is_active_user(request.user):
            return False
        token = request_token(request.user)
        if token is not None and request.method not in SAFE_METHODS and token.scope != TokenScope.WRITE:
            return False
        return True
