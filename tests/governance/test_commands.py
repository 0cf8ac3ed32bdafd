"""create_service_account prints the token once and stores only its hash."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from governance.models import ServiceAccount, ServiceToken
from governance.registry.services.access import hash_token
from tests.fixtures import last_entry

pytestmark = pytest.mark.django_db


def test_create_service_account_prints_usable_token(model):
    out = StringIO()
    call_command("create_service_account", "train-pipeline", "--role", "data_scientist", "--model", model.name,
                 stdout=out)
    token = out.getvalue().strip().splitlines()[-1]
    account = ServiceAccount.objects.get(name="train-pipeline")
    assert account.user.username == "svc-train-pipeline" and not account.user.has_usable_password()
    assert ServiceToken.objects.get(account=account).token_hash == hash_token(token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(f"/api/models/{model.name}/").status_code == 200
    assert last_entry("service_account.created").actor == "system:create_service_account"
    assert last_entry("role.granted").payload == {"role": "data_scientist", "user": "svc-train-pipeline"}


def test_create_service_account_unknown_model_fails(db):
    with pytest.raises(CommandError):
        call_command("create_service_account", "x", "--role", "viewer", "--model", "nope", stdout=StringIO())
    assert not ServiceAccount.objects.exists()


def test_create_service_account_twice_fails(db):
    call_command("create_service_account", "dup", "--role", "viewer", stdout=StringIO())
    with pytest.raises(CommandError, match="service_account_name_taken"):
        call_command("create_service_account", "dup", "--role", "viewer", stdout=StringIO())
