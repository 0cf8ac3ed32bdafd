"""POST /api/integrations/mlflow/webhook on real captured MLflow 3.17.2 deliveries (tests/data/mlflow):
signature over the raw body, freshness with an injected clock, dedup on the delivery id, the
`test_webhook` payload, and the alias set/moved/deleted sequence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from audit.models import LedgerEntry
from governance.fairness.notifications import sign
from governance.integrations.mlflow.models import MlflowConnection, MlflowDelivery
from governance.integrations.mlflow.services import webhook
from tests.fixtures import entries
from tests.integrations.conftest import SECRET, all_deliveries, delivery

URL = "/api/integrations/mlflow/webhook"


@pytest.fixture
def queued(monkeypatch) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    """The reconciles the receiver queues (by task name, through the outbox)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(webhook, "task_enqueue_on_commit", lambda name, *args: calls.append((name, *args)))
    return calls


def post(client, captured: dict[str, Any], *, now: float | None = None, monkeypatch=None,  # type: ignore[no-untyped-def]
         body: str | None = None, drop: str = "", **header_changes: str):
    request = captured["request"]
    headers = {key: value for key, value in request["headers"].items() if key.lower().startswith("x-mlflow")}
    headers.update(header_changes)
    headers.pop(drop, None)
    clock = captured["received_at_unix"] if now is None else now
    monkeypatch.setattr(webhook.time, "time", lambda: clock)
    extra = {"HTTP_" + key.upper().replace("-", "_"): value for key, value in headers.items()}
    return client.generic("POST", URL, data=(body if body is not None else request["body"]).encode(),
                          content_type="application/json", **extra)


def mlflow_entries() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(action__startswith="mlflow.").exclude(
        action__startswith="mlflow.connection").order_by("seq"))


@pytest.mark.django_db
def test_captured_version_created_is_recorded_and_queues_a_reconcile(client, connection, queued, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    captured = delivery("01-model_version.created.json")
    response = post(client, captured, monkeypatch=monkeypatch)
    assert response.status_code == 202, response.content
    entry = LedgerEntry.objects.get(action="mlflow.delivery_received")
    assert response.json()["ledger_seq"] == entry.seq
    assert entry.actor == "user:svc-mlflow-lab"
    assert entry.subject_type == "mlflow_integration.mlflowconnection"
    import hashlib
    assert entry.payload["body_sha256"] == hashlib.sha256(captured["request"]["body"].encode()).hexdigest()
    assert entry.payload["event"] == "model_version.created"
    assert (entry.payload["model"], entry.payload["version"]) == ("credit-scorer", "1")
    assert entry.payload["delivery_id"] == "47097eca-16d1-416b-8ba9-51eeaabc5790"
    assert queued == [(webhook.RECONCILE_TASK, connection.pk, "credit-scorer")]


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["body", "signature", "timestamp", "delivery_id"])
def test_a_tampered_delivery_is_401_and_writes_nothing(client, connection, queued, monkeypatch, change):
    captured = delivery("01-model_version.created.json")
    before = LedgerEntry.objects.count()
    headers = captured["request"]["headers"]
    kwargs: dict[str, Any] = {}
    if change == "body":
        kwargs["body"] = captured["request"]["body"].replace('"version": "1"', '"version": "9"')
    elif change == "signature":
        kwargs["X-MLflow-Signature"] = sign("another-secret", delivery_id=headers["X-MLflow-Delivery-Id"],
                                            timestamp=headers["X-MLflow-Timestamp"],
                                            body=captured["request"]["body"].encode())
    elif change == "timestamp":
        kwargs["X-MLflow-Timestamp"] = str(int(headers["X-MLflow-Timestamp"]) + 1)
    else:
        kwargs["X-MLflow-Delivery-Id"] = "47097eca-0000-416b-8ba9-51eeaabc5790"
    response = post(client, captured, monkeypatch=monkeypatch, **kwargs)
    assert response.status_code == 401
    assert response.json()["code"] == "mlflow_webhook_signature_invalid"
    assert LedgerEntry.objects.count() == before
    assert not MlflowDelivery.objects.exists()
    assert queued == []


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id"])
def test_a_missing_signature_header_is_401(client, connection, queued, monkeypatch, header):
    response = post(client, delivery("01-model_version.created.json"), monkeypatch=monkeypatch, drop=header)
    assert response.status_code == 401
    assert response.json()["code"] == "mlflow_webhook_signature_invalid"
    assert not MlflowDelivery.objects.exists()


@pytest.mark.django_db
def test_without_a_configured_secret_nothing_verifies(client, connection, queued, monkeypatch, settings):
    settings.MLFLOW_CREDENTIALS = {}
    response = post(client, delivery("01-model_version.created.json"), monkeypatch=monkeypatch)
    assert response.status_code == 401
    assert not MlflowDelivery.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("offset_s", "status"), [(299, 202), (-299, 202), (301, 401), (-301, 401), (86400, 401)])
def test_freshness_with_an_injected_clock(client, connection, queued, monkeypatch, offset_s, status):
    captured = delivery("01-model_version.created.json")
    signed_at = int(captured["request"]["headers"]["X-MLflow-Timestamp"])
    response = post(client, captured, monkeypatch=monkeypatch, now=signed_at + offset_s)
    assert response.status_code == status
    if status == 401:
        assert response.json()["code"] == "mlflow_webhook_stale"
        assert response.json()["extra"] == {"max_age_s": 300}
        assert not MlflowDelivery.objects.exists() and not entries("mlflow.delivery_received")
    else:
        assert MlflowDelivery.objects.count() == 1


@pytest.mark.django_db
def test_a_retried_delivery_answers_200_and_writes_nothing(client, connection, queued, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    first, retry = delivery("02-model_version.created-retried.json", 0), delivery("02-model_version.created-retried.json", 1)
    assert first["request"] == retry["request"]  # MLflow resends the identical request
    assert post(client, first, monkeypatch=monkeypatch).status_code == 202
    count = LedgerEntry.objects.count()
    response = post(client, retry, monkeypatch=monkeypatch)
    assert response.status_code == 200
    assert response.json()["duplicate"] is True
    assert LedgerEntry.objects.count() == count
    assert MlflowDelivery.objects.count() == 1
    assert len(queued) == 1


@pytest.mark.django_db
def test_a_retry_racing_the_first_attempt_answers_200_and_its_entry_rolls_back(client, connection, queued,
                                                                                 monkeypatch):
    first, retry = delivery("02-model_version.created-retried.json", 0), delivery("02-model_version.created-retried.json", 1)
    assert post(client, first, monkeypatch=monkeypatch).status_code == 202
    count, seqs = LedgerEntry.objects.count(), list(LedgerEntry.objects.values_list("seq", flat=True))
    # The retry's check ran before the first attempt committed: only the unique delivery id stops it.
    real_filter = MlflowDelivery.objects.filter

    class Unseen:
        def exists(self) -> bool:
            return False

    monkeypatch.setattr(MlflowDelivery.objects, "filter",
                        lambda *args, **kwargs: Unseen() if "delivery_id" in kwargs else real_filter(*args, **kwargs))
    response = post(client, retry, monkeypatch=monkeypatch)
    assert response.status_code == 200 and response.json()["duplicate"] is True
    assert LedgerEntry.objects.count() == count
    assert list(LedgerEntry.objects.values_list("seq", flat=True)) == seqs
    assert MlflowDelivery.objects.count() == 1 and len(queued) == 1


@pytest.mark.django_db
def test_the_test_webhook_payload_is_recorded_as_a_test(client, connection, queued, monkeypatch):
    captured = next(d for d in all_deliveries() if '"example_model"' in d["request"]["body"])
    response = post(client, captured, monkeypatch=monkeypatch)
    assert response.status_code == 202
    assert response.json()["test"] is True
    entry = LedgerEntry.objects.get(action="mlflow.test_delivery_received")
    assert entry.payload["model"] == "example_model"
    assert not entries("mlflow.delivery_received")
    assert queued == []  # nothing to reconcile: MLflow has no such model


@pytest.mark.django_db
def test_the_alias_sequence_is_recorded_in_order(client, connection, queued, monkeypatch,
                                                 django_capture_on_commit_callbacks):
    for index in range(3):
        assert post(client, delivery("03-model_version_alias.created-moved-deleted.json", index),
                    monkeypatch=monkeypatch).status_code == 202
    recorded = entries("mlflow.delivery_received")
    assert [(e.payload["event"], e.payload["alias"], e.payload["version"]) for e in recorded] == [
        ("model_version_alias.created", "champion", "1"),
        ("model_version_alias.created", "champion", "2"),
        ("model_version_alias.deleted", "champion", None),
    ]
    assert len(queued) == 3


@pytest.mark.django_db
def test_every_captured_delivery_verifies(client, connection, queued, monkeypatch):
    captured = all_deliveries()
    statuses = [post(client, item, monkeypatch=monkeypatch).status_code for item in captured]
    unique = len({item["request"]["headers"]["X-MLflow-Delivery-Id"] for item in captured})
    assert statuses.count(202) == unique
    assert statuses.count(200) == len(captured) - unique
    assert MlflowDelivery.objects.count() == unique


@pytest.mark.django_db
def test_a_signed_body_that_is_no_event_is_400(client, connection, queued, monkeypatch):
    captured = json.loads(json.dumps(delivery("01-model_version.created.json")))
    body = b'["not", "an", "event"]'
    headers = captured["request"]["headers"]
    headers["X-MLflow-Signature"] = sign(SECRET, delivery_id=headers["X-MLflow-Delivery-Id"],
                                         timestamp=headers["X-MLflow-Timestamp"], body=body)
    response = post(client, captured, monkeypatch=monkeypatch, body=body.decode())
    assert response.status_code == 400
    assert response.json()["code"] == "mlflow_webhook_malformed"
    assert not MlflowDelivery.objects.exists()


@pytest.mark.django_db
def test_the_connection_stores_no_secret(connection):
    stored = json.dumps(list(MlflowConnection.objects.values()), default=str)
    assert SECRET not in stored
    assert SECRET not in json.dumps([entry.payload for entry in LedgerEntry.objects.all()])


@pytest.mark.django_db
def test_get_is_not_allowed(client, connection):
    assert client.get(URL).status_code == 405


def test_the_task_names_the_services_queue_are_registered():
    from governance.celery import app
    from governance.integrations.mlflow import hooks
    from governance.integrations.mlflow.services import reconcile

    app.loader.import_default_modules()
    queued = {webhook.RECONCILE_TASK, reconcile.NOTIFY_TASK, reconcile.REVERT_TASK, hooks.ALIAS_ON_APPROVAL_TASK}
    assert queued <= set(app.tasks)
