"""API tests: datasets, versions, runs, graph, permissions and error codes."""

from __future__ import annotations

import base64

import pytest
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from lineage.models import Attestation, DatasetVersion, LineageEdge, TrainingRun
from tests.lineage.conftest import digest_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(pipeline_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(pipeline_user)
    return client


def _version(api: APIClient, dataset_id: int, content: bytes, **extra):  # type: ignore[no-untyped-def]
    body = {"location_uri": f"s3://bank/{content.decode()}", "content_base64": base64.b64encode(content).decode(),
            **extra}
    return api.post(f"/api/lineage/datasets/{dataset_id}/versions/", body, format="json")


def test_dataset_version_run_and_graph_round_trip(api):
    dataset = api.post("/api/lineage/datasets/", {"namespace": "s3://bank", "name": "credit"}, format="json")
    assert dataset.status_code == 201, dataset.content
    raw = _version(api, dataset.data["id"], b"raw", schema=[{"name": "age", "type": "int"}], row_count=1000,
                   sensitive_data_notes="age is a protected attribute; pseudonymised ids")
    assert raw.status_code == 201, raw.content
    assert raw.data["digest"] == digest_of("raw") and raw.data["row_count"] == 1000
    clean = _version(api, dataset.data["id"], b"clean", derived_from=[raw.data["digest"]])
    assert clean.status_code == 201, clean.content
    run = api.post("/api/lineage/runs/", {
        "job_name": "train-credit", "code_repository": "https://git.example/credit", "code_commit": "0a1b2c",
        "parameters": {"C": 0.5}, "environment": {"scikit-learn": "1.7.2"}, "inputs": [clean.data["id"]],
        "outputs": {"artifacts": [{"uri": "s3://models/credit.pkl", "digest": digest_of("pkl")}]},
    }, format="json")
    assert run.status_code == 201, run.content
    assert [node["digest"]["sha256"] for node in run.data["inputs"]] == [digest_of("clean")]
    assert [node["kind"] for node in run.data["outputs"]] == ["artifact"]
    graph = api.get("/api/lineage/graph/", {"node": f"run:{run.data['id']}", "direction": "upstream", "depth": 5})
    assert graph.status_code == 200
    assert sorted(node["depth"] for node in graph.data["nodes"]) == [-2, -1, 0]
    one_hop = api.get("/api/lineage/graph/", {"node": f"run:{run.data['id']}", "direction": "both", "depth": 1})
    assert sorted(node["kind"] for node in one_hop.data["nodes"]) == ["artifact", "dataset_version", "run"]


def test_same_digest_posted_twice_returns_200_with_the_same_version(api):
    dataset = api.post("/api/lineage/datasets/", {"name": "credit"}, format="json").data
    first = _version(api, dataset["id"], b"raw")
    entries = LedgerEntry.objects.count()
    again = api.post(f"/api/lineage/datasets/{dataset['id']}/versions/",
                     {"location_uri": "s3://other", "digest": digest_of("raw")}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.data["id"] == first.data["id"]
    assert LedgerEntry.objects.count() == entries


def test_bad_input_gets_stable_codes_and_writes_nothing(api):
    dataset = api.post("/api/lineage/datasets/", {"name": "credit"}, format="json").data
    before = (DatasetVersion.objects.count(), TrainingRun.objects.count(), LedgerEntry.objects.count())
    bad_digest = api.post(f"/api/lineage/datasets/{dataset['id']}/versions/",
                          {"location_uri": "x", "digest": "NOT-HEX"}, format="json")
    assert bad_digest.status_code == 400 and bad_digest.data["extra"]["field"] == "digest"
    no_digest = api.post(f"/api/lineage/datasets/{dataset['id']}/versions/", {"location_uri": "x"}, format="json")
    assert no_digest.status_code == 400 and no_digest.data["code"] == "digest_missing"
    unknown_input = api.post("/api/lineage/runs/", {"job_name": "t", "inputs": [999999]}, format="json")
    assert unknown_input.status_code == 404 and unknown_input.data["code"] == "dataset_version_not_found"
    assert unknown_input.data["extra"]["field"] == "inputs[0]"
    bad_node = api.get("/api/lineage/graph/", {"node": "nonsense"})
    assert bad_node.status_code == 400 and bad_node.data["code"] == "invalid_parameter"
    too_deep = api.get("/api/lineage/graph/", {"node": "node:1", "depth": 999})
    assert too_deep.status_code == 400 and too_deep.data["extra"]["parameter"] == "depth"
    assert (DatasetVersion.objects.count(), TrainingRun.objects.count(), LedgerEntry.objects.count()) == before


def test_run_output_that_closes_a_cycle_is_refused_with_409_and_nothing_is_written(api):
    dataset = api.post("/api/lineage/datasets/", {"name": "credit"}, format="json").data
    raw = _version(api, dataset["id"], b"raw").data
    clean = _version(api, dataset["id"], b"clean", derived_from=[raw["id"]]).data
    before = (TrainingRun.objects.count(), LineageEdge.objects.count(), LedgerEntry.objects.count(),
              Attestation.objects.count())
    response = api.post("/api/lineage/runs/", {"job_name": "loop", "inputs": [clean["id"]],
                                               "outputs": {"dataset_versions": [raw["id"]]}}, format="json")
    assert response.status_code == 409 and response.data["code"] == "lineage_cycle"
    assert (TrainingRun.objects.count(), LineageEdge.objects.count(), LedgerEntry.objects.count(),
            Attestation.objects.count()) == before


def test_users_without_lineage_permissions_are_denied(plain_user):
    client = APIClient()
    anonymous = client.get("/api/lineage/datasets/")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    client.force_authenticate(plain_user)
    assert client.get("/api/lineage/datasets/").status_code == 403
    assert client.post("/api/lineage/datasets/", {"name": "x"}, format="json").status_code == 403
    assert client.get("/api/lineage/keys/").status_code == 403
    assert client.post("/api/v1/lineage", b"{}", content_type="application/json").status_code == 403


def test_view_only_user_cannot_write(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="auditor", password="x" * 16)
    user.user_permissions.add(Permission.objects.get(codename="view_dataset"))
    client = APIClient()
    client.force_authenticate(django_user_model.objects.get(pk=user.pk))
    assert client.get("/api/lineage/datasets/").status_code == 200
    assert client.post("/api/lineage/datasets/", {"name": "x"}, format="json").status_code == 403


def test_unstorable_strings_in_json_fields_are_refused(api):
    response = api.generic("POST", "/api/lineage/runs/", b'{"job_name": "t", "parameters": {"note": "a\\u0000b"}}',
                           content_type="application/json")
    # The request middleware (RequestHardeningMiddleware) refuses the escaped NUL before the view parses it.
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_unicode_escape"
    assert TrainingRun.objects.count() == 0


def test_model_version_graph_node_detail_and_upstream_attestations_via_the_api(api, every_node_visible):
    # "governance.modelversion:12" is made up: no governance record decides who sees it, so this test lets all see it.
    from lineage.services.model_versions import lineage_record_model_version

    dataset = api.post("/api/lineage/datasets/", {"name": "credit"}, format="json").data
    raw = _version(api, dataset["id"], b"raw").data
    run = api.post("/api/lineage/runs/", {"job_name": "train", "inputs": [raw["id"]]}, format="json").data
    node = lineage_record_model_version(run_id=run["id"], subject=("governance.modelversion", "12"),
                                                 digest=digest_of("model"), label="credit v12", actor="system:test")
    graph = api.get("/api/lineage/graph/", {"node": "model_version:governance.modelversion:12", "depth": 5}).data
    assert [n["kind"] for n in graph["nodes"]] == ["dataset_version", "run", "model_version"]
    detail = api.get(f"/api/lineage/nodes/{node.pk}/").data
    assert detail["digest"] == {"sha256": digest_of("model")} and len(detail["attestations"]) == 1
    upstream = api.get("/api/lineage/attestations/", {"subject_type": "governance.modelversion", "subject_id": "12",
                                                      "upstream": "1"}).data
    subjects = {s["digest"]["sha256"] for att in upstream for s in att["subjects"]}
    assert {raw["digest"], digest_of("model")} <= subjects
    only_own = api.get("/api/lineage/attestations/", {"subject_type": "governance.modelversion",
                                                      "subject_id": "12"}).data
    assert [att["id"] for att in only_own] == [detail["attestations"][0]["id"]]
    missing = api.get("/api/lineage/graph/", {"node": "model_version:governance.modelversion:999"})
    assert missing.status_code == 404 and missing.data["code"] == "lineage_node_not_found"
