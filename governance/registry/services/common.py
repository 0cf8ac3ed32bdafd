"""What every registry service shares: the errors with stable codes, the permission and input
helpers, and the status transition check. No service writes here."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit.refusals import refusal_recorded
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from governance.models import (
    ALLOWED_TRANSITIONS,
    ModelVersion,
    RegisteredModel,
)
from governance.permissions import can_view_model, is_active_user, is_admin
from governance.roles import ADMIN_WITHHELD

logger = logging.getLogger(__name__)


User = get_user_model()


TOKEN_PREFIX = "gov_"  # noqa: S105 (a format marker, not a secret)


TEAM_GROUP_PREFIX = "team:"


SERVICE_USERNAME_PREFIX = "svc-"


MIN_REASON_CHARS = 3


# The one comment rule: these actions need a reason of at least MIN_REASON_CHARS characters, on
# every surface (the API, the admin and the pages pass the comment through and show the refusal).
REASON_REQUIRED_ACTIONS = frozenset({
    "fairness_audit.waive",
    "risk_tier_change.request",
    "approval_request.reject",
    "approval_request.withdraw",
    "deployment.rollback",
    "model_version.deprecate",
    "model_version.retire",
    "service_token.revoke",
})


TEAM_OBJECT_PERMISSIONS = ("governance.view_registeredmodel", "governance.change_registeredmodel")


class SeparationOfDuties(Forbidden):
    code = "approval_separation_of_duties"


class ApprovalNotPending(Conflict):
    code = "approval_not_pending"


class ReasonRequired(InvalidInput):
    code = "reason_required"


class AdminCannotActAsDataScientist(Forbidden):
    code = "admin_cannot_act_as_data_scientist"


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


def refuse_admin(by: Any, *, capability: str, action: str, subject: Any,
                 attempt: dict[str, Any] | None = None) -> None:
    """Admins and superusers never use a data scientist's capability (`roles.ADMIN_WITHHELD`), in any
    team; the refusal is kept in the ledger as `<action>.refused`. `system:` actors are not admins."""
    if capability not in ADMIN_WITHHELD or isinstance(by, str) or not is_admin(by):
        return
    with refusal_recorded(actor=by, action=action, subject=subject, attempt=attempt):
        raise AdminCannotActAsDataScientist(
            "Admins manage users, teams, environments and service accounts; they do not register, submit, "
            "deploy, roll back or withdraw models.", extra={"action": action, "capability": capability})


def reason_required(comment: Any, *, action: str) -> str:
    """The cleaned comment; for an action of REASON_REQUIRED_ACTIONS, refuse one shorter than MIN_REASON_CHARS."""
    comment = clean_text(comment, "comment")
    if action in REASON_REQUIRED_ACTIONS and len(comment) < MIN_REASON_CHARS:
        raise ReasonRequired(f"Say why in the comment (at least {MIN_REASON_CHARS} characters).",
                             extra={"action": action, "min_chars": MIN_REASON_CHARS})
    return comment


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
