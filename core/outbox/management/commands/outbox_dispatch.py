"""Publish the tasks that are waiting in the outbox (e.g. after a broker outage)."""

from django.core.management.base import BaseCommand

from core.outbox.services import outbox_dispatch, outbox_pending_count


class Command(BaseCommand):
    help = "Publish pending outbox messages to the broker; prints how many were sent and how many still wait."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        sent = outbox_dispatch()
        self.stdout.write(f"sent {sent}; pending {outbox_pending_count()}")
