"""A worker that starts (e.g. after Redis or the worker itself came back) publishes pending messages."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready

logger = logging.getLogger(__name__)


@worker_ready.connect
def _drain_outbox_on_worker_start(**_: Any) -> None:
    from django.db import close_old_connections

    from core.outbox.services import outbox_dispatch

    try:
        sent = outbox_dispatch()
        if sent:
            logger.warning("outbox: published %d pending task(s) at worker start", sent)
    except Exception:
        logger.exception("outbox: drain at worker start failed")
    finally:
        close_old_connections()
