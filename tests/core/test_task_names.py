"""Task names survive the move to core: beat rows and queued messages name tasks by string."""

from __future__ import annotations

from django.conf import settings

from core.outbox.tasks import outbox_dispatch_task
from governance.celery import app


def test_outbox_dispatch_task_keeps_the_name_it_had_in_governance():
    assert outbox_dispatch_task.name == "governance.outbox.tasks.outbox_dispatch_task"


def test_every_beat_schedule_entry_names_a_registered_task():
    app.loader.import_default_modules()
    missing = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()} - set(app.tasks)
    assert not missing
