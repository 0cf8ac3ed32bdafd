"""Insiders, class 4: admins act as data scientists.

Admins (the `admin` role, and superusers, admins by nature) manage users, teams, environments and
service accounts. They do not register models or versions, submit, deploy, roll back or withdraw,
in any team and through any surface. One rule (`roles.ADMIN_WITHHELD`, enforced by
`registry.services.common.refuse_admin`): the service, the API, the admin and the pages all
answer `admin_cannot_act_as_data_scientist`, write nothing, and the ledger keeps the attempt as
`<action>.refused`. The admin role's own group does not even hold the permissions, so its
admin add pages are a 403 before any service runs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import ServiceError
from governance.models import ApprovalRequest, Deployment, ModelVersion, RegisteredModel, RequestStatus
from governance.registry.services.approvals import approval_withdraw, model_version_submit
from governance.registry.services.deployments import deployment_end, deployment_record, deployment_rollback
from governance.registry.services.registry import model_register, model_version_register
from tests.fixtures import CARD, MANIFEST

pytestmark = pytest.mark.django_db

CODE = "admin_cannot_act_as_data_scientist"
MESSAGE = ("Admins manage users, teams, environments and service accounts; they do not register, submit, "
           "deploy, roll back or withdraw models.")
PASSWORD = "test-pass-123456"


@dataclass
class Seen:
    status_code: int
    code: str | None  # the code the caller is shown; None when none is named


def admin_role(fx: dict[str, Any]) -> Any:
    return fx["make_user"]("adam", "admin")


def admin_role_in_the_team(fx: dict[str, Any]) -> Any:
    """An admin who is also in the team and the data-scientist role: the admin rule still wins."""
    return fx["make_user"]("adele", "admin", "data_scientist", teams=(fx["team"],))


def superuser(fx: dict[str, Any]) -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)


@pytest.fixture
def fx(make_user, team, other_team, model, policy, make_version, scientist, environments) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A draft, a pending request, and two staging deployments (the active one can be rolled back)."""
    draft = make_version("1.0")
    pending = model_version_submit(version=make_version("2.0"), by=scientist, comment="please")
    first = deployment_record(version=make_version("3.0"), environment=environments["staging"], by=scientist)
    active = deployment_record(version=make_version("4.0"), environment=environments["staging"], by=scientist)
    return {"make_user": make_user, "team": team, "other_team": other_team, "model": model, "draft": draft,
            "pending": pending, "first": first, "active": active, "environments": environments,
            "scientist": scientist}


# --- What each action writes when it succeeds (counted before and after) ---------------------------

def written() -> tuple[int, ...]:
    return (RegisteredModel.objects.count(), ModelVersion.objects.count(), ApprovalRequest.objects.count(),
            Deployment.objects.count(), ApprovalRequest.objects.filter(status=RequestStatus.PENDING).count(),
            Deployment.objects.filter(is_active=True).count())


# --- Actions: (ledger action refused, service call, API call, admin call, page call) ----------------

def _admin_shown(response: Any) -> str | None:
    text = " ".join(str(message) for message in response.context["messages"])
    return CODE if f"{MESSAGE} [{CODE}]" in html.unescape(text) else None


def _api(client: APIClient, url: str, body: dict[str, Any]) -> Seen:
    response = client.post(url, body, format="json")
    return Seen(response.status_code, response.json().get("code"))


def _admin_add(client: Client, url: str, data: dict[str, Any]) -> Seen:
    response = client.post(url, data, follow=True)
    if response.status_code != 200:
        return Seen(response.status_code, None)
    return Seen(response.status_code, _admin_shown(response))


def _admin_action(client: Client, url: str, action: str, pk: int, comment: str = "because of reasons") -> Seen:
    response = client.post(url, {"action": action, "_selected_action": [pk], "apply": "1", "comment": comment},
                           follow=True)
    return Seen(response.status_code, _admin_shown(response))


ACTIONS: dict[str, dict[str, Callable[..., Any]]] = {
    "model.register": {
        "service": lambda fx, by: model_register(by=by, name="shadow", team=fx["team"], risk_tier="minimal"),
        "api": lambda fx, client: _api(client, "/api/models/", {"name": "shadow", "team": "credit-risk",
                                                                 "risk_tier": "minimal"}),
        "admin": lambda fx, client: _admin_add(client, "/admin/governance/registeredmodel/add/", {
            "name": "shadow", "team": fx["team"].pk, "risk_tier": "minimal", "description": "",
            "intended_purpose": "", "affected_groups": "", "contacts": ""}),
    },
    "model_version.register": {
        "service": lambda fx, by: model_version_register(model=fx["model"], by=by, label="9.9",
                                                         artifact_uri="s3://x/", manifest=dict(MANIFEST)),
        "api": lambda fx, client: _api(client, "/api/models/credit-default-scorer/versions/", {
            "label": "9.9", "artifact_uri": "s3://x/", "manifest": dict(MANIFEST)}),
        "admin": lambda fx, client: _admin_add(client, "/admin/governance/modelversion/add/", {
            "model": fx["model"].pk, "label": "9.9", "artifact_uri": "s3://x/", "manifest": json.dumps(MANIFEST),
            "framework": "", "training_metrics": "{}", **CARD}),
    },
    "model_version.submit": {
        "service": lambda fx, by: model_version_submit(version=fx["draft"], by=by),
        "api": lambda fx, client: _api(client, "/api/models/credit-default-scorer/versions/1.0/approval-requests/",
                                       {}),
        "admin": lambda fx, client: _admin_action(client, "/admin/governance/modelversion/", "submit_for_approval",
                                                  fx["draft"].pk),
        "page": lambda fx, client: _page(client, "/models/credit-default-scorer/versions/1.0/request-approval/"),
    },
    "deployment.record": {
        "service": lambda fx, by: deployment_record(version=fx["draft"], environment=fx["environments"]["staging"],
                                                    by=by, comment="shadow"),
        "api": lambda fx, client: _api(client, "/api/deployments/", {
            "model": "credit-default-scorer", "version": "1.0", "environment": "staging"}),
        "admin": lambda fx, client: _admin_add(client, "/admin/governance/deployment/add/", {
            "version": fx["draft"].pk, "environment": fx["environments"]["staging"].pk, "comment": "shadow"}),
    },
    "deployment.rollback": {
        "service": lambda fx, by: deployment_rollback(deployment=fx["active"], by=by, comment="pulled for cause"),
        "api": lambda fx, client: _api(client, f"/api/deployments/{fx['active'].pk}/rollback/",
                                       {"comment": "pulled for cause"}),
        "admin": lambda fx, client: _admin_action(client, "/admin/governance/deployment/", "roll_back",
                                                  fx["active"].pk),
    },
    "deployment.end": {
        "service": lambda fx, by: deployment_end(deployment=fx["active"], by=by, comment="undeploy"),
        "api": lambda fx, client: _api(client, f"/api/deployments/{fx['active'].pk}/end/", {"comment": "undeploy"}),
        "admin": lambda fx, client: _admin_action(client, "/admin/governance/deployment/", "end", fx["active"].pk),
    },
    "approval_request.withdraw": {
        "service": lambda fx, by: approval_withdraw(request=fx["pending"], by=by, comment="not needed"),
        "api": lambda fx, client: _api(client, f"/api/approval-requests/{fx['pending'].pk}/withdraw/",
                                       {"comment": "not needed"}),
        "admin": lambda fx, client: _admin_action(client, "/admin/governance/approvalrequest/", "withdraw_selected",
                                                  fx["pending"].pk),
    },
}


def _page(client: Client, url: str) -> Seen:
    response = client.post(url, {"comment": ""}, follow=True)
    shown = html.unescape(response.content.decode())
    return Seen(response.status_code, CODE if f"{MESSAGE} [{CODE}]" in shown else None)


def attempt(fx: dict[str, Any], actor: Any, action: str, surface: str) -> Callable[[], Seen]:
    """Sign the actor in (itself a ledger entry) and return the attempt, so the snapshot falls between."""
    call = ACTIONS[action][surface]
    if surface == "service":
        def run() -> Seen:
            try:
                call(fx, actor)
            except ServiceError as exc:
                return Seen(exc.status_code, exc.code)
            return Seen(201, None)
        return run
    client: Any = APIClient() if surface == "api" else Client()
    client.force_login(actor)
    return lambda: call(fx, client)


# Who sees what: the service and the API refuse with the code; the admin shows it, except that the
# admin role's group no longer holds the add permissions, so Django's admin refuses its add pages
# (403) before the service runs; superusers hold every permission and reach the service.
ROWS = [
    (actor, action, surface)
    for actor in (admin_role, admin_role_in_the_team, superuser)
    for action, surfaces in ACTIONS.items()
    for surface in surfaces
]


def expected(actor: Callable[..., Any], action: str, surface: str) -> Seen:
    if surface == "service":
        return Seen(403, CODE)
    if surface == "api":
        return Seen(403, CODE)
    add_page = action in ("model.register", "model_version.register", "deployment.record")
    if surface == "admin" and add_page and actor is admin_role:
        return Seen(403, None)
    return Seen(200, CODE)


@pytest.mark.parametrize(("actor", "action", "surface"), [
    pytest.param(*row, id=f"{row[0].__name__}-{row[1]}-{row[2]}") for row in ROWS])
def test_admins_do_not_act_as_data_scientists(fx, actor, action, surface):
    user = actor(fx)
    run = attempt(fx, user, action, surface)
    before_rows, before_ledger = written(), LedgerEntry.objects.count()

    seen = run()

    want = expected(actor, action, surface)
    assert seen == want
    assert written() == before_rows
    new = list(LedgerEntry.objects.filter(seq__gte=before_ledger).order_by("seq"))
    if want.code is None:
        assert new == []  # refused by the admin's permissions: the service never ran
    else:
        assert [(entry.action, entry.actor, entry.payload["code"]) for entry in new] == [
            (f"{action}.refused", f"user:{user.get_username()}", CODE)]


@pytest.mark.parametrize(("action", "surface"), [
    pytest.param(action, surface, id=f"{action}-{surface}")
    for action, surfaces in ACTIONS.items() for surface in surfaces if surface != "admin"]
    + [pytest.param("model_version.submit", "admin", id="model_version.submit-admin"),
       pytest.param("deployment.rollback", "admin", id="deployment.rollback-admin"),
       pytest.param("approval_request.withdraw", "admin", id="approval_request.withdraw-admin")])
def test_the_data_scientist_of_the_team_does_the_same_through_the_same_surface(fx, action, surface):
    """The control rows: the team's data scientist gets through, so the refusals above are not vacuous."""
    run = attempt(fx, fx["scientist"], action, surface)
    before_rows = written()
    seen = run()
    assert seen.code is None and seen.status_code in {"service": (201,), "api": (200, 201)}.get(surface, (200,))
    assert written() != before_rows


def test_the_admin_role_holds_no_data_scientist_permission(make_user):
    from governance.roles import ADMIN_WITHHELD

    adam = make_user("adam", "admin")
    assert {name for name in ADMIN_WITHHELD if adam.has_perm(name)} == set()
    assert adam.has_perm("governance.add_environment") and adam.has_perm("governance.add_team")
