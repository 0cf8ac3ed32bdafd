"""Bundle export through the API with a real Celery worker on Redis: queued on commit, progress, download,
verify.py, and a second delivery of the same task changes nothing."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from governance.reports.models import BundleExport
from tests.reports.bundle_helpers import run_verify

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_bundle_export_runs_on_a_real_worker_and_verifies(celery_worker_queue, auditor, version, tmp_path):
    client = APIClient()
    client.force_authenticate(auditor)
    response = client.post("/api/bundles/", {"model": version.model.name}, format="json")
    assert response.status_code == 202, response.content
    export_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        status = client.get(f"/api/bundles/{export_id}/").json()
        if status["status"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "done", status
    assert status["progress"] == 100 and status["ledger_seq"] is not None
    download = client.get(f"/api/bundles/{export_id}/download/")
    data = b"".join(download.streaming_content)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert any(name.startswith("report/") and name.endswith(".pdf") for name in archive.namelist())
    assert run_verify(tmp_path, data).returncode == 0

    # A redelivered task (acks_late) finds the export done and writes nothing.
    from governance.reports.tasks import bundle_export_task

    bundle_export_task.apply(args=[export_id])
    assert LedgerEntry.objects.filter(action="bundle.exported").count() == 1
    assert BundleExport.objects.get(pk=export_id).status == BundleExport.Status.DONE
