"""Thin Celery wrappers: scheduled checkpoints, the daily timestamp and the nightly verification."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from audit import services
from core.errors import Unavailable


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5,
             soft_time_limit=300, time_limit=360)
def ledger_checkpoint_task() -> int:
    return services.checkpoint_scheduled().tree_size


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3,
             soft_time_limit=3000, time_limit=3300)
def ledger_verify_task() -> bool:
    return services.ledger_verify_and_record(actor="system:ledger_verify_task").ok


@shared_task(acks_late=True, autoretry_for=(OperationalError, Unavailable), retry_backoff=60, max_retries=8,
             soft_time_limit=120, time_limit=180)
def ledger_timestamp_task() -> int | None:
    """At least one checkpoint a day gets an RFC 3161 token (a no-op without TSA_URL); retried while the TSA is down."""
    record = services.checkpoint_timestamp_daily()
    return None if record is None else record.pk
