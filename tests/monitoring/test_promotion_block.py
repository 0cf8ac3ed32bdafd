"""Policy: a monitor whose thresholds say `on_alert: block_promotion` keeps its version out of
production while one of its alerts is open. Only a risk officer sets it; removing it is a weakening
(a second risk officer); the refusal is kept in the ledger; staging and rollbacks are not blocked;
acknowledging the alert (with a comment) lifts the block."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import LedgerEntry
from core.errors import Conflict, Forbidden
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.models import Alert, ThresholdChange
from governance.monitoring.services.monitors import (
    alert_acknowledge,
    monitor_create,
    monitor_run,
    monitor_thresholds_set,
    weakens,
)
from governance.monitoring.services.profiles import reference_profile_create
from governance.registry.services.approvals import approval_decide, model_version_submit
from governance.registry.services.deployments import deployment_record
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved(version, scientist, approver, risk_officer, policy):  # type: ignore[no-untyped-def]
    request = model_version_submit(version=version, by=scientist)
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
    version.refresh_from_db()
    return version


@pytest.fixture
def blocking_alert(approved, scientist, risk_officer):  # type: ignore[no-untyped-def]
    reference_profile_create(by=scientist, version=approved, file=SimpleUploadedFile("r.csv", _csv(3_000)), columns=["age"])
    monitor = monitor_create(by=scientist, version=approved)
    monitor = monitor_thresholds_set(monitor=monitor, by=risk_officer,
                                     thresholds={**monitor.thresholds, "on_alert": "block_promotion"})
    prediction_batch_upload(by=scientist, model=approved.model, served_version=approved,
                            uploaded=SimpleUploadedFile("b.csv", _csv(800, shift=9.0)))
    monitor_run(monitor=monitor, by=scientist)
    return Alert.objects.get(monitor=monitor)


def test_an_open_alert_blocks_production_until_acknowledged(blocking_alert, approved, scientist, environments):
    with pytest.raises(Conflict) as refused:
        deployment_record(version=approved, environment=environments["production"], by=scientist)
    assert refused.value.code == "monitoring_alert_blocks_promotion"
    entry = LedgerEntry.objects.get(action="deployment.record.refused")
    assert entry.payload["code"] == "monitoring_alert_blocks_promotion" and entry.actor == "user:dana"
    assert not LedgerEntry.objects.filter(action="deployment.recorded").exists()
    # Staging is not promotion.
    deployment_record(version=approved, environment=environments["staging"], by=scientist)
    alert_acknowledge(alert=blocking_alert, by=scientist, comment="age unit fixed; drift explained")
    deployment = deployment_record(version=approved, environment=environments["production"], by=scientist)
    assert deployment.is_active


def test_without_the_policy_alerts_do_not_block(approved, scientist, environments):
    reference_profile_create(by=scientist, version=approved, file=SimpleUploadedFile("r.csv", _csv(3_000)), columns=["age"])
    monitor = monitor_create(by=scientist, version=approved)
    prediction_batch_upload(by=scientist, model=approved.model, served_version=approved,
                            uploaded=SimpleUploadedFile("b.csv", _csv(800, shift=9.0)))
    monitor_run(monitor=monitor, by=scientist)
    assert Alert.objects.filter(status="open").count() == 1
    assert deployment_record(version=approved, environment=environments["production"], by=scientist).is_active


def test_only_risk_officers_set_it_and_removing_it_takes_a_second(blocking_alert, scientist, risk_officer, make_user):
    monitor = blocking_alert.monitor
    with pytest.raises(Forbidden):
        monitor_thresholds_set(monitor=monitor, by=scientist, thresholds={**monitor.thresholds, "on_alert": "none"})
    assert weakens(monitor.thresholds, {**monitor.thresholds, "on_alert": "none"})
    change = monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={**monitor.thresholds, "on_alert": "none"})
    assert isinstance(change, ThresholdChange)
    monitor.refresh_from_db()
    assert monitor.thresholds["on_alert"] == "block_promotion"


def test_a_data_scientist_cannot_create_a_monitor_with_or_without_the_block_bypassing_policy(approved, scientist):
    with pytest.raises(Forbidden):
        monitor_create(by=scientist, version=approved, thresholds={"on_alert": "block_promotion"})


def test_periodic_revalidation_is_policy_and_overdue_versions_are_shown(approved, scientist, risk_officer, environments,
                                                                         make_user, other_team, monkeypatch):
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from governance.monitoring.selectors import revalidation_overdue

    deployment_record(version=approved, environment=environments["production"], by=scientist)
    monitor = monitor_create(by=scientist, version=approved)
    with pytest.raises(Forbidden):
        monitor_thresholds_set(monitor=monitor, by=scientist, thresholds={**monitor.thresholds, "revalidate_days": 30})
    monitor = monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={**monitor.thresholds, "revalidate_days": 30})
    assert revalidation_overdue(user=scientist) == []  # approved just now
    later = timezone.now() + timedelta(days=35)
    (item,) = revalidation_overdue(user=scientist, now=later)
    assert (item["version"], item["every_days"], item["days_overdue"]) == (approved.label, 30, 5)
    assert revalidation_overdue(user=make_user("olga", "data_scientist", teams=(other_team,)), now=later) == []
    # Lengthening the period (or dropping it) is a weakening: a second risk officer.
    assert isinstance(monitor_thresholds_set(monitor=monitor, by=risk_officer,
                                             thresholds={**monitor.thresholds, "revalidate_days": 365}), ThresholdChange)
    # Shown on the dashboard and the model page once overdue.
    monitor.refresh_from_db()
    client = Client()
    client.force_login(scientist)
    assert 'id="revalidation-overdue"' not in client.get("/").content.decode()
    from governance.monitoring import selectors

    real = selectors.revalidation_overdue
    monkeypatch.setattr(selectors, "revalidation_overdue", lambda **kwargs: real(**{**kwargs, "now": later}))
    assert 'id="revalidation-overdue"' in client.get("/").content.decode()
    assert "must be re-approved every 30 days" in client.get(f"/models/{approved.model.name}/").content.decode()
