"""Insiders with their normal permissions, through the API, the admin and the pages (issue 14, classes 1-2):
a submitter cannot produce her own evidence, and nobody changes the rules to fit the case alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.actor import acting_as
from governance.models import ApprovalPolicy, ApprovalPolicyChange, RegisteredModel, RiskTierChange
from governance.registry.services.approvals import approval_policy_set, model_version_submit
from tests.fairness.helpers import FLOORS, credit_csv, make_spec, run_audit, women_never_selected
from tests.fixtures import CARD, SEED, last_entry

pytestmark = pytest.mark.django_db

HIGH = {"risk_tier": "high", "quorum": 2, "required_roles": ["risk_officer"], "required_card_fields": list(CARD),
        "expiry_hours": 48, "fairness_audit_max_age_days": 30, "fairness_metric_floors": FLOORS}


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown(response: Any) -> str:
    return " ".join(str(message) for message in get_messages(response.wsgi_request))


def refusals(action: str) -> list[tuple[str, str]]:
    return [(e.actor, e.payload["code"]) for e in LedgerEntry.objects.filter(action=action).order_by("seq")]




@pytest.fixture
def pinned(model):  # type: ignore[no-untyped-def]
    return approval_policy_set(by=SEED, **HIGH)


@pytest.fixture
def officer2(make_user):  # type: ignore[no-untyped-def]
    return make_user("rolf", "risk_officer")


@pytest.fixture
def admin_user(make_user):  # type: ignore[no-untyped-def]
    return make_user("ada", "admin")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FAIRNESS_WEBHOOK_URL = ""


# --- Class 1: the submitter's own evidence ---------------------------------------------------------

def test_own_lax_spec_is_no_evidence_through_api_and_pages(scientist, model, version, pinned, approver, tmp_path,
                                                          django_capture_on_commit_callbacks):
    request = model_version_submit(version=version, by=scientist)
    spec = make_spec(scientist, model, version, women_never_selected(rows=1000, seed=5, path=tmp_path / "w.csv"), thresholds={})
    assert run_audit(spec, scientist, django_capture_on_commit_callbacks).passed is True

    response = api(approver).post(f"/api/approval-requests/{request.pk}/decisions/",
                                  {"decision": "approve", "comment": "ok"}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "approval_evidence_spec_weaker"
    assert body["extra"]["metrics"] == ["equalized_odds_difference", "impact_ratio"]

    page = browser(approver).post(f"/models/{model.name}/requests/{request.pk}/decide/",
                                  {"decision": "approve", "comment": "ok"})
    assert page.status_code == 302
    assert "[approval_evidence_spec_weaker]" in shown(page)
    assert not LedgerEntry.objects.filter(action="approval_request.approve_recorded").exists()


def test_submitter_cannot_confirm_her_own_spec_through_api_or_admin(scientist, model, version, pinned, risk_officer,
                                                                    tmp_path):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"))
    response = api(scientist).post(f"/api/fairness/specs/{spec.pk}/confirm/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "fairness_spec_confirm_denied")
    # The fairness admin is not hers at all.
    page = browser(scientist).post("/admin/fairness/auditspec/",
                                   {"action": "confirm_selected", "_selected_action": [spec.pk]})
    assert page.status_code == 403
    assert refusals("fairness_spec.confirm.refused") == [("user:dana", "fairness_spec_confirm_denied")]
    spec.refresh_from_db()
    assert spec.confirmed_by_id is None

    response = api(risk_officer).post(f"/api/fairness/specs/{spec.pk}/confirm/", {"comment": "checked"},
                                      format="json")
    assert (response.status_code, response.json()["confirmed_by"]) == (200, "rita")
    assert last_entry("fairness_spec.confirmed").actor == "user:rita"


def test_failing_audit_is_waived_only_by_a_risk_officer_through_api_and_admin(
        scientist, model, version, pinned, risk_officer, approver, tmp_path, django_capture_on_commit_callbacks):
    model_version_submit(version=version, by=scientist)
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "b.csv", biased=True))
    failing = run_audit(spec, scientist, django_capture_on_commit_callbacks)
    assert failing.passed is False
    reason = {"reason": "It was a bad sample, trust me."}
    for insider in (scientist, approver):
        response = api(insider).post(f"/api/fairness/audits/{failing.pk}/waive/", reason, format="json")
        assert (response.status_code, response.json()["code"]) == (403, "fairness_waiver_denied")
    page = browser(scientist).post("/admin/fairness/auditrun/", {
        "action": "waive_selected", "_selected_action": [failing.pk], "apply": "1", "comment": reason["reason"]})
    assert page.status_code == 403
    page = browser(approver).post("/admin/fairness/auditrun/", {
        "action": "waive_selected", "_selected_action": [failing.pk], "apply": "1", "comment": reason["reason"]})
    assert page.status_code == 302
    assert "[fairness_waiver_denied]" in shown(page)
    assert refusals("fairness_audit.waive.refused") == [
        ("user:dana", "fairness_waiver_denied"), ("user:alice", "fairness_waiver_denied"),
        ("user:alice", "fairness_waiver_denied")]

    page = browser(risk_officer).post("/admin/fairness/auditrun/", {
        "action": "waive_selected", "_selected_action": [failing.pk], "apply": "1",
        "comment": "Known sampling defect in the 2024 holdout; see ticket 42."})
    assert page.status_code == 302
    entry = last_entry("fairness_audit.waived")
    assert (entry.actor, entry.payload["audit_run"]) == ("user:rita", failing.pk)


# --- Class 2: the rules changed to fit the case ----------------------------------------------------

def test_scientist_cannot_lower_her_tier_through_admin_or_api(scientist, model, pinned):
    form = {"risk_tier": "minimal", "description": "PD model", "intended_purpose": "Credit decisions",
            "affected_groups": "applicants", "contacts": "risk@example.org"}
    page = browser(scientist).post(f"/admin/governance/registeredmodel/{model.pk}/change/", form)
    assert page.status_code == 302
    assert "[risk_tier_lowering_two_person]" in shown(page)
    response = api(scientist).patch(f"/api/models/{model.name}/", {"risk_tier": "minimal"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "risk_tier_lowering_two_person")
    response = api(scientist).post(f"/api/models/{model.name}/risk-tier-changes/",
                                   {"risk_tier": "minimal", "reason": "no longer high risk"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "risk_tier_lowering_two_person")
    model.refresh_from_db()
    assert model.risk_tier == "high"
    assert refusals("model.update.refused") == [("user:dana", "risk_tier_lowering_two_person")] * 2
    assert refusals("risk_tier_change.request.refused") == [("user:dana", "risk_tier_lowering_two_person")]


def test_tier_lowering_needs_two_people_through_api_and_admin(scientist, model, risk_officer, approver):
    response = api(risk_officer).post(f"/api/models/{model.name}/risk-tier-changes/",
                                      {"risk_tier": "limited", "reason": "Scope reduced to pre-screening"},
                                      format="json")
    assert response.status_code == 201
    change_id = response.json()["id"]
    response = api(risk_officer).post(f"/api/risk-tier-changes/{change_id}/confirm/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "risk_tier_change_same_person")
    page = browser(risk_officer).post("/admin/governance/risktierchange/", {
        "action": "confirm_selected", "_selected_action": [change_id], "apply": "1", "comment": "mine"})
    assert "[risk_tier_change_same_person]" in shown(page)
    model.refresh_from_db()
    assert model.risk_tier == "high"
    assert refusals("risk_tier_change.confirm.refused") == [("user:rita", "risk_tier_change_same_person")] * 2

    page = browser(approver).post("/admin/governance/risktierchange/", {
        "action": "confirm_selected", "_selected_action": [change_id], "apply": "1", "comment": "agreed"})
    assert page.status_code == 302
    model.refresh_from_db()
    assert model.risk_tier == "limited"
    assert RiskTierChange.objects.get(pk=change_id).decided_by_id == approver.pk


def test_no_tier_lowering_while_a_request_is_pending_through_api(pending, model, risk_officer):
    response = api(risk_officer).post(f"/api/models/{model.name}/risk-tier-changes/",
                                      {"risk_tier": "minimal", "reason": "cheaper review"}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "risk_tier_approval_pending")
    assert refusals("risk_tier_change.request.refused") == [("user:rita", "risk_tier_approval_pending")]


def test_admin_cannot_rewrite_a_policy_through_admin_or_api(admin_user, pinned):
    client = browser(admin_user)
    assert client.get(f"/admin/governance/approvalpolicy/{pinned.pk}/change/").status_code == 200  # view only
    page = client.post(f"/admin/governance/approvalpolicy/{pinned.pk}/change/", {"quorum": 1, "expiry_hours": 48})
    assert page.status_code == 403
    assert client.get("/admin/governance/approvalpolicy/add/").status_code == 403
    response = api(admin_user).post("/api/policies/", {"risk_tier": "high", "quorum": 1}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "policy_owned_by_risk_officers")
    assert refusals("approval_policy.set.refused") == [("user:ada", "policy_owned_by_risk_officers")]
    assert ApprovalPolicy.objects.get(pk=pinned.pk).quorum == 2


def test_weakening_takes_a_second_risk_officer_through_api_and_admin(risk_officer, officer2, pinned):
    weaker = {**HIGH, "quorum": 1, "required_roles": []}
    response = api(risk_officer).post("/api/policies/", weaker, format="json")
    assert response.status_code == 202
    assert response.json()["weakened"] == ["quorum", "required_roles"]
    change_id = response.json()["id"]
    response = api(risk_officer).post(f"/api/policy-changes/{change_id}/approve/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "policy_change_same_officer")
    page = browser(risk_officer).post("/admin/governance/approvalpolicychange/", {
        "action": "approve_selected", "_selected_action": [change_id], "apply": "1", "comment": "mine"})
    assert "[policy_change_same_officer]" in shown(page)
    assert refusals("approval_policy.change_approve.refused") == [("user:rita", "policy_change_same_officer")] * 2
    assert ApprovalPolicy.objects.get(pk=pinned.pk).quorum == 2

    response = api(officer2).post(f"/api/policy-changes/{change_id}/approve/", {"comment": "agreed"}, format="json")
    assert (response.status_code, response.json()["status"]) == (200, "applied")
    assert ApprovalPolicy.objects.get(pk=pinned.pk).quorum == 1


def test_weakening_in_the_admin_form_is_kept_pending(risk_officer, pinned):
    form = {"quorum": 1, "expiry_hours": 48, "fairness_audit_max_age_days": 30,
            "required_card_fields": list(CARD), "fairness_metric_floors": "{}", "fairness_min_group_size": ""}
    page = browser(risk_officer).post(f"/admin/governance/approvalpolicy/{pinned.pk}/change/", form)
    assert page.status_code == 302
    assert page.url == "/admin/governance/approvalpolicychange/"
    change = ApprovalPolicyChange.objects.get()
    assert change.weakened == ["quorum", "required_roles", "fairness_metric_floors.equalized_odds_difference",
                               "fairness_metric_floors.impact_ratio"]
    policy = ApprovalPolicy.objects.get(pk=pinned.pk)
    assert (policy.quorum, policy.fairness_metric_floors) == (2, FLOORS)


def test_lowered_then_submitted_model_is_judged_by_its_current_tier(scientist, model, version, pinned, approver,
                                                                     risk_officer, make_user):
    """The issue's attack, with the tier lowered by other means (two people): a request submitted under
    the minimal policy is still decided under the high one once the tier is back up."""
    approval_policy_set(by=SEED, risk_tier="minimal", quorum=1, expiry_hours=48)
    with acting_as(SEED):
        RegisteredModel.objects.filter(pk=model.pk).update(risk_tier="minimal")
    request = model_version_submit(version=version, by=scientist)
    with acting_as(SEED):
        RegisteredModel.objects.filter(pk=model.pk).update(risk_tier="high")
    response = api(approver).post(f"/api/approval-requests/{request.pk}/decisions/",
                                  {"decision": "approve", "comment": "ok"}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "approval_evidence_missing")
    assert response.json()["extra"]["missing"][0]["evidence"] == "fairness_audit_passed"
