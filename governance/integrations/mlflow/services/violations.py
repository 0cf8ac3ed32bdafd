"""Alerting on a policy violation: the same e-mail recipients and signed webhook as failing audits."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from audit.ledger import lock_for_update
from governance.fairness import notifications
from governance.integrations.mlflow.models import MlflowViolation

EVENT = "mlflow.policy_violation"


def violation_payload(violation: MlflowViolation) -> dict[str, Any]:
    return {
        "event": EVENT,
        "violation": violation.pk,
        "connection": violation.connection.name,
        "model": violation.model.name,
        "version": violation.mlflow_version,
        "version_status": violation.version_status,
        "alias": violation.alias,
        "environment": violation.environment,
        "code": violation.code,
        "detected_at": violation.detected_at.isoformat(),
        "revert": violation.connection.revert_violations,
        "url": f"{settings.FAIRNESS_PUBLIC_BASE_URL.rstrip('/')}/models/{violation.model.name}/",
    }


def _email(violation: MlflowViolation) -> int:
    contacts = [c for c in (violation.model.contacts or []) if isinstance(c, str) and "@" in c]
    to = list(dict.fromkeys(contacts + list(settings.FAIRNESS_NOTIFY_EMAILS)))
    if not to:
        return 0
    data = violation_payload(violation)
    subject = f"[mlflow] @{violation.alias} of {data['model']} points at {data['version']}, which is {data['version_status']}"
    body = (f"In MLflow ({data['connection']}), alias @{violation.alias} of {data['model']} was set on version "
            f"{data['version']}, which is {data['version_status']} here; {violation.environment} takes approved "
            f"versions only ({violation.code}).\n"
            f"{'The alias is being moved back.' if data['revert'] else 'The alias was left as it is.'}\n{data['url']}\n")
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)


def mlflow_violation_notify(*, violation_id: int) -> bool:
    """Post the webhook and send the e-mail (raises on failure, so the task retries); once."""
    with transaction.atomic():
        violation = (lock_for_update(MlflowViolation.objects, of=("self",))
                     .select_related("connection", "model").get(pk=violation_id))
        if violation.notified_at is not None:
            return False
        notifications.post_event(EVENT, violation_payload(violation))
        _email(violation)
        violation.notified_at = timezone.now()
        violation.save_recorded(action="mlflow.policy_violation_notified", by="system:mlflow_violation_notify_task")
    return True
