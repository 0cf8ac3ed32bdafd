"""Insiders and monitoring, as the attacking user with normal permissions, through the API and the
admin: thresholds are a risk officer's policy, a weakening takes a second risk officer, a frozen
reference profile cannot be swapped, and monitors, runs and alerts cannot be edited in the admin.
Each refusal by a rule is kept in the ledger; none leaves a change behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from governance.fairness.services.batches import prediction_batch_upload
from governance.models import VersionStatus
from governance.monitoring.models import Alert, Monitor, ReferenceProfile, ThresholdChange
from governance.monitoring.services.monitors import monitor_create, monitor_run, monitor_thresholds_set
from governance.monitoring.services.profiles import reference_profile_create
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_media(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def admin(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def monitor(scientist, version):  # type: ignore[no-untyped-def]
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("ref.csv", _csv(2_000)),
                             columns=["age"], categorical=["region"])
    return monitor_create(by=scientist, version=version, y_true="label", y_pred="predicted")


def test_a_data_scientist_cannot_loosen_the_alarm_of_their_own_model(monitor, scientist):
    before = dict(monitor.thresholds)
    response = api(scientist).post(f"/api/monitoring/monitors/{monitor.pk}/thresholds/",
                                   {"thresholds": {"numeric_effect": 5.0, "alpha": 1e-9}}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "monitoring_thresholds_risk_officer_only"
    monitor.refresh_from_db()
    assert monitor.thresholds == before
    refused = LedgerEntry.objects.get(action="monitor.thresholds_set.refused")
    assert refused.payload["code"] == "monitoring_thresholds_risk_officer_only"
    assert refused.actor == f"user:{scientist.username}"


def test_one_risk_officer_alone_cannot_weaken_thresholds(monitor, risk_officer):
    client = api(risk_officer)
    proposed = client.post(f"/api/monitoring/monitors/{monitor.pk}/thresholds/",
                           {"thresholds": {"numeric_effect": 5.0}}, format="json")
    assert proposed.status_code == 202
    own = client.post(f"/api/monitoring/threshold-changes/{proposed.json()['id']}/confirm/")
    assert own.status_code == 403 and own.json()["code"] == "monitoring_second_risk_officer"
    monitor.refresh_from_db()
    assert monitor.thresholds["numeric_effect"] == 0.1
    assert ThresholdChange.objects.get().status == ThresholdChange.Status.PENDING
    assert LedgerEntry.objects.filter(action="monitor.thresholds_weakening_confirm.refused").count() == 1
    # A second proposal cannot queue behind the first to be confirmed by a colluding reading.
    again = client.post(f"/api/monitoring/monitors/{monitor.pk}/thresholds/",
                        {"thresholds": {"numeric_effect": 9.0}}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "monitoring_change_pending"


def test_a_tightening_by_one_risk_officer_is_not_a_loophole_for_a_later_weakening(monitor, risk_officer):
    monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={"numeric_effect": 0.05})
    monitor.refresh_from_db()
    outcome = monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={"numeric_effect": 0.1})
    assert isinstance(outcome, ThresholdChange)  # back to the default is a weakening of the current policy


def test_the_baseline_of_an_approved_version_cannot_be_swapped(monitor, scientist, version):
    version.status = VersionStatus.APPROVED
    version.save_recorded(action="model_version.approved", by=scientist)
    from governance.monitoring.services.profiles import reference_profile_freeze

    reference_profile_freeze(version=version, by=scientist)
    before = LedgerEntry.objects.count()
    response = api(scientist).post("/api/monitoring/profiles/", {
        "profile": json.dumps({"model": version.model.name, "version": version.label, "columns": ["age"]}),
        "file": SimpleUploadedFile("friendlier.csv", _csv(2_000, shift=9.0))}, format="multipart")
    assert response.status_code == 409 and response.json()["code"] == "monitoring_profile_frozen"
    assert ReferenceProfile.objects.count() == 1
    refused = LedgerEntry.objects.filter(seq__gte=before).values_list("action", flat=True)
    assert "reference_profile.created" not in refused


@pytest.mark.parametrize("what", ["monitor", "alert"])
def test_the_admin_cannot_edit_monitors_or_close_alerts(what, monitor, scientist, version, make_user):
    prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile("b.csv", _csv(500, shift=9.0)),
                            served_version=version)
    monitor_run(monitor=monitor, by=scientist)
    superuser = make_user("root", "admin")
    superuser.is_superuser = True
    superuser.save()
    if what == "monitor":
        url = f"/admin/monitoring/monitor/{monitor.pk}/change/"
        data = {"name": monitor.name, "thresholds": json.dumps({"numeric_effect": 9.0}), "window_days": 7}
    else:
        alert = Alert.objects.get()
        url = f"/admin/monitoring/alert/{alert.pk}/change/"
        data = {"status": "acknowledged", "comment": "closed quietly"}
    response = admin(superuser).post(url, data)
    assert response.status_code == 403
    assert Monitor.objects.get().thresholds["numeric_effect"] == 0.1
    assert Alert.objects.get().status == Alert.Status.OPEN


# --- re-approval on alert (policy `reapprove_on_alert`) ---------------------------------------

@pytest.fixture
def production(version, scientist, approver, risk_officer, policy, environments):  # type: ignore[no-untyped-def]
    """The version approved by two deciders and deployed, watched by a monitor whose policy re-approves on alert."""
    from governance.registry.services.approvals import approval_decide, model_version_submit
    from governance.registry.services.deployments import deployment_record

    request = model_version_submit(version=version, by=scientist)
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
    deployment_record(version=version, environment=environments["production"], by=scientist)
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("ref.csv", _csv(2_000)),
                             columns=["age"])
    monitor = monitor_create(by=scientist, version=version)
    return monitor_thresholds_set(monitor=monitor, by=risk_officer,
                                  thresholds={**monitor.thresholds, "reapprove_on_alert": True})


def _drift(by: Any, version: Any) -> None:
    prediction_batch_upload(by=by, model=version.model, served_version=version,
                            uploaded=SimpleUploadedFile("drift.csv", _csv(800, shift=9.0)))


def test_an_approver_whose_predictions_raised_the_alert_cannot_approve_its_reapproval(
        production, version, make_user, team, approver2):
    from django.contrib.auth import get_user_model

    from governance.models import ApprovalDecision, ApprovalRequest
    from governance.registry.services.access import approver_scope_grant
    from tests.fixtures import SEED

    insider = make_user("ivan", "data_scientist", "approver", teams=(team,))
    approver_scope_grant(by=SEED, to=insider, risk_tier="high")
    insider = get_user_model().objects.get(pk=insider.pk)
    _drift(insider, version)
    ran = api(approver2).post(f"/api/monitoring/monitors/{production.pk}/runs/")
    assert ran.status_code == 201
    request = ApprovalRequest.objects.get(kind="reapproval")
    assert request.excluded_deciders == ["user:bob", "user:ivan"]
    for person in (insider, approver2):  # the uploader, and the approver who ran the monitor
        response = api(person).post(f"/api/approval-requests/{request.pk}/decisions/",
                                    {"decision": "approve", "comment": "fine by me"}, format="json")
        assert response.status_code == 403, response.json()
        assert response.json()["code"] == "approval_separation_of_duties"
    assert not ApprovalDecision.objects.filter(request=request).exists()


def test_the_data_scientist_cannot_make_the_reapproval_go_away(production, version, scientist):
    from governance.models import ApprovalRequest

    _drift(scientist, version)
    assert api(scientist).post(f"/api/monitoring/monitors/{production.pk}/runs/").status_code == 201
    request = ApprovalRequest.objects.get(kind="reapproval")
    client = api(scientist)
    withdrawn = client.post(f"/api/approval-requests/{request.pk}/withdraw/", {"comment": "false alarm"}, format="json")
    assert withdrawn.status_code == 409 and withdrawn.json()["code"] == "approval_reapproval_not_withdrawable"
    alert = Alert.objects.get()
    acknowledged = client.post(f"/api/monitoring/alerts/{alert.pk}/acknowledge/", {"comment": "known"}, format="json")
    assert acknowledged.status_code == 200
    turned_off = client.post(f"/api/monitoring/monitors/{production.pk}/thresholds/",
                             {"thresholds": {**production.thresholds, "reapprove_on_alert": False}}, format="json")
    assert turned_off.status_code == 403 and turned_off.json()["code"] == "monitoring_thresholds_risk_officer_only"
    request.refresh_from_db()
    production.refresh_from_db()
    assert request.status == "pending" and production.thresholds["reapprove_on_alert"] is True


def test_one_risk_officer_alone_cannot_turn_reapproval_off(production, risk_officer):
    client = api(risk_officer)
    proposed = client.post(f"/api/monitoring/monitors/{production.pk}/thresholds/",
                           {"thresholds": {**production.thresholds, "reapprove_on_alert": False}}, format="json")
    assert proposed.status_code == 202
    own = client.post(f"/api/monitoring/threshold-changes/{proposed.json()['id']}/confirm/")
    assert own.status_code == 403 and own.json()["code"] == "monitoring_second_risk_officer"
    production.refresh_from_db()
    assert production.thresholds["reapprove_on_alert"] is True
