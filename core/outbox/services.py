"""Writes of the outbox: enqueue a task in the caller's transaction; publish pending ones.

Delivery is at least once: a message published just before its row is marked can be published
again after a crash, so tasks must be idempotent (they are: they take ids and re-check state).
Publishing never raises into a request, and by default the request does not wait for it (a
background thread publishes, `core.outbox.publisher`): a broker that is down leaves the row pending, and the
next dispatch (after the next commit that publishes, the beat job, a worker start, or
`manage.py outbox_dispatch`) sends it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from core.outbox.models import OutboxMessage
from core.outbox.publisher import BackgroundPublisher

logger = logging.getLogger(__name__)

def outbox_enqueue(*, task_name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> OutboxMessage:
    """Store a task request in the current transaction and publish it after commit: by the process's
    background publisher (`OUTBOX_PUBLISH=background`, the request does not wait), or inline."""
    message = OutboxMessage.objects.create(task_name=task_name, args=list(args or []), kwargs=dict(kwargs or {}))
    if _publish_mode() == "background":
        transaction.on_commit(lambda: PUBLISHER.submit(message.pk))
    else:
        transaction.on_commit(lambda: _dispatch_after_commit([message.pk]))
    return message


def _publish_mode() -> str:
    return "inline" if getattr(settings, "OUTBOX_PUBLISH", "background") == "inline" else "background"


def _dispatch_after_commit(message_ids: list[int]) -> None:
    try:
        sent = outbox_dispatch(only=message_ids)
        if sent:
            # The broker answers again: send whatever an earlier outage left behind.
            outbox_dispatch(limit=int(getattr(settings, "OUTBOX_DRAIN_BATCH", 200)))
    except Exception:  # never fail the request whose change already committed
        logger.exception("outbox: dispatch after commit failed; the message stays pending")


def outbox_dispatch(*, only: list[int] | None = None, limit: int = 500) -> int:
    """Publish pending messages (oldest first); stop at the first broker failure. Returns how many were sent.

    Rows are locked with SKIP LOCKED, so concurrent dispatchers never publish the same row twice.
    One broker connection serves the batch, and it is tried once: Celery's own publish retries
    would hold the request for seconds while Redis is down, and the row can simply wait.
    """
    from celery import current_app

    app = current_app._get_current_object()  # the project's app (governance.celery), without importing upward
    sent = 0
    with transaction.atomic():
        pending = OutboxMessage.objects.filter(dispatched_at__isnull=True).order_by("pk")
        if only is not None:
            pending = pending.filter(pk__in=only)
        messages = list(pending.select_for_update(skip_locked=True)[:limit])
        if not messages:
            return 0
        with app.connection_for_write() as connection:
            for message in messages:
                try:
                    connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1, timeout=2)
                    app.send_task(message.task_name, args=message.args, kwargs=message.kwargs, retry=False,
                                  connection=connection, headers={"outbox_id": message.pk})
                except Exception as exc:  # kombu OperationalError, redis ConnectionError, ...
                    OutboxMessage.objects.filter(pk=message.pk).update(
                        attempts=message.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:500])
                    logger.warning("outbox: broker unavailable (%s); %s stays pending", type(exc).__name__, message)
                    break
                OutboxMessage.objects.filter(pk=message.pk).update(dispatched_at=timezone.now(),
                                                                   attempts=message.attempts + 1, last_error="")
                sent += 1
    return sent


PUBLISHER = BackgroundPublisher(_dispatch_after_commit, on_idle=close_old_connections)


def outbox_pending_count() -> int:
    return OutboxMessage.objects.filter(dispatched_at__isnull=True).count()


def task_enqueue_on_commit(task_name: str, *args: Any, **kwargs: Any) -> None:
    """Queue the task registered as `task_name` after commit, through the outbox (eager mode: run it then).

    Services name their tasks instead of importing them, so a tasks module (which imports its
    services) and those services never import each other. The arguments are stored as given, so
    the outbox row and the message are the same as a direct `task.delay_on_commit(...)`.
    """
    from celery import current_app

    app = current_app._get_current_object()  # the project's app (governance.celery), without importing upward
    if task_name not in app.tasks:
        # A web process imports task modules only on demand: import them as a worker does at start.
        app.loader.import_default_modules()
    app.tasks[task_name].delay_on_commit(*args, **kwargs)
