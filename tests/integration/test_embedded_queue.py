"""The embedded setup's file-system queue carries tasks from the service to a real worker.

`make run` with no REDIS_URL uses kombu's `filesystem://` transport under `VAR_DIR/queue`. Here the
worker gets a fresh, empty VAR_DIR (no queue folders exist), and this process publishes through the
outbox into the same folders: the task must run, with no `FileNotFoundError` on either side.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.models import LedgerEntry
from core.outbox.models import OutboxMessage
from core.outbox.services import outbox_enqueue
from governance.celery import FILESYSTEM_QUEUE_FOLDERS, app, filesystem_queue_folders_ensure
from tests.faults.helpers import broker_override, celery_worker, service_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def embedded_queue(tmp_path: Path) -> Iterator[Path]:
    """This process's Celery app on a file-system queue in an empty VAR_DIR, as the worker's settings make it."""
    var_dir = tmp_path / "var"
    queue = var_dir / "queue"
    options = {"data_folder_in": str(queue), "data_folder_out": str(queue),
               "processed_folder": str(queue / "processed"), "store_processed": False,
               "control_folder": str(queue / "control")}
    with broker_override("filesystem://", transport_options=options):
        yield var_dir


def test_folders_are_created_before_the_first_publish(embedded_queue: Path) -> None:
    assert not embedded_queue.exists()
    filesystem_queue_folders_ensure(app)
    for key in FILESYSTEM_QUEUE_FOLDERS:
        assert Path(app.conf.broker_transport_options[key]).is_dir(), key


def test_task_published_through_the_outbox_runs_on_a_worker_reading_the_file_system_queue(embedded_queue: Path) -> None:
    env = service_env(VAR_DIR=str(embedded_queue), LOG_LEVEL="INFO")
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_DEFAULT_QUEUE"):
        env.pop(name, None)  # the embedded default: the file-system queue
    with celery_worker(env, name="embedded"):
        filesystem_queue_folders_ensure(app)  # what configuring the app does in a fresh process
        message = outbox_enqueue(task_name="audit.tasks.ledger_verify_task")  # autocommit: published now
        message.refresh_from_db()
        assert message.dispatched_at is not None, message.last_error
        deadline = time.monotonic() + 60
        while not LedgerEntry.objects.filter(action="ledger.verified", actor="system:ledger_verify_task").exists():
            assert time.monotonic() < deadline, "the worker never ran the task from the file-system queue"
            time.sleep(0.2)
    assert OutboxMessage.objects.get(pk=message.pk).last_error == ""
    assert (embedded_queue / "queue" / "control").is_dir(), "the worker's broadcast folder was created at start"
