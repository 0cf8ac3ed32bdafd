"""Beat job: publish what an outage left in the outbox."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from governance.outbox import services


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def outbox_dispatch_task() -> int:
    return services.outbox_dispatch()
