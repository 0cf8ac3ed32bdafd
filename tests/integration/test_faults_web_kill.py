"""A web process SIGKILLed in the middle of a batch append (an OpenLineage event with hundreds of
datasets: one transaction, hundreds of ledger entries): all of the batch or none of it, the chain
verifies, and the retried event lands once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from django.db import connection

from audit.models import LedgerEntry, LedgerHead
from audit.verify import verify_ledger
from governance.registry.services.access import service_account_create
from governance.registry.services.registry import model_register, team_create
from lineage.models import DatasetVersion, OpenLineageEvent
from tests.conftest import uses_postgres
from tests.faults.helpers import gunicorn, gunicorn_worker_pids, service_env
from tests.fixtures import team_writer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.postgres,
              pytest.mark.skipif(not uses_postgres(), reason="watches the web process's transaction in pg_stat_activity")]

OUTPUTS = 400


def pipeline_token() -> str:
    """A team's pipeline: OpenLineage records belong to the team of the models it is bound to."""
    team = team_create(by="system:fault_test", name="credit-risk")
    model = model_register(by=team_writer(team), name="scorer", team=team, risk_tier="minimal")
    _, token = service_account_create(by="system:fault_test", name="pipeline", role="data_scientist",
                                      models=[model])
    return token


def big_event() -> bytes:
    outputs = [{"namespace": "s3://features", "name": f"table_{index}",
                "facets": {"schema": {"fields": [{"name": "x", "type": "double"}, {"name": "y", "type": "int"}]}}}
               for index in range(OUTPUTS)]
    return json.dumps({
        "eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(),
        "run": {"runId": str(uuid.uuid4()), "facets": {}}, "job": {"namespace": "credit-ml", "name": "features", "facets": {}},
        "inputs": [{"namespace": "s3://bank", "name": "applicants"}], "outputs": outputs,
        "producer": "https://example.org/pipeline", "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json",
    }).encode()


def open_transactions() -> list[tuple[int, float]]:
    """(pid, seconds open) of other sessions with an open transaction on the test database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, EXTRACT(EPOCH FROM now() - xact_start) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL")
        return [(int(pid), float(age)) for pid, age in cursor.fetchall()]


def snapshot() -> tuple[int, int, int, int]:
    return (LedgerEntry.objects.count(), LedgerHead.objects.get(pk=1).tree_size, DatasetVersion.objects.count(),
            OpenLineageEvent.objects.count())


def test_web_worker_killed_mid_batch_append_leaves_all_or_nothing():
    token = pipeline_token()
    event = big_event()
    before = snapshot()
    outcome: dict[str, object] = {}
    with gunicorn(service_env(), workers=1) as (base, master):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def post() -> None:
            try:
                outcome["status"] = httpx.post(f"{base}/api/v1/lineage", content=event, headers=headers, timeout=120).status_code
            except httpx.HTTPError as exc:
                outcome["error"] = type(exc).__name__

        sender = threading.Thread(target=post)
        sender.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(age > 0.3 for _, age in open_transactions()):
            time.sleep(0.01)
        assert open_transactions(), "the batch transaction was never seen open"
        for pid in gunicorn_worker_pids(master.pid):
            os.kill(pid, signal.SIGKILL)
        sender.join(timeout=60)
        assert "error" in outcome, f"the request finished before the kill: {outcome}"

        deadline = time.monotonic() + 30  # PostgreSQL aborts the orphaned transaction
        while open_transactions() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not open_transactions()
        assert snapshot() == before, "a killed batch must leave nothing behind"
        result = verify_ledger()
        assert result.ok, result.problems

        # The pipeline retries the same event: the respawned worker ingests it once.
        deadline = time.monotonic() + 30
        while True:
            try:
                retried = httpx.post(f"{base}/api/v1/lineage", content=event, headers=headers, timeout=120)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert retried.status_code == 201 and retried.json()["duplicate"] is False, retried.text[:500]
        after = snapshot()
        assert after[2] - before[2] == OUTPUTS + 1 and after[3] - before[3] == 1
        assert after[0] == after[1] and after[0] > before[0]
        again = httpx.post(f"{base}/api/v1/lineage", content=event, headers=headers, timeout=120)
        # A redelivery gets the first answer again, 201 and marked duplicate (lineage/openlineage.py).
        assert again.status_code == 201 and again.json()["duplicate"] is True, again.text[:500]
        assert snapshot() == after, "a redelivery writes nothing"
    result = verify_ledger()
    assert result.ok, result.problems
