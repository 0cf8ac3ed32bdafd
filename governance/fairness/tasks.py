"""Celery tasks of the fairness app: thin, idempotent wrappers that take ids and call one service."""

from __future__ import annotations

from typing import Any

import httpx
from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from governance.fairness.services.runs import AuditRunBusy, audit_execute, audit_notify, audit_recover_stale, audit_scheduled

# Hard limit from the settings; the soft limit leaves a minute to record the failure.
_HARD_LIMIT_S = int(getattr(settings, "FAIRNESS_TASK_TIME_LIMIT_S", 1800))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=(OperationalError,),
             retry_backoff=True, retry_backoff_max=300, max_retries=8,
             soft_time_limit=max(1, _HARD_LIMIT_S - 60), time_limit=_HARD_LIMIT_S)
def fairness_audit_run_task(self: Any, run_id: int) -> str:
    """Run one audit. A redelivery (killed worker) takes the run over; a finished run is left alone."""
    try:
        run = audit_execute(run_id=run_id, task_id=self.request.id)
    except AuditRunBusy as busy:
        # Another worker holds a fresh lease: look again once it could have expired.
        raise self.retry(exc=busy, countdown=settings.FAIRNESS_RUN_LEASE_S, max_retries=None) from busy
    return str(run.status)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def fairness_audit_scheduled_task(spec_id: int) -> int | None:
    """What a django-celery-beat PeriodicTask of a spec runs: queue one run of the spec."""
    run = audit_scheduled(spec_id=spec_id)
    return run.pk if run else None


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def fairness_audit_recover_task() -> list[int]:
    """Beat job: queue again runs whose worker died (stale heartbeat) or that waited too long."""
    return audit_recover_stale()


@shared_task(acks_late=True, autoretry_for=(OperationalError, OSError, httpx.HTTPError), retry_backoff=True,
             max_retries=8)
def fairness_notify_task(run_id: int) -> bool:
    """E-mail and signed webhook for a failing audit, once (network errors retry with backoff)."""
    return audit_notify(run_id=run_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sealed_files_expire_task() -> list[str]:
    """Beat job: crypto-shred every data set and batch whose retention has ended."""
    from governance.fairness.services.vault import sealed_files_expire

    return sealed_files_expire()
