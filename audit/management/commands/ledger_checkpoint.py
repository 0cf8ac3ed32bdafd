"""Sign a checkpoint of the ledger now."""

from django.core.management.base import BaseCommand, CommandError

from audit.ledger import checkpoint_create
from core.errors import ServiceError


class Command(BaseCommand):
    help = "Sign a C2SP checkpoint of the current ledger head and print it."

    def handle(self, *args, **options):
        try:
            checkpoint = checkpoint_create()
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(checkpoint.note, ending="")
