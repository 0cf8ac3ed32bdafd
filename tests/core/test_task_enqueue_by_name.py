"""Services enqueue tasks by name: the outbox row is the one `task.delay_on_commit(...)` stores, and a
process that never imported the task's module (a web worker) still finds the task."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from django.db import transaction

from core.outbox.models import OutboxMessage
from core.outbox.services import task_enqueue_on_commit
from governance.celery import app
from tests.conftest import REPO_ROOT

# Every task a service enqueues or schedules by name.
SERVICE_TASK_NAMES = [
    "governance.fairness.tasks.fairness_audit_run_task",
    "governance.fairness.tasks.fairness_notify_task",
    "governance.fairness.tasks.fairness_audit_scheduled_task",
    "governance.reports.tasks.scheduled_report_task",
    "governance.reports.tasks.bundle_export_task",
    "governance.monitoring.tasks.monitor_run_scheduled_task",
    "governance.monitoring.tasks.monitor_run_notify_task",
]


@pytest.mark.django_db
def test_enqueue_by_name_stores_the_same_outbox_row_as_delay_on_commit():
    from governance.fairness.tasks import fairness_notify_task

    app.conf.CELERY_TASK_ALWAYS_EAGER = False  # the production path (the eager fixture restores it)
    with transaction.atomic():
        task_enqueue_on_commit("governance.fairness.tasks.fairness_notify_task", 41)
        fairness_notify_task.delay_on_commit(41)
        by_name, direct = OutboxMessage.objects.order_by("pk")
    assert (by_name.task_name, by_name.args, by_name.kwargs) == (direct.task_name, direct.args, direct.kwargs)
    assert (by_name.task_name, by_name.args, by_name.kwargs) == (
        "governance.fairness.tasks.fairness_notify_task", [41], {})


def test_a_process_that_never_imported_the_task_module_finds_the_task_by_name():
    script = textwrap.dedent(f"""
        import sys
        import django

        django.setup()
        from core.outbox.services import task_enqueue_on_commit
        from core.outbox.task import OutboxTask

        names = {SERVICE_TASK_NAMES!r}
        assert not [name for name in names if name.rpartition(".")[0] in sys.modules], "already imported"
        called = []
        OutboxTask.delay_on_commit = lambda task, *args, **kwargs: called.append((task.name, args, kwargs))
        for name in names:
            task_enqueue_on_commit(name, 7)
        assert called == [(name, (7,), {{}}) for name in names], called
        print("ok")
    """)
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.test_settings"}
    finished = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=environment, capture_output=True,
                              text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout.strip() == "ok", finished.stderr[-3000:]
