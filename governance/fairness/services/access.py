"""Who may define and run the fairness audits of a model (the checks every fairness service makes)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group

from audit.refusals import refusal_recorded
from core.errors import Forbidden, NotFound, ServiceError
from governance.models import RegisteredModel
from governance.permissions import can_view_model, is_active_user
from governance.registry.services.common import TEAM_GROUP_PREFIX
from governance.roles import ADMIN, AUDITOR, DATA_SCIENTIST, RISK_OFFICER
from lineage.models import SHARED
from lineage.visibility import may_write_owner

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


def may_name_dataset(user: Any, dataset: Any) -> bool:
    """Only a dataset's owners name it in a spec (and so have the server read its file): the members
    of its owner team (lineage), or, for a dataset recorded before owner teams, the account that
    registered it and that account's teams. A dataset the system recorded is shared; system actors
    name any."""
    if isinstance(user, str):
        return user.startswith("system:")
    if dataset.owner_team != SHARED:
        # The lineage record's owner team, the one home of who owns a dataset.
        return may_write_owner(user, dataset.owner_team)
    # Records from before datasets had an owner team: the account that registered it and its teams.
    creator = str(dataset.created_by)
    if not creator.startswith("user:"):
        return True
    username = creator.removeprefix("user:")
    if username == user.get_username():
        return True
    teams = Group.objects.filter(user__username=username, name__startswith=TEAM_GROUP_PREFIX)
    return bool(user.groups.filter(pk__in=teams.values("pk")).exists())


def require_dataset_owner(user: Any, dataset_version: Any) -> None:
    """Refuse (and keep in the ledger) a spec naming another team's dataset version."""
    dataset = dataset_version.dataset
    with refusal_recorded(actor=user, action="fairness_spec.create", subject=dataset_version,
                          attempt={"dataset": str(dataset)}):
        if not may_name_dataset(user, dataset):
            raise Forbidden(f"Dataset '{dataset}' belongs to another team; only its owners name it in an audit.",
                            code="fairness_dataset_not_owned", extra={"dataset_version": dataset_version.pk})
