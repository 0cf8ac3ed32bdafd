"""Monitors: thresholds as policy (risk officers only; a weakening takes a second one, refusals
kept in the ledger), runs over prediction batches with their digests in the ledger, alerts on
breach and their acknowledgement, through the service and the API; team scoping."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import Forbidden, InvalidInput
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.models import Alert, Monitor, MonitorRun, ThresholdChange
from governance.monitoring.services.monitors import (
    DEFAULT_THRESHOLDS,
    alert_acknowledge,
    monitor_create,
    monitor_run,
    monitor_thresholds_set,
    normalise_thresholds,
    threshold_change_confirm,
    weakens,
)
from governance.monitoring.services.profiles import reference_profile_create

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _csv(rows: int, *, shift: float = 0.0, accuracy: float = 0.9, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    age = rng.normal(40 + shift, 10, rows)
    region = rng.choice(["north", "south"], rows)
    label = rng.integers(0, 2, rows)
    correct = rng.uniform(0, 1, rows) < accuracy
    predicted = np.where(correct, label, 1 - label)
    lines = ["age,region,label,predicted"] + [f"{a:.3f},{r},{y},{p}" for a, r, y, p in
                                              zip(age, region, label, predicted, strict=True)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def monitored(scientist, version):  # type: ignore[no-untyped-def]
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("ref.csv", _csv(3_000)),
                             columns=["age"], categorical=["region"])
    return monitor_create(by=scientist, version=version, y_true="label", y_pred="predicted", window_days=7)


def _batch(scientist: Any, version: Any, content: bytes, name: str = "b.csv") -> None:
    prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile(name, content),
                            served_version=version)


@pytest.fixture
def risk_officer2(make_user):  # type: ignore[no-untyped-def]
    return make_user("ravi", "risk_officer")


# --- thresholds are policy ------------------------------------------------------------------

@pytest.mark.parametrize(("change", "weaker"), [
    ({"alpha": 0.01}, True), ({"alpha": 0.1}, False),
    ({"numeric_effect": 0.3}, True), ({"numeric_effect": 0.05}, False),
    ({"categorical_effect": 0.2}, True),
    ({"correction": "bonferroni"}, True),
    ({"performance": {"accuracy": 0.7}}, True), ({"performance": {"accuracy": 0.9}}, False),
    ({"performance": {"brier": 0.3}}, True), ({"performance": {"brier": 0.1}}, False),
    ({"performance": {}}, True),
])
def test_weakens_is_the_one_rule(change: dict[str, Any], weaker: bool) -> None:
    old = normalise_thresholds({"performance": {"accuracy": 0.8, "brier": 0.2}})
    new = normalise_thresholds({**old, **change} if "performance" not in change else {**old, **change})
    if "performance" in change and change["performance"]:
        new["performance"] = {**old["performance"], **change["performance"]}
    assert weakens(old, new) is weaker


def test_only_risk_officers_set_thresholds_and_the_refusal_is_recorded(monitored, scientist):
    with pytest.raises(Forbidden) as refused:
        monitor_thresholds_set(monitor=monitored, by=scientist, thresholds={"alpha": 0.1})
    assert refused.value.code == "monitoring_thresholds_risk_officer_only"
    entry = LedgerEntry.objects.get(action="monitor.thresholds_set.refused")
    assert entry.payload["code"] == "monitoring_thresholds_risk_officer_only"
    monitored.refresh_from_db()
    assert monitored.thresholds == normalise_thresholds(None)


def test_a_tightening_applies_at_once(monitored, risk_officer):
    result = monitor_thresholds_set(monitor=monitored, by=risk_officer, thresholds={"numeric_effect": 0.05})
    assert isinstance(result, Monitor) and result.thresholds["numeric_effect"] == 0.05
    assert LedgerEntry.objects.filter(action="monitor.thresholds_set").count() == 1


def test_a_weakening_takes_a_second_risk_officer(monitored, risk_officer, risk_officer2):
    proposal = monitor_thresholds_set(monitor=monitored, by=risk_officer, thresholds={"numeric_effect": 0.5},
                                      comment="too noisy")
    assert isinstance(proposal, ThresholdChange)
    monitored.refresh_from_db()
    assert monitored.thresholds["numeric_effect"] == DEFAULT_THRESHOLDS["numeric_effect"]
    with pytest.raises(Forbidden) as same:
        threshold_change_confirm(change=proposal, by=risk_officer)
    assert same.value.code == "monitoring_second_risk_officer"
    assert LedgerEntry.objects.filter(action="monitor.thresholds_weakening_confirm.refused").count() == 1
    applied = threshold_change_confirm(change=proposal, by=risk_officer2)
    assert applied.thresholds["numeric_effect"] == 0.5
    entry = LedgerEntry.objects.filter(action="monitor.thresholds_set").latest("seq")
    assert entry.payload["proposed_by"] == risk_officer.username


def test_the_weakening_rule_holds_through_the_api(monitored, risk_officer, risk_officer2, scientist):
    url = f"/api/monitoring/monitors/{monitored.pk}/thresholds/"
    denied = client_for(scientist).post(url, {"thresholds": {"alpha": 0.2}}, format="json")
    assert denied.status_code == 403 and denied.json()["code"] == "monitoring_thresholds_risk_officer_only"
    proposed = client_for(risk_officer).post(url, {"thresholds": {"alpha": 0.01}}, format="json")
    assert proposed.status_code == 202
    change_id = proposed.json()["id"]
    confirm = f"/api/monitoring/threshold-changes/{change_id}/confirm/"
    own = client_for(risk_officer).post(confirm)
    assert own.status_code == 403 and own.json()["code"] == "monitoring_second_risk_officer"
    ok = client_for(risk_officer2).post(confirm)
    assert ok.status_code == 200 and ok.json()["thresholds"]["alpha"] == 0.01


def test_a_monitor_with_custom_thresholds_needs_a_risk_officer(scientist, version, risk_officer):
    with pytest.raises(Forbidden):
        monitor_create(by=scientist, version=version, thresholds={"alpha": 0.01})
    assert not Monitor.objects.exists()
    assert LedgerEntry.objects.filter(action="monitor.create.refused").count() == 1


# --- runs and alerts --------------------------------------------------------------------------

def test_a_run_records_the_digests_and_raises_alerts_on_breach(monitored, scientist, version, risk_officer):
    monitor_thresholds_set(monitor=monitored, by=risk_officer, thresholds={"performance": {"accuracy": 0.85}})
    monitored.refresh_from_db()
    _batch(scientist, version, _csv(800, shift=8.0, accuracy=0.6, seed=2), "week1.csv")
    run = monitor_run(monitor=monitored, by=scientist)
    entry = LedgerEntry.objects.get(action="monitor_run.completed")
    assert entry.seq == run.ledger_seq
    assert entry.payload["profile_sha256"] == run.profile.profile_sha256
    assert entry.payload["result_sha256"] == run.result_sha256
    assert [b["sha256"] for b in entry.payload["batches"]] == [b["sha256"] for b in run.batches]
    assert entry.payload["drifted"] == ["age"]
    alerts = {(a.kind, a.subject) for a in Alert.objects.all()}
    assert alerts == {("drift", "age"), ("performance", "accuracy")}
    assert LedgerEntry.objects.filter(action="alert.raised").count() == 2
    assert run.result["performance"]["accuracy"] < 0.85


def test_no_breach_no_alert(monitored, scientist, version):
    _batch(scientist, version, _csv(800, seed=3))
    run = monitor_run(monitor=monitored, by=scientist)
    assert run.breached is False
    assert not Alert.objects.exists()


def test_a_run_without_batches_is_400_and_writes_nothing(monitored, scientist):
    with pytest.raises(InvalidInput) as error:
        monitor_run(monitor=monitored, by=scientist)
    assert error.value.code == "fairness_no_batches"
    assert not MonitorRun.objects.exists()
    assert not LedgerEntry.objects.filter(action="monitor_run.completed").exists()


def test_acknowledge_takes_a_comment_and_happens_once(monitored, scientist, version):
    _batch(scientist, version, _csv(800, shift=8.0, seed=4))
    monitor_run(monitor=monitored, by=scientist)
    alert = Alert.objects.get()
    client = client_for(scientist)
    empty = client.post(f"/api/monitoring/alerts/{alert.pk}/acknowledge/", {"comment": ""}, format="json")
    assert empty.status_code == 400
    done = client.post(f"/api/monitoring/alerts/{alert.pk}/acknowledge/", {"comment": "retraining scheduled"},
                       format="json")
    assert done.status_code == 200 and done.json()["status"] == "acknowledged"
    assert LedgerEntry.objects.get(action="alert.acknowledged").payload["comment"] == "retraining scheduled"
    again = client.post(f"/api/monitoring/alerts/{alert.pk}/acknowledge/", {"comment": "again"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "monitoring_alert_closed"
    assert client.get("/api/monitoring/alerts/", {"status": "open"}).json()["results"] == []


def test_runs_alerts_and_trend_are_team_scoped(monitored, scientist, version, make_user, other_team):
    _batch(scientist, version, _csv(800, shift=8.0, seed=5))
    response = client_for(scientist).post(f"/api/monitoring/monitors/{monitored.pk}/runs/")
    assert response.status_code == 201, response.content
    trend = client_for(scientist).get("/api/monitoring/trend/", {"monitor": monitored.pk}).json()
    assert trend["points"][0]["columns"]["age"]["drift"] is True
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    other = client_for(outsider)
    assert other.get("/api/monitoring/alerts/").json()["results"] == []
    assert other.get(f"/api/monitoring/monitors/{monitored.pk}/runs/").status_code == 404
    assert other.post(f"/api/monitoring/alerts/{Alert.objects.get().pk}/acknowledge/", {"comment": "x"},
                      format="json").status_code == 404
    assert other.get("/api/monitoring/trend/", {"monitor": monitored.pk}).status_code == 404


def test_acknowledge_by_a_viewer_is_refused(monitored, scientist, version, make_user, team):
    _batch(scientist, version, _csv(800, shift=8.0, seed=6))
    monitor_run(monitor=monitored, by=scientist)
    viewer = make_user("vic", "viewer", teams=(team,))
    with pytest.raises(Exception) as refused:
        alert_acknowledge(alert=Alert.objects.get(), by=viewer, comment="seen")
    assert getattr(refused.value, "code", None) == "permission_denied"
    assert Alert.objects.get().status == "open"


def test_a_run_records_each_sealed_read_in_its_own_transaction(monitored, scientist, version, monkeypatch):
    """Issue 18: the profile body and each batch a run reads are `sealed_file.read` entries, committed
    with the run; a run that fails after reading leaves neither."""
    from governance.fairness.models import SealedFile
    from governance.fairness.services import vault

    _batch(scientist, version, _csv(500, seed=4), "w1.csv")
    _batch(scientist, version, _csv(500, seed=5), "w2.csv")
    original = vault.sealed_file_reads_record

    def then_fail(**kwargs: Any) -> None:
        original(**kwargs)
        raise RuntimeError("the run's transaction fails after recording its reads")

    monkeypatch.setattr(vault, "sealed_file_reads_record", then_fail)
    with pytest.raises(RuntimeError):
        monitor_run(monitor=monitored, by=scientist)
    assert not LedgerEntry.objects.filter(action__in=["sealed_file.read", "monitor_run.completed"]).exists()
    monkeypatch.setattr(vault, "sealed_file_reads_record", original)
    run = monitor_run(monitor=monitored, by=scientist)
    reads = list(LedgerEntry.objects.filter(action="sealed_file.read").order_by("seq"))
    kinds = sorted(SealedFile.objects.get(pk=int(entry.subject_id)).kind for entry in reads)
    assert kinds == ["batch", "batch", "profile"]
    assert {entry.payload["cause_id"] for entry in reads} == {run.pk}
    assert all(entry.payload["purpose"] == "monitoring_run" and entry.actor == f"user:{scientist.username}"
               for entry in reads)


def test_a_run_whose_batch_was_erased_keeps_its_result_and_says_so(monitored, scientist, version, risk_officer,
                                                                  django_capture_on_commit_callbacks):
    from governance.fairness.models import PredictionBatch, SealedFile
    from governance.fairness.services import vault

    _batch(scientist, version, _csv(500, seed=6), "w1.csv")
    run = monitor_run(monitor=monitored, by=scientist)
    listed = client_for(scientist).get(f"/api/monitoring/monitors/{monitored.pk}/runs/").json()["results"]
    assert listed[0]["input_erasure"] is None
    record = SealedFile.objects.get(name=PredictionBatch.objects.get().file.name)
    with django_capture_on_commit_callbacks(execute=True):
        vault.sealed_file_erase(by=risk_officer, record=record, reason="retention")
    listed = client_for(scientist).get(f"/api/monitoring/monitors/{monitored.pk}/runs/").json()["results"]
    assert listed[0]["result_sha256"] == run.result_sha256 and listed[0]["result"]
    assert listed[0]["input_erasure"]["note"] == "input erased under retention policy"
    assert listed[0]["input_erasure"]["input_sha256"] == [record.source_sha256]


def test_runs_older_than_a_row_level_erasure_carry_its_note(monitored, scientist, version, risk_officer,
                                                            django_capture_on_commit_callbacks):
    from governance.fairness.models import PredictionBatch, SealedFile
    from governance.fairness.services import vault

    _batch(scientist, version, _csv(500, seed=6), "w1.csv")
    older = monitor_run(monitor=monitored, by=scientist)
    record = SealedFile.objects.get(name=PredictionBatch.objects.get().file.name)
    with django_capture_on_commit_callbacks(execute=True):
        replacement = vault.sealed_file_erase_rows(by=risk_officer, record=record, column="region", value="north")
    assert PredictionBatch.objects.get().file.name == replacement.name
    newer = monitor_run(monitor=monitored, by=scientist)
    listed = {item["id"]: item for item in
              client_for(scientist).get(f"/api/monitoring/monitors/{monitored.pk}/runs/").json()["results"]}
    note = listed[older.pk]["input_erasure"]
    assert note["note"] == "input erased under retention policy" and note["reasons"] == ["row_erasure"]
    assert note["input_sha256"] == [record.source_sha256] and listed[older.pk]["result_sha256"] == older.result_sha256
    assert listed[newer.pk]["input_erasure"] is None  # it read the rewrite, which still exists


def test_a_tampered_batch_fails_the_run_with_a_clear_error_and_records_nothing(monitored, scientist, version):
    from pathlib import Path

    from core.errors import ServiceError
    from governance.fairness.models import PredictionBatch

    _batch(scientist, version, _csv(500, seed=7), "w1.csv")
    stored = Path(PredictionBatch.objects.get().file.path)
    data = bytearray(stored.read_bytes())
    data[40] ^= 0x01  # a ciphertext byte of the first chunk
    stored.write_bytes(bytes(data))
    with pytest.raises(ServiceError) as failed:
        monitor_run(monitor=monitored, by=scientist)
    assert failed.value.code == "sealed_file_corrupt" and failed.value.status_code == 409
    assert "authentication" in str(failed.value)
    assert not MonitorRun.objects.exists()
    assert not LedgerEntry.objects.filter(action__in=["monitor_run.completed", "sealed_file.read"]).exists()
