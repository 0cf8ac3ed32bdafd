"""Celery tasks of monitoring: thin, idempotent wrappers that take ids and call one service."""

from __future__ import annotations

from datetime import datetime

import httpx
from celery import shared_task
from django.db import OperationalError

from governance.monitoring.services.monitors import monitor_run_notify, monitor_run_scheduled, monitor_runs_due
from governance.monitoring.services.revalidation import alert_notify, revalidation_alerts_raise


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=8)
def monitor_run_scheduled_task(monitor_id: int, slot: str) -> int | None:
    """One beat slot of one monitor; a redelivery after a worker kill returns the slot's one run."""
    run = monitor_run_scheduled(monitor_id=monitor_id, slot=datetime.fromisoformat(slot))
    return run.pk if run else None


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def monitor_runs_due_task() -> int:
    """Beat job: queue the runs of monitors whose current slot has none."""
    return len(monitor_runs_due())


@shared_task(acks_late=True, autoretry_for=(OperationalError, OSError, httpx.HTTPError), retry_backoff=True,
             max_retries=8)
def monitor_run_notify_task(run_id: int) -> bool:
    """E-mail and signed webhook of a run's alerts, once (network errors retry with backoff)."""
    return monitor_run_notify(run_id=run_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def revalidation_alerts_raise_task() -> int:
    """Beat job: an alert (and its notices) per production version overdue for re-approval, once."""
    return len(revalidation_alerts_raise())


@shared_task(acks_late=True, autoretry_for=(OperationalError, OSError, httpx.HTTPError), retry_backoff=True,
             max_retries=8)
def alert_notify_task(alert_id: int) -> bool:
    """E-mail and signed webhook of an alert without a run (an overdue revalidation), once."""
    return alert_notify(alert_id=alert_id)
