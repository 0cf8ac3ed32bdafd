"""Late outcomes: joined to a batch by prediction id; each window they change is restated as a new
run linked to the one it replaces (never updated in place), with its ledger entry; coded refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import Conflict, InvalidInput
from governance.fairness.models import PredictionBatch
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.models import Alert, LateOutcome, MonitorRun
from governance.monitoring.services.monitors import monitor_create, monitor_run, monitor_thresholds_set
from governance.monitoring.services.outcomes import late_outcomes_record
from governance.monitoring.services.profiles import reference_profile_create

pytestmark = pytest.mark.django_db


def _csv(rows: int, *, seed: int = 1, known: bool = True, ids: list[str] | None = None) -> tuple[bytes, list[int]]:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, rows)
    region = rng.choice(["north", "south"], rows)
    label = rng.integers(0, 2, rows)
    predicted = label.copy()  # a perfect model, once its outcomes are known
    ids = ids or [f"p{i}" for i in range(rows)]
    lines = ["prediction_id,age,region,label,predicted"] + [
        f"{i},{a:.3f},{r},{y if known else ''},{p}" for i, a, r, y, p in zip(ids, age, region, label, predicted,
                                                                             strict=True)]
    return ("\n".join(lines) + "\n").encode(), [int(v) for v in label]


@pytest.fixture
def monitored(scientist, version, risk_officer):  # type: ignore[no-untyped-def]
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("ref.csv", _csv(2_000)[0]),
                             columns=["age"], categorical=["region"])
    monitor = monitor_create(by=scientist, version=version, y_true="label", y_pred="predicted", window_days=7)
    return monitor_thresholds_set(monitor=monitor, by=risk_officer, thresholds={"performance": {"accuracy": 0.9}})


def _upload(scientist: Any, version: Any, content: bytes, name: str = "b.csv") -> PredictionBatch:
    batch, _ = prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile(name, content),
                                       served_version=version)
    return batch


def test_outcomes_arriving_later_restate_the_window_as_a_new_linked_run(monitored, scientist, version):
    content, labels = _csv(400, seed=2, known=False)
    batch = _upload(scientist, version, content)
    first = monitor_run(monitor=monitored, by=scientist)
    assert first.result["performance"] is None  # no outcome known yet
    # Half the outcomes arrive, all wrong for the model: accuracy 0 on the known half.
    half = [{"prediction_id": f"p{i}", "outcome": 1 - labels[i]} for i in range(200)]
    rows, restated = late_outcomes_record(by=scientist, batch=batch, outcomes=half)
    assert len(rows) == 200 and LateOutcome.objects.count() == 200
    [second] = restated
    assert second.pk != first.pk and second.restates_id == first.pk
    assert second.window_start == first.window_start and second.window_end == first.window_end
    assert second.result["performance"]["accuracy"] == 0.0
    first.refresh_from_db()
    assert first.result["performance"] is None  # the replaced run is kept as it was
    entry = LedgerEntry.objects.get(action="monitor_run.restated")
    assert entry.seq == second.ledger_seq
    assert entry.payload["replaces"] == first.pk
    assert entry.payload["replaces_result_sha256"] == first.result_sha256
    assert entry.payload["result_sha256"] == second.result_sha256
    recorded = LedgerEntry.objects.get(action="late_outcomes.recorded")
    assert entry.payload["outcomes_seq"] == recorded.seq and recorded.payload["count"] == 200
    assert Alert.objects.get(run=second).subject == "accuracy"
    # The rest arrive, right this time: a restatement of the restatement, not of the first run.
    rest = [{"prediction_id": f"p{i}", "outcome": labels[i]} for i in range(200, 400)]
    _, [third] = late_outcomes_record(by=scientist, batch=batch, outcomes=rest)
    assert third.restates_id == second.pk
    assert third.result["performance"]["accuracy"] == 0.5
    assert Alert.objects.filter(subject="accuracy").count() == 1  # the breach was raised once
    # A later scheduled run over the window joins the outcomes too.
    assert monitor_run(monitor=monitored, by=scientist).result["performance"]["accuracy"] == 0.5
    assert MonitorRun.objects.count() == 4


def test_a_late_outcome_fills_only_unknown_rows_and_wins_over_none(monitored, scientist, version):
    content, labels = _csv(100, seed=3, known=True)
    batch = _upload(scientist, version, content)
    monitor_run(monitor=monitored, by=scientist)
    _, [restated] = late_outcomes_record(by=scientist, batch=batch,
                                         outcomes=[{"prediction_id": "p0", "outcome": 1 - labels[0]}])
    assert restated.result["performance"]["accuracy"] == pytest.approx(0.99)


def test_duplicate_prediction_ids_are_refused_with_a_code(monitored, scientist, version):
    batch = _upload(scientist, version, _csv(50, seed=4, known=False)[0])
    with pytest.raises(InvalidInput) as error:
        late_outcomes_record(by=scientist, batch=batch, outcomes=[{"prediction_id": "p1", "outcome": 1},
                                                                  {"prediction_id": "p1", "outcome": 0}])
    assert error.value.code == "monitoring_duplicate_prediction_id"
    doubled = _upload(scientist, version, _csv(3, seed=5, known=False, ids=["a", "a", "b"])[0], "d.csv")
    with pytest.raises(InvalidInput) as error:
        late_outcomes_record(by=scientist, batch=doubled, outcomes=[{"prediction_id": "b", "outcome": 1}])
    assert error.value.code == "monitoring_duplicate_prediction_id"
    late_outcomes_record(by=scientist, batch=batch, outcomes=[{"prediction_id": "p1", "outcome": 1}])
    with pytest.raises(Conflict) as conflict:
        late_outcomes_record(by=scientist, batch=batch, outcomes=[{"prediction_id": "p1", "outcome": 0}])
    assert conflict.value.code == "monitoring_outcome_exists"
    assert LateOutcome.objects.get().outcome == 1.0
    assert LedgerEntry.objects.filter(action="late_outcomes.recorded").count() == 1


def test_unknown_ids_and_a_missing_id_column_are_refused(monitored, scientist, version):
    batch = _upload(scientist, version, _csv(20, seed=6, known=False)[0])
    with pytest.raises(InvalidInput) as error:
        late_outcomes_record(by=scientist, batch=batch, outcomes=[{"prediction_id": "nope", "outcome": 1}])
    assert error.value.code == "monitoring_unknown_prediction_id"
    with pytest.raises(InvalidInput) as error:
        late_outcomes_record(by=scientist, batch=batch, id_column="request", outcomes=[{"prediction_id": "p1",
                                                                                        "outcome": 1}])
    assert error.value.code == "monitoring_no_prediction_id"
    assert not LateOutcome.objects.exists()


def test_the_api_is_team_scoped_and_coded(monitored, scientist, version, make_user, other_team):
    content, labels = _csv(40, seed=7, known=False)
    batch = _upload(scientist, version, content)
    monitor_run(monitor=monitored, by=scientist)
    body = {"batch": batch.pk, "outcomes": [{"prediction_id": "p0", "outcome": labels[0]}]}
    outsider = APIClient()
    outsider.force_authenticate(make_user("olga", "data_scientist", teams=(other_team,)))
    refused = outsider.post("/api/monitoring/outcomes/", body, format="json")
    assert refused.status_code == 404 and refused.json()["code"] == "monitoring_batch_not_found"
    assert not LateOutcome.objects.exists()
    client = APIClient()
    client.force_authenticate(scientist)
    twice = client.post("/api/monitoring/outcomes/", {"batch": batch.pk, "outcomes": body["outcomes"] * 2},
                        format="json")
    assert twice.status_code == 400 and twice.json()["code"] == "monitoring_duplicate_prediction_id"
    done = client.post("/api/monitoring/outcomes/", body, format="json")
    assert done.status_code == 201, done.content
    assert done.json()["recorded"] == 1 and done.json()["restatements"][0]["restates"] is not None
    again = client.post("/api/monitoring/outcomes/", body, format="json")
    assert again.status_code == 409 and again.json()["code"] == "monitoring_outcome_exists"


def test_a_bundle_with_a_restatement_verifies(monitored, scientist, version, tmp_path):
    from audit.ledger import checkpoint_create
    from tests.monitoring.test_evidence import _actions, _export
    from tests.reports.bundle_helpers import members, run_verify

    content, labels = _csv(60, seed=8, known=False)
    batch = _upload(scientist, version, content)
    monitor_run(monitor=monitored, by=scientist)
    _, [restated] = late_outcomes_record(by=scientist, batch=batch,
                                         outcomes=[{"prediction_id": "p0", "outcome": labels[0]}])
    checkpoint_create()
    bundle = _export(tmp_path, version.model.name)
    files = members(bundle)
    assert f"monitoring/run-{restated.pk:06d}.json" in files
    assert _actions(files).count("monitor_run.restated") == 1
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  2 monitoring run(s)" in result.stdout


def _full_evaluation(run: MonitorRun) -> tuple[dict[str, Any], str]:
    """What a restatement computes when it recomputes everything (drift included)."""
    from governance.monitoring.services.monitors import _evaluate, _window_files
    from governance.monitoring.services.profiles import reference_profile_load

    batches, records = _window_files(list(PredictionBatch.objects.filter(pk__in=[b["id"] for b in run.batches])
                                          .order_by("pk")))
    result, sha256, _ = _evaluate(run.monitor, reference_profile_load(run.profile), records, batches)
    return result, sha256


def test_a_restatement_recomputes_performance_only_and_gets_the_full_result(monitored, scientist, version,
                                                                            monkeypatch):
    from governance.monitoring.services import monitors

    content, labels = _csv(300, seed=9, known=False)
    batch = _upload(scientist, version, content)
    first = monitor_run(monitor=monitored, by=scientist)
    calls: list[int] = []
    real = monitors.drift_report_columns
    monkeypatch.setattr(monitors, "drift_report_columns", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, [restated] = late_outcomes_record(by=scientist, batch=batch, outcomes=[
        {"prediction_id": f"p{i}", "outcome": 1 - labels[i]} for i in range(0, 300, 2)])
    assert calls == []  # the outcomes cannot change the drift: the replaced run's stands
    assert restated.result["drift"] == first.result["drift"]
    assert restated.result["performance"]["accuracy"] == 0.0
    result, sha256 = _full_evaluation(restated)
    assert calls == [1]
    assert restated.result == result and restated.result_sha256 == sha256


def test_a_restatement_after_the_drift_thresholds_changed_recomputes_the_drift(monitored, scientist, version,
                                                                               risk_officer, monkeypatch):
    from governance.monitoring.services import monitors

    content, labels = _csv(300, seed=10, known=False)
    batch = _upload(scientist, version, content)
    first = monitor_run(monitor=monitored, by=scientist)
    monitor_thresholds_set(monitor=monitored, by=risk_officer, thresholds={**monitored.thresholds, "alpha": 0.1})
    calls: list[int] = []
    real = monitors.drift_report_columns
    monkeypatch.setattr(monitors, "drift_report_columns", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, [restated] = late_outcomes_record(by=scientist, batch=batch,
                                         outcomes=[{"prediction_id": "p0", "outcome": labels[0]}])
    assert calls == [1]
    assert first.result["drift"]["alpha"] == 0.05 and restated.result["drift"]["alpha"] == 0.1
    result, sha256 = _full_evaluation(restated)
    assert restated.result == result and restated.result_sha256 == sha256


def test_rows_without_a_prediction_id_are_refused(monitored, scientist, version):
    batch = _upload(scientist, version, _csv(3, seed=11, known=False, ids=["a", "", "b"])[0], "n.csv")
    with pytest.raises(InvalidInput) as error:
        late_outcomes_record(by=scientist, batch=batch, outcomes=[{"prediction_id": "a", "outcome": 1}])
    assert error.value.code == "monitoring_no_prediction_id"
    doubled = _upload(scientist, version, _csv(5, seed=12, known=False, ids=["b", "a", "b", "a", "c"])[0], "m.csv")
    with pytest.raises(InvalidInput) as error:
        late_outcomes_record(by=scientist, batch=doubled, outcomes=[{"prediction_id": "c", "outcome": 1}])
    assert error.value.code == "monitoring_duplicate_prediction_id"
    assert error.value.extra["prediction_ids"] == ["a", "b"]
    with pytest.raises(InvalidInput) as error:
        late_outcomes_record(by=scientist, batch=batch, outcomes=[{"prediction_id": "z", "outcome": 1},
                                                                  {"prediction_id": "b", "outcome": 0},
                                                                  {"prediction_id": "y", "outcome": 0}])
    assert error.value.code == "monitoring_no_prediction_id"  # the missing id is found first, as before
    assert not LateOutcome.objects.exists()
