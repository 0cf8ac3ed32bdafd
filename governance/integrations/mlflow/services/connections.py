"""Connections: created and changed by admins (each change a ledger entry), and the client built
from one, with credentials read from the environment variables it names."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction

from audit.ledger import lock_for_update
from core.errors import InvalidInput, NotFound
from governance import accounts
from governance.integrations.mlflow.client import MlflowClient
from governance.integrations.mlflow.models import MlflowConnection
from governance.models import Environment, RiskTier, Team
from governance.permissions import is_admin
from governance.registry.services.access import service_account_create, service_token_revoke
from governance.registry.services.common import PermissionDeniedError, full_clean

EDITABLE = ("tracking_uri", "token_env", "username_env", "password_env", "webhook_secret_env", "default_risk_tier",
            "alias_map", "revert_violations", "alias_on_approval", "is_active")
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def _require_admin(by: Any) -> None:
    # Connections decide who registers and deploys for a team: admins set them, nobody else.
    system = isinstance(by, str) and by.startswith("system:")
    if not (system or is_admin(by)):
        raise PermissionDeniedError("Only admins set up MLflow connections.", code="permission_denied")


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, code="mlflow_connection_invalid", extra={"field": field})


def _check(fields: dict[str, Any]) -> dict[str, Any]:
    prefix = settings.MLFLOW_CREDENTIAL_ENV_PREFIX
    for name in ("token_env", "username_env", "password_env", "webhook_secret_env"):
        value = str(fields.get(name) or "")
        if value and not value.startswith(prefix):
            raise _invalid(name, f"Name an environment variable that starts with {prefix} (the only ones a "
                                 "connection may read).")
    if bool(fields.get("username_env")) != bool(fields.get("password_env")):
        raise _invalid("username_env", "Basic auth needs both the user and the password variable.")
    alias_map = fields.get("alias_map") or {}
    if not isinstance(alias_map, dict):
        raise _invalid("alias_map", "The alias map is an object: alias -> environment name.")
    known = set(Environment.objects.values_list("name", flat=True))
    for alias, environment in alias_map.items():
        if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
            raise _invalid("alias_map", f"{alias!r} is not an MLflow alias.")
        if environment not in known:
            raise _invalid("alias_map", f"No environment named {environment!r}.")
    alias = fields.get("alias_on_approval") or ""
    if alias and not ALIAS_PATTERN.match(alias):
        raise _invalid("alias_on_approval", f"{alias!r} is not an MLflow alias.")
    if fields.get("default_risk_tier") and fields["default_risk_tier"] not in RiskTier.values:
        raise _invalid("default_risk_tier", "Unknown risk tier.")
    return fields


def _public(connection: MlflowConnection) -> dict[str, Any]:
    """What the ledger records of a connection: names of variables, never their values."""
    return {field: getattr(connection, field) for field in EDITABLE} | {"team": connection.team.name}


def mlflow_connection_create(*, by: Any, name: str, team: Team, tracking_uri: str, webhook_secret_env: str = "",
                             **fields: Any) -> MlflowConnection:
    """A connection and its service account `svc-mlflow-<name>` (a data scientist of `team`)."""
    _require_admin(by)
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput("Unknown connection fields.", code="invalid_input", extra={"fields": sorted(unknown)})
    fields = _check({"tracking_uri": tracking_uri, "webhook_secret_env": webhook_secret_env, **fields})
    with transaction.atomic():
        account, _token = service_account_create(
            by=by, name=f"mlflow-{name}", role="data_scientist",
            description=f"Registers and deploys for the MLflow connection '{name}'.")
        # The connection acts in-process and needs no token: revoke the first one, never shown.
        for token in account.tokens.all():
            service_token_revoke(token=token, by=by, comment="MLflow connections need no API token.")
        accounts.user_groups_add(user=account.user, groups=[Group.objects.get(pk=team.group_id)], by=by)
        connection = MlflowConnection(name=name, team=team, service_account=account.user, **fields)
        full_clean(connection)
        connection.save_recorded(action="mlflow.connection_created", by=by, extra=_public(connection))
    return connection


def mlflow_connection_update(*, connection: MlflowConnection, by: Any, **changes: Any) -> MlflowConnection:
    _require_admin(by)
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidInput("These fields cannot be changed.", code="invalid_input", extra={"fields": sorted(unknown)})
    with transaction.atomic():
        connection = lock_for_update(MlflowConnection.objects).select_related("team").get(pk=connection.pk)
        before = _public(connection)
        _check({**before, **changes})
        for field, value in changes.items():
            setattr(connection, field, value)
        full_clean(connection)
        after = _public(connection)
        if after != before:
            connection.save_recorded(action="mlflow.connection_updated", by=by, extra={
                "changed": sorted(k for k in after if after[k] != before.get(k))})
    return connection


def connection_get(*, name: str) -> MlflowConnection:
    connection = MlflowConnection.objects.select_related("team", "service_account").filter(name=name).first()
    if connection is None:
        raise NotFound(f"No MLflow connection named '{name}'.", code="mlflow_connection_not_found")
    return connection


def credential(name: str) -> str:
    """The value of a credential variable a connection names ('' when unset or not allowed)."""
    if not name or not name.startswith(settings.MLFLOW_CREDENTIAL_ENV_PREFIX):
        return ""
    return settings.MLFLOW_CREDENTIALS.get(name, "")


def webhook_secret(connection: MlflowConnection) -> str:
    return credential(connection.webhook_secret_env)


def client_for(connection: MlflowConnection) -> MlflowClient:
    return MlflowClient(base_url=connection.tracking_uri, token=credential(connection.token_env),
                        username=credential(connection.username_env), password=credential(connection.password_env),
                        timeout_s=settings.MLFLOW_HTTP_TIMEOUT_S, max_artifact_bytes=settings.MLFLOW_MAX_ARTIFACT_BYTES)
