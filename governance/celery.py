"""The Celery application; Redis in production and CI, a file-system queue when embedded."""

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

# Every task.delay_on_commit() goes through the transactional outbox (core/outbox/).
app = Celery("governance", task_cls="core.outbox.task:OutboxTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

FILESYSTEM_QUEUE_FOLDERS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


def filesystem_queue_folders_ensure(celery_app: Celery) -> None:
    """Create the embedded file-system queue's folders; kombu writes into them and never creates them.

    Runs when the app's configuration is first read (before any publish) and when a worker starts,
    so neither side of the embedded queue meets a missing folder.
    """
    if not str(celery_app.conf.broker_url or "").startswith("filesystem://"):
        return
    options = celery_app.conf.broker_transport_options or {}
    for key in FILESYSTEM_QUEUE_FOLDERS:
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


def _queue_folders_on_configure(sender: Celery, **_: Any) -> None:
    filesystem_queue_folders_ensure(sender)


def _queue_folders_on_worker_start(sender: Any = None, **_: Any) -> None:
    filesystem_queue_folders_ensure(app)


app.on_after_configure.connect(_queue_folders_on_configure, weak=False)
worker_init.connect(_queue_folders_on_worker_start, weak=False)
