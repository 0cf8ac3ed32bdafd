"""Celery tasks of approval signing: thin, idempotent wrappers around one service each."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from governance.signatures.services import signing_challenges_purge


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def signing_challenges_purge_task() -> int:
    """Delete expired, unused signing challenges (run by beat); returns how many."""
    return signing_challenges_purge()
