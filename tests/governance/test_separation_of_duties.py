"""Separation of duties, once, as a table: (rule, actor, surface) -> the exact refusal, and nothing written.

The rules live in `governance.registry.services.approvals.approval_decide` and `governance.permissions.can_decide`:
the submitter never decides their own request, the version's author never decides it, one person
counts once, and only the decision roles decide (never a service account, an admin, or a viewer).
Each surface must refuse exactly as the service does: the service call raises, the API answers
with the status and code, the admin's decide view and action and the model page show the code.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import ServiceError
from governance.models import ApprovalDecision, ApprovalRequest, RequestStatus
from governance.registry.services.access import approver_scope_grant, service_account_create
from governance.registry.services.approvals import approval_decide, model_version_submit
from tests.fixtures import SEED

pytestmark = pytest.mark.django_db

SOD = "approval_separation_of_duties"
ALREADY = "approval_already_decided"
NO_RIGHT = "approval_permission_denied"
DECIDED = "approval_request.approve_recorded"
MESSAGES = {  # what the service says, shown verbatim by the admin and the pages
    "submitter_cannot_decide": "You submitted this request; someone else must decide it.",
    "author_cannot_decide": "You registered this version; someone else must decide it.",
    "one_person_counts_once": "You already decided this request; one person counts once.",
    "service_accounts_never_decide": "You may not decide approvals for 'credit-default-scorer'.",
    "only_decision_roles_decide": "You may not decide approvals for 'credit-default-scorer'.",
}


def _fresh(user: Any) -> Any:
    return get_user_model().objects.get(pk=user.pk)  # no cached permissions


@dataclass
class Case:
    actor: Any
    request: ApprovalRequest
    token: str = ""  # service accounts call the API with their token


# --- Actors: each builds the situation in which its rule applies -----------------------------------

def submitter_risk_officer(fx: dict[str, Any]) -> Case:
    """Sam writes for the team and holds every approver right (risk officer); he submits dana's version."""
    sam = fx["make_user"]("sam", "data_scientist", "risk_officer", teams=(fx["team"],))
    return Case(sam, model_version_submit(version=fx["make_version"]("5.0"), by=sam))


def submitter_model_scoped_approver(fx: dict[str, Any]) -> Case:
    """Sam writes for the team and approves this model; he registers and submits a version."""
    sam = fx["make_user"]("sam", "data_scientist", "approver", teams=(fx["team"],))
    approver_scope_grant(by=SEED, to=sam, model=fx["model"])
    sam = _fresh(sam)
    return Case(sam, model_version_submit(version=fx["make_version"]("7.0", by=sam), by=sam))


def submitter_tier_scoped_approver(fx: dict[str, Any]) -> Case:
    """Sam writes for the team and approves every high-risk model; he registers and submits a version."""
    sam = fx["make_user"]("sam", "data_scientist", "approver", teams=(fx["team"],))
    approver_scope_grant(by=SEED, to=sam, risk_tier="high")
    sam = _fresh(sam)
    return Case(sam, model_version_submit(version=fx["make_version"]("2.0.0", by=sam), by=sam))


def author_risk_officer(fx: dict[str, Any]) -> Case:
    """Ann registered the version and is a risk officer; dario submitted it."""
    ann = fx["make_user"]("ann", "data_scientist", "risk_officer", teams=(fx["team"],))
    version = fx["make_version"]("6.0", by=ann)
    return Case(ann, model_version_submit(version=version, by=fx["scientist2"]))


def approver_who_already_approved(fx: dict[str, Any]) -> Case:
    request = model_version_submit(version=fx["make_version"]("8.0"), by=fx["scientist"])
    approval_decide(request=request, by=fx["approver"], decision="approve", comment="ok")
    return Case(fx["approver"], request)


def service_account_approver(fx: dict[str, Any]) -> Case:
    """A pipeline account in the approver role, scoped to the model: pipelines never decide."""
    account, token = service_account_create(by="system:test", name="ci", role="approver",
                                                     models=[fx["model"]])
    approver_scope_grant(by="system:test", to=account.user, model=fx["model"])
    request = model_version_submit(version=fx["make_version"]("9.0"), by=fx["scientist"])
    return Case(_fresh(account.user), request, token=token)


def admin(fx: dict[str, Any]) -> Case:
    """The admin role manages users and models but holds no decision right."""
    request = model_version_submit(version=fx["make_version"]("10.0"), by=fx["scientist"])
    return Case(fx["make_user"]("adam", "admin"), request)


def viewer_in_team(fx: dict[str, Any]) -> Case:
    request = model_version_submit(version=fx["make_version"]("11.0"), by=fx["scientist"])
    return Case(fx["make_user"]("vic", "viewer", teams=(fx["team"],)), request)


def approver_in_scope(fx: dict[str, Any]) -> Case:
    """The control: neither submitter nor author, in scope, not yet decided."""
    request = model_version_submit(version=fx["make_version"]("12.0"), by=fx["scientist"])
    return Case(fx["approver"], request)


# --- Surfaces: each tries to approve and returns what the caller sees -----------------------------

@dataclass
class Seen:
    status_code: int
    code: str | None  # the error code the caller is shown, None when nothing names one
    rule: str | None = None  # `extra["rule"]` where the surface exposes it


def _shown(text: str, code: str | None, message: str) -> str | None:
    """The code, if the page shows the service's message with it as `message [code]`."""
    return code if code and f"{message} [{code}]" in html.unescape(text) else None


def _signed_in(actor: Any) -> Client:
    client = Client()
    client.force_login(actor)  # signing in is itself recorded: done before the test takes its snapshot
    return client


# Each surface signs the actor in and returns the attempt, so the snapshot is taken between the two.

def via_service(case: Case, code: str | None, message: str) -> Callable[[], Seen]:
    def attempt() -> Seen:
        try:
            approval_decide(request=case.request, by=case.actor, decision="approve", comment="mine")
        except ServiceError as exc:
            return Seen(exc.status_code, exc.code, exc.extra.get("rule"))
        return Seen(201, None)
    return attempt


def via_api(case: Case, code: str | None, message: str) -> Callable[[], Seen]:
    client = APIClient()
    if case.token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {case.token}")
    else:
        client.force_login(case.actor)

    def attempt() -> Seen:
        response = client.post(f"/api/approval-requests/{case.request.pk}/decisions/",
                               {"decision": "approve", "comment": "mine"}, format="json")
        body = response.json()
        if response.status_code == 201:
            return Seen(201, None)
        return Seen(response.status_code, body["code"], body["extra"].get("rule"))
    return attempt


def via_admin_decide_view(case: Case, code: str | None, message: str) -> Callable[[], Seen]:
    client = _signed_in(case.actor)

    def attempt() -> Seen:
        response = client.post(f"/admin/governance/approvalrequest/{case.request.pk}/decide/",
                               {"decision": "approve", "comment": "mine"})
        if response.status_code != 200:
            return Seen(response.status_code, None)
        return Seen(200, _shown(str(response.context["form"].non_field_errors()), code, message))
    return attempt


def via_admin_action(case: Case, code: str | None, message: str) -> Callable[[], Seen]:
    client = _signed_in(case.actor)

    def attempt() -> Seen:
        response = client.post("/admin/governance/approvalrequest/", {
            "action": "approve_selected", "_selected_action": [case.request.pk], "apply": "1", "comment": "mine"},
            follow=True)
        shown = " ".join(str(message) for message in response.context["messages"])
        return Seen(response.status_code, _shown(shown, code, message))
    return attempt


def via_page(case: Case, code: str | None, message: str) -> Callable[[], Seen]:
    client = _signed_in(case.actor)

    def attempt() -> Seen:
        model = case.request.version.model.name
        response = client.post(f"/models/{model}/requests/{case.request.pk}/decide/",
                               {"decision": "approve", "comment": "mine"}, follow=True)
        return Seen(response.status_code, _shown(response.content.decode(), code, message))
    return attempt


SURFACES = {"service": via_service, "api": via_api, "admin_view": via_admin_decide_view,
            "admin_action": via_admin_action, "page": via_page}

# rule, actor, surface, status the caller gets, error code shown, extra["rule"] (service and API).
# The admin's decide view refuses users without the decide right itself (403) before the service runs.
REFUSALS = [
    *[("submitter_cannot_decide", actor, surface, status, SOD, rule)
      for actor in (submitter_risk_officer, submitter_model_scoped_approver, submitter_tier_scoped_approver)
      for surface, status, rule in (("service", 403, "submitter_cannot_decide"),
                                    ("api", 403, "submitter_cannot_decide"), ("admin_view", 200, None),
                                    ("admin_action", 200, None), ("page", 200, None))],
    *[("author_cannot_decide", author_risk_officer, surface, status, SOD, rule)
      for surface, status, rule in (("service", 403, "author_cannot_decide"), ("api", 403, "author_cannot_decide"),
                                    ("admin_view", 200, None), ("admin_action", 200, None), ("page", 200, None))],
    *[("one_person_counts_once", approver_who_already_approved, surface, status, ALREADY, rule)
      for surface, status, rule in (("service", 409, "one_person_counts_once"),
                                    ("api", 409, "one_person_counts_once"), ("admin_view", 200, None),
                                    ("admin_action", 200, None), ("page", 200, None))],
    ("service_accounts_never_decide", service_account_approver, "service", 403, NO_RIGHT, None),
    ("service_accounts_never_decide", service_account_approver, "api", 403, NO_RIGHT, None),
    *[("only_decision_roles_decide", actor, surface, status, code, None)
      for actor in (admin, viewer_in_team)
      for surface, status, code in (("service", 403, NO_RIGHT), ("api", 403, NO_RIGHT), ("admin_view", 403, None),
                                    ("page", 200, NO_RIGHT))],
]


@pytest.fixture
def fx(make_user, team, model, policy, make_version, scientist, scientist2, approver) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"make_user": make_user, "team": team, "model": model, "make_version": make_version,
            "scientist": scientist, "scientist2": scientist2, "approver": approver}


@pytest.mark.parametrize(("rule", "actor", "surface", "status_code", "code", "extra_rule"), [
    pytest.param(*row, id=f"{row[0]}-{row[1].__name__}-{row[2]}") for row in REFUSALS])
def test_separation_of_duties_refuses_and_writes_nothing(fx, rule, actor, surface, status_code, code, extra_rule):
    case = actor(fx)
    attempt = SURFACES[surface](case, code, MESSAGES[rule])
    decisions = ApprovalDecision.objects.count()
    ledger_size = LedgerEntry.objects.count()
    recorded = LedgerEntry.objects.filter(action=DECIDED).count()

    seen = attempt()

    assert (seen.status_code, seen.code, seen.rule) == (status_code, code, extra_rule)
    assert ApprovalDecision.objects.count() == decisions
    assert LedgerEntry.objects.filter(action=DECIDED).count() == recorded
    assert LedgerEntry.objects.count() == ledger_size
    assert ApprovalRequest.objects.get(pk=case.request.pk).status == RequestStatus.PENDING


@pytest.mark.parametrize(("surface", "status_code"), [
    ("service", 201), ("api", 201), ("admin_view", 302), ("admin_action", 200), ("page", 200)])
def test_an_approver_who_is_neither_submitter_nor_author_is_recorded(fx, surface, status_code):
    """The control row: the same surfaces record a decision, so the refusals above are not vacuous."""
    case = approver_in_scope(fx)
    seen = SURFACES[surface](case, None, "")()
    assert (seen.status_code, seen.code) == (status_code, None)
    decision = ApprovalDecision.objects.get(request=case.request)
    assert decision.approver == case.actor
    assert LedgerEntry.objects.filter(action=DECIDED).count() == 1


# --- Roles that exclude each other (governance.roles.EXCLUDES), on every grant path ------------------
# Written out here rather than read from the matrix, so a change of the matrix must change this table.

ROLE_PAIRS = [  # (held, granted, excluded?)
    ("admin", "approver", True), ("admin", "risk_officer", True), ("approver", "admin", True),
    ("risk_officer", "admin", True), ("approver", "risk_officer", False), ("data_scientist", "approver", False),
    ("auditor", "admin", False), ("viewer", "risk_officer", False), ("data_scientist", "admin", False),
]


@pytest.mark.parametrize(("held", "granted", "excluded"), ROLE_PAIRS)
def test_the_role_matrix_on_the_bootstrap_grant_path(make_user, held, granted, excluded):
    from core.errors import Conflict
    from governance.registry.services.access import role_grant

    user = make_user("pat", held)
    if excluded:
        with pytest.raises(Conflict) as refused:
            role_grant(user=user, role=granted, by=SEED)
        assert (refused.value.code, refused.value.extra["pairs"]) == (
            "privilege_separation_of_duties", [[granted, held]])
        assert set(_fresh(user).groups.values_list("name", flat=True)) == {held}
    else:
        role_grant(user=user, role=granted, by=SEED)
        assert set(_fresh(user).groups.values_list("name", flat=True)) == {held, granted}


@pytest.mark.parametrize("grant", ["approver-scope", "decision-permission"])
def test_an_admin_gets_no_approver_scope_by_any_path(make_user, model, grant):
    from core.errors import Conflict
    from governance import accounts

    ada = make_user("ada", "admin")
    with pytest.raises(Conflict) as refused:
        if grant == "approver-scope":
            approver_scope_grant(by=SEED, to=ada, model=model)
        else:
            from django.contrib.auth.models import Permission
            accounts.user_access_set(user=ada, by=SEED, permissions=[Permission.objects.get(codename="approve_tier_high")])
    assert refused.value.code == "privilege_separation_of_duties"
    assert not _fresh(ada).has_perm("governance.approve_tier_high")
    assert not _fresh(ada).has_perm("governance.approve_registeredmodel", model)
