"""Create a pipeline service account with a role, access to some models, and one API token (printed once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.errors import ServiceError
from governance.models import RegisteredModel, TokenScope
from governance.registry.services.access import service_account_create
from governance.roles import ROLE_NAMES

ACTOR = "system:create_service_account"


class Command(BaseCommand):
    help = "Create a service account (user svc-NAME) in ROLE with access to --model models; prints its token once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", required=True, choices=ROLE_NAMES)
        parser.add_argument("--model", action="append", default=[], dest="models", metavar="NAME",
                            help="A registered model the account may read and write (repeatable)")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.WRITE)
        parser.add_argument("--expires-days", type=int, default=None, help="Token lifetime in days (default: none)")
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        models = []
        for name in options["models"]:
            model = RegisteredModel.objects.filter(name=name).first()
            if model is None:
                raise CommandError(f"No registered model named '{name}'.")
            models.append(model)
        expires_at = None
        if options["expires_days"] is not None:
            if options["expires_days"] < 1:
                raise CommandError("--expires-days must be at least 1.")
            expires_at = timezone.now() + timedelta(days=options["expires_days"])
        try:
            account, token = service_account_create(
                by=ACTOR, name=options["name"], role=options["role"], models=models,
                description=options["description"], scope=options["scope"], expires_at=expires_at)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}")
        self.stdout.write(f"Service account {account.name} (user {account.user.username}, role {options['role']}).")
        self.stdout.write("Token (shown once; store it in your pipeline's secret store):")
        self.stdout.write(token)
