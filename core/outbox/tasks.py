"""Beat job: publish what an outage left in the outbox."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from core.outbox import services


# The name it was registered under before it moved from governance/outbox/: beat's PeriodicTask rows
# (django_celery_beat) and messages already queued name it so, and must still find it.
@shared_task(name="governance.outbox.tasks.outbox_dispatch_task",
             acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def outbox_dispatch_task() -> int:
    return services.outbox_dispatch()
