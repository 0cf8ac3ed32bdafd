"""Redis (the broker) stops during traffic. API writes still succeed (the ledger lives in
PostgreSQL); bundle exports requested meanwhile wait in the database outbox and are published
when Redis is back (by the beat job); each export then runs exactly once. A private redis-server
on its own port plays the broker, so the shared one is never touched."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from audit.models import LedgerEntry
from audit.verify import verify_ledger
from core.outbox.models import OutboxMessage
from governance.models import ModelVersion
from governance.registry.services.access import service_account_create
from governance.registry.services.registry import model_register, model_version_register, team_create
from governance.reports.models import BundleExport
from tests.conftest import REPO_ROOT, uses_postgres
from tests.faults.helpers import _bin, celery_worker, gunicorn, private_redis, service_env, stop
from tests.fixtures import team_writer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis,
              pytest.mark.skipif(not uses_postgres(), reason="web, worker and beat share the real PostgreSQL")]


def seed() -> tuple[str, str]:
    """(the team pipeline's token, an auditor's token): one writes versions, the other exports bundles."""
    team = team_create(by="system:fault_test", name="credit-risk")
    writer = team_writer(team)
    model = model_register(by=writer, name="scorer", team=team, risk_tier="minimal")
    model_version_register(model=model, by=writer, label="0.1.0", artifact_uri="s3://m/0.1.0/",
                           manifest={"model.bin": "0" * 64})
    # The team's pipeline (not an admin or superuser: they register nothing).
    _, token = service_account_create(by="system:fault_test", name="pipeline", role="data_scientist", models=[model])
    _, auditor = service_account_create(by="system:fault_test", name="exporter", role="auditor")
    return token, auditor


def wait_for(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_redis_outage_keeps_writes_and_queues_tasks_in_the_outbox_until_it_returns(tmp_path: Path):
    import subprocess

    token, auditor_token = seed()
    with private_redis() as (port, redis):
        broker = f"redis://127.0.0.1:{port}/0"
        env = service_env(CELERY_BROKER_URL=broker, REDIS_URL=broker, OUTBOX_DISPATCH_INTERVAL_S="1",
                          MEDIA_ROOT=str(tmp_path / "media"))
        beat = subprocess.Popen([_bin("celery"), "-A", "governance", "beat", "--loglevel", "WARNING",
                                 "--scheduler", "celery.beat:PersistentScheduler", "-s", str(tmp_path / "beat-schedule")],
                                cwd=REPO_ROOT, env=env, start_new_session=True)
        try:
            with gunicorn(env, workers=2) as (base, _), celery_worker(env, name="faults-redis"), \
                    httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client, \
                    httpx.Client(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {auditor_token}"}) as exporter:
                def write(index: int) -> None:
                    response = client.post("/api/models/scorer/versions/",
                                           json={"label": f"1.{index}.0", "artifact_uri": f"s3://m/1.{index}.0/",
                                                 "manifest": {"model.bin": f"{index:064x}"}})
                    assert response.status_code == 201, response.text

                def request_bundle() -> int:
                    response = exporter.post("/api/bundles/", json={"model": "scorer"})
                    assert response.status_code == 202, response.text
                    return int(response.json()["id"])

                write(0)
                before_outage = request_bundle()
                wait_for(lambda: BundleExport.objects.get(pk=before_outage).status == "done", 60, "the first export")

                redis.stop()
                started = time.monotonic()
                during = []
                for index in range(1, 6):
                    write(index)
                    during.append(request_bundle())
                outage_requests_s = time.monotonic() - started
                pending = OutboxMessage.objects.filter(dispatched_at__isnull=True)
                # The web process publishes in a background thread (OUTBOX_PUBLISH=background): let it try.
                wait_for(lambda: not pending.filter(attempts=0).exists(), 30, "a publish attempt of each message")
                assert pending.count() == len(during), "each export requested in the outage waits in the outbox"
                assert all(message.attempts >= 1 and message.last_error for message in pending)
                assert BundleExport.objects.filter(pk__in=during, status="done").count() == 0

                redis.start()  # same port: the worker reconnects, the beat job publishes the outbox
                wait_for(lambda: BundleExport.objects.filter(pk__in=during, status="done").count() == len(during),
                         120, "the exports requested during the outage")
                wait_for(lambda: not OutboxMessage.objects.filter(dispatched_at__isnull=True).exists(), 30, "an empty outbox")
                time.sleep(2)  # a duplicate delivery, if any, would run now
        finally:
            stop(beat)

    assert outage_requests_s < 20, f"requests during the outage took {outage_requests_s:.1f} s"
    assert ModelVersion.objects.filter(model__name="scorer").count() == 7
    exports = [before_outage, *during]
    exported = LedgerEntry.objects.filter(action="bundle.exported", subject_type="reports.bundleexport")
    assert sorted(int(entry.subject_id) for entry in exported) == sorted(exports), "each export ran exactly once"
    assert OutboxMessage.objects.filter(task_name="governance.reports.tasks.bundle_export_task").count() == len(exports)
    result = verify_ledger()
    assert result.ok, result.problems
