"""Who may define and run the fairness audits of a model (the checks every fairness service makes)."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound, ServiceError
from governance.models import RegisteredModel
from governance.permissions import can_view_model, is_active_user
from governance.roles import ADMIN, AUDITOR, DATA_SCIENTIST, RISK_OFFICER

RUN_ROLES = frozenset({DATA_SCIENTIST, RISK_OFFICER, AUDITOR, ADMIN})
SPEC_ROLES = frozenset({DATA_SCIENTIST, RISK_OFFICER, ADMIN})


def _roles(user: Any) -> set[str]:
    if not is_active_user(user):
        return set()
    return set(user.groups.values_list("name", flat=True))


def can_run_audits(user: Any, model: RegisteredModel) -> bool:
    """Data scientists, risk officers, auditors and admins who can see the model may run its audits."""
    if not can_view_model(user, model):
        return False
    return bool(user.is_superuser or _roles(user) & RUN_ROLES)


def can_manage_specs(user: Any, model: RegisteredModel) -> bool:
    if not can_view_model(user, model):
        return False
    return bool(user.is_superuser or _roles(user) & SPEC_ROLES)


def require_visible(user: Any, model: RegisteredModel) -> None:
    if not can_view_model(user, model):
        raise NotFound(f"No model named '{model.name}'.", code="model_not_found", extra={"model": model.name})


def require_allowed(allowed: bool, message: str) -> None:
    if not allowed:
        raise ServiceError(message, code="permission_denied", status_code=403)
