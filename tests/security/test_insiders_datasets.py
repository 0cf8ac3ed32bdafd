"""Insiders, class 9: reading files under FAIRNESS_LOCAL_DATASET_ROOT.

Only a dataset's owners (the account that registered it and that account's teams) name it in an
audit spec, so no one has the server read another team's file; the digest is checked before the
bytes are parsed, whatever the digest kind; and parse errors never echo a row's cells, in the
response, the stored run, the ledger or the logs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from governance.fairness.models import AuditRun, AuditSpec
from governance.fairness.services import runs
from lineage.services import datasets as lineage_datasets
from tests.fairness.helpers import credit_csv, make_spec

pytestmark = pytest.mark.django_db

SECRET = "SSN-987-65-4321-Jane-Roe"


@pytest.fixture(autouse=True)
def _roots(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FAIRNESS_LOCAL_DATASET_ROOT = str(tmp_path / "datasets")
    (tmp_path / "datasets").mkdir()


def _registered(path: Path, by: Any, *, name: str = "holdout", **spec: Any) -> Any:
    dataset, _ = lineage_datasets.dataset_create(namespace="s3://bank", name=name, actor=by)
    fields: dict[str, Any] = {"location_uri": f"file://{path}"}
    fields.update(spec or {"content": path.read_bytes()})
    version, _ = lineage_datasets.dataset_version_register(dataset=dataset, actor=by,
                                                           spec=lineage_datasets.VersionSpec(**fields))
    return version


def _signed_in(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)  # itself a ledger entry: before any snapshot
    return client


def _api_spec(client: APIClient, dataset_version: Any) -> Any:
    spec = {"model": "credit-default-scorer", "version": "1.0.0", "name": "holdout", "y_true": "repaid",
            "y_pred": "predicted", "sensitive": ["sex"], "dataset_version": dataset_version.pk, "min_group_size": 1}
    return client.post("/api/fairness/specs/", {"spec": json.dumps(spec)})


@pytest.fixture
def hiro(make_user, other_team) -> Any:  # type: ignore[no-untyped-def]
    return make_user("hiro", "data_scientist", teams=(other_team,))


def test_a_spec_cannot_name_another_teams_dataset(scientist, hiro, model, version, tmp_path):
    theirs = _registered(credit_csv(tmp_path / "datasets" / "hiring.csv", rows=300), hiro)
    client = _signed_in(scientist)
    before = LedgerEntry.objects.count()

    response = _api_spec(client, theirs)

    assert response.status_code == 403 and response.json()["code"] == "fairness_dataset_not_owned"
    assert not AuditSpec.objects.exists()
    new = list(LedgerEntry.objects.filter(seq__gte=before).order_by("seq"))
    assert [(entry.action, entry.actor, entry.payload.get("code")) for entry in new] == [
        ("fairness_spec.create.refused", "user:dana", "fairness_dataset_not_owned")]
    assert (new[0].subject_type, new[0].subject_id) == ("lineage.datasetversion", str(theirs.pk))


def test_a_teammates_dataset_may_be_named(scientist, scientist2, model, version, tmp_path):
    ours = _registered(credit_csv(tmp_path / "datasets" / "credit.csv", rows=300), scientist2)
    response = _api_spec(_signed_in(scientist), ours)
    assert response.status_code == 201, response.content
    assert AuditSpec.objects.get().dataset_sha256 == ours.digest


def test_a_manifest_version_vouches_only_for_files_it_lists(scientist, model, version, tmp_path):
    path = credit_csv(tmp_path / "datasets" / "part-0.csv", rows=300)
    other = credit_csv(tmp_path / "datasets" / "part-1.csv", rows=300, seed=7)
    import hashlib

    listed = _registered(path, scientist, name="listed",
                         manifest={"part-0.csv": hashlib.sha256(path.read_bytes()).hexdigest()})
    spec = make_spec(scientist, model, version, path, dataset_path=None, dataset_version=listed)
    assert spec.dataset_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    unlisted = _registered(other, scientist, name="unlisted", manifest={"part-0.csv": "0" * 64})
    with pytest.raises(Exception) as refused:
        make_spec(scientist, model, version, other, dataset_path=None, dataset_version=unlisted)
    assert getattr(refused.value, "code", None) == "fairness_dataset_mismatch"
    assert AuditSpec.objects.count() == 1


def test_an_identity_digest_vouches_for_no_file(scientist, model, version, tmp_path):
    path = credit_csv(tmp_path / "datasets" / "ol.csv", rows=300)
    identity = _registered(path, scientist, name="ol", digest="e" * 64, digest_kind="openlineage_identity")
    with pytest.raises(Exception) as refused:
        make_spec(scientist, model, version, path, dataset_path=None, dataset_version=identity)
    assert getattr(refused.value, "code", None) == "fairness_dataset_unverifiable"
    assert not AuditSpec.objects.exists()


def _malformed(path: Path, *, rows_before: int = 40) -> Path:
    """A CSV with one ragged row holding the secret; past the first 1 MiB block with many rows before."""
    before = "".join(f"{i % 2},{(i // 2) % 2},{'female' if i % 3 else 'male'}\n" for i in range(rows_before))
    path.write_text(f"repaid,predicted,sex\n{before}1,0,{SECRET},extra-field\n{before[:400]}")
    return path


def _nowhere(text: str) -> None:
    assert SECRET not in text and "Jane-Roe" not in text


def test_a_malformed_batch_upload_never_echoes_the_row(scientist, model, version, caplog, tmp_path):
    client = _signed_in(scientist)
    before = LedgerEntry.objects.count()
    with caplog.at_level(logging.DEBUG):
        upload = SimpleUploadedFile("batch.csv", _malformed(tmp_path / "batch.csv").read_bytes(), "text/csv")
        response = client.post(f"/api/models/{model.name}/prediction-batches/", {"version": "1.0.0", "file": upload},
                               format="multipart")
    assert response.status_code == 400 and response.json()["code"] == "fairness_malformed_file"
    _nowhere(response.content.decode())
    _nowhere(caplog.text)
    for entry in LedgerEntry.objects.filter(seq__gte=before):
        _nowhere(bytes(entry.canonical).decode())


def test_a_spec_on_a_malformed_file_never_echoes_the_row(scientist, model, version, tmp_path):
    client = _signed_in(scientist)
    upload = SimpleUploadedFile("eval.csv", _malformed(tmp_path / "eval.csv").read_bytes(), "text/csv")
    spec = {"model": "credit-default-scorer", "version": "1.0.0", "name": "holdout", "y_true": "repaid",
            "y_pred": "predicted", "sensitive": ["sex"]}
    response = client.post("/api/fairness/specs/", {"spec": json.dumps(spec), "dataset": upload}, format="multipart")
    assert response.status_code == 400 and response.json()["code"] == "fairness_malformed_file"
    _nowhere(response.content.decode())
    assert not AuditSpec.objects.exists()


def test_a_failed_audit_run_never_stores_or_logs_the_row(scientist, model, version, caplog, tmp_path):
    # Past the first block: the spec's header check passes, the run meets the row.
    path = _malformed(tmp_path / "eval.csv", rows_before=120_000)
    spec = make_spec(scientist, model, version, path, min_group_size=1)
    before = LedgerEntry.objects.count()
    with caplog.at_level(logging.DEBUG):
        run = runs.audit_request(spec=spec, by=scientist)
        runs.audit_execute(run_id=run.pk)
    run = AuditRun.objects.get(pk=run.pk)
    assert (run.status, run.error_code) == (AuditRun.Status.FAILED, "fairness_malformed_file")
    assert "data row 120001 has 4 fields, expected 3" in run.error_message
    _nowhere(run.error_message)
    _nowhere(json.dumps(run.result))
    _nowhere(caplog.text)
    failed = list(LedgerEntry.objects.filter(seq__gte=before, action="fairness_audit.failed"))
    assert len(failed) == 1
    for entry in LedgerEntry.objects.filter(seq__gte=before):
        _nowhere(bytes(entry.canonical).decode())
    client = _signed_in(scientist)
    shown = client.get(f"/api/fairness/audits/{run.pk}/")
    assert shown.status_code == 200
    _nowhere(shown.content.decode())
