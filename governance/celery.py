"""The Celery application; Redis in production and CI, a file-system queue when embedded."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

# Every task.delay_on_commit() goes through the transactional outbox (core/outbox/).
app = Celery("governance", task_cls="core.outbox.task:OutboxTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
