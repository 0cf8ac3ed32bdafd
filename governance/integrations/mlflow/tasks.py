"""Celery tasks of the MLflow integration: take ids, call one service, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError

from core.errors import ServiceError
from governance.integrations.mlflow.models import MlflowConnection
from governance.integrations.mlflow.services import reconcile, violations

logger = logging.getLogger(__name__)
RETRY = {"acks_late": True, "retry_backoff": True, "max_retries": 5}


@shared_task(autoretry_for=(OperationalError, ConnectionError), **RETRY)
def mlflow_reconcile_model_task(connection_id: int, mlflow_name: str) -> list[str]:
    connection = MlflowConnection.objects.select_related("team", "service_account").filter(
        pk=connection_id, is_active=True).first()
    if connection is None:
        return []
    try:
        result = reconcile.mlflow_model_reconcile(connection=connection, mlflow_name=mlflow_name)
    except ServiceError as exc:  # MLflow unreachable: the scheduled pass catches up
        logger.warning("mlflow reconcile of %s/%s: %s", connection.name, mlflow_name, exc.code)
        return []
    return result.changes


@shared_task(autoretry_for=(OperationalError,), **RETRY)
def mlflow_reconcile_all_task() -> int:
    """Beat: every model of every active connection (events get lost; some changes send none)."""
    changed = 0
    for connection in MlflowConnection.objects.select_related("team", "service_account").filter(is_active=True):
        try:
            results = reconcile.mlflow_connection_reconcile(connection=connection)
        except ServiceError as exc:
            logger.warning("mlflow scheduled reconcile of %s: %s", connection.name, exc.code)
            continue
        changed += sum(len(result.changes) for result in results)
    return changed


@shared_task(autoretry_for=(OperationalError, ConnectionError, OSError), **RETRY)
def mlflow_violation_notify_task(violation_id: int) -> bool:
    return violations.mlflow_violation_notify(violation_id=violation_id)


@shared_task(autoretry_for=(OperationalError,), **RETRY)
def mlflow_violation_revert_task(violation_id: int, previous: str | None) -> bool:
    try:
        return reconcile.mlflow_violation_revert(violation_id=violation_id, previous=previous)
    except reconcile.MlflowError as exc:
        logger.warning("mlflow revert of violation %s failed: %s", violation_id, exc)
        raise ConnectionError(str(exc)) from exc


@shared_task(autoretry_for=(OperationalError, ConnectionError), **RETRY)
def mlflow_alias_on_approval_task(version_id: int) -> str | None:
    try:
        return reconcile.mlflow_version_alias_on_approval(version_id=version_id)
    except reconcile.MlflowError as exc:
        raise ConnectionError(str(exc)) from exc
