"""Reference profiles: built from an upload or a lineage dataset version, stored by digest with a
ledger entry, frozen once the version is approved; the API is team-scoped and documented."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import InvalidInput
from governance.models import VersionStatus
from governance.monitoring.drift import drift_report
from governance.monitoring.models import ReferenceProfile
from governance.monitoring.services.profiles import (
    reference_profile_create,
    reference_profile_freeze,
    reference_profile_load,
)

pytestmark = pytest.mark.django_db


def _csv(rows: int = 500, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    lines = ["age,income,region"] + [f"{a:.3f},{i:.2f},{r}" for a, i, r in
                                     zip(rng.normal(40, 10, rows), rng.lognormal(10, 1, rows),
                                         rng.choice(["north", "south"], rows), strict=True)]
    return ("\n".join(lines) + "\n").encode()


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _upload(client: APIClient, fields: dict[str, Any], content: bytes) -> Any:
    return client.post("/api/monitoring/profiles/", {"profile": json.dumps(fields),
                                                     "file": SimpleUploadedFile("reference.csv", content)},
                       format="multipart")


def test_profile_from_an_upload_is_stored_by_digest_and_recorded(scientist, model, version):
    content = _csv()
    response = _upload(client_for(scientist), {"model": model.name, "version": version.label,
                                               "categorical": ["region"]}, content)
    assert response.status_code == 201, response.content
    body = response.json()
    profile = ReferenceProfile.objects.get()
    assert body["columns"] == [{"name": "age", "kind": "numeric"}, {"name": "income", "kind": "numeric"},
                               {"name": "region", "kind": "categorical"}]
    assert body["source_sha256"] == hashlib.sha256(content).hexdigest()
    assert body["row_count"] == 500 and body["frozen_at"] is None
    from governance.fairness.services import vault

    with default_storage.open(profile.profile_file, "rb") as handle:
        assert handle.read(8) == b"GVSEAL\x00\x01"  # the body holds the reference values: sealed on disk
    stored = vault.read_or_corrupt(vault.sealed_file_open(record=vault.sealed_file_for(profile.profile_file),
                                                          purpose="monitoring_run"))
    assert hashlib.sha256(stored).hexdigest() == profile.profile_sha256 == body["profile_sha256"]
    entry = LedgerEntry.objects.get(action="reference_profile.created")
    assert entry.payload["profile_sha256"] == profile.profile_sha256
    assert entry.payload["source_sha256"] == body["source_sha256"]
    # The stored body compares later windows on the same bins.
    loaded = reference_profile_load(profile)
    report = drift_report(loaded, {"age": np.full(50, 80.0), "income": np.full(50, 20000.0), "region": ["north"] * 50})
    assert report["drifted"] == ["age", "income", "region"]
    assert report["columns"][0]["bins"]["edges"] == profile.summary[0]["edges"]


def test_an_approved_version_profile_is_frozen_at_creation_and_never_replaced(scientist, version):
    version.status = VersionStatus.APPROVED
    version.save_recorded(action="model_version.approved", by=scientist)
    profile = reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv()),
                                       categorical=["region"])
    assert profile.frozen_at is not None
    before = LedgerEntry.objects.count()
    response = _upload(client_for(scientist), {"model": version.model.name, "version": version.label}, _csv(seed=2))
    assert response.status_code == 409
    assert response.json()["code"] == "monitoring_profile_frozen"
    assert ReferenceProfile.objects.count() == 1
    assert LedgerEntry.objects.count() == before


def test_approval_freezes_the_latest_profile_once(scientist, version):
    profile = reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv()),
                                       categorical=["region"])
    assert profile.frozen_at is None
    version.status = VersionStatus.APPROVED
    version.save_recorded(action="model_version.approved", by=scientist)
    frozen = reference_profile_freeze(version=version, by=scientist)
    assert frozen is not None and frozen.frozen_at is not None
    assert reference_profile_freeze(version=version, by=scientist).frozen_at == frozen.frozen_at
    assert LedgerEntry.objects.filter(action="reference_profile.frozen").count() == 1


def test_profile_from_a_lineage_dataset_version_and_a_mismatch_refused(scientist, version, settings, tmp_path):
    from lineage.services import datasets as lineage_services
    from tests.fixtures import SEED

    settings.FAIRNESS_LOCAL_DATASET_ROOT = str(tmp_path)
    data = tmp_path / "reference.csv"
    data.write_bytes(_csv())
    dataset, _ = lineage_services.dataset_create(namespace="s3://bank", name="applications", actor=SEED)
    registered, _ = lineage_services.dataset_version_register(
        dataset=dataset, actor=SEED, spec=lineage_services.VersionSpec(location_uri=f"file://{data}", content=data.read_bytes()))
    profile = reference_profile_create(by=scientist, version=version, dataset_version=registered, categorical=["region"])
    assert profile.dataset_version_id == registered.pk
    assert profile.source_sha256 == registered.digest
    with pytest.raises(InvalidInput) as mismatch:
        reference_profile_create(by=scientist, version=version, dataset_version=registered,
                                 file=SimpleUploadedFile("other.csv", _csv(seed=5)))
    assert mismatch.value.code == "monitoring_bad_arguments"
    assert ReferenceProfile.objects.count() == 1


@pytest.mark.parametrize(("content", "fields", "code"), [
    (b"", {}, "drift_empty_input"),
    (b"age,region\n", {}, "drift_empty_input"),
    (b"age,region\n1,x\n", {"columns": ["region"]}, "drift_not_numeric"),
    (b"age,region\n1,x\n", {"columns": ["nope"]}, "drift_missing_column"),
    (b"age\n1\n", {"bins": 1}, "invalid_input"),
])
def test_bad_reference_data_is_400_and_nothing_is_written(content, fields, code, scientist, version, settings):
    response = _upload(client_for(scientist), {"model": version.model.name, "version": version.label, **fields}, content)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert not ReferenceProfile.objects.exists()
    assert not LedgerEntry.objects.filter(action="reference_profile.created").exists()
    assert [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()] == []


def test_another_teams_model_is_404_and_viewers_may_not_create(scientist, version, make_user, other_team):
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    response = _upload(client_for(outsider), {"model": version.model.name, "version": version.label}, _csv())
    assert response.status_code == 404
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv()))
    assert client_for(outsider).get("/api/monitoring/profiles/").json()["results"] == []
    profile = ReferenceProfile.objects.get()
    assert client_for(outsider).get(f"/api/monitoring/profiles/{profile.pk}/").status_code == 404
    mine = client_for(scientist).get(f"/api/monitoring/profiles/{profile.pk}/")
    assert mine.status_code == 200 and mine.json()["summary"][0]["column"] == "age"


def test_the_profile_endpoints_are_in_the_openapi_schema(scientist):
    schema = client_for(scientist).get("/api/schema/", {"format": "json"}).json()
    assert "/api/monitoring/profiles/" in schema["paths"]
    assert "/api/monitoring/profiles/{profile_id}/" in schema["paths"]


def test_the_approval_that_completes_the_quorum_freezes_the_profile(scientist, pending, approver, risk_officer):
    from governance.registry.services.approvals import approval_decide

    version = pending.version
    profile = reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv()),
                                       categorical=["region"])
    approval_decide(request=pending, by=approver, decision="approve", comment="ok")
    profile.refresh_from_db()
    assert profile.frozen_at is None  # one approval of two: not approved yet
    approval_decide(request=pending, by=risk_officer, decision="approve", comment="ok")
    profile.refresh_from_db()
    assert profile.frozen_at is not None
    [entry] = LedgerEntry.objects.filter(action="reference_profile.frozen")
    assert entry.actor == f"user:{risk_officer.username}"


def test_the_api_does_not_profile_another_teams_dataset_version(scientist, version, settings, tmp_path, other_team):
    """A lineage dataset version is read team-scoped (404 as if it did not exist), not by bare id."""
    from rest_framework.test import APIClient

    from lineage.services import datasets as lineage_services
    from tests.fixtures import SEED

    settings.FAIRNESS_LOCAL_DATASET_ROOT = str(tmp_path)
    data = tmp_path / "theirs.csv"
    data.write_bytes(_csv())
    dataset, _ = lineage_services.dataset_create(namespace="s3://hiring", name="cvs", actor=SEED, owner_team=other_team.name)
    theirs, _ = lineage_services.dataset_version_register(
        dataset=dataset, actor=SEED, spec=lineage_services.VersionSpec(location_uri=f"file://{data}", content=data.read_bytes()))
    client = APIClient()
    client.force_authenticate(scientist)
    response = client.post("/api/monitoring/profiles/", {"model": version.model.name, "version": version.label,
                                                         "dataset_version": theirs.pk}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "dataset_version_not_found"
    assert ReferenceProfile.objects.count() == 0
