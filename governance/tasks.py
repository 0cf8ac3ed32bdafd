"""Celery tasks of the decision domain: thin, idempotent wrappers around one service each."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from core.idempotency import idempotency_records_purge
from governance.registry.services.approvals import approval_expire_due
from governance.signin import sign_in_failures_close


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def approval_expire_due_task() -> int:
    """Expire pending approval requests past their deadline (run by beat); returns how many."""
    return len(approval_expire_due())


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def idempotency_records_purge_task() -> int:
    """Forget stored responses older than IDEMPOTENCY_RETENTION_HOURS (run by beat); returns how many."""
    return idempotency_records_purge()


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sign_in_failures_close_task() -> int:
    """Write the final count of every ended sign-in failure window (run by beat); returns how many."""
    return sign_in_failures_close()
