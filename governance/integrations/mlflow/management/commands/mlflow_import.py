"""Import an MLflow registry (or some of its models): the same reconcile as the webhook and the
scheduled pass, so it is idempotent; with --dry-run it only prints what it would do."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ServiceError
from governance.integrations.mlflow.models import MlflowConnection
from governance.integrations.mlflow.services.connections import mlflow_connection_create
from governance.integrations.mlflow.services.reconcile import ReconcileResult, mlflow_connection_reconcile
from governance.models import Team

ACTOR = "system:mlflow_import"


class Command(BaseCommand):
    help = ("Import the models of an MLflow registry for a team (all, or --model NAME ...): drafts with SHA-256 "
            "manifests, aliases, deletions. Idempotent; --dry-run writes nothing.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tracking-uri", required=True)
        parser.add_argument("--team", required=True)
        parser.add_argument("--model", action="append", default=[], dest="models", metavar="NAME")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--connection", default="", help="Connection name when one must be created "
                                                                "(default: import-<host>)")
        parser.add_argument("--token-env", default="", help="For a new connection: variable holding a bearer token")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(name=options["team"]).first()
        if team is None:
            raise CommandError(f"No team named '{options['team']}'.")
        uri = options["tracking_uri"].rstrip("/")
        connection = (MlflowConnection.objects.select_related("team", "service_account")
                      .filter(team=team, tracking_uri__in=[uri, uri + "/"]).first())
        if connection is None:
            name = options["connection"] or "import-" + "".join(
                c if c.isalnum() else "-" for c in (urlsplit(uri).netloc or "mlflow").lower()).strip("-")[:80]
            if options["dry_run"]:
                self.stdout.write(f"Would create connection '{name}' for team {team.name} ({uri}).")
                connection = MlflowConnection(name=name, team=team, tracking_uri=uri, token_env=options["token_env"])
            else:
                try:
                    connection = mlflow_connection_create(by=ACTOR, name=name, team=team, tracking_uri=uri,
                                                          token_env=options["token_env"])
                except ServiceError as exc:
                    raise CommandError(f"{exc.code}: {exc.message} {exc.extra or ''}")
                self.stdout.write(f"Created connection '{name}' (service account {connection.service_account}).")
        started = time.monotonic()
        verb = "would change" if options["dry_run"] else "changed"

        def progress(index: int, total: int, result: ReconcileResult) -> None:
            state = "; ".join(result.changes) if result.changes else "up to date"
            if result.errors:
                state += " | ERRORS: " + "; ".join(result.errors)
            self.stdout.write(f"[{index}/{total}] {result.mlflow_name}: {state}")
            self.stdout.flush()

        try:
            results = mlflow_connection_reconcile(connection=connection, names=options["models"] or None,
                                                  dry_run=options["dry_run"], progress=progress)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}")
        changed = sum(1 for r in results if r.changes)
        failed = sum(1 for r in results if r.errors)
        self.stdout.write(f"{len(results)} models, {changed} {verb}, {failed} with errors, "
                          f"{time.monotonic() - started:.1f} s.")
        if failed:
            raise CommandError(f"{failed} models could not be imported (see above).")
