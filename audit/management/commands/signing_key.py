"""Create, rotate or list the server's signing keys."""

from django.core.management.base import BaseCommand, CommandError

from audit import services
from audit.models import SigningKey
from core.errors import ServiceError


class Command(BaseCommand):
    help = "Create or rotate the Ed25519 signing key (private key in a file, public key in the database)."

    def add_arguments(self, parser):
        parser.add_argument("operation", choices=["create", "rotate", "ensure", "list"])
        parser.add_argument("--purpose", choices=[p.value for p in SigningKey.Purpose] + ["all"], default="all")

    def handle(self, *args, operation, purpose, **options):
        purposes = [p.value for p in SigningKey.Purpose] if purpose == "all" else [purpose]
        if operation == "list":
            for key in SigningKey.objects.order_by("valid_from"):
                until = key.valid_until.isoformat() if key.valid_until else "now"
                self.stdout.write(f"{key.purpose:12} {key.key_id} {key.valid_from.isoformat()} .. {until}  {key.vkey}")
            return
        action = {"create": services.signing_key_create, "rotate": services.signing_key_rotate,
                  "ensure": services.signing_key_ensure}[operation]
        for item in purposes:
            try:
                record = action(purpose=item)
            except ServiceError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from exc
            self.stdout.write(f"{item}: {record.vkey}")
