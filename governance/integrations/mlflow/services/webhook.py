"""Receiving MLflow's registry webhooks: verify, deduplicate, record, queue a reconcile; answer at once.

Only the model name (and version, alias, for the record) is taken from the payload: what it says
about the version is not trusted. The reconcile that the outbox queues reads MLflow's REST API.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.ledger import ledger_append
from core.errors import InvalidInput, ServiceError
from core.outbox.services import task_enqueue_on_commit
from governance.fairness.notifications import is_fresh, signature_matches
from governance.integrations.mlflow.models import MlflowConnection, MlflowDelivery
from governance.integrations.mlflow.services.connections import webhook_secret

DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_HEADER = "X-MLflow-Signature"
# `mlflow.client.MlflowClient().test_webhook(...)` sends a made-up model of this name, signed with
# the real secret; nothing else tells it apart, so the name is how it is recognised.
TEST_MODEL_NAMES = frozenset({"example_model"})
RECONCILE_TASK = "governance.integrations.mlflow.tasks.mlflow_reconcile_model_task"


class WebhookUnauthorized(ServiceError):
    code = "mlflow_webhook_signature_invalid"
    status_code = 401


@dataclass(frozen=True)
class Receipt:
    status: int
    duplicate: bool
    delivery_id: str
    is_test: bool = False
    ledger_seq: int | None = None


def _header(headers: Any, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise WebhookUnauthorized(f"The {name} header is missing.", extra={"header": name})
    return str(value)


def _connection_for(*, delivery_id: str, timestamp: str, body: bytes, signature: str,
                    connection_name: str | None) -> MlflowConnection:
    candidates = MlflowConnection.objects.filter(is_active=True).select_related("service_account")
    if connection_name:
        candidates = candidates.filter(name=connection_name)
    for connection in candidates:
        secret = webhook_secret(connection)
        if secret and signature_matches(secret, delivery_id=delivery_id, timestamp=timestamp, body=body,
                                        signature=signature):
            return connection
    raise WebhookUnauthorized("The signature matches no MLflow connection's webhook secret.")


def _event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        event = None
    if not (isinstance(event, dict) and isinstance(event.get("data"), dict)
            and isinstance(event.get("entity"), str) and isinstance(event.get("action"), str)):
        raise InvalidInput("The body is not an MLflow webhook event.", code="mlflow_webhook_malformed")
    return event


def mlflow_delivery_receive(*, headers: Any, body: bytes, connection_name: str | None = None,
                            now: float | None = None) -> Receipt:
    """Verify (HMAC over the raw body, then freshness), deduplicate on the delivery id, record, queue.

    A refused delivery (401, 400) writes nothing. A redelivery answers 200 and writes nothing.
    """
    delivery_id = _header(headers, DELIVERY_ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    connection = _connection_for(delivery_id=delivery_id, timestamp=timestamp, body=body, signature=signature,
                                 connection_name=connection_name)
    try:
        fresh = is_fresh(timestamp, max_age_s=settings.MLFLOW_WEBHOOK_MAX_AGE_S, now=now)
    except ValueError:
        fresh = False
    if not fresh:
        raise WebhookUnauthorized("X-MLflow-Timestamp is not within the allowed age; a replay is refused.",
                                  code="mlflow_webhook_stale",
                                  extra={"max_age_s": settings.MLFLOW_WEBHOOK_MAX_AGE_S})
    if len(delivery_id) > 200:
        raise InvalidInput("The delivery id is too long.", code="mlflow_webhook_malformed")
    event = _event(body)
    data = event["data"]
    name = str(data.get("name") or "")[:500]
    version = "" if data.get("version") is None else str(data.get("version"))[:50]
    is_test = name in TEST_MODEL_NAMES
    kind = f"{event['entity']}.{event['action']}"[:100]
    received_at = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    body_sha256 = hashlib.sha256(body).hexdigest()
    if MlflowDelivery.objects.filter(delivery_id=delivery_id).exists():
        return Receipt(status=200, duplicate=True, delivery_id=delivery_id, is_test=is_test)
    payload = {"connection": connection.name, "delivery_id": delivery_id, "event": kind, "model": name,
               "version": version or None, "alias": data.get("alias"), "body_sha256": body_sha256,
               "mlflow_timestamp": str(event.get("timestamp") or "")[:64], "signed_at": timestamp}
    action = "mlflow.test_delivery_received" if is_test else "mlflow.delivery_received"
    appended = recorded = False
    try:
        with transaction.atomic():
            # The entry first, so the delivery row is written once, with its seq (no savepoint, no update).
            entry = ledger_append(actor=connection.service_account, action=action, subject=connection,
                                  payload=payload)
            appended = True
            MlflowDelivery.objects.create(
                delivery_id=delivery_id, connection=connection, event=kind, model_name=name, version=version,
                body_sha256=body_sha256, is_test=is_test, received_at=received_at, ledger_seq=entry.seq)
            recorded = True
            if not is_test and name:
                task_enqueue_on_commit(RECONCILE_TASK, connection.pk, name)
    except IntegrityError:
        if not appended or recorded:
            raise
        # A retry racing the first attempt took the delivery id: the first one records it (this entry rolls back).
        return Receipt(status=200, duplicate=True, delivery_id=delivery_id, is_test=is_test)
    return Receipt(status=202, duplicate=False, delivery_id=delivery_id, is_test=is_test, ledger_seq=entry.seq)
