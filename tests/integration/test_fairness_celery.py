"""Fairness audits on a real Celery worker and the real Redis (redis://127.0.0.1:6379/15):

* an audit requested through the API is queued after commit, runs on the worker, reports progress
  and stores its result;
* a worker SIGKILLed mid-audit (the whole node): after a restart the recovery job hands the run to
  the new worker, which takes it over, and the run records exactly one result and one ledger entry;
* `celery beat` with django-celery-beat's DatabaseScheduler fires a 1-second PeriodicTask of a spec.

Each test's worker (and beat) uses a queue of its own, so runs of other suites never meet it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from governance.fairness.models import AuditRun
from governance.fairness.services.runs import audit_request
from tests.conftest import REPO_ROOT
from tests.fairness.helpers import credit_csv, make_spec
from tests.faults.helpers import broker_override, database_url, service_env, stop

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ["REDIS_URL"]  # given, or started by tests/servers.py
LEASE_S = 2


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Cluster:
    """Workers (and beat) on one private queue against the test database and the real Redis."""

    def __init__(self, tmp_path: Path, queue: str, env: dict[str, str]) -> None:
        self.tmp_path, self.queue, self.env = tmp_path, queue, env
        self.processes: list[subprocess.Popen[bytes]] = []

    def _start(self, args: list[str], log_name: str, ready: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / log_name
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "governance", *args], cwd=REPO_ROOT,
                                       env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append(process)
        wait_for(lambda: ready in log_path.read_text(errors="replace") or process.poll() is not None, 60,
                 f"{log_name} to start")
        assert process.poll() is None, log_path.read_text(errors="replace")
        return process

    def worker(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        return self._start(["worker", "--pool=prefork", "--concurrency=1", "--loglevel=INFO", "-Q", self.queue,
                            "--hostname", f"{name}-{self.queue}@%h", "--without-heartbeat", "--without-gossip",
                            "--without-mingle"], f"{name}.log", "ready", **extra_env)

    def beat(self) -> subprocess.Popen[bytes]:
        return self._start(["beat", "--loglevel=INFO", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                            "--max-interval", "1", "--schedule", str(self.tmp_path / "beat-schedule")],
                           "beat.log", "beat: Starting")

    def log(self, name: str) -> str:
        return (self.tmp_path / name).read_text(errors="replace")


@pytest.fixture
def cluster(settings, tmp_path: Path) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    queue = f"fairness-it-{uuid.uuid4().hex[:8]}"
    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    settings.FAIRNESS_RUN_LEASE_S = LEASE_S
    env = service_env(DATABASE_URL=database_url(), REDIS_URL=REDIS_URL, CELERY_BROKER_URL=REDIS_URL,
                      CELERY_TASK_DEFAULT_QUEUE=queue, MEDIA_ROOT=str(media), FAIRNESS_RUN_LEASE_S=str(LEASE_S),
                      LOG_LEVEL="INFO")
    running = Cluster(tmp_path, queue, env)
    with broker_override(REDIS_URL, queue=queue):
        try:
            yield running
        finally:
            for process in running.processes:
                stop(process, timeout_s=15)


def test_audit_requested_through_the_api_runs_on_a_real_worker(cluster, scientist, model, version,  # noqa: F811
                                                               tmp_path):
    cluster.worker("w1")
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv", rows=3000))
    client = APIClient()
    client.force_authenticate(scientist)
    response = client.post("/api/fairness/audits/", {"spec_id": spec.pk}, format="json")
    assert response.status_code == 202, response.content
    audit_id = response.json()["id"]

    def finished() -> bool:
        return client.get(f"/api/fairness/audits/{audit_id}/status/").json()["status"] in ("done", "failed")

    wait_for(finished, 90, "the audit to finish")
    detail = client.get(f"/api/fairness/audits/{audit_id}/").json()
    assert detail["status"] == "succeeded", (detail, cluster.log("w1.log"))
    assert detail["progress"] == 100 and detail["result"]["rows"] == 3000 and detail["passed"] is True
    assert LedgerEntry.objects.filter(action="fairness_audit.completed", subject_id=str(audit_id)).count() == 1


def test_worker_killed_mid_audit_then_restarted_records_exactly_one_result(cluster, scientist, model, version,  # noqa: F811
                                                                          tmp_path):
    # Slow enough to be interrupted: 200 chunks of 500 rows, 50 ms each.
    cluster.worker("w1", FAIRNESS_CHUNK_ROWS="500", FAIRNESS_CHUNK_DELAY_S="0.05")
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv", rows=100_000))
    run = audit_request(spec=spec, by=scientist)  # autocommit: published on return

    def progressed() -> bool:
        current = AuditRun.objects.get(pk=run.pk)
        return current.status == AuditRun.Status.RUNNING and current.progress >= 20

    wait_for(progressed, 60, "the audit to be well under way")
    first = cluster.processes[0]
    os.killpg(first.pid, signal.SIGKILL)  # the whole worker node: parent and pool process
    first.wait(timeout=10)
    interrupted = AuditRun.objects.get(pk=run.pk)
    assert interrupted.status == AuditRun.Status.RUNNING and interrupted.attempt == 1 and interrupted.result is None
    assert not LedgerEntry.objects.filter(action="fairness_audit.completed").exists()

    cluster.worker("w2")
    time.sleep(LEASE_S + 0.5)  # the dead worker's heartbeat goes stale
    from governance.fairness.tasks import fairness_audit_recover_task, fairness_audit_run_task

    fairness_audit_recover_task.delay()  # what beat runs every FAIRNESS_RECOVER_INTERVAL_S
    wait_for(lambda: AuditRun.objects.get(pk=run.pk).status != AuditRun.Status.RUNNING, 90,
             "the new worker to finish the run")
    done = AuditRun.objects.get(pk=run.pk)
    assert done.status == AuditRun.Status.SUCCEEDED, (done.error_code, cluster.log("w2.log"))
    assert done.attempt == 2 and done.result["rows"] == 100_000

    # A late redelivery of the original message changes nothing.
    fairness_audit_run_task.delay(run.pk)
    time.sleep(1.5)
    assert AuditRun.objects.get(pk=run.pk).result_sha256 == done.result_sha256
    assert LedgerEntry.objects.filter(action="fairness_audit.completed").count() == 1
    assert LedgerEntry.objects.filter(action="fairness_audit.evidence_attached").count() == 1
    assert not LedgerEntry.objects.filter(action="fairness_audit.failed").exists()


def test_beat_fires_a_spec_schedule_and_the_run_completes(cluster, scientist, model, version,  # noqa: F811
                                                        tmp_path):
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    # Only the spec's task is scheduled: the defaults from CELERY_BEAT_SCHEDULE are disabled for this test.
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv", rows=500), schedule_interval_s=1)
    task = PeriodicTask.objects.get(pk=spec.periodic_task_id)
    task.queue = cluster.queue
    task.save()
    assert json.loads(task.kwargs) == {"spec_id": spec.pk}
    cluster.worker("w1")
    cluster.beat()
    PeriodicTask.objects.exclude(pk=task.pk).update(enabled=False)
    PeriodicTasks.update_changed()

    wait_for(lambda: AuditRun.objects.filter(spec=spec, status=AuditRun.Status.SUCCEEDED).exists(), 90,
             "a scheduled run to complete")
    run = AuditRun.objects.filter(spec=spec, status=AuditRun.Status.SUCCEEDED).order_by("pk").first()
    assert run is not None
    assert run.trigger == AuditRun.Trigger.SCHEDULE and run.requested_by_label == "system:fairness_schedule"
    assert LedgerEntry.objects.filter(action="fairness_audit.requested", actor="system:fairness_schedule").exists()
    assert "fairness_audit_scheduled_task" in cluster.log("beat.log")


def test_audit_requested_while_redis_is_down_runs_once_when_it_is_back(cluster, scientist, model, version,  # noqa: F811
                                                                      tmp_path):
    import socket

    from core.outbox.models import OutboxMessage
    from core.outbox.services import outbox_dispatch

    cluster.worker("w1")
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv", rows=500))
    with socket.socket() as probe:  # a port nobody listens on: the broker is "down"
        probe.bind(("127.0.0.1", 0))
        down_url = f"redis://127.0.0.1:{probe.getsockname()[1]}/15"
    with broker_override(down_url, queue=cluster.queue):
        run = audit_request(spec=spec, by=scientist)  # the request itself succeeds
    kept = OutboxMessage.objects.filter(task_name__endswith="fairness_audit_run_task")
    assert [message.args for message in kept] == [[run.pk]]  # kept in the database, once
    pending = kept.filter(dispatched_at__isnull=True)
    assert AuditRun.objects.get(pk=run.pk).status == AuditRun.Status.QUEUED

    # What the beat job does once Redis answers again. The worker also dispatches pending messages
    # when it finishes starting, which may already have happened by now.
    outbox_dispatch()
    wait_for(lambda: AuditRun.objects.get(pk=run.pk).status == AuditRun.Status.SUCCEEDED, 60, "the audit to run")
    assert outbox_dispatch() == 0 and not pending.exists()
    time.sleep(1)
    assert LedgerEntry.objects.filter(action="fairness_audit.completed").count() == 1
