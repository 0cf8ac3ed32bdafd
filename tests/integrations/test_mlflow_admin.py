"""Connections are set in the admin by admins only; each change is a ledger entry; secrets are
named by environment variable (with the allowed prefix), never stored."""

from __future__ import annotations

import pytest

from audit.models import LedgerEntry
from governance.integrations.mlflow.models import MlflowConnection
from tests.fixtures import last_entry

ADD = "/admin/mlflow_integration/mlflowconnection/add/"


def form(team, **changes):  # type: ignore[no-untyped-def]
    data = {"name": "prod", "team": team.pk, "tracking_uri": "https://mlflow.example.org", "token_env": "",
            "username_env": "", "password_env": "", "webhook_secret_env": "MLFLOW_CRED_PROD_SECRET",
            "default_risk_tier": "high", "alias_map": '{"champion": "production"}', "alias_on_approval": "",
            "is_active": "on"}
    data.update(changes)
    return data


@pytest.fixture
def admin_user(make_user):  # type: ignore[no-untyped-def]
    return make_user("ada", "admin")


@pytest.mark.django_db
def test_an_admin_creates_a_connection_and_each_change_is_recorded(client, admin_user, team, environments):
    client.force_login(admin_user)
    response = client.post(ADD, form(team))
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = MlflowConnection.objects.get(name="prod")
    created = last_entry("mlflow.connection_created")
    assert created.actor == "user:ada"
    assert created.payload["alias_map"] == {"champion": "production"}
    assert connection.service_account.username == "svc-mlflow-prod"
    assert connection.service_account.groups.filter(name="data_scientist").exists()
    assert connection.service_account.groups.filter(pk=team.group_id).exists()
    change = f"/admin/mlflow_integration/mlflowconnection/{connection.pk}/change/"
    response = client.post(change, form(team, revert_violations="on", alias_map='{"champion": "production"}'))
    assert response.status_code == 302
    updated = last_entry("mlflow.connection_updated")
    assert updated.payload["changed"] == ["revert_violations"]
    assert MlflowConnection.objects.get().revert_violations is True


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["data_scientist", "risk_officer", "auditor"])
def test_only_admins_reach_connections(client, make_user, team, environments, role):
    client.force_login(make_user("eve", role, teams=(team,)))
    count = LedgerEntry.objects.count()
    assert client.post(ADD, form(team)).status_code == 403
    assert client.get("/admin/mlflow_integration/mlflowconnection/").status_code == 403
    assert not MlflowConnection.objects.exists() and LedgerEntry.objects.count() == count


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [("webhook_secret_env", "SECRET_KEY"), ("token_env", "DATABASE_URL"),
                                              ("alias_map", '{"champion": "moon"}')])
def test_a_connection_cannot_name_another_secret_of_the_service(client, admin_user, team, environments, field, value):
    client.force_login(admin_user)
    response = client.post(ADD, form(team, **{field: value}), follow=True)
    assert "mlflow_connection_invalid" in response.content.decode()
    assert not MlflowConnection.objects.exists()
    assert not LedgerEntry.objects.filter(action="mlflow.connection_created").exists()
