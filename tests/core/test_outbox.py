"""The outbox: a task request commits or rolls back with the change that made it, a broker that is
down costs the request no time and no error, and a later dispatch sends each message once."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from core.outbox.models import OutboxMessage
from core.outbox.services import outbox_dispatch, outbox_enqueue
from core.outbox.task import OutboxTask
from tests.faults.helpers import broker_override, free_port, private_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.redis]


@pytest.fixture
def broker():  # type: ignore[no-untyped-def]
    """Point the app at a private redis-server for the test."""
    with private_redis() as (port, redis), broker_override(f"redis://127.0.0.1:{port}/0"):
        yield port, redis


def _queued(port: int) -> int:
    import redis as redis_client

    return int(redis_client.Redis(port=port).llen("celery"))


def test_every_task_uses_the_outbox_task_class():
    from governance.reports.tasks import bundle_export_task

    assert isinstance(bundle_export_task._get_current_object(), OutboxTask)


def test_a_rolled_back_change_leaves_no_task(broker):
    port, _ = broker
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox_enqueue(task_name="governance.tasks.approval_expire_due_task")
        raise RuntimeError("the change fails")
    assert OutboxMessage.objects.count() == 0 and _queued(port) == 0


def test_committed_request_is_published_after_commit(broker):
    port, _ = broker
    with transaction.atomic():
        message = outbox_enqueue(task_name="governance.tasks.approval_expire_due_task", kwargs={"x": 1})
        assert _queued(port) == 0, "nothing is published before the commit"
    message.refresh_from_db()
    assert message.dispatched_at is not None and _queued(port) == 1


def test_broker_down_costs_no_time_and_the_message_waits_then_goes_once(broker):
    port, redis = broker
    redis.stop()
    started = time.monotonic()
    for _ in range(5):
        with transaction.atomic():
            outbox_enqueue(task_name="governance.tasks.approval_expire_due_task")
    assert time.monotonic() - started < 3, "a down broker must not stall the requests"
    assert OutboxMessage.objects.filter(dispatched_at__isnull=True).count() == 5
    redis.start()
    assert outbox_dispatch() == 5
    assert outbox_dispatch() == 0, "a dispatched message is never sent again"
    assert _queued(port) == 5


def test_unreachable_port_is_refused_fast():
    with broker_override(f"redis://127.0.0.1:{free_port()}/0"), transaction.atomic():
        message = outbox_enqueue(task_name="governance.tasks.approval_expire_due_task")
    message.refresh_from_db()
    assert message.dispatched_at is None and message.attempts == 1 and "OperationalError" in message.last_error
