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


# --- OUTBOX_PUBLISH=background: a publisher thread sends the message; the request does not wait ------------

def test_the_background_publisher_returns_before_the_publish_and_sends_everything_in_order():
    import threading

    from core.outbox.publisher import BackgroundPublisher

    gate, published = threading.Event(), []

    def publish(ids: list[int]) -> None:
        gate.wait(30)
        published.extend(ids)

    publisher = BackgroundPublisher(publish)
    publisher.submit(1)
    publisher.submit(2)
    assert published == [] and not publisher.wait_idle(0), "submit returned while the publish was held"
    gate.set()
    assert publisher.wait_idle(30)
    assert published == [1, 2]


def test_a_process_that_exits_first_lets_the_publisher_finish(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    done = tmp_path / "published"
    script = (
        "import time\n"
        "from core.outbox.publisher import BackgroundPublisher\n"
        f"def publish(ids):\n    time.sleep(0.5)\n    open({str(done)!r}, 'w').write(repr(ids))\n"
        "BackgroundPublisher(publish).submit(7)\n"  # and the interpreter exits at once
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=60)
    assert done.read_text() == "[7]"


def test_background_mode_publishes_a_committed_message_once(broker, settings):
    from core.outbox.services import PUBLISHER

    settings.OUTBOX_PUBLISH = "background"
    port, _ = broker
    with transaction.atomic():
        message = outbox_enqueue(task_name="governance.tasks.approval_expire_due_task", kwargs={"x": 1})
    assert PUBLISHER.wait_idle(30)
    message.refresh_from_db()
    assert message.dispatched_at is not None and message.attempts == 1 and _queued(port) == 1
    assert outbox_dispatch() == 0 and _queued(port) == 1


def test_background_mode_with_the_broker_down_leaves_the_rows_for_the_beat_job(broker, settings):
    from core.outbox.services import PUBLISHER
    from core.outbox.tasks import outbox_dispatch_task

    settings.OUTBOX_PUBLISH = "background"
    port, redis = broker
    redis.stop()
    for _ in range(3):
        with transaction.atomic():
            outbox_enqueue(task_name="governance.tasks.approval_expire_due_task")
    assert PUBLISHER.wait_idle(30)
    pending = OutboxMessage.objects.filter(dispatched_at__isnull=True)
    assert pending.count() == 3 and all(message.attempts >= 1 and message.last_error for message in pending)
    redis.start()
    assert outbox_dispatch_task() == 3
    assert outbox_dispatch_task() == 0 and _queued(port) == 3


def test_a_message_whose_process_died_before_publishing_is_sent_by_the_beat_job(broker, settings, monkeypatch):
    from core.outbox.services import PUBLISHER
    from core.outbox.tasks import outbox_dispatch_task

    settings.OUTBOX_PUBLISH = "background"
    port, _ = broker
    monkeypatch.setattr(PUBLISHER, "submit", lambda message_id: None)  # the process dies after its commit
    with transaction.atomic():
        message = outbox_enqueue(task_name="governance.tasks.approval_expire_due_task")
    message.refresh_from_db()
    assert message.dispatched_at is None and message.attempts == 0 and _queued(port) == 0
    assert outbox_dispatch_task() == 1
    message.refresh_from_db()
    assert message.dispatched_at is not None and _queued(port) == 1
