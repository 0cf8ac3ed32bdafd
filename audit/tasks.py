"""Thin Celery wrappers: scheduled checkpoints, the daily timestamp, the nightly verification, pushes to witnesses."""

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


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8,
             soft_time_limit=120, time_limit=180)
def checkpoint_witness_task(self, force: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    """Push the latest checkpoint to the policy's witnesses; back off when one is busy or down."""
    from audit.witnesses import WitnessUnavailable, checkpoint_witness_latest

    try:
        outcomes = checkpoint_witness_latest(force=force)
    except WitnessUnavailable as exc:
        countdown = exc.retry_after_s if exc.retry_after_s is not None else min(600, 10 * 2 ** self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc
    return [f"{o.witness}: {o.result} @{o.tree_size}" for o in outcomes]


@shared_task(acks_late=True, autoretry_for=(OperationalError, Unavailable), retry_backoff=60, max_retries=8,
             soft_time_limit=120, time_limit=180)
def ledger_timestamp_task() -> int | None:
    """At least one checkpoint a day gets an RFC 3161 token (a no-op without TSA_URL); retried while the TSA is down."""
    record = services.checkpoint_timestamp_daily()
    return None if record is None else record.pk
