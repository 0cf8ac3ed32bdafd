"""What every registry service shares: the errors with stable codes, the permission and input
helpers, and the status transition check. No service writes here."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from governance.models import (
    ALLOWED_TRANSITIONS,
    ModelVersion,
    RegisteredModel,
)
from governance.permissions import can_view_model, is_active_user

logger = logging.getLogger(__name__)


User = get_user_model()


TOKEN_PREFIX = "gov_"  # noqa: S105 (a format marker, not a secret)


TEAM_GROUP_PREFIX = "team:"


SERVICE_USERNAME_PREFIX = "svc-"


MIN_REASON_CHARS = 3


TEAM_OBJECT_PERMISSIONS = ("governance.view_registeredmodel", "governance.change_registeredmodel")


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


def require(allowed: bool, message: str, *, code: str = "permission_denied") -> None:
    if not allowed:
        raise PermissionDeniedError(message, code=code)


def insert_unique(obj: Any, *, by: Any, action: str, conflict: ServiceError, **extra: Any) -> None:
    """Create a row whose uniqueness a concurrent writer may take first: that race is a 409, not a 500."""
    try:
        with transaction.atomic():
            obj.save_recorded(action=action, by=by, extra=extra)
    except IntegrityError:
        raise conflict


def may(by: Any, permission: str) -> bool:
    """System tasks (`system:<name>`) act with full rights; people need the permission."""
    if isinstance(by, str):
        return by.startswith("system:")
    return is_active_user(by) and by.has_perm(permission)


def require_visible(user: Any, model: RegisteredModel) -> None:
    # A model the user may not see is reported as absent, never as forbidden.
    if not can_view_model(user, model):
        raise NotFound(f"No model named '{model.name}'.", code="model_not_found", extra={"model": model.name})


def clean_text(value: Any, field: str, *, max_chars: int = 20_000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a string.", code="invalid_input", extra={"field": field})
    if len(value) > max_chars:
        raise InvalidInput(f"'{field}' is longer than {max_chars} characters.", code="invalid_input",
                           extra={"field": field})
    return value.strip()


def full_clean(instance: Any, *, exclude: Iterable[str] = ()) -> None:
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        fields = {name: [str(message) for message in messages] for name, messages in exc.message_dict.items()}
        raise InvalidInput("The input is not valid.", code="invalid_input", extra={"fields": fields})


def transition(version: ModelVersion, target: str) -> str:
    """Check and apply a status change in memory; return the previous status."""
    previous = version.status
    if target not in ALLOWED_TRANSITIONS[previous]:
        raise InvalidTransition(
            f"Version {version} cannot go from {previous} to {target}.",
            extra={"from": previous, "to": target, "allowed": sorted(ALLOWED_TRANSITIONS[previous])})
    version.status = target
    return previous


def string_list(value: Any, field: str, *, max_items: int = 50) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > max_items or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"'{field}' must be a list of at most {max_items} strings.", code="invalid_input",
                           extra={"field": field})
    return [item.strip() for item in value if item.strip()]


def actor_text(actor: Any) -> str:
    return actor if isinstance(actor, str) else f"user:{actor.get_username()}"
