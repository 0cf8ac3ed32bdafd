"""Fill an empty database with realistic demo data; running it again changes nothing."""

from importlib import import_module

from django.core.management.base import BaseCommand
from django.db import transaction

# Each part seeds its own domain, in dependency order; a missing module is skipped.
DEMO_MODULES = ["governance.demo", "lineage.demo", "governance.fairness.demo", "governance.monitoring.demo",
                "governance.reports.demo"]


class Command(BaseCommand):
    help = "Seed demo data (idempotent): users and roles, models, lineage, approvals, audits, reports."

    def handle(self, *args, **options):
        for name in DEMO_MODULES:
            try:
                module = import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name == name:
                    continue
                raise
            with transaction.atomic():
                summary = module.seed(stdout=self.stdout)
            self.stdout.write(f"{name}: {summary or 'ok'}")
