"""Idempotency-Key on every lineage POST (core.idempotency): a retry with the same key and body
replays the first response and writes nothing; the same key with another request is refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.apps import apps
from rest_framework.test import APIClient

from audit import dsse
from audit.models import LedgerEntry
from governance.models import IdempotencyRecord
from lineage import attestations as statements
from lineage.models import TrainingRun
from lineage.services.datasets import VersionSpec, dataset_create, dataset_version_register
from lineage.services.keys import pipeline_key_register
from tests.lineage.conftest import TEAM_OWNER, digest_of, public_pem

pytestmark = pytest.mark.django_db


@dataclass
class Setup:
    user: Any
    private_key: Ed25519PrivateKey
    dataset_id: int
    clean_digest: str


@pytest.fixture
def setup(pipeline_user, pipeline_private_key) -> Setup:  # type: ignore[no-untyped-def]
    dataset, _ = dataset_create(namespace="s3://bank", name="credit", actor="system:test", owner_team=TEAM_OWNER)
    clean, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="s3://c", content=b"clean"),
                                                 actor="system:test")
    return Setup(user=pipeline_user, private_key=pipeline_private_key, dataset_id=dataset.pk, clean_digest=clean.digest)


@pytest.fixture
def api(pipeline_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(pipeline_user)
    return client


def _envelope(setup: Setup, invocation_id: str) -> dict[str, Any]:
    statement = statements.build_statement(
        subjects=[("clean.csv", setup.clean_digest)], build_type="https://pipelines.example/clean/v1",
        external_parameters={}, internal_parameters={}, resolved_dependencies=[],
        builder_id="https://ci.example/runner", invocation_id=invocation_id)
    keyid = dsse.envelope_keyid(setup.private_key.public_key().public_bytes_raw())
    return dict(dsse.sign_envelope(json.dumps(statement).encode(), payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
                                   private_key=setup.private_key, keyid=keyid))


def _event(job_name: str) -> dict[str, Any]:
    return {"eventType": "START", "eventTime": datetime.now(UTC).isoformat(),
            "run": {"runId": str(uuid.uuid4()), "facets": {}}, "job": {"namespace": "credit-ml", "name": job_name},
            "inputs": [], "outputs": [], "producer": "https://github.com/example/credit-pipeline",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"}


def _attestations(setup: Setup) -> tuple[tuple[str, Any], tuple[str, Any]]:
    pipeline_key_register(owner=setup.user, public_key=public_pem(setup.private_key), name="ci")
    return ("/api/lineage/attestations/", _envelope(setup, "job-1")), ("/api/lineage/attestations/", _envelope(setup, "job-2"))


def _revocable_key(setup: Setup, name: str) -> int:
    key = pipeline_key_register(owner=setup.user, public_key=public_pem(Ed25519PrivateKey.generate()), name=name)
    return int(key.pk)


# Each endpoint: (path, body) of a first request, and (path, body) of a different one.
Request = tuple[str, Any]
ENDPOINTS: dict[str, Callable[[Setup], tuple[Request, Request]]] = {
    "datasets": lambda s: (("/api/lineage/datasets/", {"name": "churn"}), ("/api/lineage/datasets/", {"name": "fraud"})),
    "dataset_versions": lambda s: (
        (f"/api/lineage/datasets/{s.dataset_id}/versions/", {"location_uri": "s3://a", "digest": digest_of("a")}),
        (f"/api/lineage/datasets/{s.dataset_id}/versions/", {"location_uri": "s3://b", "digest": digest_of("b")})),
    "runs": lambda s: (("/api/lineage/runs/", {"job_name": "train"}), ("/api/lineage/runs/", {"job_name": "retrain"})),
    "keys": lambda s: (("/api/lineage/keys/", {"public_key": public_pem(Ed25519PrivateKey.generate())}),
                       ("/api/lineage/keys/", {"public_key": public_pem(Ed25519PrivateKey.generate())})),
    "key_revoke": lambda s: ((f"/api/lineage/keys/{_revocable_key(s, 'a')}/revoke/", None),
                             (f"/api/lineage/keys/{_revocable_key(s, 'b')}/revoke/", None)),
    "attestations": lambda s: _attestations(s),
    "openlineage": lambda s: (("/api/v1/lineage", _event("train")), ("/api/v1/lineage", _event("retrain"))),
}


def _post(api: APIClient, request: Request, key: str | None):  # type: ignore[no-untyped-def]
    path, body = request
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    raw = b"" if body is None else json.dumps(body).encode()
    return api.generic("POST", path, raw, content_type="application/json", **headers)


def _written() -> tuple[int, ...]:
    """Rows of every lineage table, and ledger entries."""
    return (*(model.objects.count() for model in apps.get_app_config("lineage").get_models()),
            LedgerEntry.objects.count())


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_retry_with_the_same_key_replays_the_first_response_and_writes_nothing(api, setup, endpoint):
    first_request, _ = ENDPOINTS[endpoint](setup)
    first = _post(api, first_request, "retry-1")
    assert first.status_code in (200, 201), first.content
    written = _written()
    again = _post(api, first_request, "retry-1")
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again["Idempotent-Replayed"] == "true"
    assert _written() == written, "a replay writes no row and no ledger entry"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_same_key_with_another_request_is_refused_and_writes_nothing(api, setup, endpoint):
    first_request, other_request = ENDPOINTS[endpoint](setup)
    assert _post(api, first_request, "reused-1").status_code in (200, 201)
    written = _written()
    refused = _post(api, other_request, "reused-1")
    assert refused.status_code == 409 and refused.json()["code"] == "idempotency_key_reused"
    assert _written() == written


def test_without_the_key_a_repeated_run_post_records_a_second_run(api, setup):
    """The contrast that makes the replay test meaningful: runs are not deduplicated by content."""
    body = ("/api/lineage/runs/", {"job_name": "train"})
    assert _post(api, body, None).status_code == 201 and _post(api, body, None).status_code == 201
    assert TrainingRun.objects.count() == 2 and not IdempotencyRecord.objects.exists()


def test_a_refused_request_stores_no_key_so_the_retry_runs(api, setup):
    bad = _post(api, ("/api/lineage/runs/", {"job_name": ""}), "fix-1")
    assert bad.status_code == 400 and not IdempotencyRecord.objects.exists()
    fixed = _post(api, ("/api/lineage/runs/", {"job_name": "train"}), "fix-1")
    assert fixed.status_code == 201 and TrainingRun.objects.count() == 1
