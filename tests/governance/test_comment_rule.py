"""One comment rule for every surface: the services say which actions need a reason
(`registry.services.common.REASON_REQUIRED_ACTIONS`, at least MIN_REASON_CHARS characters); the API,
the pages and the admin pass the comment through and show the same refusal, `reason_required`."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from governance.models import ApprovalDecision, ApprovalRequest, Deployment, RequestStatus
from governance.registry.services.common import MIN_REASON_CHARS
from governance.registry.services.deployments import deployment_record

pytestmark = pytest.mark.django_db

SHOWN = f"Say why in the comment (at least {MIN_REASON_CHARS} characters). [reason_required]"


def _api(user: Any, url: str, body: dict[str, Any]) -> str | None:
    client = APIClient()
    client.force_login(user)
    response = client.post(url, body, format="json")
    assert response.status_code == 400
    return response.json()["code"]


def _html(user: Any, url: str, data: dict[str, Any]) -> str | None:
    client = Client()
    client.force_login(user)
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    return "reason_required" if SHOWN in html.unescape(response.content.decode()) else None


def _action(user: Any, changelist: str, action: str, pk: int, comment: str) -> str | None:
    return _html(user, changelist, {"action": action, "_selected_action": [pk], "apply": "1", "comment": comment})


@pytest.fixture
def world(pending, approver, scientist, make_version, environments) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deployment_record(version=make_version("0.1"), environment=environments["staging"], by=scientist)
    active = deployment_record(version=make_version("0.2"), environment=environments["staging"], by=scientist)
    return {"pending": pending, "approver": approver, "scientist": scientist, "active": active}


SURFACES = {
    "reject-api": lambda w, c: _api(w["approver"], f"/api/approval-requests/{w['pending'].pk}/decisions/",
                                    {"decision": "reject", "comment": c}),
    "reject-page": lambda w, c: _html(w["approver"], f"/models/credit-default-scorer/requests/{w['pending'].pk}/decide/",
                                      {"decision": "reject", "comment": c}),
    "reject-admin-view": lambda w, c: _html(w["approver"],
                                            f"/admin/governance/approvalrequest/{w['pending'].pk}/decide/",
                                            {"decision": "reject", "comment": c}),
    "reject-admin-action": lambda w, c: _action(w["approver"], "/admin/governance/approvalrequest/",
                                                "reject_selected", w["pending"].pk, c),
    "withdraw-api": lambda w, c: _api(w["scientist"], f"/api/approval-requests/{w['pending'].pk}/withdraw/",
                                      {"comment": c}),
    "withdraw-admin-action": lambda w, c: _action(w["scientist"], "/admin/governance/approvalrequest/",
                                                  "withdraw_selected", w["pending"].pk, c),
    "rollback-api": lambda w, c: _api(w["scientist"], f"/api/deployments/{w['active'].pk}/rollback/", {"comment": c}),
    "rollback-admin-action": lambda w, c: _action(w["scientist"], "/admin/governance/deployment/", "roll_back",
                                                  w["active"].pk, c),
}


@pytest.mark.parametrize("comment", ["", "  ", "no"])
@pytest.mark.parametrize("surface", list(SURFACES))
def test_a_missing_reason_is_the_same_refusal_on_every_surface(world, surface, comment):
    assert SURFACES[surface](world, comment) == "reason_required"
    assert not ApprovalDecision.objects.exists()
    assert ApprovalRequest.objects.get(pk=world["pending"].pk).status == RequestStatus.PENDING
    assert Deployment.objects.filter(is_active=True).get().pk == world["active"].pk
