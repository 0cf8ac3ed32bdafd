"""Insiders and lineage (issue 14, classes 5 and 6): another team cannot write into a model's lineage
or read it, and a token restricted to some models reads and acts only on them.

Every attempt goes through the API (and the pages and the admin where they show lineage), as the
attacking user with the normal permissions of their role.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client
from rest_framework.test import APIClient

from audit import dsse
from audit.models import LedgerEntry
from governance.models import RegisteredModel
from governance.registry.services.access import service_account_create
from governance.registry.services.deployments import deployment_record
from governance.registry.services.registry import model_register, model_version_register
from lineage import attestations as statements
from lineage.models import Attestation, Dataset, DatasetVersion, LineageNode, TrainingRun
from tests.lineage.conftest import digest_of, public_pem

pytestmark = pytest.mark.django_db

SECRET_MODEL = "credit-default-scorer"  # team credit-risk's model: its name must never reach the other team


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _token_api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _envelope(private_key: Ed25519PrivateKey, subject_digest: str, dependency_digest: str | None = None) -> bytes:
    deps = [statements.resource("input", dependency_digest)] if dependency_digest else []
    statement = statements.build_statement(
        subjects=[("subject", subject_digest)], build_type="https://pipelines.example/v1", external_parameters={},
        internal_parameters={}, resolved_dependencies=deps, builder_id="https://ci.example/runner",
        invocation_id=uuid.uuid4().hex)
    keyid = dsse.envelope_keyid(private_key.public_key().public_bytes_raw())
    envelope = dsse.sign_envelope(json.dumps(statement).encode(), payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
                                  private_key=private_key, keyid=keyid)
    return json.dumps(envelope).encode()


def _submit(client: APIClient, body: bytes) -> Any:
    return client.generic("POST", "/api/lineage/attestations/", body, content_type="application/json")


def _signer(client: APIClient) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    response = client.post("/api/lineage/keys/", {"public_key": public_pem(key)}, format="json")
    assert response.status_code == 201, response.content
    return key


def _ol_event(run_id: str, *, job: str = "train", namespace: str = "ci", output: str | None = None) -> dict[str, Any]:
    return {"eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(),
            "run": {"runId": run_id, "facets": {}}, "job": {"namespace": namespace, "name": job, "facets": {}},
            "inputs": [], "outputs": [{"namespace": "s3://lake", "name": output}] if output else [],
            "producer": "https://example.com/ci",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"}


@pytest.fixture
def intruder(make_user, other_team):  # type: ignore[no-untyped-def]
    """A data scientist of the other team: lineage rights, but none over credit-risk's records."""
    return make_user("bert", "data_scientist", teams=(other_team,))


@pytest.fixture
def world(scientist, model, make_version, environments):  # type: ignore[no-untyped-def]
    """Team credit-risk's lineage: a dataset version, a run that trained version 1.0.0, its deployment."""
    owner = _api(scientist)
    dataset = owner.post("/api/lineage/datasets/", {"namespace": "s3://bank", "name": "loans"}, format="json").data
    data_version = owner.post(f"/api/lineage/datasets/{dataset['id']}/versions/",
                              {"location_uri": "s3://bank/loans/1", "digest": digest_of("loans-1")},
                              format="json").data
    run = owner.post("/api/lineage/runs/", {"job_name": "train-scorer", "inputs": [data_version["id"]]},
                     format="json").data
    version = make_version("1.0.0", training_run=run["id"])
    deployment = deployment_record(version=version, environment=environments["staging"], by=scientist)
    version_node = LineageNode.objects.get(ref_type="governance.modelversion", ref_id=str(version.pk))
    deployment_node = LineageNode.objects.get(ref_type="governance.deployment", ref_id=str(deployment.pk))
    return {"dataset": dataset, "data_version": data_version, "run": run, "version": version,
            "version_node": version_node, "deployment_node": deployment_node}


# --- Class 5: other teams write into a model's lineage ---------------------------------------------

@pytest.mark.parametrize("target", ["version_node", "deployment_node", "data_version"])
def test_an_attestation_naming_another_teams_record_is_refused_like_an_unknown_digest(world, intruder, target):
    client = _api(intruder)
    key = _signer(client)
    digest = world[target].digest if target != "data_version" else world[target]["digest"]
    attestations, subjects = Attestation.objects.count(), list(LineageNode.objects.filter(digest=digest))
    before = LedgerEntry.objects.count()

    cross_team = _submit(client, _envelope(key, digest))
    unknown = _submit(client, _envelope(key, digest_of("nothing-has-this-digest")))

    assert (cross_team.status_code, cross_team.json()["code"]) == (403, "attestation_subject_not_writable")
    assert (unknown.status_code, unknown.json()["code"]) == (403, "attestation_subject_not_writable")
    # The same answer, but for the digest the caller sent: no oracle for what exists in another team.
    assert cross_team.json()["extra"] == {"unmatched_sha256": [digest]}
    assert cross_team.json()["message"] == unknown.json()["message"]
    assert Attestation.objects.count() == attestations
    assert not any(node.attestation_subjects.exists() and node.attestation_subjects.filter(
        attestation__submitted_by="user:bert").exists() for node in subjects)
    refusals = list(LedgerEntry.objects.filter(seq__gte=before).order_by("seq"))
    assert [entry.action for entry in refusals] == ["lineage.attestation.submitted.refused"] * 2
    assert [entry.actor for entry in refusals] == ["user:bert"] * 2
    assert refusals[0].payload["code"] == "attestation_subject_not_writable"


def test_an_attestation_on_ones_own_record_may_depend_on_what_one_reads_only(world, intruder, scientist):
    """Dependencies are whatever the submitter may read: another team's dataset becomes no edge."""
    client = _api(intruder)
    own = client.post("/api/lineage/datasets/", {"namespace": "s3://hr", "name": "cvs"}, format="json").data
    own_version = client.post(f"/api/lineage/datasets/{own['id']}/versions/",
                              {"location_uri": "s3://hr/cvs/1", "digest": digest_of("cvs-1")}, format="json").data
    key = _signer(client)
    response = _submit(client, _envelope(key, own_version["digest"], world["data_version"]["digest"]))
    assert response.status_code == 201, response.content
    stored = Attestation.objects.get(pk=response.json()["id"])
    assert stored.owner_team == "team:hiring" and not stored.edges.exists()
    # The owning team, who may read both, links its own records the same way.
    owner = _api(scientist)
    owner_key = _signer(owner)
    second = owner.post(f"/api/lineage/datasets/{world['dataset']['id']}/versions/",
                        {"location_uri": "s3://bank/loans/2", "digest": digest_of("loans-2")}, format="json").data
    linked = _submit(owner, _envelope(owner_key, second["digest"], world["data_version"]["digest"]))
    assert linked.status_code == 201 and Attestation.objects.get(pk=linked.json()["id"]).edges.count() == 1


def test_another_team_cannot_add_versions_to_a_teams_dataset_or_outputs_to_its_run(world, intruder):
    client = _api(intruder)
    before = (LedgerEntry.objects.count(), DatasetVersion.objects.count())
    response = client.post(f"/api/lineage/datasets/{world['dataset']['id']}/versions/",
                           {"location_uri": "s3://evil", "digest": digest_of("evil")}, format="json")
    assert (response.status_code, response.json()["code"]) == (404, "dataset_not_found")
    run = client.post("/api/lineage/runs/", {"job_name": "x", "outputs": {"dataset_versions": [
        world["data_version"]["id"]]}}, format="json")
    assert (run.status_code, run.json()["code"]) == (404, "dataset_version_not_found")
    assert (LedgerEntry.objects.count(), DatasetVersion.objects.count()) == before


def test_a_dataset_of_the_same_name_is_each_teams_own(world, intruder):
    """Creating "s3://bank/loans" in another team makes that team's own record, revealing nothing."""
    response = _api(intruder).post("/api/lineage/datasets/", {"namespace": "s3://bank", "name": "loans"},
                                   format="json")
    assert response.status_code == 201
    assert response.json()["id"] != world["dataset"]["id"] and response.json()["owner_team"] == "team:hiring"
    assert Dataset.objects.filter(namespace="s3://bank", name="loans").count() == 2


def test_a_user_in_no_team_records_no_lineage(make_user):
    loner = make_user("lou", "data_scientist")
    response = _api(loner).post("/api/lineage/datasets/", {"namespace": "s3://x", "name": "y"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "lineage_team_required")
    assert not Dataset.objects.filter(name="y").exists()


@pytest.mark.parametrize("job", ["train", "another-job"])
def test_another_accounts_openlineage_event_for_a_run_is_409_and_writes_nothing(scientist, intruder, job):
    run_id = str(uuid.uuid4())
    first = _api(scientist).post("/api/v1/lineage", _ol_event(run_id, output="scores"), format="json")
    assert first.status_code == 201, first.content
    run = TrainingRun.objects.get(external_run_id=run_id)
    counts = (LedgerEntry.objects.count(), Dataset.objects.count(), DatasetVersion.objects.count(),
              LineageNode.objects.count(), Attestation.objects.count())
    response = _api(intruder).post("/api/v1/lineage", _ol_event(run_id, job=job, output="hijacked"), format="json")
    assert (response.status_code, response.json()["code"]) == (409, "openlineage_run_conflict")
    assert (LedgerEntry.objects.count(), Dataset.objects.count(), DatasetVersion.objects.count(),
            LineageNode.objects.count(), Attestation.objects.count()) == counts
    run.refresh_from_db()
    assert (run.job_name, run.actor, run.owner_team) == ("train", "user:dana", "team:credit-risk")


def test_the_same_account_under_another_job_is_409_too(scientist):
    run_id = str(uuid.uuid4())
    client = _api(scientist)
    assert client.post("/api/v1/lineage", _ol_event(run_id), format="json").status_code == 201
    response = client.post("/api/v1/lineage", _ol_event(run_id, job="other"), format="json")
    assert (response.status_code, response.json()["code"]) == (409, "openlineage_run_conflict")


def test_an_identical_body_from_another_account_is_no_retry_of_the_first(scientist, intruder):
    """Deduplication is per account: another account's copy is refused, not answered with the first result."""
    event = _ol_event(str(uuid.uuid4()), output="scores")
    first = _api(scientist).post("/api/v1/lineage", event, format="json")
    copy = _api(intruder).post("/api/v1/lineage", event, format="json")
    assert first.status_code == 201
    assert (copy.status_code, copy.json()["code"]) == (409, "openlineage_run_conflict")


def test_a_resubmitted_envelope_returns_the_stored_one_and_writes_nothing(world, scientist):
    client = _api(scientist)
    key = _signer(client)
    body = _envelope(key, world["data_version"]["digest"])
    first = _submit(client, body)
    assert first.status_code == 201
    before = (LedgerEntry.objects.count(), Attestation.objects.count())
    again = _submit(client, body)
    assert again.status_code == 200 and again.content == first.content
    assert (LedgerEntry.objects.count(), Attestation.objects.count()) == before


def test_an_envelope_signed_by_a_server_key_is_refused(world, scientist):
    """Replaying the server's own envelope (or one claiming its key) is refused and recorded; nothing is stored."""
    client = _api(scientist)
    server_made = Attestation.objects.filter(origin=Attestation.Origin.SERVER,
                                             subjects__node__digest=world["data_version"]["digest"]).first()
    served = client.get(f"/api/lineage/attestations/{server_made.pk}/")
    assert served.status_code == 200
    count = Attestation.objects.count()
    response = _submit(client, served.content)
    assert (response.status_code, response.json()["code"]) == (403, "attestation_server_key")
    assert Attestation.objects.count() == count
    assert LedgerEntry.objects.order_by("-seq").first().action == "lineage.attestation.submitted.refused"


def test_a_revoked_key_is_refused_for_new_envelopes(world, scientist):
    client = _api(scientist)
    key = _signer(client)
    key_id = client.get("/api/lineage/keys/").json()[-1]["id"]
    assert client.post(f"/api/lineage/keys/{key_id}/revoke/").status_code == 200
    count = Attestation.objects.count()
    response = _submit(client, _envelope(key, world["data_version"]["digest"]))
    assert (response.status_code, response.json()["code"]) == (400, "attestation_key_revoked")
    assert Attestation.objects.count() == count


def test_another_team_cannot_revoke_a_teams_key(world, scientist, intruder):
    _signer(_api(scientist))
    key_id = _api(scientist).get("/api/lineage/keys/").json()[-1]["id"]
    response = _api(intruder).post(f"/api/lineage/keys/{key_id}/revoke/")
    assert (response.status_code, response.json()["code"]) == (404, "pipeline_key_not_found")
    assert all(row["id"] != key_id for row in _api(intruder).get("/api/lineage/keys/").json())


# --- Class 6: reading across teams ------------------------------------------------------------------

def test_another_team_reads_none_of_a_models_lineage(world, intruder, scientist):
    client = _api(intruder)
    node, run = world["version_node"], world["run"]
    attestation = Attestation.objects.filter(subjects__node=node).first()
    refused = {
        f"/api/lineage/graph/?node=node:{node.pk}&direction=both": "lineage_node_not_found",
        f"/api/lineage/graph/?node=run:{run['id']}&direction=both": "lineage_node_not_found",
        f"/api/lineage/nodes/{node.pk}/": "lineage_node_not_found",
        f"/api/lineage/nodes/{run['node']}/": "lineage_node_not_found",
        f"/api/lineage/runs/{run['id']}/": "training_run_not_found",
        f"/api/lineage/attestations/{attestation.pk}/": "attestation_not_found",
        f"/api/lineage/datasets/{world['dataset']['id']}/": "dataset_not_found",
        f"/api/lineage/datasets/{world['dataset']['id']}/versions/{world['data_version']['id']}/":
            "dataset_version_not_found",
    }
    for path, code in refused.items():
        response = client.get(path)
        assert (response.status_code, response.json()["code"]) == (404, code), path
    for path in ("/api/lineage/runs/", "/api/lineage/datasets/", "/api/lineage/attestations/", "/api/lineage/keys/",
                 f"/api/lineage/attestations/?subject_type=governance.modelversion&subject_id={world['version'].pk}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert SECRET_MODEL.encode() not in response.content and b"train-scorer" not in response.content, path
    # The owner sees all of it (the checks above are not vacuous).
    owner = _api(scientist)
    assert owner.get(f"/api/lineage/runs/{run['id']}/").status_code == 200
    assert SECRET_MODEL.encode() in owner.get(f"/api/lineage/graph/?node=run:{run['id']}&direction=both").content


def test_another_team_gets_404_for_the_lineage_page_and_sees_nothing_in_the_admin(world, intruder):
    client = Client()
    client.force_login(intruder)
    for node_id in (world["version_node"].pk, world["run"]["node"], world["data_version"]["node"]):
        page = client.get(f"/lineage/nodes/{node_id}/")
        assert page.status_code == 404 and SECRET_MODEL.encode() not in page.content
    for changelist in ("dataset", "datasetversion", "trainingrun", "lineagenode", "attestation"):
        response = client.get(f"/admin/lineage/{changelist}/")
        assert response.status_code == 200, changelist
        assert SECRET_MODEL.encode() not in response.content and b"train-scorer" not in response.content, changelist
        assert b"s3://bank" not in response.content, changelist


# --- Class 6: tokens restricted to some models -------------------------------------------------------

@pytest.fixture
def two_models(scientist, team, model, make_version):  # type: ignore[no-untyped-def]
    other = model_register(by=scientist, name="credit-limit-setter", team=team, risk_tier="limited")
    mine = make_version("1.0.0")
    theirs = model_version_register(model=other, by=scientist, label="1.0.0", artifact_uri="s3://x/",
                                             manifest={"m.bin": "c" * 64})
    return {"mine": model, "other": other, "mine_version": mine, "other_version": theirs}


def test_a_token_restricted_to_one_model_reads_only_its_ledger_entries(two_models):
    _, token = service_account_create(by="system:test", name="audit-bot", role="auditor",
                                               models=[two_models["mine"]], scope="read")
    client = _token_api(token)
    response = client.get("/api/ledger/entries/?page_size=500")
    assert response.status_code == 200
    subjects = {(row["subject"]["type"], row["subject"]["id"]) for row in response.json()["results"]}
    mine, version = two_models["mine"], two_models["mine_version"]
    node = LineageNode.objects.get(ref_type="governance.modelversion", ref_id=str(version.pk))
    assert subjects == {("governance.registeredmodel", str(mine.pk)), ("governance.modelversion", str(version.pk)),
                        ("lineage.lineagenode", str(node.pk))}
    other_entry = LedgerEntry.objects.filter(subject_type="governance.registeredmodel",
                                             subject_id=str(two_models["other"].pk)).first()
    detail = client.get(f"/api/ledger/entries/{other_entry.seq}/")
    assert (detail.status_code, detail.json()["code"]) == (404, "ledger_entry_not_found")
    own_entry = LedgerEntry.objects.filter(subject_type="governance.registeredmodel", subject_id=str(mine.pk)).first()
    assert client.get(f"/api/ledger/entries/{own_entry.seq}/").status_code == 200
    # An unrestricted auditor token still reads the whole ledger.
    _, free = service_account_create(by="system:test", name="audit-all", role="auditor", scope="read")
    assert _token_api(free).get("/api/ledger/entries/").json()["count"] == LedgerEntry.objects.count()


def test_a_token_restricted_to_one_model_reads_only_its_lineage(two_models, scientist):
    _, token = service_account_create(by="system:test", name="train-bot", role="data_scientist",
                                               models=[two_models["mine"]])
    client = _token_api(token)
    mine = LineageNode.objects.get(ref_type="governance.modelversion", ref_id=str(two_models["mine_version"].pk))
    other = LineageNode.objects.get(ref_type="governance.modelversion", ref_id=str(two_models["other_version"].pk))
    assert client.get(f"/api/lineage/nodes/{mine.pk}/").status_code == 200
    response = client.get(f"/api/lineage/nodes/{other.pk}/")
    assert (response.status_code, response.json()["code"]) == (404, "lineage_node_not_found")
    # It records lineage for its model's team, and the team's own records are its own.
    created = client.post("/api/lineage/datasets/", {"namespace": "s3://bot", "name": "features"}, format="json")
    assert created.status_code == 201 and created.json()["owner_team"] == "team:credit-risk"


@pytest.mark.parametrize(("role", "code"), [
    ("data_scientist", "token_model_restricted"),  # its models' teams only
    ("admin", "admin_cannot_act_as_data_scientist"),  # admins register nothing at all
])
def test_a_token_restricted_to_one_model_registers_no_model_in_another_team(two_models, other_team, role, code):
    _, token = service_account_create(by="system:test", name="ops-bot", role=role, models=[two_models["mine"]])
    client = _token_api(token)
    models_before, next_seq = RegisteredModel.objects.count(), LedgerEntry.objects.count()
    response = client.post("/api/models/", {"name": "sneaky", "team": other_team.name, "risk_tier": "minimal"},
                           format="json")
    assert (response.status_code, response.json()["code"]) == (403, code)
    assert RegisteredModel.objects.count() == models_before
    written = list(LedgerEntry.objects.filter(seq__gte=next_seq).values_list("action", flat=True))
    assert all(action.endswith(".refused") for action in written), written
