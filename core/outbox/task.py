"""The project's Celery task class: `delay_on_commit` goes through the transactional outbox."""

from __future__ import annotations

from typing import Any

from celery.contrib.django.task import DjangoTask


class OutboxTask(DjangoTask):
    """`delay_on_commit` stores the request in the outbox (same transaction), publishes after commit.

    Eager mode (the embedded setup's tests) keeps Celery's plain behaviour: there is no broker to lose.
    """

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        if self.app.conf.task_always_eager:
            super().delay_on_commit(*args, **kwargs)
            return
        from core.outbox.services import outbox_enqueue

        outbox_enqueue(task_name=self.name, args=list(args), kwargs=kwargs)

    def apply_async_on_commit(self, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        if self.app.conf.task_always_eager or options:
            super().apply_async_on_commit(args, kwargs, **options)
            return
        from core.outbox.services import outbox_enqueue

        outbox_enqueue(task_name=self.name, args=list(args or ()), kwargs=dict(kwargs or {}))
