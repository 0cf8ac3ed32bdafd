"""OpenLineage ingestion: the official client against the live server, gzip, retries, refusals."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import OperationalError
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from governance.registry.services.access import service_account_create
from governance.roles import DATA_SCIENTIST, sync_role_groups
from lineage import openlineage
from lineage.models import Dataset, DatasetVersion, LineageEdge, OpenLineageEvent, TrainingRun
from tests.lineage.conftest import LINEAGE_PERMS

PRODUCER = "https://github.com/example/credit-pipeline"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def _event(event_type: str, run_id: str, *, inputs=None, outputs=None, event_time: str | None = None):  # type: ignore[no-untyped-def]
    return {
        "eventType": event_type, "eventTime": event_time or datetime.now(UTC).isoformat(),
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": "credit-ml", "name": "train_scorecard", "facets": {}},
        "inputs": inputs or [], "outputs": outputs or [], "producer": PRODUCER, "schemaURL": SCHEMA_URL,
    }


def _counts() -> tuple[int, int, int, int, int]:
    return (TrainingRun.objects.count(), DatasetVersion.objects.count(), LineageEdge.objects.count(),
            OpenLineageEvent.objects.count(), LedgerEntry.objects.count())


@pytest.fixture
def api(pipeline_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(pipeline_user)
    return client


def _post(api: APIClient, body: bytes, **headers: str):  # type: ignore[no-untyped-def]
    return api.generic("POST", "/api/v1/lineage", body, content_type="application/json", **headers)


# --- The real client against the live server --------------------------------------------------

def _service_token(django_user_model) -> str:  # type: ignore[no-untyped-def]
    """A write token of a service account holding the lineage add permissions (governance's tokens)."""
    if not Group.objects.filter(name=DATA_SCIENTIST).exists():
        sync_role_groups(group_model=Group, permission_model=Permission)  # flushed by an earlier live test
    admin = django_user_model.objects.create_superuser("ol-admin", "ol-admin@example.org", "x" * 16)
    account, token = service_account_create(by=admin, name="openlineage-ci", role=DATA_SCIENTIST)
    account.user.user_permissions.add(*Permission.objects.filter(content_type__app_label="lineage",
                                                                  codename__in=LINEAGE_PERMS))
    return token


def _ol_dataset(name: str, *, fields: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import schema_dataset

    return InputDataset(namespace="s3://bank", name=name, facets={"schema": schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields])})


@pytest.mark.django_db(transaction=True)
def test_official_client_start_and_complete_build_the_run_and_its_datasets(live_server, django_user_model,
                                                                           monkeypatch):
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import source_code_location_job

    token = _service_token(django_user_model)
    monkeypatch.setenv("OPENLINEAGE_URL", live_server.url)
    monkeypatch.setenv("OPENLINEAGE_API_KEY", token)
    monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)
    client = OpenLineageClient()
    run_id = str(uuid.uuid4())
    job = Job(namespace="credit-ml", name="train_scorecard", facets={
        "sourceCodeLocation": source_code_location_job.SourceCodeLocationJobFacet(
            type="git", url="https://git.example/credit", repoUrl="https://git.example/credit.git", version="9f2c1e0")})
    source = _ol_dataset("german_credit_clean", fields=[("age", "int"), ("credit_amount", "double")])
    start = RunEvent(eventType=RunState.START, eventTime=datetime.now(UTC).isoformat(), run=Run(runId=run_id),
                     job=job, producer=PRODUCER, inputs=[source])
    assert client.transport.emit(start).status_code == 201
    output = OutputDataset(namespace="s3://models", name="scorecard/model.pkl")
    complete = RunEvent(eventType=RunState.COMPLETE, eventTime=datetime.now(UTC).isoformat(), run=Run(runId=run_id),
                        job=job, producer=PRODUCER, inputs=[source], outputs=[output])
    assert client.transport.emit(complete).status_code == 201

    run = TrainingRun.objects.get(external_run_id=run_id)
    assert run.status == TrainingRun.Status.COMPLETED
    assert run.started_at is not None and run.ended_at is not None
    assert (run.code_repository, run.code_commit) == ("https://git.example/credit.git", "9f2c1e0")
    assert run.actor == "user:svc-openlineage-ci"
    source_version = DatasetVersion.objects.get(dataset__name="german_credit_clean")
    assert source_version.schema == [{"name": "age", "type": "int"}, {"name": "credit_amount", "type": "double"}]
    assert source_version.digest_kind == DatasetVersion.DigestKind.OPENLINEAGE_IDENTITY

    viewer = APIClient()
    viewer.force_authenticate(django_user_model.objects.get(username="svc-openlineage-ci"))
    graph = viewer.get("/api/lineage/graph/", {"node": f"run:{run.pk}", "direction": "both", "depth": 2}).data
    labels = {node["label"] for node in graph["nodes"]}
    assert {"credit-ml/train_scorecard", "s3://bank/german_credit_clean@" + source_version.digest[:12],
            "s3://models/scorecard/model.pkl@" + DatasetVersion.objects.get(
                dataset__name="scorecard/model.pkl").digest[:12]} <= labels
    assert len(graph["edges"]) == 2 and all(edge["attestation"] for edge in graph["edges"])


@pytest.mark.django_db(transaction=True)
def test_official_client_with_gzip_compression_is_accepted(live_server, django_user_model):
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpCompression, HttpConfig, HttpTransport

    token = _service_token(django_user_model)
    config = HttpConfig(url=live_server.url, auth=ApiKeyTokenProvider({"apiKey": token}),
                        compression=HttpCompression.GZIP)
    client = OpenLineageClient(transport=HttpTransport(config))
    run_id = str(uuid.uuid4())
    event = RunEvent(eventType=RunState.START, eventTime=datetime.now(UTC).isoformat(), run=Run(runId=run_id),
                     job=Job(namespace="credit-ml", name="gzip_job"), producer=PRODUCER,
                     inputs=[_ol_dataset("german_credit_raw", fields=[("age", "int")])])
    assert client.transport.emit(event).status_code == 201
    assert TrainingRun.objects.get(external_run_id=run_id).status == TrainingRun.Status.RUNNING
    # The static events too: a DatasetEvent and a JobEvent, through the same client.
    from openlineage.client.event_v2 import DatasetEvent, JobEvent, OutputDataset, StaticDataset

    now = datetime.now(UTC).isoformat()
    dataset_event = DatasetEvent(eventTime=now, producer=PRODUCER,
                                 dataset=StaticDataset(namespace="s3://bank", name="bureau_scores"))
    assert client.transport.emit(dataset_event).status_code == 201
    job_event = JobEvent(eventTime=now, producer=PRODUCER, job=Job(namespace="credit-ml", name="nightly_export"),
                         inputs=[_ol_dataset("german_credit_raw", fields=[("age", "int")])],
                         outputs=[OutputDataset(namespace="s3://exports", name="credit_features")])
    assert client.transport.emit(job_event).status_code == 201
    assert set(Dataset.objects.values_list("name", flat=True)) == {"german_credit_raw", "bureau_scores",
                                                                   "credit_features"}
    assert list(OpenLineageEvent.objects.values_list("event_kind", flat=True).order_by("pk")) == [
        "RunEvent", "DatasetEvent", "JobEvent"]


@pytest.mark.django_db(transaction=True)
def test_bad_token_is_refused_by_the_official_client(live_server):
    import requests
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    transport = HttpTransport(HttpConfig(url=live_server.url, auth=ApiKeyTokenProvider({"apiKey": "gov_bad_token"})))
    event = RunEvent(eventType=RunState.START, eventTime=datetime.now(UTC).isoformat(),
                     run=Run(runId=str(uuid.uuid4())), job=Job(namespace="n", name="j"), producer=PRODUCER)
    with pytest.raises(requests.HTTPError) as caught:
        transport.emit(event)
    assert caught.value.response.status_code == 401
    assert TrainingRun.objects.count() == 0


# --- The endpoint through the test client -----------------------------------------------------

@pytest.mark.django_db
def test_gzip_body_is_accepted(api):
    body = json.dumps(_event("START", str(uuid.uuid4()))).encode()
    response = _post(api, gzip.compress(body), HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 201, response.content
    assert TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_gzip_bomb_is_refused_with_413_and_nothing_is_written(api, settings):
    settings.OPENLINEAGE_MAX_EVENT_BYTES = 64 * 1024
    event = _event("START", str(uuid.uuid4()))
    event["job"]["facets"] = {"padding": {"x": "A" * (10 * 1024 * 1024)}}
    bomb = gzip.compress(json.dumps(event).encode())
    assert len(bomb) < 64 * 1024
    before = _counts()
    response = _post(api, bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413 and response.data["code"] == "payload_too_large"
    assert _counts() == before


@pytest.mark.django_db
def test_retried_delivery_gets_201_and_writes_nothing(api):
    run_id = str(uuid.uuid4())
    body = json.dumps(_event("START", run_id, inputs=[{"namespace": "s3://bank", "name": "credit"}])).encode()
    first = _post(api, body)
    assert first.status_code == 201 and first.data["duplicate"] is False
    before = _counts()
    retry = _post(api, gzip.compress(body), HTTP_CONTENT_ENCODING="gzip")
    assert retry.status_code == 201 and retry.data["duplicate"] is True
    assert retry.data["run"] == first.data["run"]
    assert _counts() == before


@pytest.mark.django_db
def test_same_run_new_event_is_not_a_duplicate(api):
    run_id = str(uuid.uuid4())
    assert _post(api, json.dumps(_event("START", run_id)).encode()).status_code == 201
    response = _post(api, json.dumps(_event("COMPLETE", run_id)).encode())
    assert response.status_code == 201 and response.data["duplicate"] is False
    assert OpenLineageEvent.objects.count() == 2
    assert TrainingRun.objects.get().status == TrainingRun.Status.COMPLETED


@pytest.mark.django_db
@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e["run"].pop("runId"), "run.runId"),
    (lambda e: e.update(eventTime="yesterday"), "eventTime"),
    (lambda e: e.pop("eventTime"), "eventTime"),
    (lambda e: e["job"].pop("name"), "job.name"),
    (lambda e: e.update(eventType="EXPLODED"), "eventType"),
    (lambda e: e.update(inputs=[{"namespace": "s3://bank"}]), "inputs[0].name"),
    (lambda e: e.update(outputs="nope"), "outputs"),
    (lambda e: [e.pop("run"), e.pop("job")], "run"),
])
def test_invalid_event_is_refused_with_400_naming_the_field(api, mutate, field):
    event = _event("START", str(uuid.uuid4()))
    mutate(event)
    before = _counts()
    response = _post(api, json.dumps(event).encode())
    assert response.status_code == 400, response.content
    assert response.data["code"] == "openlineage_invalid_event"
    assert response.data["extra"]["field"] == field
    assert field in response.data["message"]
    assert _counts() == before


@pytest.mark.django_db
def test_not_json_is_400(api):
    response = _post(api, b"{nope")
    assert response.status_code == 400 and response.data["extra"]["field"] == "body"


@pytest.mark.django_db
def test_dataset_event_and_job_event_register_datasets(api):
    dataset_event = {"eventTime": datetime.now(UTC).isoformat(), "producer": PRODUCER,
                     "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
                     "dataset": {"namespace": "s3://bank", "name": "applicants", "facets": {
                         "contentDigest": {"sha256": "ab" * 32}, "version": {"datasetVersion": "2024-06"}}}}
    response = _post(api, json.dumps(dataset_event).encode())
    assert response.status_code == 201, response.content
    version = DatasetVersion.objects.get(dataset__name="applicants")
    assert (version.digest, version.digest_kind, version.version) == ("ab" * 32, "content", "2024-06")
    job_event = {"eventTime": datetime.now(UTC).isoformat(), "producer": PRODUCER,
                 "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
                 "job": {"namespace": "credit-ml", "name": "nightly"},
                 "inputs": [{"namespace": "s3://bank", "name": "applicants_raw"}],
                 "outputs": [{"namespace": "s3://bank", "name": "applicants"}]}
    response = _post(api, json.dumps(job_event).encode())
    assert response.status_code == 201, response.content
    assert Dataset.objects.filter(name="applicants_raw").exists()
    assert TrainingRun.objects.count() == 0


@pytest.mark.django_db
def test_identity_digest_is_deterministic_and_documented():
    schema = [{"name": "age", "type": "int"}]
    digest = openlineage.identity_digest(namespace="s3://bank", name="credit", version=None, schema=schema)
    import hashlib

    expected = hashlib.sha256(b'{"name":"credit","namespace":"s3://bank","schema":[["age","int"]],"version":null}')
    assert digest == expected.hexdigest()


@pytest.mark.django_db
def test_reading_and_writing_the_same_table_skips_the_cyclic_edge(api):
    table = {"namespace": "postgres://db", "name": "public.scores"}
    response = _post(api, json.dumps(_event("COMPLETE", str(uuid.uuid4()), inputs=[table], outputs=[table])).encode())
    assert response.status_code == 201, response.content
    assert len(response.data["new_edges"]) == 1 and len(response.data["skipped_edges"]) == 1


@pytest.mark.django_db
def test_database_outage_is_503_so_the_client_retries(api, monkeypatch):
    def unavailable(**kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("connection refused")

    monkeypatch.setattr(openlineage, "openlineage_event_ingest", unavailable)
    response = _post(api, json.dumps(_event("START", str(uuid.uuid4()))).encode())
    assert response.status_code == 503 and response.data["code"] == "database_unavailable"


@pytest.mark.django_db
@pytest.mark.parametrize(("raw_name", "reason"), [("job\\u0000name", "NUL"), ("job\\ud800name", "surrogate")])
def test_strings_the_database_cannot_store_are_400_not_500(api, raw_name, reason):
    body = json.dumps(_event("START", str(uuid.uuid4()))).replace('"train_scorecard"', f'"{raw_name}"')
    before = _counts()
    # Gzipped, so only the endpoint itself can see inside the body.
    response = _post(api, gzip.compress(body.encode()), HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400, response.content
    assert response.data["extra"]["field"] == "job.name" and reason in response.data["message"]
    assert _counts() == before
