"""Recompute the ledger: chain, hashes, seq, Merkle roots, checkpoint signatures (and row state)."""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from audit.models import Checkpoint
from audit.services import ledger_verify_and_record
from audit.verify import verify_ledger


class Command(BaseCommand):
    help = "Verify the whole ledger. Exit 0 when intact; exit 1 naming the first bad seq otherwise."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--from-checkpoint", nargs="?", const="latest", default=None,
                            help="verify incrementally from a stored checkpoint (tree size, default the latest)")
        parser.add_argument("--trusted-checkpoint", action="append", default=[], type=Path,
                            help="a checkpoint file published earlier; the ledger must extend it")
        parser.add_argument("--state", action="store_true",
                            help="also compare governed rows with the state their last ledger entry recorded")
        parser.add_argument("--record", action="store_true", help="record the outcome as a ledger entry")

    def handle(self, *args, **options):
        from_size = None
        if options["from_checkpoint"]:
            if options["from_checkpoint"] == "latest":
                from_size = Checkpoint.objects.order_by("-tree_size").values_list("tree_size", flat=True).first()
            else:
                from_size = int(options["from_checkpoint"])
        trusted = [path.read_text() for path in options["trusted_checkpoint"]]
        if options["record"]:
            result = ledger_verify_and_record(actor="system:verify_ledger", check_state=options["state"])
        else:
            result = verify_ledger(from_tree_size=from_size, trusted_checkpoints=trusted, check_state=options["state"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2, default=str))
        elif result.ok:
            rate = result.entries_checked / result.elapsed_s if result.elapsed_s else 0
            self.stdout.write(f"OK: {result.entries_checked} entries from seq {result.started_from} "
                              f"(tree size {result.tree_size}, root {result.root_hash}), "
                              f"{result.checkpoints_checked} checkpoints, {result.elapsed_s:.2f} s ({rate:,.0f}/s)")
        else:
            for problem in result.problems:
                where = f"seq {problem.seq}" if problem.seq is not None else "ledger"
                self.stderr.write(f"FAILED at {where}: [{problem.code}] {problem.message}")
            for drift in result.state_problems[:100]:
                self.stderr.write(f"  drift: {drift}")
        if not result.ok:
            sys.exit(1)
