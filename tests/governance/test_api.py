"""The API: paths, filters, 404 for invisible models, idempotency, tokens, error format (SoD: test_separation_of_duties)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.idempotency import idempotency_records_purge
from governance.models import (
    ApprovalDecision,
    Deployment,
    IdempotencyRecord,
    ModelVersion,
    RegisteredModel,
    ServiceToken,
)
from governance.registry.services.access import hash_token, service_account_create, service_token_create, service_token_revoke
from governance.registry.services.approvals import approval_decide, model_version_submit
from governance.registry.services.registry import model_register
from tests.fixtures import CARD, MANIFEST, last_entry

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=None)
    client.force_login(user)
    return client


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def ledger_size() -> int:
    return LedgerEntry.objects.count()


VERSION_BODY = {"label": "1.0.0", "artifact_uri": "s3://models/cds/1.0.0/", "manifest": MANIFEST,
                "framework": "sklearn", "training_metrics": {"auc": 0.81}, **CARD}


# --- Registry ----------------------------------------------------------------------------------

def test_register_model_and_version_through_api(scientist, team):
    client = client_for(scientist)
    response = client.post("/api/models/", {"name": "resume-screener", "team": "credit-risk", "risk_tier": "high",
                                            "contacts": ["owner@example.org"]}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["team"] == "credit-risk"
    response = client.post("/api/models/resume-screener/versions/", VERSION_BODY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and len(body["manifest_digest"]) == 64
    assert client.get("/api/models/resume-screener/versions/1.0.0/").json()["label"] == "1.0.0"
    listing = client.get("/api/models/resume-screener/versions/").json()
    assert listing["count"] == 1 and listing["results"][0]["label"] == "1.0.0"
    assert last_entry("model_version.registered").actor == "user:dana"


def test_model_list_filters_and_paginates(scientist, model, team):
    client = client_for(scientist)
    for index in range(3):
        model_register(by=scientist, name=f"m-{index}", team=team, risk_tier="minimal")
    page = client.get("/api/models/?page_size=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    assert [m["name"] for m in client.get("/api/models/?risk_tier=high").json()["results"]] == [model.name]
    bad = client.get("/api/models/?risk_tier=extreme")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter"
    bad = client.get("/api/models/?page=abc")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter"


def test_other_team_gets_404_not_403(make_user, other_team, model, version):
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    client = client_for(outsider)
    for path in (f"/api/models/{model.name}/", f"/api/models/{model.name}/versions/",
                 f"/api/models/{model.name}/versions/{version.label}/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "model_not_found"
        assert "credit" not in str(response.json()["extra"]).replace(model.name, "")
    assert client.get("/api/models/").json()["count"] == 0
    size = ledger_size()
    response = client.post(f"/api/models/{model.name}/versions/", {**VERSION_BODY, "label": "9"}, format="json")
    assert response.status_code == 404 and ledger_size() == size


def test_auditor_sees_every_model_but_cannot_write(auditor, model, version):
    client = client_for(auditor)
    assert client.get(f"/api/models/{model.name}/").status_code == 200
    response = client.post(f"/api/models/{model.name}/versions/", {**VERSION_BODY, "label": "2"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_user_without_role_sees_nothing(make_user, team, model):
    nobody = make_user("nora", teams=(team,))  # team member without any role: deny by default
    assert client_for(nobody).get(f"/api/models/{model.name}/").status_code == 404


def test_anonymous_is_refused(model):
    response = APIClient().get("/api/models/")
    # The bearer-token scheme comes first, so DRF answers 401 with its challenge rather than 403.
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("body,content_type,status_code,code", [
    (b"{not json", "application/json", 400, "malformed_request_body"),
    (b"[1, 2]", "application/json", 400, "invalid_input"),
    (b'{"label": 5, "artifact_uri": [], "manifest": "x"}', "application/json", 400, "invalid_input"),
    (b'{"label": "x", "artifact_uri": "s3://x", "manifest": {"a": "b"}}', "application/json", 400, "manifest_invalid"),
    (b'{"label": "x y", "artifact_uri": "s3://x", "manifest": {"a": "' + b"a" * 64 + b'"}}',
     "application/json", 400, "invalid_input"),
])
def test_bad_input_gets_stable_4xx_and_writes_nothing(scientist, model, body, content_type, status_code, code):
    client = client_for(scientist)
    size = ledger_size()
    response = client.generic("POST", f"/api/models/{model.name}/versions/", body, content_type=content_type)
    assert response.status_code == status_code
    assert response.json()["code"] == code
    assert ledger_size() == size and not ModelVersion.objects.exists()


def test_unknown_ids_are_404_with_codes(scientist, model):
    client = client_for(scientist)
    for path, code in (("/api/approval-requests/999/", "approval_request_not_found"),
                       ("/api/approval-requests/abc/decisions/", "approval_request_not_found"),
                       ("/api/deployments/12x/rollback/", "deployment_not_found"),
                       (f"/api/models/{model.name}/versions/nope/", "model_version_not_found")):
        response = client.post(path, {}, format="json") if path.endswith("/decisions/") or \
            path.endswith("/rollback/") else client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == code


# --- Approvals through the API -----------------------------------------------------------------

def test_full_approval_flow_over_api(scientist, approver, risk_officer, model, version, policy, environments):
    submit = client_for(scientist).post(f"/api/models/{model.name}/versions/{version.label}/approval-requests/",
                                        {"comment": "ready"}, format="json")
    assert submit.status_code == 201, submit.json()
    request_id = submit.json()["id"]
    assert submit.json()["policy"]["quorum"] == 2
    first = client_for(approver).post(f"/api/approval-requests/{request_id}/decisions/",
                                      {"decision": "approve", "comment": "metrics fine"}, format="json")
    assert first.status_code == 201 and first.json()["request"]["status"] == "pending"
    assert first.json()["request"]["progress"]["missing_roles"] == ["risk_officer"]
    second = client_for(risk_officer).post(f"/api/approval-requests/{request_id}/decisions/",
                                           {"decision": "approve", "comment": "risk accepted"}, format="json")
    assert second.status_code == 201 and second.json()["request"]["status"] == "approved"
    listing = client_for(approver).get(f"/api/approval-requests/?status=approved&model={model.name}").json()
    assert [item["id"] for item in listing["results"]] == [request_id]
    deploy = client_for(scientist).post("/api/deployments/", {"model": model.name, "version": version.label,
                                                              "environment": "production"}, format="json")
    assert deploy.status_code == 201, deploy.json()
    assert deploy.json()["is_active"] and deploy.json()["replaced"] is None
    assert client_for(scientist).get("/api/deployments/?environment=production&active=true").json()["count"] == 1
    envs = client_for(scientist).get("/api/environments/").json()
    assert {e["name"]: e["is_production"] for e in envs["results"]} == {"production": True, "staging": False}


def test_api_rejection_needs_reason_and_closed_request_refused(pending, approver, approver2):
    client = client_for(approver)
    response = client.post(f"/api/approval-requests/{pending.pk}/decisions/", {"decision": "reject"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "approval_reason_required"
    response = client.post(f"/api/approval-requests/{pending.pk}/decisions/",
                           {"decision": "reject", "comment": "calibration off"}, format="json")
    assert response.status_code == 201
    response = client_for(approver2).post(f"/api/approval-requests/{pending.pk}/decisions/",
                                          {"decision": "approve", "comment": "ok"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "approval_not_pending"
    again = client.post(f"/api/approval-requests/{pending.pk}/decisions/",
                        {"decision": "approve", "comment": "ok"}, format="json")
    assert again.status_code == 409


def test_withdraw_over_api(pending, scientist):
    response = client_for(scientist).post(f"/api/approval-requests/{pending.pk}/withdraw/", {"comment": "oops"},
                                          format="json")
    assert response.status_code == 200 and response.json()["status"] == "withdrawn"


def test_production_gate_over_api(scientist, model, version, environments):
    client = client_for(scientist)
    size = ledger_size()
    response = client.post("/api/deployments/", {"model": model.name, "version": version.label,
                                                                "environment": "production"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "deployment_not_approved"
    assert ledger_size() == size and not Deployment.objects.exists()
    response = client.post("/api/deployments/", {"model": model.name, "version": version.label,
                                                                "environment": "moon"}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "environment_not_found"


def test_rollback_over_api(scientist, make_version, approver, risk_officer, environments, policy):
    versions = []
    for label in ("1.0", "2.0"):
        version = make_version(label)
        request = model_version_submit(version=version, by=scientist)
        approval_decide(request=request, by=approver, decision="approve", comment="ok")
        approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
        versions.append(version)
    client = client_for(scientist)
    for version in versions:
        client.post("/api/deployments/", {"model": "credit-default-scorer", "version": version.label,
                                          "environment": "production"}, format="json")
    current = Deployment.objects.get(is_active=True)
    response = client.post(f"/api/deployments/{current.pk}/rollback/", {"comment": "p99 latency"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["version"] == "1.0" and response.json()["is_rollback"]
    assert response.json()["replaced"] == current.pk


# --- Idempotency -----------------------------------------------------------------------------

def test_idempotent_retry_replays_first_response(scientist, team):
    client = client_for(scientist)
    body = {"name": "idem-model", "team": "credit-risk", "risk_tier": "limited"}
    first = client.post("/api/models/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    size = ledger_size()
    second = client.post("/api/models/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second["Idempotent-Replayed"] == "true"
    assert ledger_size() == size and RegisteredModel.objects.filter(name="idem-model").count() == 1


def test_idempotency_key_with_other_body_is_409(scientist, team):
    client = client_for(scientist)
    client.post("/api/models/", {"name": "a1", "team": "credit-risk", "risk_tier": "limited"}, format="json",
                HTTP_IDEMPOTENCY_KEY="k-2")
    size = ledger_size()
    response = client.post("/api/models/", {"name": "a2", "team": "credit-risk", "risk_tier": "limited"},
                           format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 409 and response.json()["code"] == "idempotency_key_reused"
    assert ledger_size() == size and not RegisteredModel.objects.filter(name="a2").exists()


def test_failed_request_stores_no_idempotency_record(scientist, team):
    client = client_for(scientist)
    bad = client.post("/api/models/", {"name": "b1", "team": "credit-risk", "risk_tier": "nope"}, format="json",
                      HTTP_IDEMPOTENCY_KEY="k-3")
    assert bad.status_code == 400 and not IdempotencyRecord.objects.exists()
    good = client.post("/api/models/", {"name": "b1", "team": "credit-risk", "risk_tier": "high"}, format="json",
                       HTTP_IDEMPOTENCY_KEY="k-3")
    assert good.status_code == 201


def test_idempotency_keys_are_per_user(scientist, scientist2, team):
    body = {"name": "c1", "team": "credit-risk", "risk_tier": "high"}
    assert client_for(scientist).post("/api/models/", body, format="json", HTTP_IDEMPOTENCY_KEY="same").status_code \
        == 201
    response = client_for(scientist2).post("/api/models/", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert response.status_code == 409 and response.json()["code"] == "model_name_taken"


def test_idempotent_decision_replay(pending, approver):
    client = client_for(approver)
    body = {"decision": "approve", "comment": "ok"}
    first = client.post(f"/api/approval-requests/{pending.pk}/decisions/", body, format="json",
                        HTTP_IDEMPOTENCY_KEY="d-1")
    second = client.post(f"/api/approval-requests/{pending.pk}/decisions/", body, format="json",
                         HTTP_IDEMPOTENCY_KEY="d-1")
    assert first.status_code == second.status_code == 201 and second.json() == first.json()
    assert ApprovalDecision.objects.count() == 1


def test_invalid_idempotency_key_refused(scientist, team):
    response = client_for(scientist).post("/api/models/", {"name": "x", "team": "credit-risk", "risk_tier": "high"},
                                          format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_invalid"


# --- Service tokens --------------------------------------------------------------------------

def test_token_is_stored_hashed_and_authenticates(model, version):
    account, token = service_account_create(by="system:test", name="ci", role="data_scientist",
                                                     models=[model])
    row = ServiceToken.objects.get(account=account)
    assert token.startswith(f"gov_{row.prefix}_")
    assert token not in row.token_hash and row.token_hash == hash_token(token)
    assert token not in str(list(LedgerEntry.objects.values_list("canonical", flat=True)))
    assert last_entry("service_token.created").payload["after"]["token_hash"] == "<redacted>"
    response = bearer(token).get(f"/api/models/{model.name}/versions/")
    assert response.status_code == 200 and response.json()["count"] == 1
    created = bearer(token).post(f"/api/models/{model.name}/versions/", {**VERSION_BODY, "label": "ci-1"},
                                 format="json")
    assert created.status_code == 201
    assert last_entry("model_version.registered").actor == "user:svc-ci"


def test_wrong_expired_revoked_tokens_refused(model):
    account, token = service_account_create(by="system:test", name="ci", role="data_scientist",
                                                     models=[model])
    assert bearer(token[:-2] + "xx").get("/api/models/").status_code == 401
    assert bearer("gov_nothing").get("/api/models/").status_code == 401
    row = ServiceToken.objects.get(account=account)
    from core.actor import acting_as
    with acting_as("system:test"):
        ServiceToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(token).get("/api/models/")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"
    with acting_as("system:test"):
        ServiceToken.objects.filter(pk=row.pk).update(expires_at=None)
    assert bearer(token).get("/api/models/").status_code == 200
    service_token_revoke(token=row, by="system:test", comment="leaked in CI log")
    assert bearer(token).get("/api/models/").status_code == 401
    assert last_entry("service_token.revoked").payload["comment"] == "leaked in CI log"


def test_read_token_cannot_write(model):
    account, _ = service_account_create(by="system:test", name="ci", role="data_scientist",
                                                 models=[model], scope="read")
    _, token = service_token_create(account=account, by="system:test", scope="read")
    client = bearer(token)
    assert client.get(f"/api/models/{model.name}/").status_code == 200
    size = ledger_size()
    response = client.post(f"/api/models/{model.name}/versions/", {**VERSION_BODY, "label": "r-1"}, format="json")
    assert response.status_code == 403 and ledger_size() == size


def test_token_limited_to_models(model, team, scientist):
    other = model_register(by=scientist, name="other-model", team=team, risk_tier="high")
    account, _ = service_account_create(by="system:test", name="ci", role="data_scientist",
                                                 models=[model, other])
    _, token = service_token_create(account=account, by="system:test", scope="write", models=[model])
    client = bearer(token)
    assert client.get(f"/api/models/{model.name}/").status_code == 200
    assert client.get("/api/models/other-model/").status_code == 404
    assert client.get("/api/models/").json()["count"] == 1
    response = client.post("/api/models/other-model/versions/", {**VERSION_BODY, "label": "t-1"}, format="json")
    assert response.status_code == 404


def test_openapi_schema_documents_error_format():
    client = APIClient()
    from django.contrib.auth import get_user_model
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.org", "x" * 16))
    schema = client.get("/api/schema/?format=json").json()
    decide = schema["paths"]["/api/approval-requests/{request_id}/decisions/"]["post"]
    assert "409" in decide["responses"] and "Idempotency-Key" in {p["name"] for p in decide["parameters"]}
    assert "serviceToken" in schema["components"]["securitySchemes"]


def test_idempotency_records_are_purged_after_retention(scientist, team):
    from datetime import timedelta

    from django.utils import timezone
    client = client_for(scientist)
    client.post("/api/models/", {"name": "p1", "team": "credit-risk", "risk_tier": "minimal"}, format="json",
                HTTP_IDEMPOTENCY_KEY="old")
    assert idempotency_records_purge() == 0
    assert idempotency_records_purge(now=timezone.now() + timedelta(hours=25)) == 1
    assert not IdempotencyRecord.objects.exists()


def test_unknown_training_run_is_404_and_writes_nothing(scientist, model):
    client = client_for(scientist)
    size = ledger_size()
    response = client.post(f"/api/models/{model.name}/versions/", {**VERSION_BODY, "training_run": 987654},
                           format="json")
    assert response.status_code == 404 and response.json()["code"] == "training_run_not_found"
    assert ledger_size() == size and not ModelVersion.objects.exists()
