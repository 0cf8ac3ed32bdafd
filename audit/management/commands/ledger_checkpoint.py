"""Sign a checkpoint of the ledger now; optionally push it to the witnesses of the policy at once."""

from django.core.management.base import BaseCommand, CommandError

from audit.ledger import checkpoint_create
from audit.witnesses import WitnessUnavailable, checkpoint_witness_latest
from core.errors import ServiceError


class Command(BaseCommand):
    help = "Sign a C2SP checkpoint of the current ledger head and print it."

    def add_arguments(self, parser):
        parser.add_argument("--witness", action="store_true",
                            help="then push the latest checkpoint to the witnesses of WITNESS_POLICY_FILE now "
                                 "(as the Celery task does), and print each witness's answer on stderr")

    def handle(self, *args, **options):
        try:
            checkpoint = checkpoint_create()
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(checkpoint.note, ending="")
        if options["witness"]:
            try:
                outcomes = checkpoint_witness_latest()
            except WitnessUnavailable as exc:
                raise CommandError(f"witness unavailable: {exc}") from exc
            for outcome in outcomes:
                self.stderr.write(f"witness {outcome.witness}: {outcome.result} @{outcome.tree_size} {outcome.detail}")
