"""Execute an approved superuser grant request (requested by one admin, approved by another) on the command line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ServiceError
from governance import grants
from governance.models import PrivilegeGrantRequest

ACTOR = "system:superuser_grant"


class Command(BaseCommand):
    help = "Make the grantee of an approved superuser grant request a superuser (recorded in the ledger)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("grant_id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        grant = PrivilegeGrantRequest.objects.filter(pk=options["grant_id"]).select_related("grantee").first()
        if grant is None:
            raise CommandError(f"No grant request #{options['grant_id']}.")
        try:
            grants.superuser_grant_execute(grant=grant, by=ACTOR)
        except ServiceError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from None
        self.stdout.write(f"{grant.grantee.get_username()} is now a superuser (grant #{grant.pk}).")
