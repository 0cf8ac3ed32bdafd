"""Thin Celery wrappers: build a queued bundle export, and the scheduled reports."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError

from core.errors import ServiceError
from governance.reports import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5,
             soft_time_limit=1700, time_limit=1800)
def bundle_export_task(export_id: int) -> str:
    """Build export `export_id` (idempotent: a finished export is left as it is)."""
    try:
        return str(services.bundle_export_run(export_id=export_id).status)
    except ServiceError as exc:
        # A refusal (model gone, no signing key) is final: the row says failed, with the code.
        logger.warning("bundle export %s refused: %s", export_id, exc.code)
        return "failed"


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5,
             soft_time_limit=1700, time_limit=1800)
def scheduled_report_task(schedule_id: int) -> str:
    """Run one scheduled report (beat calls it with the schedule's id)."""
    try:
        result = services.report_schedule_run(schedule_id=schedule_id)
    except ServiceError as exc:
        logger.warning("scheduled report %s refused: %s", schedule_id, exc.code)
        return "failed"
    return "skipped" if result is None else "done"
