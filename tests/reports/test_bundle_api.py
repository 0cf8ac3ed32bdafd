"""Bundle export API: auditors export (Celery job, progress, download), others are refused, 404 for unseen models."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import ServiceError
from governance.registry.services.approvals import approval_decide
from governance.registry.services.deployments import deployment_record
from governance.reports.models import BundleExport
from tests.reports.bundle_helpers import run_verify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def client_for(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_auditor_exports_a_model_bundle_and_downloads_it(auditor, version, tmp_path,
                                                         django_capture_on_commit_callbacks):
    client = client_for(auditor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/bundles/", {"model": version.model.name, "version": version.label},
                               format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["download_url"] is None

    status = client.get(f"/api/bundles/{body['id']}/").json()
    assert status["status"] == "done" and status["progress"] == 100
    assert status["requested_by"] == f"user:{auditor.username}"
    assert status["download_url"].endswith(f"/api/bundles/{body['id']}/download/")

    download = client.get(f"/api/bundles/{body['id']}/download/")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    data = b"".join(download.streaming_content)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    subjects = {(s["type"], s["id"]) for s in manifest["subjects"]}
    assert ("governance.registeredmodel", str(version.model.pk)) in subjects
    assert ("governance.modelversion", str(version.pk)) in subjects
    assert download["X-Manifest-SHA256"] == status["manifest_sha256"]

    entry = LedgerEntry.objects.get(action="bundle.exported")
    assert entry.actor == f"user:{auditor.username}" and entry.payload["model"] == version.model.name
    assert run_verify(tmp_path, data).returncode == 0


def test_data_scientist_cannot_export(scientist, version):
    response = client_for(scientist).post("/api/bundles/", {"model": version.model.name}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "bundle_export_forbidden"
    assert not BundleExport.objects.exists()


def test_exporter_gets_404_for_a_model_of_another_team(make_user, other_team, team, model):
    from django.contrib.auth.models import Permission

    # Export permission, but only the other team's models in view.
    outsider = make_user("otto", "viewer", teams=(other_team,))
    outsider.user_permissions.add(Permission.objects.get(codename="export_bundle"))
    outsider = type(outsider).objects.get(pk=outsider.pk)
    response = client_for(outsider).post("/api/bundles/", {"model": model.name}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "model_not_found"
    assert not BundleExport.objects.exists()


def test_unknown_model_and_version_are_404_with_codes(auditor, version):
    client = client_for(auditor)
    assert client.post("/api/bundles/", {"model": "nope"}, format="json").json()["code"] == "model_not_found"
    response = client.post("/api/bundles/", {"model": version.model.name, "version": "9.9"}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "model_version_not_found"


def test_bad_request_bodies_are_400(auditor):
    client = client_for(auditor)
    assert client.post("/api/bundles/", {}, format="json").status_code == 400
    assert client.post("/api/bundles/", ["x"], format="json").status_code == 400


def test_others_cannot_see_an_export_and_download_waits_until_done(auditor, scientist, version):
    export = BundleExport.objects.create(actor="user:audrey", requested_by=auditor, model_name=version.model.name,
                                         subjects=[["governance.registeredmodel", str(version.model.pk)]])
    assert client_for(scientist).get(f"/api/bundles/{export.pk}/").status_code == 404
    response = client_for(auditor).get(f"/api/bundles/{export.pk}/download/")
    assert response.status_code == 409 and response.json()["code"] == "bundle_not_ready"
    assert client_for(auditor).get("/api/bundles/abc/").json()["code"] == "bundle_export_not_found"


def test_anonymous_is_refused(version):
    response = APIClient().post("/api/bundles/", {"model": version.model.name}, format="json")
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    assert not BundleExport.objects.exists()


def test_model_bundle_includes_approvals_deployments_and_lineage(auditor, pending, approver, risk_officer,
                                                                  environments, tmp_path):
    from governance.reports import selectors

    approval_decide(request=pending, by=approver, decision="approve", comment="ok")
    approval_decide(request=pending, by=risk_officer, decision="approve", comment="fine")
    pending.version.refresh_from_db()
    deployment = deployment_record(version=pending.version,
                                                       environment=environments["production"], by=pending.submitted_by)
    plan = selectors.bundle_plan_for_model(model_name=pending.version.model.name, user=auditor)
    subjects = set(plan.subjects)
    assert ("governance.approvalrequest", str(pending.pk)) in subjects
    assert {("governance.approvaldecision", str(d.pk)) for d in pending.decisions.all()} <= subjects
    assert ("governance.deployment", str(deployment.pk)) in subjects
    assert any(t == "lineage.lineagenode" for t, _ in subjects)
    assert plan.attestations, "the version's lineage attestation is carried"


def test_bundle_list_shows_own_and_visible_exports_paginated(auditor, scientist, version):
    mine = BundleExport.objects.create(actor="user:audrey", requested_by=auditor, model_name=version.model.name,
                                       subjects=[["governance.registeredmodel", str(version.model.pk)]])
    body = client_for(auditor).get("/api/bundles/").json()
    assert body["count"] == 1 and body["results"][0]["id"] == mine.pk
    assert client_for(scientist).get("/api/bundles/").json()["count"] == 0


def test_a_retried_request_with_the_same_idempotency_key_queues_one_export(auditor, version):
    client = client_for(auditor)
    first = client.post("/api/bundles/", {"model": version.model.name}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post("/api/bundles/", {"model": version.model.name}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert BundleExport.objects.count() == 1


def test_api_admin_and_page_queue_an_export_through_one_service_that_enqueues_it_by_name(auditor, version):
    """`bundle_export_queue` is the one path: the export row and its outbox message commit together."""
    from core.outbox.models import OutboxMessage
    from governance.celery import app
    from governance.reports.services import EXPORT_TASK, bundle_export_queue

    app.conf.CELERY_TASK_ALWAYS_EAGER = False  # the production path (the eager fixture restores it)
    export = bundle_export_queue(by=auditor, model_name=version.model.name, version_label=version.label)
    assert [(m.task_name, m.args) for m in OutboxMessage.objects.all()] == [(EXPORT_TASK, [export.pk])]
    with pytest.raises(ServiceError):
        bundle_export_queue(by=auditor, model_name="no-such-model")
    assert OutboxMessage.objects.count() == 1 and BundleExport.objects.count() == 1  # a refusal queues nothing
