"""Concurrent final approvals and concurrent retries with one Idempotency-Key (real transactions, threads)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import ServiceError
from governance.models import ApprovalDecision, RegisteredModel, RequestStatus, VersionStatus
from governance.registry.services.approvals import approval_decide, approval_policy_set, model_version_submit

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(*calls: Any) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(index: int, call: Any) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_final_approvals_approve_once(model, version, scientist, approver, risk_officer, make_user):
    approval_policy_set(by="system:test", risk_tier="high", quorum=2, required_roles=[])
    request = model_version_submit(version=version, by=scientist)
    results = run_together(
        lambda: approval_decide(request=request, by=approver, decision="approve", comment="a"),
        lambda: approval_decide(request=request, by=risk_officer, decision="approve", comment="b"),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    request.refresh_from_db()
    version.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and version.status == VersionStatus.APPROVED
    assert ApprovalDecision.objects.count() == 2
    assert LedgerEntry.objects.filter(action="model_version.approved").count() == 1


def test_concurrent_same_approver_counts_once(model, version, scientist, approver):
    approval_policy_set(by="system:test", risk_tier="high", quorum=2, required_roles=[])
    request = model_version_submit(version=version, by=scientist)
    results = run_together(
        lambda: approval_decide(request=request, by=approver, decision="approve", comment="a"),
        lambda: approval_decide(request=request, by=approver, decision="approve", comment="b"),
    )
    errors = [r for r in results if isinstance(r, ServiceError)]
    assert len(errors) == 1 and errors[0].code == "approval_already_decided"
    assert ApprovalDecision.objects.count() == 1


def test_concurrent_retries_with_one_key_write_once(scientist, team):
    body = {"name": "race-model", "team": "credit-risk", "risk_tier": "minimal"}

    def post() -> tuple[int, str | None]:
        client = APIClient()
        client.force_authenticate(user=scientist)
        response = client.post("/api/models/", body, format="json", HTTP_IDEMPOTENCY_KEY="race")
        return response.status_code, response.get("Idempotent-Replayed")

    # The later retries wait on the key's unique index until the first commits, then replay its 201.
    results = run_together(post, post, post)
    replayed = sorted(results, key=lambda result: (result[0], result[1] or ""))
    assert replayed == [(201, None), (201, "true"), (201, "true")], results
    assert RegisteredModel.objects.filter(name="race-model").count() == 1
    assert LedgerEntry.objects.filter(action="model.registered", subject_type="governance.registeredmodel").count() \
        == 1


def test_concurrent_registrations_of_one_name_give_409_not_500(scientist, team):
    def post() -> int:
        client = APIClient()
        client.force_authenticate(user=scientist)
        return client.post("/api/models/", {"name": "same-name", "team": "credit-risk", "risk_tier": "minimal"},
                           format="json").status_code

    statuses = run_together(post, post, post, post)
    assert sorted(statuses) == [201, 409, 409, 409], statuses
    assert RegisteredModel.objects.filter(name="same-name").count() == 1
