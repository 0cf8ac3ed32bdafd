"""Undeploy (`deployment_end`, POST /api/deployments/<id>/end/): the deployment_record checks, one
`deployment.ended` entry, and a production version that runs nowhere else goes back to approved."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import LedgerEntry
from core.errors import ServiceError
from governance.models import Deployment, VersionStatus
from governance.registry.services.approvals import approval_decide, model_version_submit
from governance.registry.services.deployments import deployment_end, deployment_record
from tests.fixtures import entries, last_entry, team_writer
from tests.governance.test_api import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployed(make_version, approver, risk_officer, scientist, environments, policy):  # type: ignore[no-untyped-def]
    """Version 1.0, approved and deployed to production by the scientist of its team."""
    version = make_version("1.0")
    request = model_version_submit(version=version, by=scientist)
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
    version.refresh_from_db()
    return deployment_record(version=version, environment=environments["production"], by=scientist)


def _head() -> int:
    return LedgerEntry.objects.count()


def test_ending_a_production_deployment_records_it_and_approves_the_version_again(deployed, scientist):
    assert deployed.version.status == VersionStatus.DEPLOYED
    before = _head()
    ended = deployment_end(deployment=deployed, by=scientist, comment="traffic moved to the new service")
    assert not ended.is_active and not Deployment.objects.filter(is_active=True).exists()
    written = entries()[before:]
    assert [(entry.action, entry.actor) for entry in written] == [
        ("deployment.ended", "user:dana"), ("model_version.undeployed", "user:dana")]
    assert written[0].subject_id == str(deployed.pk)
    assert written[0].payload["comment"] == "traffic moved to the new service"
    assert written[0].payload["after"]["is_active"] is False
    assert written[1].payload["deployment"] == deployed.pk and written[1].payload["environment"] == "production"
    deployed.version.refresh_from_db()
    assert deployed.version.status == VersionStatus.APPROVED


def test_ending_a_staging_deployment_leaves_the_version_status(make_version, scientist, environments):
    draft = make_version("0.9")
    deployment = deployment_record(version=draft, environment=environments["staging"], by=scientist)
    deployment_end(deployment=deployment, by=scientist)
    draft.refresh_from_db()
    assert draft.status == VersionStatus.DRAFT
    assert last_entry("deployment.ended").subject_id == str(deployment.pk)
    assert not entries("model_version.undeployed")


def test_a_version_still_live_in_another_production_environment_stays_deployed(deployed, scientist):
    from governance.registry.services.deployments import environment_create

    eu = environment_create(by="system:test_setup", name="production-eu", is_production=True)
    deployment_record(version=deployed.version, environment=eu, by=scientist)
    deployment_end(deployment=deployed, by=scientist)
    deployed.version.refresh_from_db()
    assert deployed.version.status == VersionStatus.DEPLOYED


def _refused(by: Any, deployment: Deployment) -> tuple[str, int]:
    before = _head()
    with pytest.raises(ServiceError) as excinfo:
        deployment_end(deployment=deployment, by=by)
    deployment.refresh_from_db()
    assert deployment.is_active and not entries("deployment.ended")
    return f"{excinfo.value.status_code} {excinfo.value.code}", _head() - before


def test_another_team_is_refused_as_not_found(deployed, other_team):
    assert _refused(team_writer(other_team, username="olga"), deployed) == ("404 model_not_found", 0)


def test_a_team_member_without_the_deploy_permission_is_refused(deployed, make_user, team):
    assert _refused(make_user("vic", "auditor", teams=(team,)), deployed) == ("403 permission_denied", 0)


def test_an_admin_is_refused_and_the_refusal_kept(deployed, make_user):
    code, written = _refused(make_user("adam", "admin"), deployed)
    assert (code, written) == ("403 admin_cannot_act_as_data_scientist", 1)
    assert last_entry("deployment.end.refused").payload["attempt"] == {"environment": "production"}


def test_an_ended_deployment_cannot_end_again(deployed, scientist):
    deployment_end(deployment=deployed, by=scientist)
    before = _head()
    with pytest.raises(ServiceError) as excinfo:
        deployment_end(deployment=deployed, by=scientist)
    assert (excinfo.value.status_code, excinfo.value.code, _head()) == (409, "deployment_not_active", before)


# --- API --------------------------------------------------------------------------------------

def test_end_over_api(deployed, scientist):
    response = client_for(scientist).post(f"/api/deployments/{deployed.pk}/end/", {"comment": "retired service"},
                                          format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["id"], body["is_active"], body["version"], body["environment"]) == (
        deployed.pk, False, "1.0", "production")
    assert last_entry("deployment.ended").payload["comment"] == "retired service"
    again = client_for(scientist).post(f"/api/deployments/{deployed.pk}/end/", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "deployment_not_active"


@pytest.mark.parametrize("who,status,code", [
    ("other_team", 404, "deployment_not_found"),
    ("auditor", 403, "permission_denied"),
])
def test_end_over_api_refusals(deployed, make_user, other_team, team, who, status, code):
    user = team_writer(other_team, username="olga") if who == "other_team" else make_user("vic", "auditor")
    client = client_for(user)  # logging in is an entry of its own
    before = _head()
    response = client.post(f"/api/deployments/{deployed.pk}/end/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (status, code)
    deployed.refresh_from_db()
    assert deployed.is_active and _head() == before


# --- Admin ------------------------------------------------------------------------------------

def test_end_as_an_admin_action_of_the_team_writer(deployed, scientist):
    from django.test import Client

    client = Client()
    client.force_login(scientist)
    response = client.post("/admin/governance/deployment/", {"action": "end", "_selected_action": [deployed.pk],
                                                               "apply": "1", "comment": "service retired"})
    assert response.status_code == 302
    deployed.refresh_from_db()
    assert not deployed.is_active
    ended = last_entry("deployment.ended")
    assert (ended.actor, ended.payload["comment"]) == ("user:dana", "service retired")
