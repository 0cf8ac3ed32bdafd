"""Create a superuser, on the command line only, recorded in the ledger as `user.created` by this command.

The admin cannot make superusers (`is_superuser` is read-only there and refused by the account
services); an existing user becomes one only through an approved grant request executed with
`manage.py superuser_grant`. The password comes from DJANGO_SUPERUSER_PASSWORD or a prompt.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance import accounts

ACTOR = "system:create_superuser"


class Command(BaseCommand):
    help = "Create a superuser (recorded in the ledger as created on the command line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"A user named '{username}' exists.")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if not password:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords differ.")
        try:
            validate_password(password, get_user_model()(username=username))
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        user = accounts.user_create(by=ACTOR, username=username, email=options["email"], password=password,
                                    is_staff=True, is_superuser=True)
        self.stdout.write(f"Superuser {user.get_username()} created (ledger: user.created by {ACTOR}).")
