"""Fairness API: request and follow audits, define specs, upload prediction batches (limits and
errors leave nothing behind), the trend, and object-level access (an invisible model is a 404)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from governance.fairness.models import AuditRun, AuditSpec, PredictionBatch
from tests.fairness.helpers import credit_csv, make_spec

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_request_an_audit_and_follow_it_to_its_result(scientist, model, version, tmp_path,
                                                       django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"))
    client = client_for(scientist)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/fairness/audits/", {"spec_id": spec.pk}, format="json")
    assert response.status_code == 202, response.content
    audit_id = response.json()["id"]
    assert response.json()["status"] == "queued"
    detail = client.get(f"/api/fairness/audits/{audit_id}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 100 and detail["passed"] is True
    assert detail["result"]["rows"] == 2000 and len(detail["result_sha256"]) == 64
    status = client.get(f"/api/fairness/audits/{audit_id}/status/").json()
    assert status["status"] == "done" and status["result_url"] == f"/api/fairness/audits/{audit_id}/"
    listing = client.get("/api/fairness/audits/", {"model": model.name, "version": version.label,
                                                   "status": "succeeded"}).json()
    assert [item["id"] for item in listing["results"]] == [audit_id]
    assert client.get("/api/fairness/audits/", {"status": "failed"}).json()["results"] == []
    assert client.get("/api/fairness/audits/", {"status": "bogus"}).json()["code"] == "invalid_parameter"


def test_idempotency_key_replays_the_first_request(scientist, model, version, tmp_path,
                                                   django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"))
    client = client_for(scientist)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post("/api/fairness/audits/", {"spec_id": spec.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
        again = client.post("/api/fairness/audits/", {"spec_id": spec.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert AuditRun.objects.count() == 1
    assert LedgerEntry.objects.filter(action="fairness_audit.requested").count() == 1


def test_a_model_you_cannot_see_is_404_everywhere(scientist, model, version, make_user, other_team, tmp_path,
                                                  django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"))
    with django_capture_on_commit_callbacks(execute=True):
        run_id = client_for(scientist).post("/api/fairness/audits/", {"spec_id": spec.pk}, format="json").json()["id"]
    outsider = client_for(make_user("hiro", "data_scientist", teams=(other_team,)))
    assert outsider.get(f"/api/fairness/audits/{run_id}/").json()["code"] == "fairness_audit_not_found"
    assert outsider.get(f"/api/fairness/audits/{run_id}/status/").status_code == 404
    assert outsider.post("/api/fairness/audits/", {"spec_id": spec.pk}, format="json").json()["code"] \
        == "fairness_spec_not_found"
    assert outsider.get("/api/fairness/audits/").json()["results"] == []
    assert outsider.get("/api/fairness/trend/", {"model": model.name}).status_code == 404
    upload = outsider.post(f"/api/models/{model.name}/prediction-batches/",
                           {"file": SimpleUploadedFile("b.csv", b"a,b\n1,2\n")}, format="multipart")
    assert upload.status_code == 404 and not PredictionBatch.objects.exists()
    assert outsider.get("/api/fairness/audits/abc/").status_code == 404
    assert AuditRun.objects.count() == 1


def test_auditors_may_run_audits_viewers_may_not(scientist, model, version, auditor, make_user, tmp_path,
                                                 django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"))
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(auditor).post("/api/fairness/audits/", {"spec_id": spec.pk},
                                        format="json").status_code == 202
    viewer = make_user("victor", "viewer", teams=(model.team,))
    refused = client_for(viewer).post("/api/fairness/audits/", {"spec_id": spec.pk}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert AuditRun.objects.count() == 1


def test_spec_created_by_multipart_upload_then_audited_inline(scientist, model, version, tmp_path,
                                                              django_capture_on_commit_callbacks):
    path = credit_csv(tmp_path / "e.csv")
    body = {"model": model.name, "version": version.label, "name": "holdout", "y_true": "repaid",
            "score": "score", "threshold": 0.5, "sensitive": ["sex", "age_group"],
            "thresholds": {"impact_ratio_min": 0.8}, "schedule_crontab": "0 6 * * 1"}
    client = client_for(scientist)
    created = client.post("/api/fairness/specs/", {"spec": json.dumps(body),
                                                   "dataset": SimpleUploadedFile("e.csv", path.read_bytes())},
                          format="multipart")
    assert created.status_code == 201, created.content
    spec = AuditSpec.objects.get(pk=created.json()["id"])
    assert spec.dataset_file and spec.thresholds == {"impact_ratio": 0.8}
    assert spec.periodic_task.crontab.day_of_week == "1"
    assert LedgerEntry.objects.filter(action="fairness_spec.created", subject_id=str(spec.pk)).exists()

    with django_capture_on_commit_callbacks(execute=True):
        inline = client.post("/api/fairness/audits/", {"spec": {**body, "schedule_crontab": ""}}, format="json")
    # An inline spec has no file: a version audit needs its data.
    assert inline.status_code == 400 and inline.json()["code"] == "fairness_no_dataset"
    bad = client.post("/api/fairness/specs/", {**body, "sensitive": []}, format="json")
    assert bad.status_code == 400
    assert AuditSpec.objects.count() == 1


def _upload(client: APIClient, name: str, content: bytes) -> Any:
    return client.post(f"/api/models/{name}/prediction-batches/", {"file": SimpleUploadedFile("batch.csv", content)},
                       format="multipart")


def test_prediction_batch_upload_stores_once_and_records_it(scientist, model, tmp_path, settings):
    client = client_for(scientist)
    content = credit_csv(tmp_path / "b.csv", rows=300).read_bytes()
    first = _upload(client, model.name, content)
    assert first.status_code == 201, first.content
    batch = PredictionBatch.objects.get()
    assert first.json()["rows"] == 300 and first.json()["sha256"] == batch.sha256
    from governance.fairness.services import vault

    stored = vault.sealed_file_open(record=vault.sealed_file_for(batch.file.name), purpose="download")
    assert Path(batch.file.path).read_bytes()[:8] == b"GVSEAL\x00\x01"  # sealed on disk
    with stored.open() as handle:
        assert handle.read() == content
    assert LedgerEntry.objects.get(action="prediction_batch.uploaded").payload["sha256"] == batch.sha256
    again = _upload(client, model.name, content)
    assert again.status_code == 200 and again.json()["id"] == batch.pk
    assert PredictionBatch.objects.count() == 1
    assert LedgerEntry.objects.filter(action="prediction_batch.uploaded").count() == 1
    listed = client.get(f"/api/models/{model.name}/prediction-batches/").json()
    assert [item["id"] for item in listed["results"]] == [batch.pk]


def _nothing_stored(settings: Any) -> None:
    assert not PredictionBatch.objects.exists()
    assert not LedgerEntry.objects.filter(action="prediction_batch.uploaded").exists()
    assert [p for p in (Path(settings.MEDIA_ROOT) / "fairness").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(("content", "code"), [
    (b"", "fairness_empty_input"),
    (b"repaid,predicted,sex\n", "fairness_empty_input"),
    (b"repaid,predicted,sex\n1,1,f\n0,1\n", "fairness_malformed_file"),
    (b"\x00\x01binary\x00", "fairness_malformed_file"),
])
def test_malformed_batch_is_400_with_the_engine_code_and_nothing_is_stored(content, code, scientist, model,
                                                                         settings):
    response = _upload(client_for(scientist), model.name, content)
    assert response.status_code == 400 and response.json()["code"] == code, response.content
    _nothing_stored(settings)


def test_oversized_batch_is_413_and_nothing_is_stored(scientist, model, tmp_path, settings):
    settings.FAIRNESS_MAX_UPLOAD_BYTES = 1000
    response = _upload(client_for(scientist), model.name, credit_csv(tmp_path / "b.csv", rows=300).read_bytes())
    assert response.status_code == 413 and response.json()["code"] == "fairness_upload_too_large"
    _nothing_stored(settings)


def test_batch_lacking_a_column_a_monitoring_spec_reads_is_refused(scientist, model, tmp_path, settings):
    from governance.fairness.services import specs

    specs.audit_spec_create(by=scientist, model=model, name="monitor", target=AuditSpec.Target.PRODUCTION,
                            y_true="repaid", y_pred="predicted", sensitive=["ethnicity"])
    response = _upload(client_for(scientist), model.name, credit_csv(tmp_path / "b.csv", rows=50).read_bytes())
    assert response.status_code == 400 and response.json()["code"] == "fairness_missing_column"
    assert response.json()["extra"]["missing"] == ["ethnicity"]
    _nothing_stored(settings)


def test_trend_needs_a_model_and_lists_monitoring_points(scientist, model):
    client = client_for(scientist)
    assert client.get("/api/fairness/trend/").json()["code"] == "missing_parameter"
    assert client.get("/api/fairness/trend/", {"model": model.name}).json() == {"model": model.name, "points": []}


def test_error_messages_name_the_uploaded_file_not_a_temporary_one(scientist, model, settings):
    response = client_for(scientist).post(f"/api/models/{model.name}/prediction-batches/",
                                          {"file": SimpleUploadedFile("week-7.csv", b"a,b\n1,2\n3\n")},
                                          format="multipart")
    assert response.status_code == 400 and "week-7.csv" in response.json()["message"]
    assert "batch-" not in response.json()["message"]
    _nothing_stored(settings)


@pytest.mark.parametrize(("change", "code"), [
    ({"schedule_crontab": "61 * * * *"}, "fairness_bad_schedule"),
    ({"schedule_crontab": "0 6 * *"}, "fairness_bad_schedule"),
    ({"thresholds": {"impact_ratio_min": 1.5}}, "fairness_bad_thresholds"),
    ({"seed": -1}, "invalid_input"),
])
def test_bad_spec_fields_are_400_and_nothing_is_stored(change, code, scientist, model, version, tmp_path, settings):
    body = {"model": model.name, "version": version.label, "y_true": "repaid", "y_pred": "predicted",
            "sensitive": ["sex"], **change}
    response = client_for(scientist).post("/api/fairness/specs/", {
        "spec": json.dumps(body), "dataset": SimpleUploadedFile("e.csv", credit_csv(tmp_path / "e.csv").read_bytes())},
        format="multipart")
    assert response.status_code == 400 and response.json()["code"] == code, response.content
    assert not AuditSpec.objects.exists() and not LedgerEntry.objects.filter(action="fairness_spec.created").exists()
    assert [p for p in (Path(settings.MEDIA_ROOT) / "fairness").rglob("*") if p.is_file()] == []


def test_parquet_batch_with_unknown_outcomes_is_stored_and_audited(scientist, model, tmp_path,
                                                                  django_capture_on_commit_callbacks):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from governance.fairness.services import runs

    table = pa.table({"repaid": pa.array([1, 0, None, 1] * 50, type=pa.int64()),
                      "predicted": pa.array([1, 0, 1, 0] * 50, type=pa.int64()),
                      "sex": pa.array(["f", "m", "f", None] * 50)})
    path = tmp_path / "batch.parquet"
    pq.write_table(table, path)
    response = client_for(scientist).post(f"/api/models/{model.name}/prediction-batches/",
                                          {"file": SimpleUploadedFile("batch.parquet", path.read_bytes())},
                                          format="multipart")
    assert response.status_code == 201 and response.json()["file_format"] == "parquet" and response.json()["rows"] == 200
    batch = PredictionBatch.objects.get()
    from governance.fairness.services import vault

    stored = vault.sealed_file_open(record=vault.sealed_file_for(batch.file.name), purpose="fairness_audit")
    report = runs.audit_inputs([stored], skip_unknown_outcomes=True, config={
        "y_true": "repaid", "y_pred": "predicted", "score": None, "threshold": None, "sensitive": ["sex"],
        "pos_label": None, "min_group_size": 0, "include_small_groups": False, "bootstrap": 0, "seed": None})
    assert report["rows"] == 150 and report["rows_without_outcome"] == 50
    assert {g["attributes"]["sex"] for g in report["groups"]} == {"f", "m", "Unknown"}
