"""Policy `reapprove_on_alert`: an alert on a production version opens a re-approval of the version
through the approval workflow (same quorum, roles, evidence), one pending per version however many
alerts, exactly once under task retries; the version stays in production whatever the outcome, and
each step is a ledger entry. Turning the option off is a weakening (a second risk officer)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audit.models import LedgerEntry
from core.errors import Conflict, Forbidden
from governance.fairness.services.batches import prediction_batch_upload
from governance.models import ApprovalRequest, VersionStatus
from governance.monitoring.models import Alert, MonitorRun, ThresholdChange
from governance.monitoring.services import monitors as monitor_services
from governance.monitoring.services.monitors import (
    alert_acknowledge,
    current_slot,
    monitor_create,
    monitor_run,
    monitor_run_scheduled,
    monitor_thresholds_set,
    weakens,
)
from governance.monitoring.services.profiles import reference_profile_create
from governance.monitoring.services.revalidation import revalidation_alerts_raise
from governance.registry.services.approvals import approval_decide, approval_expire_due, model_version_submit
from governance.registry.services.common import SeparationOfDuties
from governance.registry.services.deployments import deployment_record
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployed(version, scientist, approver, risk_officer, policy, environments):  # type: ignore[no-untyped-def]
    request = model_version_submit(version=version, by=scientist)
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
    deployment_record(version=version, environment=environments["production"], by=scientist)
    version.refresh_from_db()
    assert version.status == VersionStatus.DEPLOYED
    return version


def _monitor(version: Any, scientist: Any, risk_officer: Any, *, reapprove: bool = True, **extra: Any) -> Any:
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv(3_000)),
                             columns=["age"])
    monitor = monitor_create(by=scientist, version=version, **extra)
    if reapprove:
        monitor = monitor_thresholds_set(monitor=monitor, by=risk_officer,
                                         thresholds={**monitor.thresholds, "reapprove_on_alert": True})
    return monitor


def _drifted_batch(by: Any, version: Any, name: str = "b.csv", seed: int = 1) -> None:
    prediction_batch_upload(by=by, model=version.model, served_version=version,
                            uploaded=SimpleUploadedFile(name, _csv(800, shift=9.0, seed=seed)))


@pytest.fixture
def watched(deployed, scientist, risk_officer):  # type: ignore[no-untyped-def]
    monitor = _monitor(deployed, scientist, risk_officer)
    _drifted_batch(scientist, deployed)
    return monitor


def test_an_alert_on_a_production_version_opens_a_reapproval(watched, deployed, scientist, policy):
    monitor_run(monitor=watched, by=scientist)
    alert = Alert.objects.get(monitor=watched)
    request = ApprovalRequest.objects.get(kind="reapproval")
    assert alert.reapproval_id == request.pk
    assert (request.version_id, request.status, request.submitted_by_id) == (deployed.pk, "pending", scientist.pk)
    assert request.excluded_deciders == ["user:dana"]
    assert request.policy_snapshot["quorum"] == 2 and request.policy_snapshot["required_roles"] == ["risk_officer"]
    opened = LedgerEntry.objects.get(action="approval_request.reapproval_opened")
    assert opened.subject_id == str(request.pk) and opened.actor == "user:dana"
    assert opened.payload["reason"]["alert"] == alert.pk and opened.payload["reason"]["monitor"] == watched.pk
    raised = LedgerEntry.objects.get(action="alert.raised")
    assert raised.payload["reapproval"] == request.pk and raised.seq > opened.seq
    deployed.refresh_from_db()
    assert deployed.status == VersionStatus.DEPLOYED  # still in production while it is re-reviewed


def test_every_later_alert_joins_the_one_pending_reapproval(watched, deployed, scientist, scientist2, risk_officer):
    monitor_run(monitor=watched, by=scientist)
    monitor_run(monitor=watched, by=scientist)
    request = ApprovalRequest.objects.get(kind="reapproval")
    assert list(Alert.objects.values_list("reapproval_id", flat=True)) == [request.pk, request.pk]
    assert not LedgerEntry.objects.filter(action="approval_request.reapproval_joined").exists()  # nobody new
    _drifted_batch(scientist2, deployed, name="c.csv", seed=2)
    monitor_run(monitor=watched, by=risk_officer)
    assert ApprovalRequest.objects.filter(kind="reapproval").count() == 1
    request.refresh_from_db()
    assert request.excluded_deciders == ["user:dana", "user:dario", "user:rita"]
    joined = LedgerEntry.objects.get(action="approval_request.reapproval_joined")
    assert joined.payload["excluded_added"] == ["user:dario", "user:rita"]
    assert Alert.objects.filter(reapproval=request).count() == 3


def test_the_reapproval_follows_the_approval_rules_and_keeps_the_version_in_production(
        watched, deployed, scientist, approver, risk_officer):
    monitor_run(monitor=watched, by=scientist)
    request = ApprovalRequest.objects.get(kind="reapproval")
    with pytest.raises(SeparationOfDuties):
        approval_decide(request=request, by=scientist, decision="approve", comment="mine")
    approval_decide(request=request, by=approver, decision="approve", comment="drift explained")
    request.refresh_from_db()
    assert request.status == "pending"  # quorum 2 with a risk officer
    approval_decide(request=request, by=risk_officer, decision="approve", comment="agreed")
    request.refresh_from_db()
    deployed.refresh_from_db()
    assert request.status == "approved" and deployed.status == VersionStatus.DEPLOYED
    entry = LedgerEntry.objects.get(action="model_version.reapproval_approved")
    assert entry.subject_id == str(deployed.pk) and entry.payload["status"] == "deployed"
    assert LedgerEntry.objects.filter(action="model_version.approved").count() == 1  # the first approval only
    # Decided: the next alert opens a new re-approval.
    monitor_run(monitor=watched, by=scientist)
    assert ApprovalRequest.objects.filter(kind="reapproval", status="pending").count() == 1
    assert ApprovalRequest.objects.filter(kind="reapproval").count() == 2


def test_a_rejected_reapproval_is_recorded_and_the_version_stays(watched, deployed, scientist, approver):
    monitor_run(monitor=watched, by=scientist)
    request = ApprovalRequest.objects.get(kind="reapproval")
    approval_decide(request=request, by=approver, decision="reject", comment="roll it back")
    request.refresh_from_db()
    deployed.refresh_from_db()
    assert request.status == "rejected" and deployed.status == VersionStatus.DEPLOYED
    assert LedgerEntry.objects.get(action="model_version.reapproval_rejected").payload["approval_request"] == request.pk


def test_an_expired_reapproval_leaves_the_version_in_production(watched, deployed, scientist):
    monitor_run(monitor=watched, by=scientist)
    request = ApprovalRequest.objects.get(kind="reapproval")
    assert approval_expire_due(now=timezone.now() + timedelta(hours=49)) == [request.pk]
    deployed.refresh_from_db()
    assert deployed.status == VersionStatus.DEPLOYED
    assert LedgerEntry.objects.filter(action="model_version.reapproval_expired").count() == 1


def test_acknowledging_the_alert_does_not_close_the_reapproval(watched, scientist):
    monitor_run(monitor=watched, by=scientist)
    alert = Alert.objects.get()
    alert_acknowledge(alert=alert, by=scientist, comment="looked at it")
    assert ApprovalRequest.objects.get(kind="reapproval").status == "pending"


def test_without_the_policy_no_reapproval_opens(deployed, scientist, risk_officer):
    monitor = _monitor(deployed, scientist, risk_officer, reapprove=False)
    _drifted_batch(scientist, deployed)
    monitor_run(monitor=monitor, by=scientist)
    assert Alert.objects.get().reapproval_id is None
    assert not ApprovalRequest.objects.filter(kind="reapproval").exists()
    assert "reapproval" not in LedgerEntry.objects.get(action="alert.raised").payload


def test_a_version_not_in_production_gets_no_reapproval(version, scientist, approver, risk_officer, policy):
    request = model_version_submit(version=version, by=scientist)
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
    monitor = _monitor(version, scientist, risk_officer)
    _drifted_batch(scientist, version)
    monitor_run(monitor=monitor, by=scientist)
    assert Alert.objects.get().reapproval_id is None
    assert ApprovalRequest.objects.filter(kind="reapproval").count() == 0


def test_a_scheduled_run_opens_it_exactly_once_under_retries(deployed, scientist, risk_officer, monkeypatch):
    monitor = _monitor(deployed, scientist, risk_officer)
    _drifted_batch(scientist, deployed)
    slot = current_slot(monitor, timezone.now() + timedelta(days=1))
    assert slot is not None
    real_append = monitor_services.ledger_append

    def dies_at_the_alert(**kwargs: Any) -> Any:
        if kwargs["action"] == "alert.raised":
            raise SystemExit("worker killed")
        return real_append(**kwargs)

    monkeypatch.setattr(monitor_services, "ledger_append", dies_at_the_alert)
    with pytest.raises(SystemExit):
        monitor_run_scheduled(monitor_id=monitor.pk, slot=slot)
    assert not ApprovalRequest.objects.filter(kind="reapproval").exists()
    assert not LedgerEntry.objects.filter(action="approval_request.reapproval_opened").exists()
    monkeypatch.setattr(monitor_services, "ledger_append", real_append)
    first = monitor_run_scheduled(monitor_id=monitor.pk, slot=slot)
    second = monitor_run_scheduled(monitor_id=monitor.pk, slot=slot)
    assert first is not None and second is not None and first.pk == second.pk
    assert MonitorRun.objects.count() == 1
    request = ApprovalRequest.objects.get(kind="reapproval")
    assert request.submitted_by_id is None  # nobody asked: the scheduled job did
    assert request.excluded_deciders == ["system:monitor_run_scheduled_task", "user:dana"]
    assert LedgerEntry.objects.get(action="approval_request.reapproval_opened").actor == "system:monitor_run_scheduled_task"


def test_an_overdue_revalidation_opens_a_reapproval_too(deployed, scientist, risk_officer):
    monitor = _monitor(deployed, scientist, risk_officer)
    monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={**monitor.thresholds, "revalidate_days": 30})
    raised = revalidation_alerts_raise(now=timezone.now() + timedelta(days=31))
    assert len(raised) == 1
    request = ApprovalRequest.objects.get(kind="reapproval")
    assert raised[0].reapproval_id == request.pk and request.submitted_by_id is None
    assert request.excluded_deciders == ["system:revalidation_alerts_raise_task"]


def test_only_risk_officers_set_it_and_turning_it_off_takes_a_second(watched, scientist, risk_officer, make_user):
    with pytest.raises(Forbidden):
        monitor_thresholds_set(monitor=watched, by=scientist, thresholds={**watched.thresholds, "reapprove_on_alert": False})
    off = {**watched.thresholds, "reapprove_on_alert": False}
    assert weakens(watched.thresholds, off) and not weakens(off, watched.thresholds)
    change = monitor_thresholds_set(monitor=watched, by=risk_officer, thresholds=off)
    assert isinstance(change, ThresholdChange) and change.status == "pending"
    watched.refresh_from_db()
    assert watched.thresholds["reapprove_on_alert"] is True


def test_the_option_takes_only_true_or_false(deployed, scientist, risk_officer):
    monitor = _monitor(deployed, scientist, risk_officer, reapprove=False)
    with pytest.raises(Exception) as refused:
        monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={**monitor.thresholds, "reapprove_on_alert": "yes"})
    assert getattr(refused.value, "code", None) == "monitoring_bad_thresholds"


def test_a_reapproval_is_not_withdrawn(watched, scientist):
    from governance.registry.services.approvals import approval_withdraw

    monitor_run(monitor=watched, by=scientist)
    request = ApprovalRequest.objects.get(kind="reapproval")
    with pytest.raises(Conflict) as refused:
        approval_withdraw(request=request, by=scientist, comment="not needed")
    assert refused.value.code == "approval_reapproval_not_withdrawable"
    request.refresh_from_db()
    assert request.status == "pending"


def test_the_api_links_alert_and_reapproval_both_ways(watched, scientist, approver):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(scientist)
    assert client.post(f"/api/monitoring/monitors/{watched.pk}/runs/").status_code == 201
    alert = Alert.objects.get()
    request = ApprovalRequest.objects.get(kind="reapproval")
    alerts = client.get("/api/monitoring/alerts/").json()["results"]
    assert [(item["id"], item["reapproval"]) for item in alerts] == [(alert.pk, request.pk)]
    client.force_authenticate(approver)
    body = client.get(f"/api/approval-requests/{request.pk}/").json()
    assert (body["kind"], body["submitted_by"], body["monitoring_alerts"], body["excluded_deciders"]) == (
        "reapproval", "dana", [alert.pk], ["user:dana"])
    assert body["status"] == "pending" and body["progress"]["quorum"] == 2
    listed = client.get("/api/approval-requests/?status=pending").json()["results"]
    assert [item["id"] for item in listed] == [request.pk]


def test_the_model_page_shows_the_reapproval_and_links_it_from_the_alert(watched, deployed, scientist, approver):
    from django.test import Client

    monitor_run(monitor=watched, by=scientist)
    request = ApprovalRequest.objects.get(kind="reapproval")
    client = Client()
    client.force_login(approver)
    page = client.get(f"/models/{deployed.model.name}/").content.decode()
    card = page[page.index(f'id="request-{request.pk}"'):]
    assert "re-approval</span> Opened by a monitoring alert (monitor run by dana) while the version is in production" in card
    assert f'<a href="#request-{request.pk}" class="reapproval-link">re-approval #{request.pk}</a>' in page
    assert "An alert on this version in production opens its re-approval." in page


def test_the_models_bundle_carries_the_reapproval_and_verify_replays_it(watched, deployed, scientist, approver,
                                                                        risk_officer, tmp_path):
    from audit.ledger import checkpoint_create
    from governance.reports import selectors
    from tests.reports.bundle_helpers import make_bundle, run_verify

    monitor_run(monitor=watched, by=scientist)
    request = ApprovalRequest.objects.get(kind="reapproval")
    approval_decide(request=request, by=approver, decision="approve", comment="drift explained")
    approval_decide(request=request, by=risk_officer, decision="approve", comment="agreed")
    plan = selectors.bundle_plan_for_model(model_name=deployed.model.name)
    assert ("governance.approvalrequest", str(request.pk)) in plan.subjects
    checkpoint_create()
    result = run_verify(tmp_path, make_bundle(plan.subjects, bounded_subjects=plan.bounded))
    assert result.returncode == 0, result.stdout
    assert "2 approval(s) replayed from the entries" in result.stdout  # the first approval and the re-approval
    from audit.capture.state import governed_state_problems

    assert [p for p in governed_state_problems() if p["subject_type"].startswith("governance.")] == []
